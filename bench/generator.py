"""Images/s of a 256x256 generator (random weights) at several batch sizes: StyleGAN2 config-f, or
StyleGAN3 -T / -R in the layout of NVIDIA's 256 px models.

    python -m bench.generator [--device cpu|cuda] [--batches 1,8,32] [--family f|sg3-t|sg3-r]
"""
from __future__ import annotations

import argparse

import torch

from bench.common import timeit, write_section
from instseg.generator import Generator, GeneratorConfig
from instseg.stylegan3 import SG3Generator, design, design_filters
from instseg.allocator import keep_freed_memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--family", default="f", choices=["f", "sg3-t", "sg3-r"])
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as `instseg run` does
    torch.manual_seed(0)
    if args.family == "f":
        G = Generator(GeneratorConfig(resolution=256))
        what = "config-f 256x256 (channel base 32768, max 512, 8 mapping layers"
    else:
        G = SG3Generator(design(256, radial=args.family == "sg3-r"))
        design_filters(G)
        what = f"StyleGAN3-{args.family[-1].upper()} 256x256 (NVIDIA's layout: 14 layers, 2 mapping layers"
    G = G.eval().requires_grad_(False).to(device)
    params = sum(p.numel() for p in G.parameters()) / 1e6
    rows = ["| batch | s / batch | images/s |", "|---:|---:|---:|"]
    for b in [int(x) for x in args.batches.split(",")]:
        ws = G.mapping(torch.randn(b, G.z_dim, device=device))
        with torch.inference_mode():
            t = timeit(lambda: G.synthesis(ws), device, repeat=args.repeat)
        rows.append(f"| {b} | {t:.3f} | {b / t:.2f} |")
        print(rows[-1], flush=True)
    body = (f"{what}, {params:.1f}M parameters), "
            f"random weights, synthesis only, {'const noise, ' if args.family == 'f' else ''}float32, best of "
            f"{args.repeat} after a warm-up.\n\n" + "\n".join(rows))
    name = f"generator-{device.type}" + ("" if args.family == "f" else f"-{args.family}")
    write_section(name, f"Generator throughput ({device.type}{'' if args.family == 'f' else ', ' + args.family})", body,
                  device)


if __name__ == "__main__":
    main()
