import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from instseg.cli import main

INSTSEG = [sys.executable, "-m", "instseg.cli"]  # run with cwd=tmp_path: the installed package, not the checkout


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _base(ckpt, out):
    return ["run", "--gan", str(ckpt), "--out", str(out), "--variants", "6", "--mix-from", "3"]


def test_run_end_to_end_writes_a_coco_dataset(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    r = _run(_base(tiny_ckpt, out) + ["--seeds", "3,5-6", "--k", "3"])
    assert r.exit_code == 0, r.output
    c = COCO(str(out / "annotations.json"))
    assert sorted(i["seed"] for i in c.dataset["images"]) == [3, 5, 6]
    assert [cat["name"] for cat in c.dataset["categories"]] == ["foreground"]
    for a in c.dataset["annotations"]:
        m = c.annToMask(a).astype(bool)
        assert m.sum() == a["area"] and 0 <= a["score"] <= 1 and a["iscrowd"] == 0
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(m)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    for s in (3, 5, 6):
        assert (out / "images" / f"{s}.png").exists() and (out / "parts" / f"{s}.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["seeds"] == [3, 5, 6] and len(run["generator"]["sha256"]) == 64
    assert run["config"]["k"] == 3 and "torch" in run["versions"]
    # deterministic: the same command elsewhere gives identical masks
    out2 = tmp_path / "run2"
    assert _run(_base(tiny_ckpt, out2) + ["--seeds", "3,5-6", "--k", "3"]).exit_code == 0
    a1 = json.loads((out / "annotations.json").read_text())["annotations"]
    a2 = json.loads((out2 / "annotations.json").read_text())["annotations"]
    assert [a["segmentation"] for a in a1] == [a["segmentation"] for a in a2]
    r = _run(["show", str(out), "--out", str(tmp_path / "grid.png")])
    assert r.exit_code == 0 and (tmp_path / "grid.png").stat().st_size > 0


def test_same_dir_with_a_different_config_is_refused(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    assert _run(_base(tiny_ckpt, out) + ["--num-images", "1"]).exit_code == 0
    r = CliRunner().invoke(main, _base(tiny_ckpt, out) + ["--num-images", "1", "--k", "4"])
    assert r.exit_code == 2 and "different config (k)" in r.output


def test_a_run_json_from_before_mask_score_counts_as_margin(tiny_ckpt, tmp_path):
    """run.json files written before --mask-score existed ran with 'margin': a resume with the new
    default is refused, one that asks for margin goes on."""
    out = tmp_path / "run"
    assert _run(_base(tiny_ckpt, out) + ["--num-images", "1", "--mask-score", "margin"]).exit_code == 0
    meta = json.loads((out / "run.json").read_text())
    del meta["config"]["mask_score"]
    (out / "run.json").write_text(json.dumps(meta))
    r = CliRunner().invoke(main, _base(tiny_ckpt, out) + ["--num-images", "1"])
    assert r.exit_code == 2 and "different config (mask_score)" in r.output
    assert _run(_base(tiny_ckpt, out) + ["--num-images", "1", "--mask-score", "margin"]).exit_code == 0


@pytest.mark.parametrize("extra,msg", [
    (["--seeds", "5-2"], "end is below the start"),
    (["--seeds", "abc"], "bad seed spec"),
    (["--k", "1"], "'--k': 1 is not in the range 2<=x<=32"),
    (["--variants", "1"], "'--variants': 1 is not in the range"),
    (["--features", "b99.conv1"], "is not a layer"),
    (["--join-features", "rgb"], "is not a synthesis layer"),
    (["--join-features", "b99.conv1"], "is not a synthesis layer"),
    (["--mix-from", "40"], "must be below"),
    (["--device", "cuda:7"], "cuda"),
])
def test_bad_input_gives_one_line_and_exit_2(tiny_ckpt, tmp_path, extra, msg):
    r = CliRunner().invoke(main, _base(tiny_ckpt, tmp_path / "o") + extra)
    assert r.exit_code == 2, r.output
    err = r.output.strip().splitlines()
    assert msg in err[-1] and "Traceback" not in r.output


def test_bad_gan_and_unwritable_out(tiny_ckpt, tmp_path):
    r = CliRunner().invoke(main, ["run", "--gan", "no-such-thing", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "neither a preset" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(main, _base(tiny_ckpt, blocker / "sub") + ["--num-images", "1"])
    assert r.exit_code == 2 and "cannot write to --out" in r.output


def test_offline_preset_fails_fast_with_url_and_cache_path(tmp_path):
    env = {**os.environ, "INSTSEG_CACHE": str(tmp_path / "cache")}
    p = subprocess.run(INSTSEG + ["run", "--gan", "lsun-horse", "--classes", "horse", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr
    assert "stylegan2-horse-config-f.pkl" in lines[-1] and str(tmp_path / "cache" / "generators") in lines[-1]
    assert not list((tmp_path / "cache").rglob("*.pkl"))


def test_kill_and_resume(tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    cmd = INSTSEG + _base(tiny_ckpt, out) + ["--num-images", "40", "--variants", "24"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    records = out / "records"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or len(list(records.glob("*.json"))) < 3):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = {f.stem for f in (out / "records").glob("*.json")}
    assert 3 <= len(done) < 40, "the run should be killed part way"
    if (out / "annotations.json").exists():  # valid COCO even after a kill
        COCO(str(out / "annotations.json"))
    mtimes = {s: (out / "images" / f"{s}.png").stat().st_mtime_ns for s in done}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    c = COCO(str(out / "annotations.json"))
    assert sorted(i["seed"] for i in c.dataset["images"]) == list(range(40))
    assert all((out / "images" / f"{s}.png").stat().st_mtime_ns == t for s, t in mtimes.items())
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("method", ["grabcut", "kmeans-rgb", "activations"])
def test_baseline_methods_run_through_the_same_pipeline(tiny_ckpt, tmp_path, method):
    out = tmp_path / method
    r = _run(_base(tiny_ckpt, out) + ["--num-images", "2", "--method", method])
    assert r.exit_code == 0, r.output
    c = COCO(str(out / "annotations.json"))
    assert len(c.dataset["images"]) == 2
    assert json.loads((out / "run.json").read_text())["config"]["method"] == method


def test_unknown_class_names_the_nearest_and_leaves_no_run(tiny_ckpt, tmp_path):
    weights = Path(__file__).resolve().parents[2] / "shared" / "weights" / "yolov8n-coco.pt"
    if not weights.exists():
        pytest.skip("../shared/weights/yolov8n-coco.pt is absent")
    out = tmp_path / "o"
    r = CliRunner().invoke(main, _base(tiny_ckpt, out) + ["--detector", f"yolo:{weights}", "--classes", "hrose"])
    assert r.exit_code == 2 and "unknown class 'hrose'" in r.output and "horse" in r.output
    assert not (out / "run.json").exists()
    r = CliRunner().invoke(main, _base(tiny_ckpt, out) + ["--detector", f"yolo:{weights}", "--classes", "horse",
                                                          "--num-images", "2"])
    assert r.exit_code == 0, r.output
    c = COCO(str(out / "annotations.json"))
    assert [x["name"] for x in c.dataset["categories"]] == ["horse"] and len(c.dataset["images"]) == 2


def test_bf16_generator_masks_agree_with_fp32(tiny_ckpt, tmp_path):
    """Reduced-precision synthesis (bf16 here; fp16 is the CUDA path) keeps the masks: mean IoU >= 0.9."""
    masks = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / prec
        r = _run(_base(tiny_ckpt, out) + ["--seeds", "0-3", "--precision", prec])
        assert r.exit_code == 0, r.output
        c = COCO(str(out / "annotations.json"))
        masks[prec] = {c.imgs[a["image_id"]]["seed"]: c.annToMask(a).astype(bool) for a in c.dataset["annotations"]}
    ious = [(masks["fp32"][s] & masks["bf16"][s]).sum() / max((masks["fp32"][s] | masks["bf16"][s]).sum(), 1)
            for s in masks["fp32"] if s in masks["bf16"]]
    assert ious and float(np.mean(ious)) >= 0.9, ious
    r = CliRunner().invoke(main, _base(tiny_ckpt, tmp_path / "h") + ["--precision", "fp16", "--device", "cpu"])
    assert r.exit_code == 2 and "CUDA only" in r.output


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    from click.testing import CliRunner

    from instseg.cli import main

    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"instseg {version('instseg')}"
