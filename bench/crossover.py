"""The paper's key observation, measured directly: for each crossover c, does style mixing keep the
shape (label channels of the variants against the source's) while changing the style (RGB)?

    python -m bench.crossover --gan toy-train/generator.pt [--seeds 40000-40199] [--variants 8]

With label channels (`instseg toy train-gan --labels`) shape is the class-aware IoU of the variants' labels
against the source's. Any other generator (StyleGAN2 or StyleGAN3, a user's file) has no labels, so shape is
measured by a proxy: k-means (k = 3) of each image's own colours, the variant's segments matched one to one
with the source's (Hungarian, by overlap), mean IoU of the matched pairs. The suggested default is the
smallest crossover whose variants keep the shape at mean IoU >= 0.9: the earliest point at which mixing
stops moving shapes, so the most style is left to vary.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.common import shown_arg, write_section
from instseg.checkpoints import load_generator
from instseg.cluster import kmeans
from instseg.config import build_config, parse_seeds
from instseg.generator import Generator
from instseg.sampling import mix_ws, set_truncation_centres, source_ws, variant_rng
from instseg.zoo import resolve_gan


@torch.no_grad()
def crossover_stats(G: Generator, seeds: list[int], crossover: int, n: int = 8, psi: float = 0.7) -> tuple[float, float]:
    """(mean label IoU of variants vs source, mean absolute RGB change in [0, 1]) at one crossover."""
    ious, changes = [], []
    dev = torch.device("cpu")
    labelled = bool(G.cfg.label_channels)
    feats = ("labels",) if labelled else ()
    for seed in seeds:
        ws = source_ws(G, seed, psi, dev)
        src_img, src = G.synthesis(ws, features=feats)
        var_img, var = G.synthesis(mix_ws(G, ws, n, (crossover,), variant_rng(seed), psi), features=feats)
        if labelled:
            a, b = src["labels"] > 0, var["labels"] > 0  # [1, L, H, W], [n, L, H, W]
            inter = (a & b).flatten(1).sum(1).float()  # class-aware: a pixel agrees only under the same class
            union = (a | b).flatten(1).sum(1).float()
            ious += (inter / union.clamp_min(1)).tolist()
        else:
            ref = segments(src_img[0], seed)
            ious += [matched_iou(ref, segments(v, seed)) for v in var_img]
        changes.append(float((var_img - src_img).abs().mean() / 2))
    return float(np.mean(ious)), float(np.mean(changes))


SEGMENTS = 3


def segments(img: torch.Tensor, seed: int) -> np.ndarray:
    """k-means of one image's own colours: [C, H, W] -> [H, W] segment indices."""
    c, h, w = img.shape
    labels = kmeans(img.float().reshape(c, -1).t().contiguous(), SEGMENTS, iters=50, seed=seed)[0]
    return labels.reshape(h, w).numpy()


def matched_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of a's segments with b's, matched one to one for the largest total IoU."""
    from scipy.optimize import linear_sum_assignment

    iou = np.zeros((SEGMENTS, SEGMENTS))
    for i in range(SEGMENTS):
        for j in range(SEGMENTS):
            union = ((a == i) | (b == j)).sum()
            iou[i, j] = ((a == i) & (b == j)).sum() / union if union else 1.0
    r, c = linear_sum_assignment(-iou)
    return float(iou[r, c].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gan", required=True)
    ap.add_argument("--seeds", default="40000-40199")
    ap.add_argument("--variants", type=int, default=8)
    args = ap.parse_args()
    G = load_generator(resolve_gan(args.gan).path)
    set_truncation_centres(G, build_config(args.gan, {}).truncation_centres)
    seeds = list(parse_seeds(args.seeds))
    shape = "label IoU" if G.cfg.label_channels else f"matched IoU of {SEGMENTS} colour segments"
    rows = [f"| crossover c | {shape}, variants vs source (shape kept) | RGB change (style changed) |",
            "|---:|---:|---:|"]
    best = None
    for c in range(1, G.num_ws):
        iou, change = crossover_stats(G, seeds, c, args.variants)
        rows.append(f"| {c} | {iou:.3f} | {change:.3f} |")
        if best is None and iou >= 0.9:
            best = c
    body = (f"`{shown_arg(args.gan)}`, {len(seeds)} seeds ({args.seeds}), {args.variants} variants each, psi 0.7. "
            f"Suggested default crossover: **{best or 'none reaches 0.9'}** (the smallest with {shape} >= 0.9)."
            "\n\n" + "\n".join(rows))
    name = "crossover" + ("" if G.cfg.label_channels else "-" + Path(args.gan).stem)
    write_section(name, "Style mixing keeps shape and changes style: per crossover", body, torch.device("cpu"))


if __name__ == "__main__":
    main()
