"""What the toy judge's FD responds to: renderer scenes with one defect each, against clean renderer scenes.

    python -m bench.toy_fd_sensitivity [--samples 3000]

FD-YOLO (the renderer-only yolo:toy-flat's pooled SPPF features, as in bench/toy.py) of n flat-world scenes
changed in one way (object count, layout, background texture, object size, class balance, colour, blur,
saturation) against n clean scenes (EVAL_SEEDS + 40000+, as bench/toy_target.py), on --sets disjoint sets of
changed scenes (seeds 9000000+, 9100000+, ...), so the spread of FD at that n shows beside the mean. Each row
also gives the share of changed scenes in the judge's feature tail (bench.toy.tail_share).
It tells which departures of a generator the FD <= 10 target of issue 24 punishes, and which it barely sees.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from bench.common import write_section
from bench.toy import EVAL_SEEDS, P4, SPPF, TAIL_FACTOR, frechet, judge_features, tail_share
from detectors.yolo import YoloDetector, packaged_weights
from instseg.toy.render import instance_map, render_antialiased, sample_scene

CHANGED = 9_000_000


def _objects(fn):
    return lambda sc, rng: replace(sc, objects=tuple(fn(o, sc, rng) for o in sc.objects))


def _toward_bg(o, sc, rng):
    bg = (np.array(sc.bg_a) + np.array(sc.bg_b)) / 2
    return replace(o, color=tuple(float(v) for v in 0.7 * np.array(o.color) + 0.3 * bg))


def _desaturate(im: np.ndarray) -> np.ndarray:
    f = im.astype(float)
    g = f.mean(2, keepdims=True)
    return np.clip(g + 0.75 * (f - g), 0, 255).astype(np.uint8)


SCENE_CHANGES = {
    "none (other seeds: the floor)": None,
    "background texture removed": lambda sc, rng: replace(sc, texture=(0.0, *sc.texture[1:])),
    "background texture x2": lambda sc, rng: replace(sc, texture=(2 * sc.texture[0], *sc.texture[1:])),
    "objects 0.8x the size": _objects(lambda o, sc, rng: replace(o, radius=0.8 * o.radius)),
    "half the objects drawn as class 0": _objects(lambda o, sc, rng: replace(o, cls=0) if rng.random() < 0.5 else o),
    "half the objects drawn as class 2": _objects(lambda o, sc, rng: replace(o, cls=2) if rng.random() < 0.5 else o),
    "object colours 30% toward the background": _objects(_toward_bg),
    "objects removed from 5% of scenes": lambda sc, rng: replace(sc, objects=()) if rng.random() < 0.05 else sc,
}
IMAGE_CHANGES = {
    "Gaussian blur, sigma 0.6 px": lambda im: np.clip(gaussian_filter(im.astype(float), (0.6, 0.6, 0)), 0, 255
                                                      ).astype(np.uint8),
    "saturation x0.75": _desaturate,
    "upside down (upper and lower halves swapped)": lambda im: np.ascontiguousarray(im[::-1]),
}
# Scenes picked by their number of objects (1, 2, 3) in these shares; the renderer's own is about 1/3 each.
COUNT_SHARES = {"one object only": (1.0, 0.0, 0.0), "objects 1/2/3 in 50/45/5%": (0.50, 0.45, 0.05),
                "objects 1/2/3 in 42/38/20%": (0.42, 0.38, 0.20)}


def top_empty(sc) -> bool:
    """No object pixel in the upper half of the image."""
    return not instance_map(sc)[: sc.size // 2].any()


def without_top_empty(n: int, first: int) -> list:
    """n scenes of seeds `first`+, skipping those whose upper half holds no object."""
    out, seed = [], first
    while len(out) < n:
        sc = sample_scene(seed, 32, world="flat")
        if not top_empty(sc):
            out.append(sc)
        seed += 1
    return out


def by_count(n: int, shares: tuple[float, float, float], first: int) -> list:
    """n scenes of seeds `first`+ whose object counts 1, 2, 3 come in `shares`."""
    want = [round(s * n) for s in shares]
    picked: dict[int, list] = {1: [], 2: [], 3: []}
    seed = first
    while any(len(picked[k + 1]) < want[k] for k in range(3)):
        sc = sample_scene(seed, 32, world="flat")
        k = len(sc.objects)
        if k in picked and len(picked[k]) < want[k - 1]:
            picked[k].append(sc)
        seed += 1
    return [sc for k in (1, 2, 3) for sc in picked[k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=3000, help="scenes on each side of every FD")
    ap.add_argument("--sets", type=int, default=3, help="disjoint sets of changed scenes (seeds CHANGED + k * 100000+)")
    ap.add_argument("--no-write", action="store_true", help="print the rows only; leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.samples
    det = YoloDetector(str(packaged_weights("toy-flat")), conf=0.25, max_det=50)
    first = EVAL_SEEDS + 40_000
    f_clean = judge_features(det, np.stack([render_antialiased(sample_scene(s, 32, world="flat"))
                                            for s in range(first, first + n)]), (SPPF, P4))
    starts = [CHANGED + k * 100_000 for k in range(args.sets)]
    sets = [[sample_scene(s, 32, world="flat") for s in range(a, a + n)] for a in starts]
    rows = ["| change | FD-YOLO, mean | per set | in the feature tail | FD-P4, mean | per set |",
            "|---|---:|---|---:|---:|---|"]

    def row(name: str, image_sets) -> None:
        feats = [judge_features(det, np.stack(images), (SPPF, P4)) for images in image_sets]
        fds = [frechet(f_clean[SPPF], f[SPPF]) for f in feats]
        p4 = [frechet(f_clean[P4], f[P4]) for f in feats]
        tail = np.mean([tail_share(f_clean[SPPF], f[SPPF]) for f in feats])
        rows.append(f"| {name} | {np.mean(fds):.1f} | {' / '.join(f'{v:.1f}' for v in fds)} | {tail:.1%} | "
                    f"{np.mean(p4):.2f} | {' / '.join(f'{v:.2f}' for v in p4)} |")
        print(rows[-1], flush=True)

    for name, change in SCENE_CHANGES.items():
        rng = np.random.default_rng(0)
        row(name, ([render_antialiased(change(sc, rng) if change else sc) for sc in scenes] for scenes in sets))
    for name, change in IMAGE_CHANGES.items():
        row(name, ([change(render_antialiased(sc)) for sc in scenes] for scenes in sets))
    for name, shares in COUNT_SHARES.items():
        row(name, ([render_antialiased(sc) for sc in by_count(n, shares, a)] for a in starts))
    row("no scene with the upper half empty", ([render_antialiased(sc) for sc in without_top_empty(n, a)]
                                              for a in starts))
    top_share = np.mean([top_empty(sc) for scenes in sets for sc in scenes])
    if args.no_write:
        return
    body = (f"Flat-world scenes at 32 px, n={n} on each side; clean scenes {first}+, changed scenes in {args.sets} "
            f"disjoint sets from {', '.join(map(str, starts))} (the count rows pick scenes from there by their number "
            f"of objects). Judge: yolo:toy-flat. FD between two clean sets is 0-1.2; a real shift reads with a "
            f"spread of several points between sets. In the feature tail: the share of scenes whose pooled judge "
            f"features lie over {TAIL_FACTOR:g}x the clean scenes' median squared distance from their median "
            f"(clean scenes: {tail_share(f_clean[SPPF], f_clean[SPPF]):.1%}). FD-P4: the same FD on the judge's "
            f"neck output at stride 16 (layer {P4}), whose pooled features have no such tail. {top_share:.1%} of "
            f"the renderer's scenes have no object in their upper half.\n\n"
            + "\n".join(rows))
    write_section("toy-fd-sensitivity", "What the toy judge's FD responds to", body, torch.device("cpu"))


if __name__ == "__main__":
    main()
