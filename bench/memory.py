"""Peak memory of one dataset image at config-f 1024x1024, N=32, random weights (the 8 GB budget).

    python -m bench.memory [--device cpu|cuda] [--batch 8]

Runs `instseg run` on one image with two fixed boxes in a fresh process and reports the peak
resident memory (CPU) or the peak CUDA memory allocated by torch.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench.common import write_section

CHILD = r"""
import json, resource, sys, torch
from pathlib import Path
from bench.pipeline import FixedBoxes
from instseg.checkpoints import save_native
from instseg.config import build_config
from instseg.generator import Generator, GeneratorConfig
from instseg.runner import run
tmp, device, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
save_native(Generator(GeneratorConfig(resolution=1024)), tmp / "g.pt")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cfg = build_config(str(tmp / "g.pt"), {"seeds": (0,), "variants": 32, "mix_from": (6, 7, 8, 9), "batch": batch,
                                       "device": device, "detector": "fixed", "classes": ("object",)})
if device.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
run(cfg, tmp / "run", detector=FixedBoxes())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cuda = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
print(json.dumps({"rss_gib": peak / 2**20, "cuda_gib": None if cuda is None else cuda / 2**30}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:  # run from the repository root, as `python -m bench.memory` is
        p = subprocess.run([sys.executable, "-c", CHILD, tmp, args.device, str(args.batch)], cwd=root,
                           capture_output=True, text=True, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    where = f"peak CUDA memory {r['cuda_gib']:.2f} GiB" if r["cuda_gib"] is not None else ""
    body = (f"config-f 1024x1024, random weights, N=32, generator batch {args.batch}, two fixed boxes, one image, "
            f"{args.device}: peak resident memory of the whole process {r['rss_gib']:.2f} GiB"
            + (f"; {where}" if where else "") + " (budget: 8 GB).")
    write_section(f"memory-{torch.device(args.device).type}", f"Peak memory per image, config-f 1024, N=32 ({args.device})",
                  body, torch.device(args.device))


if __name__ == "__main__":
    main()
