"""How hard is each toy world for colour alone? Per-instance IoU of colour rules on renderer scenes, exact boxes.

    python -m bench.world [--scenes 300] [--size 32] [--no-write] [--picture docs/toy-world-textured.png]

Rows: k-means on RGB in the box's crop (grown by RunConfig's box margin, k=3, the best single cluster picked by its IoU against the exact mask: the
ceiling of any rule that picks one colour cluster), GrabCut from the box (the whole box where it returns nothing)
and the whole box itself; then the same k-means on ideal style variants: 16 re-colourings of the scene by the
renderer under the world's colour rule (the most a per-pixel variant stack can say there). Columns: the worlds.
Writes BENCHMARKS.md's section `world-hardness`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from bench.common import write_section
from instseg.baselines import grabcut
from instseg.cluster import kmeans
from instseg.features import pixel_features
from instseg.toy.render import (
    CAMO,
    Skin,
    draw_palette,
    rand_color,
    render_antialiased,
    render_seed,
    sample_scene,
)

EVAL_SEEDS = 4_000_000  # renderer seeds used by no other bench
MARGIN = 0.15  # RunConfig.box_margin: the crop k-means sees is the box grown by this on each side


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def grown(box: tuple[int, int, int, int], margin: float, size: int) -> tuple[int, int, int, int]:
    """The box grown by `margin` of its size on each side (as the pipeline crops), clipped to the image."""
    x0, y0, x1, y1 = box
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy))), min(size, int(np.ceil(x1 + dx))),
            min(size, int(np.ceil(y1 + dy))))


def best_kmeans_cluster(img: np.ndarray, box: tuple[int, int, int, int], gt: np.ndarray, k: int = 3) -> np.ndarray:
    """The one k-means (RGB) cluster in the box's crop whose mask best matches gt: [H, W] bool."""
    return best_stack_cluster(img[None].astype(np.float32) / 255, box, gt, k)


def _relation(bg: Skin, obj: Skin) -> tuple[bool, float]:
    """How an object's palette follows the background's (the world's rule): (swapped, shift), the nearest fit."""
    fits = [((np.abs(np.r_[(bg.hi, bg.lo) if sw else (bg.lo, bg.hi)] + d - np.r_[obj.lo, obj.hi])).sum(), sw, d)
            for sw in (False, True) for d in (CAMO.shift, -CAMO.shift)]
    return min(fits)[1:]


def recoloured(seed: int, size: int, n: int, world: str, coupled: bool = True) -> np.ndarray:
    """n renderings of one scene's layout (and textures) with new colours: [n, H, W, 3] float; what ideal style
    variants change. flat: every surface a new colour. textured: a new scene palette, each object keeping its swap
    and shift against it (the world's rule), or with coupled=False every surface its own palette."""
    scene = sample_scene(seed, size, world=world)
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(n):
        if world == "flat":
            objs = tuple(replace(o, color=rand_color(rng)) for o in scene.objects)
            new = replace(scene, bg_a=rand_color(rng), bg_b=rand_color(rng), objects=objs)
        else:
            bg, lo, hi = scene.skins[0], *draw_palette(rng, CAMO)
            skins = [replace(bg, lo=tuple(lo), hi=tuple(hi))]
            for o in scene.skins[1:]:
                sw, d = _relation(bg, o) if coupled else (False, 0.0)
                a, b = ((hi, lo) if sw else (lo, hi)) if coupled else draw_palette(rng, CAMO)
                skins.append(replace(o, lo=tuple(a + d), hi=tuple(b + d)))
            new = replace(scene, skins=tuple(skins))
        out.append(render_antialiased(new).astype(np.float32) / 255)
    return np.stack(out)


def best_stack_cluster(stack: np.ndarray, box: tuple[int, int, int, int], gt: np.ndarray, k: int = 3,
                       standardize: bool = False) -> np.ndarray:
    """The one k-means cluster of the box's crop (grown by MARGIN) whose mask best matches gt, on a stack of
    renderings [n, H, W, 3] in [0, 1]: each pixel's n x 3 values, optionally standardised per pixel as
    `--normalize standardize` does. [H, W] bool."""
    x0, y0, x1, y1 = grown(box, MARGIN, gt.shape[0])
    crop = pixel_features(torch.from_numpy(stack[:, y0:y1, x0:x1]).permute(0, 3, 1, 2),
                          "standardize" if standardize else "raw")
    labels = kmeans(crop, min(k, len(crop)), seed=0)[0].reshape(y1 - y0, x1 - x0).numpy()
    best, best_iou = np.zeros_like(gt), -1.0
    for c in range(k):
        m = np.zeros_like(gt)
        m[y0:y1, x0:x1] = labels == c
        if (i := _iou(m, gt)) > best_iou:
            best, best_iou = m, i
    return best


def _boxes(inst: np.ndarray):
    """(exact mask, its box) per visible instance."""
    for i in range(1, inst.max() + 1):
        gt = inst == i
        if gt.any():
            ys, xs = np.nonzero(gt)
            yield gt, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def ideal_variants(world: str, size: int, scenes: int, n: int = 16) -> dict[str, float]:
    """The method's ceiling where the variants are exact: per-instance IoU of the best single k-means cluster of
    the n x RGB stack of `recoloured` renderings (exact boxes), raw and standardised; textured also with every
    surface its own palette ('free')."""
    rows: dict[str, list[float]] = {}
    for seed in range(EVAL_SEEDS, EVAL_SEEDS + scenes):
        _, inst, _ = render_seed(seed, size, world)
        stacks = {"ideal": recoloured(seed, size, n, world)}
        if world == "textured":
            stacks["free"] = recoloured(seed, size, n, world, coupled=False)
        for gt, box in _boxes(inst):
            for name, st in stacks.items():
                for std in (False, True):
                    rows.setdefault(name + ("_std" if std else ""), []).append(
                        _iou(best_stack_cluster(st, box, gt, standardize=std), gt))
    return {k: float(np.mean(v)) for k, v in rows.items()}


def hardness(world: str, size: int, scenes: int) -> dict[str, float]:
    """Mean per-instance IoU of each colour rule over `scenes` renderer scenes, and the instance count."""
    rows: dict[str, list[float]] = {"kmeans": [], "grabcut": [], "grabcut_empty": [], "box": []}
    for seed in range(EVAL_SEEDS, EVAL_SEEDS + scenes):
        img, inst, _ = render_seed(seed, size, world)
        for gt, box in _boxes(inst):
            whole = np.zeros_like(gt)
            whole[box[1]:box[3], box[0]:box[2]] = True
            gc = grabcut(img, np.array(box, dtype=np.float64))
            rows["grabcut_empty"].append(float(not gc.any()))
            rows["grabcut"].append(_iou(gc if gc.any() else whole, gt))
            rows["kmeans"].append(_iou(best_kmeans_cluster(img, box, gt), gt))
            rows["box"].append(_iou(whole, gt))
    ideal = ideal_variants(world, size, scenes)
    return {**{k: float(np.mean(v)) for k, v in rows.items()}, **ideal, "instances": len(rows["box"])}


def outlines_picture(world: str, size: int, path: str, n: int = 16, zoom: int = 4) -> None:
    """n renderer scenes (seeds EVAL_SEEDS+) side by side with the same scenes' exact outlines drawn, x zoom."""
    from PIL import Image
    from scipy import ndimage

    tiles = []
    for seed in range(EVAL_SEEDS, EVAL_SEEDS + n):
        img, inst, _ = render_seed(seed, size, world)
        big = img.repeat(zoom, 0).repeat(zoom, 1)
        ib = inst.repeat(zoom, 0).repeat(zoom, 1)
        edge = np.zeros(ib.shape, bool)
        for i in range(1, inst.max() + 1):
            m = ib == i
            edge |= m & ~ndimage.binary_erosion(m)
        drawn = big.copy()
        drawn[edge] = (255, 255, 255)
        tiles.append(np.concatenate([big, drawn], 0))
    pad = np.full((2 * size * zoom, 2, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for t in tiles for x in (t, pad)][:-1], 1)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--worlds", default="flat,textured")
    ap.add_argument("--no-write", action="store_true", help="print, do not rewrite BENCHMARKS.md")
    ap.add_argument("--picture", metavar="PNG", help="also draw 16 scenes of the last world with their exact outlines")
    args = ap.parse_args()
    worlds = args.worlds.split(",")
    if args.picture:
        outlines_picture(worlds[-1], args.size, args.picture)
    res = {w: hardness(w, args.size, args.scenes) for w in worlds}
    print(json.dumps(res))
    names = {"kmeans": f"k-means RGB in the box grown by {MARGIN}, k=3, best single cluster (colour's ceiling)",
             "grabcut": "GrabCut from the box (whole box where it returns nothing)",
             "grabcut_empty": "share of boxes where GrabCut returns nothing", "box": "the whole box",
             "ideal": "ideal variants: the same k-means on 16 re-colourings of the scene under the world's colour rule",
             "ideal_std": "the same, each pixel's 16 x 3 values standardised (`--normalize standardize`)",
             "free": "ideal variants if every surface drew its own palette",
             "free_std": "the same, standardised"}
    body = (f"Mean per-instance IoU against the exact masks on {args.scenes} renderer scenes per world at "
            f"{args.size} px (seeds {EVAL_SEEDS}+), exact boxes. The textured world's targets: k-means at most 0.70, "
            f"GrabCut at most 0.85.\n\n| rule | " + " | ".join(worlds) + " |\n|---|" + "---|" * len(worlds) + "\n")
    for key, name in names.items():
        body += f"| {name} | " + " | ".join(f"{res[w][key]:.3f}" if key in res[w] else "-" for w in worlds) + " |\n"
    body += "| instances | " + " | ".join(str(res[w]["instances"]) for w in worlds) + " |\n"
    if not args.no_write:
        write_section("world-hardness", f"The toy worlds: how far colour alone gets ({args.size} px)", body,
                      torch.device("cpu"))


if __name__ == "__main__":
    main()
