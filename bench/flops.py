"""Synthesis FLOPs per dataset image: full synthesis vs shared early blocks vs stopping early.

    python -m bench.flops            # config-f 256 and 1024, N=32, the presets' crossovers {6..9}

Counted with torch's FlopCounterMode on random weights (FLOPs do not depend on the weights).
'shared' computes the blocks that read only ws[:min(mix_from)] once per batch instead of once
per variant; 'stop at 128' ends synthesis at the 128 px block (the `b128.rgb` feature, used when
pixels are clustered at work_res 128) instead of making the full-resolution image.
"""
from __future__ import annotations


import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import write_section
from instseg.generator import Generator, GeneratorConfig


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def main() -> None:
    n, mix_from, stop = 32, (6, 7, 8, 9), 128
    rows = ["| generator | full synthesis | shared early blocks | + stop at 128 px | saved by sharing | saved by both |",
            "|---|---:|---:|---:|---:|---:|"]
    for res in (256, 1024):
        G = Generator(GeneratorConfig(resolution=res)).eval().requires_grad_(False)
        ws = G.mapping(torch.randn(n, G.z_dim))
        ws[:, : min(mix_from)] = ws[:1, : min(mix_from)]
        full = gflops(lambda: G.synthesis(ws))
        shared = gflops(lambda: G.synthesis(ws, shared_ws=min(mix_from)))
        early = gflops(lambda: G.features(ws, (f"b{stop}.rgb",), shared_ws=min(mix_from)))
        rows.append(f"| config-f {res}, N={n} | {full:.0f} GFLOP | {shared:.0f} | {early:.0f} | "
                    f"{1 - shared / full:.1%} | {1 - early / full:.1%} |")
    body = ("Per dataset image (N variants, whole image), synthesis only, crossovers {6..9} so ws[:6] are "
            "shared (the 4, 8 and 16 px blocks).\n\n" + "\n".join(rows))
    write_section("flops", "Synthesis FLOPs per image: shared early blocks and early stopping", body,
                  torch.device("cpu"))


if __name__ == "__main__":
    main()
