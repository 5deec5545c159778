"""Scale-out: images/s of the toy world with 1 and 2 local Ray workers, and a paper estimate for 1M images.

    python bench/scale.py [--images 96]

Both runs make the same dataset (same seeds, fresh folders) in this process's Ray cluster; the
time includes starting the actors (loading generator and detector once per worker). The 1M-image
estimate uses the synthesis FLOPs measured by bench/flops.py and an assumed sustained GPU rate.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # for bench.common; an installed instseg wins
from bench.common import write_section  # noqa: E402
from instseg.config import build_config  # noqa: E402
from instseg.runner import run  # noqa: E402

GFLOP_PER_IMAGE_256 = 2843  # config-f 256, N=32, shared early blocks (bench/flops.py)


def main() -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=96)
    args = ap.parse_args()
    cfg = build_config("toy-shapes", {"seeds": tuple(range(30_000, 30_000 + args.images)), "device": "cpu"})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t = time.perf_counter()
            run(cfg, Path(tmp) / f"w{workers}", ray="local", workers=workers)
            rates[workers] = args.images / (time.perf_counter() - t)
    ray.shutdown()
    rows = ["| workers | images/s | speed-up |", "|---:|---:|---:|"]
    rows += [f"| {w} | {r:.2f} | {r / rates[1]:.2f}x |" for w, r in rates.items()]
    est = ["| GPUs | at 30 images/s per GPU (the H100 target) | at 40% of 990 TFLOP/s fp16 per GPU |",
           "|---:|---:|---:|"]
    flop_per_image = GFLOP_PER_IMAGE_256 * 1e9
    flops_rate = 0.4 * 990e12 / flop_per_image
    for n in (8, 64):
        est.append(f"| {n} | {1e6 / (30 * n) / 3600:.1f} h | {1e6 / (flops_rate * n) / 3600:.2f} h "
                   f"({flops_rate:.0f} images/s per GPU) |")
    body = (f"toy-shapes, {args.images} images per run, `--ray local` on this machine's 2 CPUs (one CPU slot and "
            "one torch thread per worker), actor start-up included.\n\n" + "\n".join(rows) +
            f"\n\nPaper estimate, 1M images at 256x256 with N=32 ({flop_per_image / 1e9:.0f} GFLOP of synthesis per image, "
            "measured; clustering and detection assumed to overlap or stay under 25%). No GPU figure has been "
            "measured yet: these rows are arithmetic, not measurements.\n\n" + "\n".join(est))
    write_section("scale", "Scale-out: local Ray workers, and 1M images on 8 or 64 GPUs (estimate)", body,
                  torch.device("cpu"))


if __name__ == "__main__":
    main()
