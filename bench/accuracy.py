"""Mask quality of our method and the baselines on the same toy images and boxes.

    python bench/accuracy.py accuracy [--seeds 20000-20199]     # every method, held-out seeds
    python bench/accuracy.py ablations [--seeds 10000-10099]    # our method's settings, tuning seeds

Reference: the toy YOLOv8n-seg's masks on the same GAN images (pseudo ground truth, as the paper
uses DeepLabV3). Boxes: the toy YOLOv8n-seg's detections, identical for every method. Tuning seeds
(10000+) choose the defaults; the accuracy table uses seeds 20000+ that no choice looked at.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # for bench.common; an installed instseg wins
import torch  # noqa: E402

from bench.common import write_section  # noqa: E402
from detectors.yolo import YoloDetector, packaged_weights  # noqa: E402
from instseg.config import build_config, parse_seeds  # noqa: E402
from instseg.evaluate import evaluate  # noqa: E402
from instseg.pseudo_gt import pseudo_gt  # noqa: E402
from instseg.runner import run  # noqa: E402

COLS = ("iou_fg", "iou_bg", "miou", "trimap_miou", "ap", "ap50")


def measure(overrides: dict, seeds: tuple[int, ...], tmp: Path, gt_cache: dict) -> dict:
    cfg = build_config("toy-shapes", {**overrides, "seeds": seeds})
    out = tmp / f"run{len(list(tmp.iterdir()))}"
    t = time.perf_counter()
    run(cfg, out)
    dt = (time.perf_counter() - t) / len(seeds)
    pred = json.loads((out / "annotations.json").read_text())
    key = cfg.detector == "none"
    if key not in gt_cache:  # the images are the same for every setting: one reference per task
        seg = YoloDetector(str(packaged_weights("toy-shapes")), conf=0.25, max_det=50, agnostic_nms=True)
        gt_cache[key] = pseudo_gt(out, seg)
    res = evaluate(pred, gt_cache[key])
    res["s_per_image"] = dt
    res["instances"] = len(pred["annotations"])
    return res


def row(name: str, r: dict) -> str:
    return f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in COLS) + f" | {r['instances']} | {r['s_per_image']:.2f} |"


HEADER = ["| setting | IoU fg | IoU bg | mIoU | trimap mIoU | mask AP | AP50 | instances | s/img |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]


def accuracy(seeds: tuple[int, ...]) -> str:
    rows = list(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        gt: dict = {}
        for m in ("variants", "grabcut", "kmeans-rgb", "activations"):
            r = measure({"method": m}, seeds, Path(tmp), gt)
            rows.append(row(m, r))
            print(rows[-1], flush=True)
        n_gt = len(gt[False]["annotations"])
    return (f"toy-shapes, {len(seeds)} held-out seeds ({seeds[0]}-{seeds[-1]}), shipped defaults, boxes from the toy "
            f"YOLOv8n-seg (conf 0.25), reference = its masks ({n_gt} instances). IoU over all pixels of all images "
            "(fg = union of instances); AP = COCO mask AP.\n\n" + "\n".join(rows))


# The starting point the ablations vary (the defaults before they were measured).
BASE = {"mix_from": (4, 5), "instance_rule": "combined"}
ABLATIONS = [
    ("start: mix_from=(4,5), instance_rule=combined", {}),
    *[(f"N={n}", {"variants": n}) for n in (4, 8, 16, 64)],
    *[(f"mix_from={c}", {"mix_from": c}) for c in ((2,), (3,), (4,), (5,), (6,), (7,), (3, 4, 5, 6))],
    *[(f"k={k}", {"k": k}) for k in (2, 4, 5)],
    *[(f"normalize={n}", {"normalize": n}) for n in ("raw", "standardize", "l2")],
    *[(f"features={f}", {"features": f}) for f in ("b32.conv1", "b64.conv1")],
    # early stopping: the skip architecture's partial RGB at 32 px (synthesis ends there; labels upsampled)
    *[(f"early stop: features={f}, {r}", {"instance_rule": "inside", "mix_from": (6,), **ov})
      for f, r, ov in (("rgb", "full synthesis", {}), ("b32.rgb", "stop at 32 px", {"features": "b32.rgb"}))],
    ("repeats=3 (vote)", {"repeats": 3}),
    *[(f"instance_rule={r}", {"instance_rule": r}) for r in ("combined", "inside", "border", "center")],
    *[(f"whole image, foreground={f}", {"detector": "none", "foreground": f}) for f in ("border", "center")],
    # the single-setting winners above, combined (run with --only combined)
    ("combined: inside + mix_from=(6,)", {"instance_rule": "inside", "mix_from": (6,)}),
    ("combined: inside + mix_from=(6,) + k=2", {"instance_rule": "inside", "mix_from": (6,), "k": 2}),
    ("combined: inside + mix_from=(6, 7)", {"instance_rule": "inside", "mix_from": (6, 7)}),
    ("combined: inside + mix_from=(6,) + l2", {"instance_rule": "inside", "mix_from": (6,), "normalize": "l2"}),
]


def ablations(seeds: tuple[int, ...], only: str | None) -> str:
    rows = list(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        gt: dict = {}
        for name, ov in ABLATIONS:
            if (only and only not in name) or (not only and name.startswith("combined:")):
                continue
            rows.append(row(name, measure({**BASE, **ov}, seeds, Path(tmp), gt)))
            print(rows[-1], flush=True)
    return (f"toy-shapes, tuning seeds {seeds[0]}-{seeds[-1]}; each row changes one setting of the starting "
            "point (N=32, k=3, raw RGB, mix_from=(4,5), instance_rule=combined); the 'combined:' rows join "
            "the single-setting winners. Reference and boxes as in the accuracy table; the "
            "whole-image rows score the --detector none mask against the union of the reference masks.\n\n"
            + "\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("table", choices=["accuracy", "ablations"])
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--only", default=None, help="ablations whose name contains this")
    args = ap.parse_args()
    if args.table == "accuracy":
        seeds = parse_seeds(args.seeds or "20000-20199")
        write_section("accuracy", "Accuracy: our method vs. baselines (toy world)", accuracy(seeds), torch.device("cpu"))
    else:
        seeds = parse_seeds(args.seeds or "10000-10099")
        name = "ablations" + (f"-{args.only.replace(' ', '-')}" if args.only else "")
        title = "Ablations of our method (toy world, tuning seeds)" + (f": rows matching '{args.only}'" if args.only else "")
        write_section(name, title, ablations(seeds, args.only), torch.device("cpu"))


if __name__ == "__main__":
    main()
