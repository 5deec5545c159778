"""Pick a toy training checkpoint: FD-YOLO, the detection share and the class gap (bench.toy's helpers) for
several generator files.

    python -m bench.toy_checkpoints A.pt B.pt ... [--seeds 300000] [--samples 2000]

FD-YOLO against renderer scenes, the share of samples with a detection at conf >= 0.5, and the
largest class-share gap. The default seeds (300000+) are for choosing a checkpoint and are disjoint
from the ones bench.toy and bench.toy_target report (100000+, 800000+), so a choice made here is scored fairly there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.common import write_section
from bench.toy import EVAL_SEEDS, class_shares, gan_side, yolo_features
from detectors.yolo import YoloDetector, packaged_weights
from instseg.checkpoints import load_generator
from instseg.toy.render import render_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("gans", nargs="+", type=Path, help="native generator files of the flat world")
    ap.add_argument("--seeds", type=int, default=300_000, help="first GAN seed scored")
    ap.add_argument("--samples", type=int, default=2000, help="GAN samples and renderer scenes per figure")
    ap.add_argument("--psi", type=float, default=0.7, help="truncation of the GAN samples")
    ap.add_argument("--no-write", action="store_true", help="print the rows only; leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    det = YoloDetector(str(packaged_weights("toy-flat")), conf=0.25, max_det=50)
    names = list(det.class_names)
    real = np.stack([render_seed(s, 32, "flat")[0] for s in range(EVAL_SEEDS + 10_000, EVAL_SEEDS + 10_000 + args.samples)])
    f_real, real_share = yolo_features(det, real), class_shares(det(list(real)), names)
    rows = ["| generator | iterations | FD-YOLO | samples with a detection at conf >= 0.5 | largest class-share gap (points) |",
            "|---|---:|---:|---:|---:|"]
    for path in args.gans:
        G = load_generator(path)
        meta = torch.load(path, weights_only=True).get("meta", {})
        confident, gap, fd = gan_side(G, det, list(range(args.seeds, args.seeds + args.samples)), args.psi,
                                      f_real, real_share)
        rows.append(f"| {path.name} | {meta.get('iterations')} | {fd:.1f} | {confident:.1%} | {gap:.1f} |")
        print(rows[-1], flush=True)
    if args.no_write:
        return
    body = (f"GAN seeds {args.seeds}+ (for choosing; bench/toy.py reports on 100000+ and 200000+), n={args.samples}, "
            f"psi {args.psi}; renderer scenes {EVAL_SEEDS + 10_000}+.\n\n" + "\n".join(rows))
    write_section("toy-checkpoints", "Choosing a toy-flat checkpoint", body, torch.device("cpu"))


if __name__ == "__main__":
    main()
