"""Hostile inputs: every case of the hardening pass, each failing on the code before it."""
import errno
import io
import json
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pycocotools.coco import COCO

from conftest import invoke, made_run, one_line_error, randomise, run_args, tiny_config
from layouts import ada_pickle_bytes, tf_pickle_bytes
from instseg import coco
from instseg.checkpoints import detect_and_load, save_native
from instseg.cli import main
from instseg.errors import CheckpointError
from instseg.generator import Generator
from instseg.rundir import RunDir

INSTSEG = [sys.executable, "-m", "instseg.cli"]





@pytest.fixture(scope="module")
def done_run(tiny_ckpt, tmp_path_factory):
    return made_run(tiny_ckpt, tmp_path_factory.mktemp("done") / "run", 8)


# --- silent corruption ---------------------------------------------------------------------------


def test_a_held_run_folder_refuses_a_second_writer(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    with RunDir(out).lock():
        r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"])
    one_line_error(r, "being written by another instseg process")
    assert not (out / "run.json").exists()
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0  # the lock went with its holder


@pytest.mark.parametrize("second", [[], ["--k", "4", "--variants", "5"]], ids=["same-config", "other-config"])
def test_two_concurrent_runs_give_one_consistent_dataset_or_a_refusal(tiny_ckpt, tmp_path, second):
    out = tmp_path / "run"
    first = INSTSEG + [str(a) for a in run_args(tiny_ckpt, out)] + ["--num-images", "12"]
    procs = [subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path),
             subprocess.Popen(first + second, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc in (0, 2) for rc, _ in results), results
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        if rc == 2:
            assert err.strip().splitlines()[-1].startswith("Error: ") and "Traceback" not in err
    run = json.loads((out / "run.json").read_text())
    ids = {json.loads(p.read_text())["config_id"] for p in (out / "records").glob("*.json")}
    assert ids == {run["config_id"]}, "records of two configs in one folder"
    c = COCO(str(out / "annotations.json"))
    assert len(c.dataset["images"]) == len(list((out / "records").glob("*.json")))


def test_yolo_export_is_written_fresh(done_run, tmp_path):
    out = tmp_path / "yolo"
    assert invoke(["export", done_run, "--out", out]).exit_code == 0
    (out / "images" / "train" / "999.png").write_bytes(b"")  # debris of a failed export
    (out / "labels" / "train" / "999.txt").write_text("0 0 0 1 0 1 1\n")
    assert invoke(["export", done_run, "--out", out]).exit_code == 0
    assert not (out / "images" / "train" / "999.png").exists() and not (out / "labels" / "train" / "999.txt").exists()
    assert all(p.stat().st_size > 0 for p in (out / "images").rglob("*.png"))


def test_a_growing_run_never_puts_an_image_in_train_and_val(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    for n in ("4", "8"):
        r = invoke(run_args(tiny_ckpt, out) + ["--num-images", n, "--format", "coco", "--format", "yolo"])
        assert r.exit_code == 0, r.output
    train = {p.name for p in (out / "yolo" / "images" / "train").iterdir()}
    val = {p.name for p in (out / "yolo" / "images" / "val").iterdir()}
    assert not train & val and len(train | val) == 8
    assert {p.stem for p in (out / "yolo" / "labels" / "val").iterdir()} == {Path(v).stem for v in val}


def test_export_refuses_to_replace_a_folder_that_is_not_an_export(done_run, tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    one_line_error(invoke(["export", done_run, "--out", precious]), "not a YOLO export")
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.parametrize("flag,value", [("--truncation-psi", "nan"), ("--box-margin", "nan"), ("--box-margin", "inf"),
                                        ("--conf", "-inf"), ("--set", "truncation_psi=.nan"),
                                        ("--set", "nms_iou=.inf")])
def test_non_finite_floats_are_refused(tiny_ckpt, tmp_path, flag, value):
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + [flag, value])
    one_line_error(r)
    assert "finite" in r.output or "must lie in" in r.output
    assert not (tmp_path / "o" / "run.json").exists()


def test_resume_redoes_a_seed_whose_files_are_gone(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "6"]).exit_code == 0
    (out / "images" / "5.png").unlink()
    (out / "parts" / "2.png").write_bytes(b"")
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "6"]).exit_code == 0
    assert (out / "images" / "5.png").stat().st_size > 0 and (out / "parts" / "2.png").stat().st_size > 0
    c = COCO(str(out / "annotations.json"))
    assert all((out / "images" / im["file_name"]).stat().st_size > 0 for im in c.dataset["images"])


def test_export_refuses_file_names_outside_the_run(done_run, tmp_path):
    bad = tmp_path / "evil"
    bad.mkdir()
    data = json.loads((done_run / "annotations.json").read_text())
    data["images"][0]["file_name"] = "../../../../../../etc/passwd"
    (bad / "annotations.json").write_text(json.dumps(data))
    one_line_error(invoke(["export", bad, "--out", tmp_path / "y"]), "not a plain relative path")
    assert not (tmp_path / "y").exists()
    one_line_error(invoke(["show", bad, "--out", tmp_path / "g.png"]), "not a plain relative path")


def test_a_deleted_run_json_cannot_smuggle_in_another_config(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0
    (out / "run.json").unlink()
    one_line_error(invoke(run_args(tiny_ckpt, out) + ["--num-images", "2", "--k", "4"]), "different config")
    r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "3"])  # the same config resumes
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 3


def test_an_aborted_start_does_not_block_the_corrected_command(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"config": {"k": 1000}, "seeds": [0]}))  # no records behind it
    r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "1", "--k", "3"])
    assert r.exit_code == 0, r.output


def test_train_gan_with_zero_iterations_is_refused(tmp_path):
    one_line_error(invoke(["toy", "train-gan", "--iters", "0", "--out", tmp_path / "t"]), "--iters")
    assert not (tmp_path / "t" / "generator.pt").exists()


# --- one line instead of a traceback -------------------------------------------------------------


@pytest.mark.parametrize("extra,needle", [
    (["--num-images", "1000000000000"], "--num-images"),
    (["--seeds", "0-999999999"], "more than"),
    (["--seeds", "99999999999"], "too large"),
    (["--k", "1000"], "--k"),
    (["--variants", "100000"], "--variants"),
    (["--repeats", "100000"], "--repeats"),
    (["--batch", "0"], "--batch"),
    (["--set", "kmeans_iters=-3"], "kmeans-iters"),
    (["--set", "nosuchkey=1"], "unknown config key"),
    (["--set", "k=three"], "--k must be int"),
    (["--set", "gan=x"], "--gan"),
    (["--set", "novalue"], "key=value"),
    (["--device", "junk"], "not a device"),
    (["--device", "cuda:7"], "cuda"),
])
def test_bad_run_options(tiny_ckpt, tmp_path, extra, needle):
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + extra)
    one_line_error(r, needle)
    assert not (tmp_path / "o" / "run.json").exists()


@pytest.mark.parametrize("content", [os.urandom(64), b"null", b"[1, 2]", b"{\"config\": 3}"])
def test_a_garbage_run_json_gives_one_line(tiny_ckpt, tmp_path, content):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "1"]).exit_code == 0
    (out / "run.json").write_bytes(content)
    one_line_error(invoke(run_args(tiny_ckpt, out) + ["--num-images", "1"]), "run.json")


@pytest.mark.parametrize("content", [b"", b"{\"image\": {\"id\"", b"null"])
def test_a_truncated_record_is_redone(tiny_ckpt, tmp_path, content):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "3"]).exit_code == 0
    (out / "records" / "1.json").write_bytes(content)
    r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "3"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "records" / "1.json").read_text())["image"]["seed"] == 1
    assert len(COCO(str(out / "annotations.json")).dataset["images"]) == 3


def test_show_and_export_on_broken_folders(done_run, tmp_path):
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "annotations.json").write_text('{"a": 1}')
    one_line_error(invoke(["show", broken, "--out", tmp_path / "g.png"]), "not a COCO")
    one_line_error(invoke(["export", broken]), "not a COCO")
    missing = tmp_path / "m"
    missing.mkdir()
    (missing / "annotations.json").write_text((done_run / "annotations.json").read_text())
    one_line_error(invoke(["show", missing, "--out", tmp_path / "g.png"]), "images/0.png")
    one_line_error(invoke(["export", missing]), "images/0.png")


def test_pseudo_gt_without_run_json_or_with_a_bad_conf(done_run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "annotations.json").write_text((done_run / "annotations.json").read_text())
    one_line_error(invoke(["pseudo-gt", "--run", bare, "--out", tmp_path / "gt.json"]), "run.json")
    one_line_error(invoke(["pseudo-gt", done_run, "--conf", "2.0", "--out", tmp_path / "gt.json"]), "--conf")
    one_line_error(invoke(["pseudo-gt", done_run, "--segmenter", "frob:x", "--out", tmp_path / "gt.json"]),
                    "--segmenter")


@pytest.mark.parametrize("cmd", [
    ["export", "{run}", "--out", "{file}/sub"],
    ["toy", "render", "--seeds", "0-1", "--out", "{file}/sub"],
    ["show", "{run}", "--out", "{file}/sub/g.png"],
    ["convert", "{ckpt}", "{file}/sub/x.pt"],
])
def test_outputs_under_a_file(done_run, tiny_ckpt, tmp_path, cmd):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [a.format(run=done_run, file=blocker, ckpt=tiny_ckpt) for a in cmd]
    one_line_error(invoke(args))


@pytest.mark.parametrize("args,needle", [
    (["toy", "render", "--size", "100000", "--out", "{tmp}/r"], "--size"),
    (["toy", "train-gan", "--resolution", "7", "--out", "{tmp}/t"], "--resolution"),
    (["toy", "train-gan", "--batch", "0", "--out", "{tmp}/t"], "--batch"),
    (["toy", "train-gan", "--device", "junk", "--out", "{tmp}/t"], "not a device"),
    (["toy", "train-detector", "--epochs", "0", "--out", "{tmp}/d"], "--epochs"),
    (["run", "--out", ""], "--out"),
    (["export", "{tmp}", "--out", ""], "--out"),
    (["convert", "", "{tmp}/x.pt"], "SRC"),
    (["convert", "nosuch", "{tmp}/x.pt"], "SRC"),
])
def test_bad_toy_and_misc_options(tmp_path, args, needle):
    one_line_error(invoke([a.format(tmp=tmp_path) for a in args]), needle)


def _gt_and_pred(tmp_path):
    m = np.zeros((8, 8), bool)
    m[2:6, 2:6] = True
    gt = coco.dataset([coco.image_entry(1, "images/0.png", 8, 8)], [coco.annotation(m, 1, 1, 1.0)], ["thing"])
    pred = json.loads(json.dumps(gt))
    return gt, pred


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_eval_reads_polygon_and_uncompressed_rle_segmentations(tmp_path):
    gt, pred = _gt_and_pred(tmp_path)
    pred["annotations"][0]["segmentation"] = [[2, 2, 6, 2, 6, 6, 2, 6]]
    gt["annotations"][0]["segmentation"] = {"size": [8, 8], "counts": [18, 4, 4, 4, 4, 4, 4, 4, 18]}
    r = invoke(["eval", "--pred", _write(tmp_path, "p.json", pred), "--gt", _write(tmp_path, "g.json", gt), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["iou_fg"] > 0.5 and res["ap50"] > 0.99


@pytest.mark.parametrize("breakage,needle", [
    (lambda p: p["annotations"][0].update(category_id=77), "unknown category_id"),
    (lambda p: p["annotations"][0].update(image_id=77), "unknown image_id"),
    (lambda p: p["annotations"][0].update(segmentation={"size": [8, 8], "counts": "!!!!"}), "bad segmentation"),
    (lambda p: p["annotations"][0].update(segmentation={"size": [9, 8], "counts": "a"}), "bad segmentation"),
    (lambda p: p["annotations"][0].update(score="high"), "score"),
    (lambda p: p.pop("images"), "'images'"),
])
def test_eval_rejects_bad_files_in_one_line(tmp_path, breakage, needle):
    gt, pred = _gt_and_pred(tmp_path)
    breakage(pred)
    r = invoke(["eval", "--pred", _write(tmp_path, "p.json", pred), "--gt", _write(tmp_path, "g.json", gt)])
    one_line_error(r, needle)


def test_eval_json_prints_null_not_nan(tmp_path):
    gt, pred = _gt_and_pred(tmp_path)
    gt["annotations"] = []  # no references: AP is undefined
    r = invoke(["eval", "--pred", _write(tmp_path, "p.json", pred), "--gt", _write(tmp_path, "g.json", gt), "--json"])
    assert r.exit_code == 0 and "NaN" not in r.output
    assert json.loads(r.output)["ap"] is None


def test_errors_start_on_their_own_line_after_a_progress_bar(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = subprocess.run(INSTSEG + ["toy", "render", "--seeds", "0-3", "--out", str(tmp_path / "r"), "--yolo",
                                  "--size", "32"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0
    (tmp_path / "r" / "annotations.json").write_text("{}")
    p = subprocess.run(INSTSEG + ["pseudo-gt", str(tmp_path / "r"), "--segmenter", "yolo:nosuch.pt",
                                  "--out", str(tmp_path / "g.json")], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.splitlines()[-1].startswith("Error: "), p.stderr


def test_weights_only_refusal_gives_no_advice_to_disable_it():
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    with pytest.raises(CheckpointError) as e:
        detect_and_load(buf.getvalue(), "evil.pt")
    assert "weights_only" not in str(e.value) and "posix.system, which is not allowed" in str(e.value)


def test_protocol_2_tf_pickles_load(tmp_path):
    torch.manual_seed(3)
    G = randomise(Generator(tiny_config()))
    data = tf_pickle_bytes(G, protocol=2)
    assert b"_codecs" in data
    G2, fmt = detect_and_load(data, "old.pkl")
    assert fmt == "tf"
    ws = G.mapping(torch.randn(2, 8))
    assert torch.allclose(G.synthesis(ws)[0], G2.synthesis(ws)[0], atol=1e-5)


@pytest.mark.parametrize("fmt", ["native", "tf", "ada"])
def test_a_mapping_network_wider_than_w_is_supported(fmt, tmp_path):
    torch.manual_seed(4)
    G = randomise(Generator(tiny_config(mapping_hidden=24, mapping_layers=3)))
    if fmt == "native":
        save_native(G, tmp_path / "g.pt")
        data = (tmp_path / "g.pt").read_bytes()
    else:
        data = tf_pickle_bytes(G) if fmt == "tf" else ada_pickle_bytes(G)
    G2, _ = detect_and_load(data, "wide")
    assert G2.cfg.mapping_hidden == 24
    z = torch.randn(2, 8)
    assert torch.allclose(G.synthesis(G.mapping(z))[0], G2.synthesis(G2.mapping(z))[0], atol=1e-5)


# --- junk everywhere -----------------------------------------------------------------------------

_JUNK = ["", "-1", "0", "nan", "inf", "1e309", "9" * 30, "abc", "../..", "/dev/null", "0-", "-", ",", "3,3", "1.5",
         "yolo:", "none:x", "cuda:99", "\x00x", "é", "[1,2]", "{}", "k=", "=1"]
_FIELDS = ["seeds", "mix_from", "classes", "k", "variants", "conf", "device", "truncation_psi", "detector", "batch",
           "features", "method", "compile", "nope"]
_VALUES = ["010", "0x10", "1:30", "2020-01-01", "yes", "no", "null", "~", "[3,1,3]", "{a: 1}", "[&a [1], *a]", "1.5",
           "True", "-3", "[[1]]", "'x'", "!!python/object:os.system", "cpu:1", "&a x", "[1, *b]", "9" * 40, "'\u0000'"]


def _junk_set(rng):
    return f"{rng.choice(_FIELDS)}={rng.choice(_VALUES + _JUNK)}"


def _junk_config(rng, path):
    body = "\n".join(f"{rng.choice(_FIELDS)}: {rng.choice(_VALUES + _JUNK)}" for _ in range(rng.randint(1, 3)))
    path.write_bytes(rng.choice([body.encode(), body.encode() + b"\xff", b"- 1\n- 2", os.urandom(20)]))
    return path
_SUBCOMMANDS = {
    "run": ["--seeds", "--num-images", "--k", "--variants", "--mix-from", "--conf", "--box-margin", "--work-res",
            "--features", "--join-features", "--detector", "--classes", "--device", "--batch", "--set", "--truncation-psi", "--max-det"],
    "eval": ["--trimap-width"],
    "export": ["--out"],
    "show": ["--max-images", "--out"],
    "pseudo-gt": ["--conf", "--segmenter"],
    "toy render": ["--seeds", "--size"],
    "toy train-gan": ["--iters", "--resolution", "--batch", "--device", "--channel-base", "--r1-gamma"],
    "toy train-detector": ["--epochs", "--scenes", "--imgsz", "--device"],
    "convert": [],
}


def test_junk_arguments_and_files_never_give_a_traceback(done_run, tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # junk relative paths land here
    rng = random.Random(1234)
    junk_file = tmp_path / "junk.json"
    junk_file.write_bytes(os.urandom(40))
    (tmp_path / "elsewhere").mkdir()
    for trial in range(160):
        sub = rng.choice(list(_SUBCOMMANDS))
        out = tmp_path / f"o{trial}"
        base = {"run": ["run", "--gan", str(tiny_ckpt), "--out", str(out), "--variants", "3", "--num-images", "1"],
                "eval": ["eval", "--pred", str(rng.choice([junk_file, done_run / "annotations.json"])),
                         "--gt", str(rng.choice([junk_file, done_run / "annotations.json"]))],
                "export": ["export", str(rng.choice([done_run, tmp_path]))],
                "show": ["show", str(rng.choice([done_run, tmp_path])), "--out", str(out / "g.png")],
                "pseudo-gt": ["pseudo-gt", str(rng.choice([done_run, tmp_path])), "--out", str(out / "g.json")],
                "toy render": ["toy", "render", "--out", str(out), "--seeds", "0"],
                "toy train-gan": ["toy", "train-gan", "--out", str(out), "--iters", "1", "--device", "nope"],
                "toy train-detector": ["toy", "train-detector", "--out", str(out), "--epochs", "0"],
                "convert": ["convert", rng.choice([str(junk_file), "nosuch", "", "ftp://x/y"]), str(out / "x.pt")]}[sub]
        args = list(base)
        for _ in range(rng.randint(1, 3)):
            if _SUBCOMMANDS[sub]:
                args += [rng.choice(_SUBCOMMANDS[sub]), rng.choice(_JUNK)]
        if sub == "run":
            args += ["--set", _junk_set(rng)] if rng.random() < 0.5 else []
            args += ["--config", str(_junk_config(rng, tmp_path / f"c{trial}.yaml"))] if rng.random() < 0.3 else []
            if rng.random() < 0.2:  # a symlinked folder or lock inside --out
                out.mkdir(exist_ok=True)
                (out / rng.choice(["images", "records", "parts", "variants", ".lock"])).symlink_to(tmp_path / "elsewhere")
        r = CliRunner().invoke(main, args)
        assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir()), args
        assert len(r.output) < 5000, (args, r.output[:300])
        assert r.exit_code in (0, 2), (args, r.output, r.exception)
        assert "Traceback" not in r.output, (args, r.output)
        if r.exit_code == 2:
            last = r.output.strip().splitlines()[-1]
            assert last.startswith("Error: "), (args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)


def _disk_full(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_run_gives_one_line_and_no_half_files(tiny_ckpt, tmp_path, monkeypatch):
    from PIL import Image

    out = tmp_path / "run"
    monkeypatch.setattr(Image.Image, "save", _disk_full)
    one_line_error(invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]), "No space left on device")
    assert not list(out.rglob("*.tmp")) and not list((out / "records").glob("*.json"))
    monkeypatch.undo()
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0


@pytest.mark.parametrize("encoders", [0, 2])
def test_inline_and_pooled_encoding_give_the_same_files_and_keep_what_finished(tiny_ckpt, tmp_path, monkeypatch,
                                                                             encoders):
    """CPUs encode in line, GPU machines in a process pool: both give the same dataset, and a write
    that fails part way surfaces as one line with the finished seeds kept."""
    from instseg.rundir import RunDir

    def args(out, n):
        return run_args(tiny_ckpt, out) + ["--num-images", "5", "--batch", "2", "--encoders", str(n)]

    ref, out = tmp_path / "ref", tmp_path / "run"
    assert invoke(args(ref, 0)).exit_code == 0
    assert invoke(args(out, encoders)).exit_code == 0
    for sub in ("images", "parts", "variants"):
        for f in sorted((ref / sub).iterdir()):
            assert f.read_bytes() == (out / sub / f.name).read_bytes(), f
    a, b = (json.loads((d / "annotations.json").read_text()) for d in (ref, out))
    assert a["annotations"] == b["annotations"] and a["images"] == b["images"]

    write_encoded = RunDir.write_encoded

    def fail_on_seed_3(self, enc):
        if enc.seed == 3:
            _disk_full()
        return write_encoded(self, enc)

    monkeypatch.setattr(RunDir, "write_encoded", fail_on_seed_3)
    fresh = tmp_path / "fails"
    one_line_error(invoke(args(fresh, encoders)), "No space left on device")
    assert sorted(int(f.stem) for f in (fresh / "records").glob("*.json")) == [0, 1, 2]


def test_a_full_disk_during_convert_gives_one_line(tiny_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _disk_full)
    one_line_error(invoke(["convert", tiny_ckpt, tmp_path / "x.pt"]), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_resume_removes_temp_files_a_killed_writer_left(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0
    debris = [out / "variants" / ".3.png.abc123.tmp", out / "images" / ".1.png.x.tmp", out / ".run.json.y.tmp"]
    for d in debris:
        d.write_bytes(b"half")
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0
    assert not any(d.exists() for d in debris) and not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("encoders", [0, 2])
def test_a_failure_in_the_next_chunk_still_writes_the_chunk_before(tiny_ckpt, tmp_path, monkeypatch, encoders):
    """With encoder processes a chunk is still being encoded while the next is computed: a crash
    there must not lose it, and the dataset holds every seed finished before it."""
    from instseg.pipeline import Pipeline

    real, calls = Pipeline.__call__, []

    def fail_second(self, seeds):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(self, seeds)

    monkeypatch.setattr(Pipeline, "__call__", fail_second)
    out = tmp_path / "run"
    args = run_args(tiny_ckpt, out) + ["--num-images", "4", "--batch", "2", "--encoders", str(encoders)]
    one_line_error(invoke(args), "Input/output error")
    assert sorted(int(f.stem) for f in (out / "records").glob("*.json")) == [0, 1]
    assert json.loads((out / "annotations.json").read_text())["images"][1]["seed"] == 1
    monkeypatch.undo()
    assert invoke(args).exit_code == 0


def _as_if_made_before_box_k(out):
    """Rewrite a run folder as a version without the `box_k` field wrote it (another config id)."""
    info = json.loads((out / "run.json").read_text())
    del info["config"]["box_k"]
    info["config_id"] = "made-before-box-k"
    (out / "run.json").write_text(json.dumps(info))
    for f in (out / "records").glob("*.json"):
        rec = json.loads(f.read_text())
        f.write_text(json.dumps({**rec, "config_id": "made-before-box-k"}))


def test_a_run_begun_before_a_field_existed_resumes_when_its_default_is_kept(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0
    _as_if_made_before_box_k(out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "3"]).exit_code == 0
    assert all((out / "images" / n).stat().st_mtime_ns == t for n, t in before.items())  # not redone
    assert [i["seed"] for i in json.loads((out / "annotations.json").read_text())["images"]] == [0, 1, 2]
    assert json.loads((out / "records" / "2.json").read_text())["config_id"] == "made-before-box-k"


def test_a_run_begun_before_a_field_existed_refuses_another_value_of_it(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "2"]).exit_code == 0
    _as_if_made_before_box_k(out)
    one_line_error(invoke(run_args(tiny_ckpt, out) + ["--num-images", "3", "--box-k", "2"]), "box_k")


_REALLOC = r"""
import resource, sys, torch
from instseg.features import variant_stacks
from instseg.generator import Generator, GeneratorConfig
from instseg.sampling import mix_ws, variant_rng
from instseg.allocator import keep_freed_memory
from instseg.sampling import source_ws
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)  # a 64 px toy-sized generator (the retired toy-shapes' layout), random weights
G = Generator(GeneratorConfig(resolution=64, z_dim=128, w_dim=128, channel_base=1024, channel_max=128,
                              mapping_layers=4)).eval()

def variants(seed):  # the toy's variant pass: 32 style variants, 8 per synthesis call
    ws = mix_ws(G, source_ws(G, seed, 0.7, torch.device("cpu")), 32, (6,), variant_rng(seed, 0), 0.7)
    variant_stacks(G, ws, "rgb", [[(None, (64, 64))]], 8, shared_ws=6)

with torch.no_grad():
    variants(0)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for seed in range(1, 7):
        variants(seed)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_keep_freed_memory_lets_synthesis_reuse_freed_blocks_instead_of_faulting_them_in_again():
    def faults(mode, env):
        out = subprocess.run([sys.executable, "-c", _REALLOC, mode], capture_output=True, text=True, check=True,
                             env=env).stdout.split()
        return out[0] == "True", int(out[1])

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied, kept = faults("keep", env)
    _, default = faults("default", env)
    # minor page faults over six toy images: the default allocator's count varies by venv and load (4,756 for
    # three images in a fresh CI venv, more here), so the claim is relative: keeping freed blocks cuts it at least 5x
    assert applied and kept < 2_000 and default > 5 * max(kept, 1_000), (kept, default)
    assert faults("keep", {**env, "MALLOC_TRIM_THRESHOLD_": "131072"})[0] is False  # the user's setting wins
