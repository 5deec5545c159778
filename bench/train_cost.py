"""What one toy-GAN training iteration costs, and what each cheaper setting saves (CPU or CUDA).

    python -m bench.train_cost [--world textured] [--iters 40] [--device cpu] [--no-write]

Each row runs the real trainer (`instseg.toy.train_gan.train`) from fresh weights with the shipped recipe
(bench/toy-state's) and one change, and reports seconds per iteration after a warm-up; CPU time too, so a row
measured beside other work still compares. Writes BENCHMARKS.md's section `train-cost`.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import ROOT, write_section
from instseg.toy.train_gan import TrainConfig, recipe_of, train

VARIANTS = {
    "shipped recipe (R1 every 4, a second fake batch for D, 1 thread)": {},
    "R1 every 16 (StyleGAN2's interval)": {"r1_every": 16},
    "D judges G's batch (reuse_fake)": {"reuse_fake": True},
    "channels-last memory format": {"channels_last": True},
    "D's conv1 after the downsampling (pool_first)": {"pool_first": True},
    "2 threads": {"threads": 2},
    "R1 every 16 + reuse_fake + pool_first": {"r1_every": 16, "reuse_fake": True, "pool_first": True},
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_iters(cfg: TrainConfig, warmup: int, iters: int) -> tuple[float, float]:
    """(wall s, CPU s) per iteration of `iters` iterations after `warmup` (two runs in one folder: the second
    resumes the first, so start-up is paid by both and cancels)."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for n in (warmup, warmup + iters):
            t, c = time.perf_counter(), _cpu()
            train(replace(cfg, out=tmp, iters=n, checkpoint_every=10**9))
            runs.append((time.perf_counter() - t, _cpu() - c))
            if n == warmup:
                for f in Path(tmp, "state").glob("*"):
                    f.unlink()
                Path(tmp, "state").rmdir()
    (w0, c0), (w1, c1) = runs
    return (w1 - w0) / iters, (c1 - c0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="textured")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="", help="run only variants whose name contains this")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    recipe = recipe_of(ROOT / "bench" / "toy-state")
    base = TrainConfig(**{**recipe, "world": args.world}, threads=1, workers=1, device=args.device)
    rows = []
    for name, change in VARIANTS.items():
        if args.only not in name:
            continue
        wall, cpu = time_iters(replace(base, **change), args.warmup, args.iters)
        rows.append((name, wall, cpu))
        print(json.dumps({"variant": name, "s_per_iter": round(wall, 3), "cpu_s_per_iter": round(cpu, 3)}), flush=True)
    ref = rows[0][1] if rows else 1.0
    body = (f"The trainer on the {args.world} world at {base.resolution} px, batch {base.batch}, the shipped recipe "
            f"(split D, mismatch, labels), fresh weights; {args.iters} iterations after {args.warmup}, scenes "
            f"rendered in the trainer. CPU s counts every thread.\n\n| setting | s / iter | CPU s / iter | vs first row |\n"
            "|---|---|---|---|\n")
    body += "".join(f"| {n} | {w:.2f} | {c:.2f} | {w / ref:.2f}x |\n" for n, w, c in rows)
    if not args.no_write and not args.only:
        write_section("train-cost", f"Toy GAN training: cost per iteration ({args.device})", body,
                      torch.device(args.device))
    else:
        print(body)


if __name__ == "__main__":
    main()
