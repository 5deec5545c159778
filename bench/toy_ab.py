"""The toy GAN recipes side by side: snapshots of training folders scored at the same images shown.

    python -m bench.toy_ab OLD_DIR NEW_DIR [MORE_DIR ...] [--every 500] [--samples 1000] [--confusion 200]

Each folder (an arm, named by its folder) is `instseg toy train-gan --snapshot-every N`'s output. Per
snapshot: FD-YOLO at psi 1.0 and 0.7 against renderer scenes, FD-P4 at psi 1.0 (the judge's stride-16 neck
output, which lacks FD-YOLO's heavy tail: toy-fd-sensitivity), the share of psi-1.0 samples with a detection
at conf >= 0.5, and the largest class-share gap, all with the renderer-only judge (yolo:toy-flat) on GAN seeds
500000+ (used by no other bench) and renderer scenes EVAL_SEEDS + 20000+. Beside the judge's class gap, the
label gap reads the generator's own label channels: the largest gap between its per-class shares of labelled
pixels and the renderer's, so a judge that calls every blob a disc is told apart from a generator that draws
one class.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import write_section
from bench.toy import (EVAL_SEEDS, P4, SPPF, class_shares, frechet, gan_images, gan_side,
                       judge_features, label_confusion, renderer_confusion)
from detectors.yolo import YoloDetector, packaged_weights
from instseg.checkpoints import load_generator
from instseg.sampling import z_from_seed
from instseg.toy.recipe import LEGACY, TrainConfig, r1_heuristic
from instseg.toy.render import class_coverage, render_seed, sample_scene

GAN_SEEDS = 500_000
DEFAULTS = replace(TrainConfig(), **LEGACY)  # options a state.json predates read as what it was trained with


def label_shares(G, seeds: list[int], batch: int = 100) -> np.ndarray:
    """Per-class share of the pixels a generator labels (argmax of its label channels where one is > 0)."""
    counts = torch.zeros(G.cfg.label_channels)
    with torch.no_grad():
        for i in range(0, len(seeds), batch):
            z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds[i:i + batch]])
            lab = G.synthesis(G.mapping(z), noise_mode="const", features=("labels",))[1]["labels"]
            on = lab.max(1).values > 0
            counts += torch.bincount(lab.argmax(1)[on], minlength=len(counts)).float()
    return (counts / counts.sum().clamp(min=1)).numpy()


def snapshots(folder: Path, every: int) -> dict[int, Path]:
    out = {}
    for p in sorted((folder / "snapshots").glob("generator-*.pt")):
        it = int(p.stem.split("-")[1])
        if it % every == 0:
            out[it] = p
    return out


def recipe(folder: Path) -> str:
    meta = json.loads((folder / "state" / "state.json").read_text())
    cfg = meta["config"]
    gamma = cfg["r1_gamma"] if cfg["r1_gamma"] is not None else r1_heuristic(cfg["resolution"], cfg["batch"])
    scenes = f"{cfg['dataset_size']} fixed scenes" if cfg["dataset_size"] else "fresh scenes"
    d = "image D + joint D" if cfg["split_d"] else "one joint D"
    mw = cfg.get("mismatch_weight", DEFAULTS.mismatch_weight)
    if cfg.get("mismatch"):
        d += f" (matching-aware{'' if mw == DEFAULTS.mismatch_weight else f', weight {mw:g}'})"
    lr = f", lr {cfg['lr']:g}" if cfg.get("lr", DEFAULTS.lr) != DEFAULTS.lr else ""
    jw = cfg.get("joint_weight", DEFAULTS.joint_weight)
    d += f", joint D's weight in G's loss {jw:g}" if jw != DEFAULTS.joint_weight else ""
    joint = f" (joint D {cfg['r1_gamma_joint']:.4g})" if cfg.get("r1_gamma_joint") is not None else ""
    branch = next((f", branched at {h['from_iter']} from {h['branched_from']}" for h in reversed(meta["history"])
                   if "branched_from" in h), "")  # the latest branch: a branch of a branch inherits the history
    return (f"R1 gamma {gamma:.4g}{joint}, {d}, G / D channel base {cfg['channel_base']} / {cfg['d_channel_base']}, "
            f"{scenes}, batch {cfg['batch']}{lr}, mbstd group {cfg.get('mbstd_group', 4)}, {cfg.get('precision', 'fp32')}{branch}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("arms", type=Path, nargs="+", help="training folders, the baseline first")
    ap.add_argument("--every", type=int, default=500, help="score snapshots at multiples of this iteration")
    ap.add_argument("--samples", type=int, default=1000, help="GAN samples and renderer scenes per figure")
    ap.add_argument("--confusion", type=int, default=0, metavar="N",
                    help="also print, for each arm's last snapshot, which class the judge sees where the generator "
                         "labels an instance, on N samples, and the same for N renderer scenes (printed only)")
    ap.add_argument("--cache", type=Path, default=None, help="JSON of figures already measured (reused, then extended)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    det = YoloDetector(str(packaged_weights("toy-flat")), conf=0.25, max_det=50)
    scene_seeds = range(EVAL_SEEDS + 20_000, EVAL_SEEDS + 20_000 + args.samples)
    real = np.stack([render_seed(s, 32, "flat")[0] for s in scene_seeds])
    feats = judge_features(det, real, (SPPF, P4))
    f_real, real_share = feats[SPPF], class_shares(det(list(real)), list(det.class_names))
    cover = sum(class_coverage(sample_scene(s, 32, world="flat")).sum(axis=(1, 2)) for s in scene_seeds)
    real_label_share = cover / cover.sum()
    seeds = list(range(GAN_SEEDS, GAN_SEEDS + args.samples))
    runs = {folder.name: snapshots(folder, args.every) for folder in args.arms}
    names = list(runs)
    metrics = (("FD psi 1.0", 2, "{:.1f}"), ("FD psi 0.7", 3, "{:.1f}"), ("FD-P4 psi 1.0", 5, "{:.2f}"),
               ("detected", 0, "{:.1%}"), ("class gap", 1, "{:.1f}"), ("label gap", 4, "{:.1f}"))
    rows = ["| iterations (x32 images) | arm | " + " | ".join(m for m, _, _ in metrics) + " |",
            "|---:|---|" + "---:|" * len(metrics)]
    for it in sorted(set().union(*runs.values())):
        figures = {}
        for name in names:
            if it not in runs[name]:
                continue
            key = f"{runs[name][it]}:{args.samples}"
            if key not in cache or len(cache[key]) < 6:  # older caches lack the later figures
                G = load_generator(runs[name][it])
                if key not in cache:
                    cache[key] = [*gan_side(G, det, seeds, 1.0, f_real, real_share),
                                  gan_side(G, det, seeds, 0.7, f_real, real_share)[2]]
                if len(cache[key]) < 5:
                    cache[key].append(100 * float(np.abs(label_shares(G, seeds) - real_label_share).max()))
                cache[key].append(frechet(feats[P4], judge_features(det, gan_images(G, seeds, 1.0), (P4,))[P4]))
                if args.cache:
                    args.cache.write_text(json.dumps(cache))
            figures[name] = cache[key]  # detected, class gap, FD psi 1.0, FD psi 0.7, label gap, FD-P4 psi 1.0
        for name, fig in figures.items():
            rows.append(f"| {it} | {name} | " + " | ".join(fmt.format(fig[i]) for _, i, fmt in metrics) + " |")
            print(rows[-1], flush=True)
    if args.confusion:
        tables = {"renderer scenes": renderer_confusion(det, list(scene_seeds)[:args.confusion])}
        for name, snaps in runs.items():
            if snaps:
                last = max(snaps)
                tables[f"{name} at {last}"] = label_confusion(load_generator(snaps[last]), det, seeds[:args.confusion])
        for title, m in tables.items():
            print(f"{title}: rows label class, columns judge class ({', '.join(det.class_names)}, none)")
            for c, row in zip(det.class_names, m):
                print(f"  {c:>10}: " + " ".join(f"{v:5d}" for v in row))
    recipes = "; ".join(f"{folder.name}: {recipe(folder)}" for folder in args.arms)
    body = (f"{recipes}. From scratch unless branched (then from the named state, with its Adam moments) on this "
            f"CPU (niced; each folder's state.json lists its stretches and threads), the same batch, EMA and seed. Judge: the renderer-only yolo:toy-flat; GAN seeds {GAN_SEEDS}+, renderer scenes "
            f"{EVAL_SEEDS + 20_000}+, n={args.samples}; detected and both gaps at psi 1.0 (the class gap: the judge's "
            f"class shares of detections; the label gap: the generator's label channels, by pixel).\n\n" + "\n".join(rows))
    write_section("toy-ab", "Toy GAN recipes side by side, on CPU (issue 24)", body, torch.device("cpu"))


if __name__ == "__main__":
    main()
