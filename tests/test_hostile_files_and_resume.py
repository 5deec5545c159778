"""Hostile inputs, third pass: code in detector files, writes through links, silent loss in resume,
merge and eval, and tracebacks from config values. Each case failed on the code before it."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke, one_line_error, run_args

INSTSEG = [sys.executable, "-m", "instseg.cli"]





@pytest.fixture
def run4(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "4"])
    assert r.exit_code == 0, r.output
    return out


def _seeds(out):
    return [im["seed"] for im in json.loads((out / "annotations.json").read_text())["images"]]


# --- 1. no code from a detector file -------------------------------------------------------------

def _evil(path: Path, marker: Path) -> None:
    script = (f"import torch, os\nclass P:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
              f"torch.save({{'model': P()}}, {str(path)!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True)


@pytest.mark.parametrize("spec", ["yolo:{dir}/evil.pt", "yolo:./evil.pt", "yolo:evil.pt"])
def test_a_yolo_file_with_code_in_its_pickle_does_not_run_it(tiny_ckpt, tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    _evil(tmp_path / "evil.pt", tmp_path / "PWNED")
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--num-images", "1", "--detector", spec.format(dir=tmp_path)])
    assert not (tmp_path / "PWNED").exists()
    if spec == "yolo:evil.pt":  # a bare name is looked up in the cache, never in the working directory
        one_line_error(r, "not in the cache")
    else:
        one_line_error(r, "posix.system", "not a model class")


def test_pseudo_gt_segmenter_file_is_checked_too(run4, tmp_path):
    _evil(tmp_path / "evil.pt", tmp_path / "PWNED")
    r = invoke(["pseudo-gt", run4, "--segmenter", f"yolo:{tmp_path / 'evil.pt'}", "--out", tmp_path / "g.json"])
    one_line_error(r, "posix.system")
    assert not (tmp_path / "PWNED").exists()


def test_a_bare_yolo_name_is_found_in_the_cache(tmp_path, monkeypatch):
    from detectors.yolo import packaged_weights, resolve_weights

    from instseg.zoo import default_cache

    monkeypatch.setenv("INSTSEG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "detectors").mkdir(parents=True)
    (tmp_path / "cache" / "detectors" / "mine.pt").write_bytes(packaged_weights("toy-flat").read_bytes())
    assert resolve_weights("mine.pt", default_cache()) == tmp_path / "cache" / "detectors" / "mine.pt"


def test_packaged_yolo_weights_pass_the_allow_list():
    from detectors.yolo import check_yolo_bytes, packaged_weights

    for name in ("toy-flat",):
        check_yolo_bytes(packaged_weights(name).read_bytes(), name)  # raises if refused


# --- 2, 3. nothing written through links out of --out ---------------------------------------------

def test_a_lock_symlink_is_not_followed(tiny_ckpt, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "f").write_text("data\n")
    (tmp_path / "o" / ".lock").symlink_to(tmp_path / "f")
    for args in (run_args(tiny_ckpt, tmp_path / "o") + ["--num-images", "1"],):
        one_line_error(invoke(args), "symbolic link")
    assert (tmp_path / "f").read_text() == "data\n"


@pytest.mark.parametrize("sub", ["images", "records", "parts"])
def test_a_symlinked_subfolder_is_refused(tiny_ckpt, tmp_path, sub):
    (tmp_path / "o").mkdir()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "0.png").write_text("keep\n")
    (tmp_path / "o" / sub).symlink_to(tmp_path / "e")
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--num-images", "1"]), "symbolic link")
    assert (tmp_path / "e" / "0.png").read_text() == "keep\n"


def test_merge_refuses_a_shard_with_a_symlinked_folder_and_a_linked_out_lock(tiny_ckpt, tmp_path, run4):
    shard = tmp_path / "shard"
    shard.mkdir()
    for name in ("run.json", "annotations.json"):
        (shard / name).write_bytes((run4 / name).read_bytes())
    for sub in ("parts", "variants", "records"):
        (shard / sub).mkdir()
    (shard / "images").symlink_to(run4 / "images")
    one_line_error(invoke(["merge", shard, "--out", tmp_path / "m"]), "symbolic link")
    (tmp_path / "m2").mkdir()
    (tmp_path / "f").write_text("data\n")
    (tmp_path / "m2" / ".lock").symlink_to(tmp_path / "f")
    one_line_error(invoke(["merge", run4, "--out", tmp_path / "m2"]), "symbolic link")
    assert (tmp_path / "f").read_text() == "data\n"


def test_no_lock_file_is_left_once_a_run_ends(run4):
    assert not (run4 / ".lock").exists()


# --- 4, 11, 16, 17. every path into the config checks the same --------------------------------------

@pytest.mark.parametrize("how", ["set", "config"])
def test_repeated_seeds_are_refused_from_set_and_config(tiny_ckpt, tmp_path, how):
    (tmp_path / "c.yaml").write_text("seeds: [2, 2, 0]\n")
    extra = ["--set", "seeds=[3,1,3]"] if how == "set" else ["--config", tmp_path / "c.yaml"]
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + extra), "repeat")
    assert not (tmp_path / "o" / "run.json").exists()


@pytest.mark.parametrize("value", ["classes=1", "classes=null", "seeds=1.5", "seeds=True", "seeds={a: 1}",
                                   "seeds=2020-01-01", "mix_from=3.5", "mix_from={3: 2}", "seeds=0x10", "seeds=1:30",
                                   "seeds=[1, x]", "k=[1]", "device=cpu:1"])
def test_set_values_of_the_wrong_type_give_one_line(tiny_ckpt, tmp_path, value):
    one_line_error(invoke(["run", "--gan", tiny_ckpt, "--out", tmp_path / "o", "--set", value]))
    assert not (tmp_path / "o" / "run.json").exists()


def test_yaml_numbers_read_as_yaml_1_2(tiny_ckpt, tmp_path):
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--set", "seeds=010", "--set", "mix_from=03"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "run.json").read_text())["seeds"] == [10]
    assert json.loads((tmp_path / "o" / "run.json").read_text())["config"]["mix_from"] == [3]


def test_duplicate_keys_in_a_config_are_refused(tiny_ckpt, tmp_path):
    (tmp_path / "c.yaml").write_text("k: 3\nk: 4\n")
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--config", tmp_path / "c.yaml"]), "duplicate key")


def _bomb(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for name in "bcdefghijk"[:levels]:
        text += f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n"
        prev = name
    return text


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tiny_ckpt, tmp_path):
    (tmp_path / "bomb.yaml").write_text(_bomb())
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--config", tmp_path / "bomb.yaml"])
    one_line_error(r, "aliases")
    assert len(r.output) < 500
    r = invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--set", "seeds=[&a [1,2], *a, *a]"])
    one_line_error(r, "aliases")
    assert len(r.output) < 500


def test_a_non_utf8_config_gives_one_line(tiny_ckpt, tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"k: \xff\xfe3\n")
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--config", tmp_path / "c.yaml"]), "UTF-8")


def test_a_rerun_with_fewer_seeds_says_the_folder_holds_more(tiny_ckpt, run4, caplog):
    r = invoke(run_args(tiny_ckpt, run4) + ["--num-images", "2"])
    assert r.exit_code == 0, r.output
    assert any("beyond the 2 asked for" in m for m in caplog.messages), caplog.messages
    assert _seeds(run4) == [0, 1, 2, 3]


# --- 5. a resume redoes a seed whose files do not decode at their size -------------------------------

@pytest.mark.parametrize("damage", ["truncated", "other-size"])
def test_a_damaged_image_is_redone_on_resume(tiny_ckpt, run4, damage):
    png = run4 / "images" / "1.png"
    good = png.read_bytes()
    if damage == "truncated":
        png.write_bytes(good[: len(good) // 2])
    else:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    assert invoke(run_args(tiny_ckpt, run4) + ["--num-images", "4"]).exit_code == 0
    assert png.read_bytes() == good


# --- 6, 7, 8, 9. merge loses nothing silently ------------------------------------------------------

def _shards(tiny_ckpt, tmp_path, n=2, seeds="0-5"):
    for i in range(n):
        r = invoke(run_args(tiny_ckpt, tmp_path / f"s{i}") + ["--seeds", seeds, "--shard", f"{i}/{n}"])
        assert r.exit_code == 0, r.output
    return [tmp_path / f"s{i}" for i in range(n)]


@pytest.mark.parametrize("damage", ["record", "png", "interrupted"])
def test_merge_refuses_unfinished_seeds_unless_allowed(tiny_ckpt, tmp_path, damage):
    s0, s1 = _shards(tiny_ckpt, tmp_path)
    if damage == "record":
        (s0 / "records" / "2.json").write_text("{")
    elif damage == "png":
        (s0 / "images" / "2.png").unlink()
    else:  # its run asked for a seed it never finished
        run = json.loads((s0 / "run.json").read_text())
        (s0 / "run.json").write_text(json.dumps({**run, "seeds": run["seeds"] + [40]}))
    missing = 40 if damage == "interrupted" else 2
    one_line_error(invoke(["merge", s0, s1, "--out", tmp_path / "m"]), "not finished", f"seeds {missing}")
    assert not (tmp_path / "m").exists()
    r = invoke(["merge", s0, s1, "--out", tmp_path / "m", "--allow-partial"])
    assert r.exit_code == 0 and f"seeds {missing}" in r.output, r.output
    assert json.loads((tmp_path / "m" / "run.json").read_text())["missing"] == {str(s0): [missing]}


def test_merge_refuses_a_shard_whose_writer_still_holds_it(tiny_ckpt, tmp_path):
    from instseg.rundir import RunDir

    s0, s1 = _shards(tiny_ckpt, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom instseg.rundir import RunDir\n"
                               f"with RunDir({str(s1)!r}).lock():\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error(invoke(["merge", s0, s1, "--out", tmp_path / "m"]), "still being written")
    finally:
        holder.kill()
        holder.wait()
    assert RunDir(s1).root.exists()


def _as_older_version(out):
    """Rewrite a folder as a version without `mask_score` wrote it, with that version's default."""
    info = json.loads((out / "run.json").read_text())
    assert info["config"].pop("mask_score") == "margin"
    info["config_id"] = "older-version"
    (out / "run.json").write_text(json.dumps(info))
    for f in (out / "records").glob("*.json"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "config_id": "older-version"}))


def test_merge_takes_a_shard_begun_by_an_older_version_in_any_order(tiny_ckpt, tmp_path):
    for i in range(2):
        r = invoke(run_args(tiny_ckpt, tmp_path / f"s{i}") + ["--seeds", "0-5", "--shard", f"{i}/2",
                                                               "--mask-score", "margin"])
        assert r.exit_code == 0, r.output
    _as_older_version(tmp_path / "s0")
    for name, order in (("m01", ["s0", "s1"]), ("m10", ["s1", "s0"])):
        r = invoke(["merge", *[tmp_path / o for o in order], "--out", tmp_path / name])
        assert r.exit_code == 0, r.output
        assert sorted(_seeds(tmp_path / name)) == list(range(6))
    cids = {json.loads(f.read_text())["config_id"] for f in (tmp_path / "m01" / "records").glob("*.json")}
    assert cids == {json.loads((tmp_path / "m01" / "run.json").read_text())["config_id"]}


def test_merge_into_an_existing_run_keeps_its_images(tiny_ckpt, tmp_path):
    one = tmp_path / "one"
    assert invoke(run_args(tiny_ckpt, one) + ["--seeds", "0-5"]).exit_code == 0
    s0, _ = _shards(tiny_ckpt, tmp_path)
    r = invoke(["merge", s0, "--out", one])
    assert r.exit_code == 0, r.output
    assert sorted(_seeds(one)) == list(range(6))


@pytest.mark.parametrize("cmd", ["run", "merge"])
def test_a_folder_of_another_tool_is_refused(tiny_ckpt, tmp_path, run4, cmd):
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "images" / "a.png").write_bytes(b"theirs")
    (other / "annotations.json").write_text('{"images": []}')
    (other / "run.json").write_text('{"theirs": true}')
    args = run_args(tiny_ckpt, other) + ["--num-images", "1"] if cmd == "run" else ["merge", run4, "--out", other]
    one_line_error(invoke(args), "did not write")
    assert (other / "images" / "a.png").read_bytes() == b"theirs"
    assert (other / "run.json").read_text() == '{"theirs": true}'


# --- 10, 12, 20, 22. eval refuses or repairs bad files in one line ---------------------------------

def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_eval_renumbers_repeated_annotation_ids_with_a_warning(run4, tmp_path, caplog):
    data = json.loads((run4 / "annotations.json").read_text())
    assert len(data["annotations"]) >= 2
    for a in data["annotations"]:
        a["id"] = 1
    gt = _write(tmp_path / "gt.json", data)
    r = invoke(["eval", "--pred", run4 / "annotations.json", "--gt", gt, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["ap"] == pytest.approx(1.0)
    assert any("repeats annotation ids" in m for m in caplog.messages)


def _coco(**ann):
    a = {"id": 1, "image_id": 1, "category_id": 1, "area": 4, "iscrowd": 0,
         "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]], **ann}
    return {"images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 10}],
            "annotations": [{k: v for k, v in a.items() if v != "DROP"}], "categories": [{"id": 1, "name": "x"}]}


@pytest.mark.parametrize("ann,needle", [
    ({"segmentation": [[1, 1, 1e9, 1, 3, 3]]}, "far outside"),
    ({"segmentation": [[1, 1, 1e7, 1, 3, 3]]}, "far outside"),
    ({"id": "DROP"}, "integer id"), ({"id": [1]}, "integer id"), ({"id": {"a": 1}}, "integer id"),
    ({"area": None}, "area"), ({"area": "4"}, "area"),
    ({"iscrowd": "yes"}, "iscrowd"), ({"iscrowd": None}, "iscrowd"),
    ({"image_id": [1]}, "image_id"), ({"image_id": {"a": 1}}, "image_id"),
    ({"category_id": [1]}, "category_id"), ({"category_id": {"a": 1}}, "category_id"),
])
def test_eval_checks_every_reference_field(tmp_path, ann, needle):
    gt = _write(tmp_path / "gt.json", _coco(**ann))
    pred = _write(tmp_path / "pred.json", _coco())
    one_line_error(invoke(["eval", "--pred", pred, "--gt", gt]), needle)


def test_eval_computes_a_missing_area(tmp_path):
    gt = _write(tmp_path / "gt.json", _coco(area="DROP"))
    r = invoke(["eval", "--pred", _write(tmp_path / "p.json", _coco()), "--gt", gt, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ap"] == pytest.approx(1.0), r.output


def test_eval_refuses_a_huge_claimed_image_without_allocating_it(tmp_path):
    data = _coco()
    data["images"][0].update(height=60000, width=60000)
    gt = _write(tmp_path / "gt.json", data)
    r = invoke(["eval", "--pred", gt, "--gt", gt])
    one_line_error(r, "beyond the limit")
    assert "--variants" not in r.output


# --- 13, 25. Ray and workers -------------------------------------------------------------------------

def test_ray_at_an_address_where_nothing_listens_fails_fast_and_writes_nothing(tiny_ckpt, tmp_path):
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--num-images", "1", "--ray", "127.0.0.1:1"]),
                    "nothing answers")
    assert not (tmp_path / "o" / "run.json").exists()


def test_workers_without_ray_are_refused(tiny_ckpt, tmp_path):
    one_line_error(invoke(run_args(tiny_ckpt, tmp_path / "o") + ["--workers", "4"]), "needs --ray")


def test_sigterm_unwinds_like_ctrl_c():
    from instseg.cli import _terminate_as_interrupt

    old = signal.getsignal(signal.SIGTERM)
    try:
        _terminate_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
    finally:
        signal.signal(signal.SIGTERM, old)


# --- 19, 23. checkpoints ----------------------------------------------------------------------------

def test_a_hand_placed_cache_file_of_the_wrong_size_is_refused_and_not_recorded(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    assert invoke(["convert", "toy-flat", cache / "generators" / "stylegan2-celebahq-256x256.pkl"]).exit_code == 0
    monkeypatch.setenv("INSTSEG_CACHE", str(cache))
    one_line_error(invoke(["run", "--gan", "celebahq", "--out", tmp_path / "o"]), "does not fit", "delete it")
    assert not list((cache / "generators").glob("*.sha256"))


_HUGE = r"""
import resource, sys, torch
from instseg.checkpoints import load_generator
from instseg.errors import CheckpointError
torch.save({"format": "instseg-native", "version": 1, "state_dict": {},
            "config": {"resolution": 8192, "channel_base": 1 << 30, "channel_max": 8192, "z_dim": 8192,
                       "w_dim": 8192, "mapping_layers": 64}}, sys.argv[1])
try:
    load_generator(sys.argv[1])
    print("loaded")
except CheckpointError as e:
    print("refused", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_native_file_with_a_huge_config_and_no_weights_is_refused_cheaply(tmp_path):
    from instseg.checkpoints import NATIVE_FORMAT

    script = _HUGE.replace('"instseg-native"', repr(NATIVE_FORMAT))
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "huge.pt")], capture_output=True, text=True)
    word, *rss = out.stdout.split()
    assert word == "refused", out.stdout + out.stderr
    # MB: torch and a Python process (663 here, 1,515 in a fresh CI venv), not the ~60 GB the config describes
    assert int(rss[0]) < 4000


# --- 21, 24, 26. show, export, and errors that name the user's paths -------------------------------

def test_show_refuses_an_rgb_cluster_map(run4, tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(run4 / "parts" / "0.png")
    one_line_error(invoke(["show", run4, "--out", tmp_path / "g.png"]), "not a cluster map")


def test_export_removes_what_a_killed_export_left(run4):
    (run4 / ".yolo.abc.tmp" / "images").mkdir(parents=True)
    (run4 / ".yolo.old-123" / "labels").mkdir(parents=True)
    assert invoke(["export", run4]).exit_code == 0
    assert not (run4 / ".yolo.abc.tmp").exists() and not (run4 / ".yolo.old-123").exists()
    assert (run4 / "yolo" / "data.yaml").exists()


@pytest.mark.parametrize("name", ["annotations.json", "run.json", "records/2.json"])
def test_a_directory_in_place_of_a_file_is_named_in_the_error(tiny_ckpt, tmp_path, name):
    out = tmp_path / "o"
    assert invoke(run_args(tiny_ckpt, out) + ["--num-images", "1"]).exit_code == 0
    (out / name).unlink(missing_ok=True)
    (out / name).mkdir()
    (out / name / "x").write_text("")
    r = invoke(run_args(tiny_ckpt, out) + ["--num-images", "3"])
    one_line_error(r, name)
    assert ".tmp" not in r.output.strip().splitlines()[-1]
