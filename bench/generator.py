"""Images/s of the config-f 256x256 generator (random weights) at several batch sizes.

    python bench/generator.py [--device cpu|cuda] [--batches 1,8,32]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # for bench.common; an installed instseg wins
from bench.common import timeit, write_section  # noqa: E402
from instseg.generator import Generator, GeneratorConfig  # noqa: E402
from instseg.allocator import keep_freed_memory  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as `instseg run` does
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=256)).eval().requires_grad_(False).to(device)
    params = sum(p.numel() for p in G.parameters()) / 1e6
    rows = ["| batch | s / batch | images/s |", "|---:|---:|---:|"]
    for b in [int(x) for x in args.batches.split(",")]:
        ws = G.mapping(torch.randn(b, G.z_dim, device=device))
        with torch.inference_mode():
            t = timeit(lambda: G.synthesis(ws), device, repeat=args.repeat)
        rows.append(f"| {b} | {t:.3f} | {b / t:.2f} |")
        print(rows[-1], flush=True)
    body = (f"config-f 256x256 (channel base 32768, max 512, 8 mapping layers, {params:.1f}M parameters), "
            "random weights, synthesis only, const noise, float32, best of "
            f"{args.repeat} after a warm-up.\n\n" + "\n".join(rows))
    write_section(f"generator-{device.type}", f"Generator throughput ({device.type})", body, device)


if __name__ == "__main__":
    main()
