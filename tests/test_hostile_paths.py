"""Hostile inputs, fourth pass: writes and reads outside the folders a command was given, silent loss in
label, merge and toy render, and tracebacks in report, export and the toy commands. Each case failed on
the code before it."""
import json
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke, made_run, one_line_error, run_args  # noqa: E402
from test_hostile_files_and_resume import INSTSEG  # noqa: E402  (tests/ is on sys.path)


@pytest.fixture(scope="module")
def R(tiny_ckpt, tmp_path_factory):
    return made_run(tiny_ckpt, tmp_path_factory.mktemp("r4") / "run", 4)


@pytest.fixture
def copy_of(R, tmp_path):
    def make(name="copy"):
        dst = tmp_path / name
        shutil.copytree(R, dst)
        return dst
    return make


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- 1-6: nothing written or read outside the folders given --------------------------------------

def test_export_refuses_a_crafted_file_name_that_walks_out_through_a_link(copy_of, tmp_path):
    run = copy_of()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    deep = run / "images" / "/".join(f"d{i}" for i in range(40))
    deep.mkdir(parents=True)
    (run / "images" / "l").symlink_to(deep.relative_to(run / "images"))
    crafted = "l/" + "../" * 40 + str(victim).lstrip("/")
    inside = run / "images" / str(victim).lstrip("/")  # where the name resolves: inside images/, so it passed
    inside.parent.mkdir(parents=True)
    shutil.copy(run / "images" / "0.png", inside)

    def change(d):
        d["images"][0]["file_name"] = crafted
    _edit(run / "annotations.json", change)
    for fmt in ("coco", "yolo"):
        r = invoke(["export", run, "--format", fmt, "--out", tmp_path / f"e-{fmt}"])
        one_line_error(r, "not a plain relative path")
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", ["/etc/passwd", "../0.png", "a/../0.png", "./0.png", "a//0.png", "x\\..\\0.png"])
def test_a_file_name_that_is_not_a_plain_relative_path_is_refused(copy_of, tmp_path, name):
    run = copy_of()
    _edit(run / "annotations.json", lambda d: d["images"][0].__setitem__("file_name", name))
    for args in (["export", run, "--out", tmp_path / "e"], ["report", run, "--out", tmp_path / "r.html"],
                 ["show", run, "--out", tmp_path / "g.png"]):
        one_line_error(invoke(args), "not a plain relative path")


def test_toy_render_writes_nothing_through_a_linked_images_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.png").write_bytes(b"mine")
    out = tmp_path / "O"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    one_line_error(invoke(["toy", "render", "--out", out, "--seeds", "0-1"]), "symbolic link")
    assert (elsewhere / "0.png").read_bytes() == b"mine" and sorted(os.listdir(elsewhere)) == ["0.png"]


def _scenes(folder, n=2, size=32):
    from instseg.toy.render import render_seed

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(render_seed(3_400_000 + i, size, "flat")[0]).save(folder / f"s{i}.png")
    return folder


def test_label_glob_refuses_a_link_that_leads_out_of_its_folder(tmp_path):
    outside = _scenes(tmp_path / "outside", 1)
    F = _scenes(tmp_path / "F", 1)
    (F / "o.png").symlink_to(outside / "s0.png")
    out = tmp_path / "L"
    r = invoke(["label", str(F / "*.png"), "--out", out, "--steps", "2", "--detector", "none"])
    one_line_error(r, "leads out of")
    assert not out.exists()


@pytest.mark.parametrize("link", ["variants/0.png", "images", "annotations.json", "images/0.png"])
def test_report_show_and_export_read_nothing_through_a_link(copy_of, tmp_path, link):
    run = copy_of()
    outside = tmp_path / "outside"
    shutil.copytree(run / Path(link).parts[0], outside) if "/" in link or link == "images" else \
        shutil.copy(run / link, outside)
    target = outside / Path(link).name if "/" in link else outside
    (run / link).unlink() if (run / link).is_file() else shutil.rmtree(run / link)
    (run / link).symlink_to(target)
    for args in (["report", run, "--out", tmp_path / "r.html"], ["show", run, "--out", tmp_path / "g.png"],
                 ["export", run, "--out", tmp_path / "e"], ["export", run, "--format", "coco", "--out", tmp_path / "c"]):
        if link.startswith("variants") and args[0] == "export":
            continue  # exports do not read the variant strips
        one_line_error(invoke(args), "symbolic link")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_output_that_exists_and_is_not_a_regular_file_is_refused(R, tiny_ckpt, tmp_path, kind):
    target = tmp_path / "special"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    gt = tmp_path / "gt.json"
    for args in (["report", R, "--out", target], ["show", R, "--out", target], ["convert", tiny_ckpt, target],
                 ["toy", "labels", "--seeds", "0", "--out", target],
                 ["pseudo-gt", R, "--segmenter", "yolo:toy-flat", "--out", target]):
        r = invoke(args)
        assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output)
        assert ("regular file" in r.output or "is a directory" in r.output), (args, r.output)
    assert stat.S_ISFIFO(os.lstat(target).st_mode) if kind == "fifo" else target.is_dir()
    assert not gt.exists()


def test_the_atomic_writer_itself_refuses_a_device_or_fifo(tmp_path):
    from instseg.errors import UserError
    from instseg.io import atomic_write_bytes

    os.mkfifo(tmp_path / "f")
    with pytest.raises(UserError, match="not a regular file"):
        atomic_write_bytes(tmp_path / "f", b"x")
    with pytest.raises(UserError, match="not a regular file"):
        atomic_write_bytes(Path("/dev/null"), b"x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "f").st_mode)


def test_downloads_are_bounded_and_file_urls_must_name_regular_files(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTSEG_CACHE", str(tmp_path / "cache"))
    for url in ("file:///dev/zero", f"file://{tmp_path}"):
        one_line_error(invoke(["convert", url, tmp_path / "o.pt"]), "not a regular file")
    big = tmp_path / "big.pkl"
    big.write_bytes(b"\0" * (2 << 20))
    monkeypatch.setenv("INSTSEG_MAX_DOWNLOAD", "1M")
    one_line_error(invoke(["convert", big.as_uri(), tmp_path / "o.pt"]), "download limit")
    monkeypatch.setenv("INSTSEG_MAX_DOWNLOAD", "lots")
    one_line_error(invoke(["convert", big.as_uri(), tmp_path / "o.pt"]), "INSTSEG_MAX_DOWNLOAD")
    assert not list((tmp_path / "cache").rglob("*big*"))


# --- 7-10: no silent loss -------------------------------------------------------------------------

def test_label_refuses_two_inputs_stored_under_one_name(tmp_path):
    F = _scenes(tmp_path / "F", 1)
    img = Image.open(F / "s0.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: stored upright as x.jpg.png
    img.convert("RGB").save(F / "x.jpg", exif=exif)
    img.save(F / "x.jpg.png")
    out = tmp_path / "L"
    one_line_error(invoke(["label", F, "--out", out, "--steps", "2", "--detector", "none"]), "x.jpg.png")
    assert not out.exists()


def test_toy_render_refuses_a_folder_holding_another_dataset(R, copy_of, tmp_path):
    run = copy_of()
    before = (run / "images" / "0.png").read_bytes(), (run / "annotations.json").read_bytes()
    one_line_error(invoke(["toy", "render", "--out", run, "--seeds", "0-1"]), "instseg run")
    assert ((run / "images" / "0.png").read_bytes(), (run / "annotations.json").read_bytes()) == before
    other = tmp_path / "other"  # another tool's COCO folder
    (other / "images").mkdir(parents=True)
    shutil.copy(R / "images" / "0.png", other / "images" / "0.png")
    shutil.copy(R / "annotations.json", other / "annotations.json")
    _edit(other / "annotations.json", lambda d: d.__setitem__("info", {"description": "labelled by hand"}))
    one_line_error(invoke(["toy", "render", "--out", other, "--seeds", "0-1"]), "did not make")
    mine = tmp_path / "mine"  # its own folder renders again
    assert invoke(["toy", "render", "--out", mine, "--seeds", "0-1"]).exit_code == 0
    assert invoke(["toy", "render", "--out", mine, "--seeds", "0-2"]).exit_code == 0
    assert len(json.loads((mine / "annotations.json").read_text())["images"]) == 3


def test_merge_refuses_mixed_shard_counts_and_missing_shards(tiny_ckpt, tmp_path):
    def shard(name, spec):
        r = invoke(run_args(tiny_ckpt, tmp_path / name) + ["--num-images", "4", "--shard", spec])
        assert r.exit_code == 0, r.output
        return tmp_path / name
    s0, s1of3, s1 = shard("s0", "0/2"), shard("s1of3", "1/3"), shard("s1", "1/2")
    one_line_error(invoke(["merge", s0, s1of3, "--out", tmp_path / "m"]), "not shards of one --shard count")
    one_line_error(invoke(["merge", s0, "--out", tmp_path / "m"]), "lack shard 1/2")
    assert not (tmp_path / "m" / "annotations.json").exists()
    r = invoke(["merge", s0, "--out", tmp_path / "p", "--allow-partial"])
    assert r.exit_code == 0 and "shard 1/2 (not given): seeds 1, 3" in r.output, r.output
    run = json.loads((tmp_path / "p" / "run.json").read_text())
    assert run["missing"] == {"shard 1/2 (not given)": [1, 3]} and run["seeds"] == [0, 2]
    assert invoke(["merge", s0, s1, "--out", tmp_path / "whole"]).exit_code == 0
    assert [im["seed"] for im in json.loads((tmp_path / "whole" / "annotations.json").read_text())["images"]] \
        == [0, 1, 2, 3]


@pytest.mark.parametrize("own", ["annotations.json", "run.json", "README.md", "records/x.html", "images/r.html"])
def test_report_and_show_refuse_an_out_that_is_one_of_the_runs_own_files(copy_of, own):
    run = copy_of()
    before = (run / "annotations.json").read_bytes()
    one_line_error(invoke(["report", run, "--out", run / own]), "this dataset's own")
    one_line_error(invoke(["show", run, "--out", run / own]), "this dataset's own")
    assert (run / "annotations.json").read_bytes() == before
    assert invoke(["report", run, "--out", run / "report.html"]).exit_code == 0


# --- 11-14: one line, never a traceback ------------------------------------------------------------

class _KillsItsProcess:
    """Unpickled in an encoder process, it ends that process (as `kill -9` of a worker does)."""

    def __reduce__(self):
        return (os._exit, (9,))


def test_a_killed_encoder_worker_gives_one_line_that_says_a_rerun_resumes(tmp_path):
    from instseg.encode import Writer
    from instseg.errors import Crash
    from instseg.rundir import RunDir

    rd = RunDir(tmp_path / "run")
    rd.prepare()
    with pytest.raises(Crash, match=r"encoder process died: pid \d+ \(exit code 9\).*resumes"):
        with Writer(rd, "cid", encoders=1) as writer:
            writer.submit([_KillsItsProcess()])


def test_a_crash_of_ours_is_one_line_with_exit_code_1(tiny_ckpt, tmp_path, monkeypatch):
    from instseg import runner
    from instseg.errors import Crash

    def crash(*a, **k):
        raise Crash("an encoder process died: pid 1 (killed by SIGKILL); running the same command again resumes")
    monkeypatch.setattr(runner, "run", crash)
    r = invoke(run_args(tiny_ckpt, tmp_path / "o"))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.output.strip().splitlines()[-1].startswith("Error: an encoder process died"), r.output


def test_non_utf8_names_work_end_to_end(tiny_ckpt, tmp_path):
    out = os.fsencode(tmp_path) + b"/caf\xe9"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    r = subprocess.run([*INSTSEG, "run", "--gan", str(tiny_ckpt), "--out", out, "--num-images", "2", "--variants", "3",
                        "--mix-from", "3"], capture_output=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    card = Path(os.fsdecode(out)) / "README.md"
    assert card.exists() and "caf\\udce9" in card.read_text()
    photos = tmp_path / "photos"
    _scenes(photos, 1)
    os.rename(photos / "s0.png", os.fsencode(photos) + b"/caf\xe9.png")
    lab = tmp_path / "L"
    r = subprocess.run([*INSTSEG, "label", str(photos), "--out", str(lab), "--steps", "2", "--detector", "none"],
                       capture_output=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([*INSTSEG, "report", str(lab), "--out", str(tmp_path / "r.html")], capture_output=True, env=env)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr[-2000:]
    assert "caf\\udce9.png" in (tmp_path / "r.html").read_text()


_ODD_FIELDS = {
    "info is a list": lambda d, r: d.__setitem__("info", [1, 2]),
    "licence_note is a list": lambda d, r: d["info"].__setitem__("licence_note", ["x"]),
    "licenses is a string": lambda d, r: d.__setitem__("licenses", "MIT"),
    "licenses holds a number": lambda d, r: d.__setitem__("licenses", [5]),
    "bbox is a string": lambda d, r: d["annotations"][0].__setitem__("bbox", "abc"),
    "bbox has two numbers": lambda d, r: d["annotations"][0].__setitem__("bbox", [1, 2]),
    "command is a number": lambda d, r: r.__setitem__("command", 5),
}


@pytest.mark.parametrize("case", list(_ODD_FIELDS))
def test_report_copes_with_odd_fields_or_says_what_is_wrong_in_one_line(copy_of, tmp_path, case):
    run = copy_of()
    data, info = json.loads((run / "annotations.json").read_text()), json.loads((run / "run.json").read_text())
    _ODD_FIELDS[case](data, info)
    (run / "annotations.json").write_text(json.dumps(data))
    (run / "run.json").write_text(json.dumps(info))
    r = invoke(["report", run, "--out", tmp_path / "r.html"])
    if r.exit_code != 0:
        one_line_error(r, "bbox")
    assert r.exit_code == 0 or "bbox" in case


def test_report_says_in_one_line_when_an_image_is_not_the_size_annotations_json_says(copy_of, tmp_path):
    run = copy_of()
    Image.new("RGB", (7, 9)).save(run / "images" / "0.png")
    one_line_error(invoke(["report", run, "--out", tmp_path / "r.html"]), "is 7x9 but annotations.json says")


@pytest.mark.parametrize("state", [{}, {"iter": 3, "config": {"batch": "abc"}}, {"iter": "x", "config": {}}, [1]])
def test_train_gan_resume_from_a_bad_state_gives_one_line(tmp_path, state):
    src = tmp_path / "state"
    src.mkdir()
    (src / "state.json").write_text(json.dumps(state))
    for extra in ([], ["--same-recipe"]):
        r = invoke(["toy", "train-gan", "--out", tmp_path / "t", "--resume-from", src, "--iters", "1", *extra])
        one_line_error(r, "state.json")


# --- 15-18: misleading or wasteful ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_export_roots_get_the_umasks_mode(R, tmp_path, fmt):
    old = os.umask(0o022)
    try:
        assert invoke(["export", R, "--format", fmt, "--out", tmp_path / "e"]).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "e").st_mode) == 0o755


def test_an_error_names_the_path_the_user_gave_not_a_temp_file(R, tmp_path):
    r = invoke(["report", R, "--out", tmp_path / "nofolder" / "r.html"])
    one_line_error(r, str(tmp_path / "nofolder" / "r.html"))
    assert ".tmp" not in r.output


def test_report_holds_one_decoded_image_at_a_time(tmp_path, monkeypatch):
    from instseg import coco, report

    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(6):
        Image.fromarray(np.full((300, 400, 3), 40 * i, np.uint8)).save(run / "images" / f"{i}.png")
        images.append(coco.image_entry(i + 1, f"{i}.png", 300, 400, seed=i))
        m = np.zeros((300, 400), bool)
        m[50:150, 60:200] = True
        anns += [coco.annotation(m, i + 1, 1, 0.5 + i / 100), coco.annotation(~m, i + 1, 1, 0.9)]
    (run / "annotations.json").write_text(json.dumps(coco.dataset(images, anns, ["thing"])))
    import weakref

    alive, peak = [0], [0]

    class Tracked(np.ndarray):  # a Python subclass: weak references work
        pass

    real = report.load_image

    def tracked(root, name):
        a = real(root, name).view(Tracked)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(a, lambda: alive.__setitem__(0, alive[0] - 1))
        return a
    monkeypatch.setattr(report, "load_image", tracked)
    report.build(run)
    assert peak[0] == 1, peak


def test_the_chunking_promise_holds_as_the_readme_words_it(tiny_ckpt, tmp_path):
    """README: images, masks, boxes and areas equal across --batch; the detector's and the scores' floats may
    differ in their last digits. Checked on the tiny generator with whole-image masks."""
    outs = []
    for batch in (1, 3):
        out = tmp_path / f"b{batch}"
        assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "5", "--batch", str(batch)]).exit_code == 0
        outs.append(json.loads((out / "annotations.json").read_text()))
    a, b = outs
    assert len(a["annotations"]) == len(b["annotations"]) > 0
    for x, y in zip(a["annotations"], b["annotations"]):
        assert (x["segmentation"], x["bbox"], x["area"]) == (y["segmentation"], y["bbox"], y["area"])
        assert x["score"] == pytest.approx(y["score"], rel=1e-3)
    for i in range(5):
        assert (tmp_path / "b1" / "images" / f"{i}.png").read_bytes() == (tmp_path / "b3" / "images" / f"{i}.png").read_bytes()


# --- the seeded junk loop over report, label, export and toy render ------------------------------

_JUNK_VALUES = [None, True, -1, 0, 1.5, float("inf"), "", "x" * 300, "../../x", "/etc/passwd", "caf\udce9", [], [1, 2],
                {}, {"a": 1}, [[1]], "<script>alert(1)</script>", 2**40]


def _mutate(rng, data, run):
    target = rng.choice(["info", "licenses", "image", "annotation", "category", "run"])
    value = rng.choice(_JUNK_VALUES)
    if target == "info":
        if isinstance(data.get("info"), dict):
            data["info"][rng.choice(["licence_note", "generator", "real_images", "licence", "x"])] = value
        else:
            data["info"] = value
    elif target == "licenses":
        data["licenses"] = rng.choice([value, [value]])
    elif target == "image" and data["images"]:
        data["images"][rng.randrange(len(data["images"]))][rng.choice(
            ["file_name", "seed", "width", "height", "projection_psnr", "low_fidelity", "license"])] = value
    elif target == "annotation" and data["annotations"]:
        data["annotations"][rng.randrange(len(data["annotations"]))][rng.choice(
            ["bbox", "score", "area", "segmentation", "category_id", "det_box"])] = value
    elif target == "category" and data["categories"]:
        data["categories"][0][rng.choice(["name", "id"])] = value
    else:
        run[rng.choice(["command", "config", "seeds", "shard", "shard_of"])] = value


def test_junk_in_run_folders_and_names_never_gives_a_traceback(R, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(4040)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "0.png").write_bytes((R / "images" / "0.png").read_bytes())
    for trial in range(40):
        run = tmp_path / f"r{trial}"
        shutil.copytree(R, run)
        data, info = json.loads((run / "annotations.json").read_text()), json.loads((run / "run.json").read_text())
        for _ in range(rng.randint(1, 3)):
            _mutate(rng, data, info)
        (run / "annotations.json").write_text(json.dumps(data))
        (run / "run.json").write_text(json.dumps(info))
        if rng.random() < 0.25:  # a link somewhere inside the run folder
            where = run / rng.choice(["variants/1.png", "images/1.png", "parts/1.png"])
            where.unlink()
            where.symlink_to(elsewhere / "0.png")
        sub = rng.choice(["report", "export", "export-coco", "show", "toy render", "label"])
        out = tmp_path / f"o{trial}"
        args = {"report": ["report", run, "--out", out / "r.html"],
                "export": ["export", run, "--out", out],
                "export-coco": ["export", run, "--format", "coco", "--out", out],
                "show": ["show", run, "--out", out / "g.png"],
                "toy render": ["toy", "render", "--out", rng.choice([run, out, elsewhere]), "--seeds", "0"],
                "label": ["label", rng.choice([str(run / "images"), str(run / "images" / "*.png"),
                                               str(elsewhere), "nosuch*"]),
                          "--out", rng.choice([out, run]), "--steps", "1", "--detector", "none"]}[sub]
        (out.mkdir() if sub in ("report", "show") else None)
        r = invoke(args)
        assert r.exit_code in (0, 2), (args, r.output, r.exception)
        assert "Traceback" not in r.output and len(r.output) < 5000, (args, r.output[:500])
        if r.exit_code == 2:
            assert r.output.strip().splitlines()[-1].startswith("Error: "), (args, r.output)
        assert sorted(os.listdir(elsewhere)) == ["0.png"], args
        assert (elsewhere / "0.png").read_bytes() == (R / "images" / "0.png").read_bytes(), args
