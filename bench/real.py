"""The paper's real-data column in miniature: held-out renderer scenes play real photos with exact masks.

    python -m bench.real [--images 60] [--size 32]

Each scene is labelled with `instseg label --gan toy-flat` (projection into W+, then style variants of the
projected latent) and with the single-image baselines on the same images and boxes (GrabCut, k-means on RGB,
k-means on the projected latent's activations). Scores: `instseg eval` against the renderer's exact
instance masks (whole image mIoU, trimap mIoU, mask AP), plus reconstruction PSNR and seconds per image.
Then ablations of ours over steps, loss, space and crossover. Scenes: seeds EVAL_SEEDS + 30000+ (no other
bench or choice uses them).
"""
from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import method_overrides, write_section
from bench.toy import EVAL_SEEDS
from instseg import coco
from instseg.config import LabelConfig, build_config, label_config
from instseg.evaluate import evaluate
from instseg.labeler import SURE, RefineTuning, label_images
from instseg.project import project
from instseg.toy.render import CLASSES, render_seed

FIRST = EVAL_SEEDS + 30_000
TUNING = EVAL_SEEDS + 50_000  # scenes for choosing defaults; FIRST's are looked at only with the chosen ones


_projections: dict = {}
_project = project  # the library's own: every row's projection goes through _cached_project


def _cached_project(G, targets, steps, lr, loss, space):
    """The projection of a batch, computed once per setting: the methods and crossovers share it."""
    key = (targets.numpy().tobytes(), steps, lr, loss, space)
    if key not in _projections:
        t = time.perf_counter()
        _projections[key] = (_project(G, targets, steps, lr, loss, space), time.perf_counter() - t)
    return _projections[key][0]


def projection_seconds(lcfg: LabelConfig) -> float:
    return sum(dt for (_, s, _, lo, sp), (_, dt) in _projections.items() if (s, lo, sp) == (lcfg.steps, lcfg.loss,
                                                                                          lcfg.space))


def degrade(img: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """A photo as cameras leave it: a small blur (sigma 0.5 px), Gaussian noise of 5/255, JPEG quality 75."""
    import io

    from PIL import ImageFilter

    im = Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.5))
    a = np.asarray(im).astype(np.float32) + rng.normal(0, 5, img.shape)
    buf = io.BytesIO()
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=75)
    return np.asarray(Image.open(buf).convert("RGB"))


def scenes(folder: Path, n: int, size: int, first: int = FIRST, degraded: bool = False, world: str = "flat") -> dict:
    """Write n scenes of `world` as PNGs (sorted names = id order) and return their exact COCO instances."""
    folder.mkdir(parents=True)
    images, anns = [], []
    for i, seed in enumerate(range(first, first + n)):
        img, inst, classes = render_seed(seed, size, world)
        if degraded:
            img = degrade(img, np.random.RandomState(seed))
        name = f"r{seed}.png"
        Image.fromarray(img).save(folder / name)
        images.append(coco.image_entry(i + 1, name, size, size, seed=seed))
        for j, cls in enumerate(classes):
            m = inst == j + 1
            if m.any():
                anns.append(coco.annotation(m, i + 1, cls + 1, 1.0))
    return coco.dataset(images, anns, list(CLASSES), "renderer scenes as real images")


def score(folder: Path, gt: dict, out: Path, overrides: dict, lcfg: LabelConfig, device: str,
          gan: str = "toy-flat") -> dict:
    overrides = dict(overrides)
    tuning = RefineTuning(sure=overrides.pop("_sure", SURE))  # the empty-box check's detector score (0: off)
    cfg = build_config(gan, {**method_overrides(overrides), "device": device}, photos=True)
    before = projection_seconds(lcfg)
    t = time.perf_counter()
    label_images([str(folder)], cfg, lcfg, out, tuning=tuning, project_fn=_cached_project)
    reused = projection_seconds(lcfg) if before else 0.0  # count it as if made here
    dt = (time.perf_counter() - t + reused) / len(gt["images"])
    pred = json.loads((out / "annotations.json").read_text())
    res = evaluate(pred, json.loads(json.dumps(gt)))
    res["psnr"] = float(np.mean([im["projection_psnr"] for im in pred["images"]]))
    res["s"], res["instances"] = dt, len(pred["annotations"])
    return res


def row(name: str, r: dict) -> str:
    return (f"| {name} | {r['miou']:.3f} | {r['iou_fg']:.3f} | {r['trimap_miou']:.3f} | {r['instance_miou']:.3f} | "
            f"{r['ap']:.3f} | {r['ap50']:.3f} | {r['instances']} | {r['psnr']:.1f} | {r['s']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--size", type=int, default=32, help="scene size (the generator's is 32; larger ones are fitted)")
    ap.add_argument("--degraded", action="store_true", help="blur, noise and JPEG the scenes first, as photos are")
    ap.add_argument("--tuning", action="store_true", help="tuning scenes (seeds TUNING+), for choosing defaults")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gan", default="toy-flat", choices=("toy-flat", "toy-textured"),
                    help="the toy generator; its world's renderer draws the scenes")
    ap.add_argument("--quick", action="store_true", help="ours and the baselines only, no ablations")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="run only the ablations whose name holds TEXT (repeatable)")
    args = ap.parse_args()
    torch.manual_seed(0)
    head = ["| setting | mIoU | IoU fg | trimap mIoU | instance mIoU | mask AP | AP50 | instances | PSNR dB | s/img |",
            "|---|" + "---:|" * 9]
    base = label_config({}, {}, args.gan)  # the preset's own photo settings
    gc = replace(base, refine="grabcut")  # the GrabCut refinement whatever the photo's size (auto: from 2x the frame)
    photo = build_config(args.gan, {}, photos=True)
    join = "the photo's pixels" if photo.join_features == "image" else photo.join_features
    methods = [(f"ours (the preset's: join {join} at {photo.join_weight:g}, cluster at the {base.cluster_at}'s size, "
                f"error scale {base.error_scale:g}, refine {base.refine})", {}, base),
               ("GrabCut on the photo, same boxes", {"method": "grabcut"}, base),
               ("k-means RGB on the photo, same boxes", {"method": "kmeans-rgb"}, base),
               ("k-means on the projected latent's activations", {"method": "activations"}, base)]
    world = args.gan.removeprefix("toy-")
    preset = build_config(args.gan, {})
    variants_only = {"join_features": preset.join_features, "join_weight": preset.join_weight}  # the samples' join
    other = "photo" if base.cluster_at == "frame" else "frame"
    ablations = [(f"ours, cluster at {other}", {}, replace(base, cluster_at=other)),
                 (f"ours, cluster at {other}, refine none", {}, replace(base, cluster_at=other, refine="none")),
                 ("ours, refine grabcut", {}, gc),
                 ("ours, refine none", {}, replace(base, refine="none")),
                 ("ours, refine grabcut without the empty-box check", {"_sure": 0.0}, gc),
                 ("ours, the samples' join (b32.conv1 at 8), refine none", variants_only, replace(base, refine="none")),
                 ("ours, the samples' join (b32.conv1 at 8), refine grabcut", variants_only, gc)]
    ablations += [(f"ours, refine grabcut, empty-box check at score {t}", {"_sure": t}, gc) for t in (0.3, 0.4, 0.6, 0.7)]
    ablations += [(f"ours, join image at weight {w}", {"join_weight": w}, base) for w in (2, 4, 8, 32, 64)]
    ablations += [(f"ours, error scale {e}", {}, replace(base, error_scale=e)) for e in (0, 0.1, 0.4)]
    ablations += [(f"ours, steps {s}", {}, replace(base, steps=s)) for s in (300, 600)]
    ablations += [("ours, loss multiscale", {}, replace(base, loss="multiscale")),
                  ("ours, space w (one w for all layers)", {}, replace(base, space="w"))]
    ablations += [(f"ours, mix_from {m}", {"mix_from": m}, base) for m in ((2,), (3,), (5, 6))]
    if args.only:
        ablations = [a for a in ablations if any(t in a[0] for t in args.only)]
    first = TUNING if args.tuning else FIRST
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scenes"
        gt = scenes(folder, args.images, args.size, first, args.degraded, world)
        rows = list(head)
        for k, (name, over, lcfg) in enumerate(methods + ([] if args.quick else [("", None, None)] + ablations)):
            if over is None:
                rows += ["", "Ablations of ours (same scenes):", ""] + head
                continue
            rows.append(row(name, score(folder, gt, Path(tmp) / f"o{k}", over, lcfg, args.device, args.gan)))
            print(rows[-1], flush=True)
    kind = ("degraded (blur 0.5 px, noise 5/255, JPEG 75) " if args.degraded else "") + \
        ("tuning" if args.tuning else "held-out")
    body = (f"{args.images} {kind} renderer scenes of the {world} world at {args.size}px (seeds {first}+) labelled as "
            f"real photos with `instseg label --gan {args.gan}` (fit crop, {base.steps} steps, lr {base.lr}, {base.loss} "
            "loss, W+; boxes from the preset's detector on each fitted photo); exact instance masks as reference. "
            "GrabCut and k-means RGB run on the photo itself at its own size, on the same boxes; every row projects "
            "(its PSNR is the projection's; s/img counts the projection, which rows of one setting share).\n\n"
            + "\n".join(rows))
    dev = torch.device(args.device)
    name = f"real-images-{dev.type}-{args.size}px" + ("" if world == "flat" else f"-{world}") + ("-degraded" if args.degraded else "") + \
        ("-tuning" if args.tuning else "") + "".join("-" + re.sub(r"\W+", "-", t).strip("-") for t in args.only)
    write_section(name, f"Real photos: {kind} {world} scenes at {args.size} px ({dev.type})", body, dev)


if __name__ == "__main__":
    main()
