"""A tiny smoke run of the benchmarks (the real ones run outside CI); they write to a temp file."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]


def _bench(args, tmp_path):
    env = {**os.environ, "INSTSEG_BENCH_MD": str(tmp_path / "B.md")}
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return (tmp_path / "B.md").read_text()


pytestmark = pytest.mark.slow  # every bench smoke run (CI runs them: the default `pytest -q` selects all)


def test_accuracy_and_pipeline_benchmarks_smoke(tmp_path):
    md = _bench(["-m", "bench.accuracy", "accuracy", "--seeds", "20000-20001"], tmp_path)
    assert "<!-- bench:accuracy -->" in md and "mask AP (labels)" in md and "mask AP (yolo)" in md
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "," in line]
    for m in ("variants (ours)", "grabcut", "kmeans-rgb", "activations"):
        assert f"{m}, per instance" in rows
    assert sum(r.endswith("whole image fg/bg") for r in rows) == 4
    md = _bench(["-m", "bench.accuracy", "ablations", "--seeds", "10000-10001", "--only", "refine"], tmp_path)
    section = md[md.index("<!-- bench:ablations-refine -->"):]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows[0] == "shipped defaults" and sum("refine=grabcut" in r for r in rows) == 2, rows
    md = _bench(["-m", "bench.pipeline", "toy", "--images", "1"], tmp_path)
    assert "end to end" in md and "ratio end-to-end / variants" in md


SEG_W = SHARED / "weights" / "yolov8n-seg-coco.pt"


def _first_conv(path):
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return next(m.weight for m in (ckpt.get("ema") or ckpt["model"]).modules() if isinstance(m, torch.nn.Conv2d)).float()


def test_downstream_quick_gives_the_table_shape(tmp_path):
    """Table 3 in miniature, on a handful of images and one epoch: asserts the table's shape, not its values;
    then `--init` on the same work folder (its label runs reused) fine-tunes into a table of its own."""
    import torch

    work = ["--work", str(tmp_path / "w")]
    md = _bench(["-m", "bench.downstream", "--quick", *work], tmp_path)
    table = [l for l in md.splitlines() if l.startswith("| ")]
    header, rows = table[0], table[1:]
    assert "mask AP" in header and "trimap mIoU" in header and "train instances" in header
    names = [r.split("|")[1].strip() for r in rows]
    assert names[:6] == ["renderer (exact masks)", "variants (ours)", "variants, join_features=none (the variant stack alone)",
                         "grabcut", "kmeans-rgb", "activations"]  # toy-flat joins activations in box crops
    assert names[-1] == "GAN labels"
    assert all(len(r.split("|")) == len(header.split("|")) for r in rows[:6])
    if not SEG_W.exists():
        pytest.skip("../shared/weights/yolov8n-seg-coco.pt is absent (only on our machines): --init not checked")
    md = _bench(["-m", "bench.downstream", "--quick", *work, "--init", str(SEG_W)], tmp_path)
    assert "<!-- bench:downstream-finetuned -->" in md and "<!-- bench:downstream -->" in md  # the first table stays
    assert "fine-tuned from `yolov8n-seg-coco.pt`" in md
    run = tmp_path / "w" / "toy-flat-m8-e1-t8"
    assert (run / "rows-init-yolov8n-seg-coco" / "renderer.json").exists() and (run / "rows" / "renderer.json").exists()
    # one epoch on 8 images barely moves the weights: the fine-tuned model still starts where --init does,
    # the one trained from the yaml does not
    tuned, scratch = (_first_conv(run / d / "renderer-s0" / "train" / "weights" / "last.pt")
                      for d in ("train-init-yolov8n-seg-coco", "train"))
    init = _first_conv(SEG_W).flatten()
    cos = torch.nn.functional.cosine_similarity
    assert cos(tuned.flatten(), init, dim=0) > 0.95 > cos(scratch.flatten(), init, dim=0)


def test_toy_checkpoints_scores_each_generator_file(tmp_path):
    gan = ROOT / "instseg" / "toy" / "weights" / "toy-flat.pt"
    md = _bench(["-m", "bench.toy_checkpoints", str(gan), str(gan), "--samples", "16"], tmp_path)
    rows = [line for line in md.splitlines() if line.startswith("| toy-flat.pt")]
    assert len(rows) == 2 and rows[0] == rows[1]  # the same file scores the same: seeds are fixed


def test_toy_target_reads_each_target_at_both_psi(tmp_path):
    import shutil

    import torch

    from instseg.checkpoints import load_generator, native_meta, save_native

    gan = tmp_path / "toy-flat.pt"
    shutil.copy(ROOT / "instseg" / "toy" / "weights" / "toy-flat.pt", gan)
    args = ["-m", "bench.toy_target", str(gan), str(gan), "--blocks", "2", "--samples", "16", "--cache", str(tmp_path / "c.json")]
    md = _bench(args, tmp_path)
    cache = json.loads((tmp_path / "c.json").read_text())
    assert len(cache) == 3  # one file; psi 1.0, and 0.7 toward the mean and toward the nearest of 128 centres
    for row in cache.values():
        row["FD"] = 999.0
    (tmp_path / "c.json").write_text(json.dumps(cache))
    assert _bench(args, tmp_path).count("| 999.0 |") == 6  # a rerun reads its rows from the cache
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| toy-flat.pt")]
    assert [r[2].strip() for r in rows] == ["1.0", "0.7", "0.7 (128 centres)"] * 2
    assert rows[0] == rows[3] and rows[0] != rows[1] != rows[2]  # fixed seeds; psi and the centres change the samples
    assert all(len(r[4].split(" / ")) == 2 for r in rows)  # one FD per block
    assert all(float(r[6]) > 0 for r in rows)  # FD-P4
    assert all(abs(sum(map(float, r[9].split(" / "))) - 100) < 0.5 for r in rows)  # class shares add up
    assert all(0 < float(r[11]) < 3 for r in rows)  # object contrast from toy-flat's label channels
    assert "| renderer scenes |" in md
    G = load_generator(gan)
    with torch.no_grad():
        G.blocks[-1].torgb.bias.add_(0.5)
    save_native(G, gan, meta=native_meta(gan))
    assert "| 999.0 |" not in _bench(args, tmp_path)  # another file at the same path is scored again


def test_toy_fd_sensitivity_gives_one_row_per_change(tmp_path):
    md = _bench(["-m", "bench.toy_fd_sensitivity", "--samples", "16", "--sets", "2"], tmp_path)
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| ") and "FD-YOLO" not in line]
    assert len(rows) == 15 and rows[0][0].strip().startswith("none")
    assert all(len(r[2].split(" / ")) == 2 for r in rows)
    assert all(0 <= float(r[3].strip(" %")) <= 100 for r in rows)  # the share in the feature tail
    assert all(len(r[5].split(" / ")) == 2 for r in rows)  # FD-P4 per set


def test_tail_share_counts_the_far_samples_only():
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bench.toy import TAIL_FACTOR, tail_share

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1000, 8))
    far = np.full((30, 8), np.sqrt(TAIL_FACTOR))  # squared distance 8 x TAIL_FACTOR; the median one is about 7
    assert tail_share(ref, ref) == 0
    assert tail_share(ref, np.concatenate([ref[30:], far])) == 0.03


def test_toy_ab_scores_each_snapshot_and_names_the_recipe(tmp_path):
    import shutil

    arm = tmp_path / "arm"
    (arm / "snapshots").mkdir(parents=True)
    (arm / "state").mkdir()
    for it in (500, 750, 1000):
        shutil.copy(ROOT / "instseg" / "toy" / "weights" / "toy-flat.pt", arm / "snapshots" / f"generator-{it:07d}.pt")
    (arm / "state" / "state.json").write_text(json.dumps({"iter": 1000, "history": [], "config": {
        "r1_gamma": 0.1, "resolution": 32, "batch": 32, "dataset_size": 0, "split_d": True, "mismatch": True,
        "joint_weight": 0.2, "channel_base": 2048, "d_channel_base": 2048}}))
    md = _bench(["-m", "bench.toy_ab", str(arm), "--every", "500", "--samples", "16"], tmp_path)
    rows = [line.split("|")[1:-1] for line in md.splitlines() if line.startswith("| ") and "arm |" in line
            or line.startswith("| 500 ") or line.startswith("| 1000 ")]
    assert [r[0].strip() for r in rows[1:]] == ["500", "1000"]  # 750 is not a multiple of --every
    assert rows[1][2:] == rows[2][2:]  # the same file scores the same on the same seeds
    assert float(rows[1][4]) > 0  # FD-P4
    assert "(matching-aware), joint D's weight in G's loss 0.2" in md


def test_renderer_confusion_reads_the_renderers_own_labels():
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bench.toy import EVAL_SEEDS, renderer_confusion
    from detectors.yolo import YoloDetector, packaged_weights
    from instseg.toy.render import class_coverage, sample_scene

    det = YoloDetector(str(packaged_weights("toy-flat")), conf=0.25, max_det=50)
    seeds = list(range(EVAL_SEEDS, EVAL_SEEDS + 24))
    m = renderer_confusion(det, seeds, min_area=1)
    assert m.shape == (3, 4)
    labelled = sum(int((class_coverage(sample_scene(s, 32, world="flat")) > 0.5).any(axis=(1, 2)).sum()) for s in seeds)
    assert m.sum() >= labelled  # every class present gives at least one instance
    assert np.trace(m) / m.sum() >= 0.8  # the judge reads its own world's objects as their class


def test_baselines_run_without_the_settings_a_preset_tunes_for_ours():
    sys.path.insert(0, str(ROOT))
    from bench.common import method_overrides
    from instseg.config import build_config

    ours = build_config("toy-flat", method_overrides({}))
    base = build_config("toy-flat", method_overrides({"method": "activations"}))
    std = build_config("toy-flat", method_overrides({"method": "activations", "normalize": "standardize"}))
    assert ours.normalize == "standardize" and ours.join_features == "b32.conv1"  # the preset's, for ours
    assert (base.normalize, base.join_features) == ("raw", "none")
    assert std.normalize == "standardize" and base.clip_margin == ours.clip_margin
