"""The toy world's own figures: the toy detector's mAP on held-out scenes and how well the GAN's label
channels agree with it, plus the sample sheet docs/toy-world.png. The GAN's distance from the renderer
(FD-YOLO, detection share, class shares) is bench.toy_target's; the helpers for it live here.

    python -m bench.toy [--gan toy-flat] [--scenes 500] [--samples 500]

The world (classic, flat or textured) and size come from the generator's metadata; the detector is the
preset's packaged YOLOv8n-seg. A generator with label channels adds their row to the sheet.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import linalg

from bench.common import ROOT, write_section
from detectors.yolo import YoloDetector, packaged_weights
from instseg.checkpoints import load_generator
from instseg.config import build_config
from instseg.evaluate import instance_scores
from instseg.generator import to_uint8
from instseg.sampling import mix_ws, set_truncation_centres, variant_rng, z_from_seed
from instseg.pseudo_gt import pseudo_gt
from instseg.toy.dataset import write_scenes
from instseg.toy.render import class_coverage, render_antialiased, render_seed, sample_scene
from instseg.zoo import resolve_gan

EVAL_SEEDS = 3_000_000  # held-out renderer scenes (training used 1_000_000+ and 2_000_000+)
SECOND_SEEDS = 200_000  # GAN samples: the figures' first set is 100_000+; neither was used for tuning


def gan_images(G, seeds, psi: float = 0.7, batch: int = 64) -> np.ndarray:
    return gan_samples(G, seeds, psi, batch)[0]


def gan_samples(G, seeds, psi: float = 0.7, batch: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """GAN samples of `seeds` as uint8 [n, H, W, 3], with their label channels [n, L, H, W] (None without)."""
    images, labels = [], []
    want = ("labels",) if G.cfg.label_channels else ()
    with torch.no_grad():
        for i in range(0, len(seeds), batch):
            z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds[i:i + batch]])
            img, f = G.synthesis(G.mapping(z, psi), noise_mode="const", features=want)
            images.append(to_uint8(img))
            labels += [f["labels"].numpy()] if want else []
    return np.concatenate(images), np.concatenate(labels) if labels else None


SPPF, P4 = 9, 18  # the judge's layers: the backbone's last (FD-YOLO's) and the neck's stride-16 output


def judge_features(det: YoloDetector, images: np.ndarray, layers: tuple[int, ...] = (SPPF,)) -> dict[int, np.ndarray]:
    """Globally pooled features of the toy YOLO's `layers`, from one pass: {layer: [n, C]}."""
    net = det.model.model.model
    feats: dict[int, list] = {k: [] for k in layers}
    hooks = [net[k].register_forward_hook(lambda m, i, o, k=k: feats[k].append(o.mean(dim=(2, 3)).cpu()))
             for k in layers]
    try:
        with torch.no_grad():
            for i in range(0, len(images), 128):
                x = torch.from_numpy(images[i:i + 128]).permute(0, 3, 1, 2).float() / 255
                if x.shape[-1] != det.train_imgsz:  # the scale the detector was trained at (as its predict uses)
                    x = torch.nn.functional.interpolate(x, size=det.train_imgsz, mode="bilinear", align_corners=False)
                det.model.model(x)
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in feats.items()}


def yolo_features(det: YoloDetector, images: np.ndarray) -> np.ndarray:
    """Globally pooled SPPF features of the toy YOLO's backbone (FD-YOLO's): [n, C]."""
    return judge_features(det, images)[SPPF]


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


# The judge's pooled SPPF features are heavy-tailed: scenes with no object in the upper half of the image (one low
# object, or none) lie 50-1000x the median squared distance from the median, and FD-YOLO is mostly their share.
# The neck's P4 output has no such tail (99th percentile 10x the median, against 4,000x for SPPF).
TAIL_FACTOR = 50.0


def tail_share(ref: np.ndarray, feats: np.ndarray) -> float:
    """Share of `feats` whose squared distance from `ref`'s median is over TAIL_FACTOR times `ref`'s median one."""
    med = np.median(ref, 0)
    scale = np.median(((ref - med) ** 2).sum(1))
    return float(np.mean(((feats - med) ** 2).sum(1) > TAIL_FACTOR * scale))


def label_rgb(labels: torch.Tensor) -> np.ndarray:
    """Label channels [n, L, H, W] in [-1, 1] as colour pictures: class 1 red, 2 green, 3 blue."""
    return to_uint8(labels[:, :3].clamp(-1, 1))


def sheet(G, path: Path, world: str, c: int) -> None:
    """Rows: renderer scenes; GAN samples; their label channels (if any); style variants of two samples
    at the preset's crossover, each with its labels when the generator draws them."""
    scale, pad = 192 // G.cfg.resolution, 4
    size = G.cfg.resolution
    scenes = [render_seed(s, size, world)[0] for s in range(EVAL_SEEDS, EVAL_SEEDS + 8)]
    samples = list(gan_images(G, list(range(8))))
    rows, names = [scenes, samples], [f"renderer seeds {EVAL_SEEDS}..+7", "GAN samples, seeds 0-7 (psi 0.7)"]
    has_labels = bool(G.cfg.label_channels)
    with torch.no_grad():
        if has_labels:
            ws = torch.cat([G.mapping(z_from_seed(s, G.z_dim), 0.7) for s in range(8)])
            rows.append(list(label_rgb(G.synthesis(ws, features=("labels",))[1]["labels"])))
            names.append("their label channels")
        for s in (0, 1):
            ws = G.mapping(z_from_seed(s, G.z_dim), 0.7)
            img, f = G.synthesis(mix_ws(G, ws, 7, (c,), variant_rng(s), 0.7), features=("labels",) if has_labels else ())
            rows.append([samples[s]] + list(to_uint8(img)))
            names.append(f"seed {s} | 7 variants, c = {c}")
            if has_labels:
                src = G.synthesis(ws, features=("labels",))[1]["labels"]
                rows.append(list(label_rgb(torch.cat([src, f["labels"]]))))
                names.append(f"seed {s} | the variants' labels")
    tile = size * scale
    W, H = 8 * (tile + pad) + 260, len(rows) * (tile + pad)
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (imgs, label) in enumerate(zip(rows, names)):
        draw.text((4, r * (tile + pad) + tile // 2), label, fill="black")
        for c, im in enumerate(imgs):
            canvas.paste(Image.fromarray(im).resize((tile, tile), Image.NEAREST), (260 + c * (tile + pad), r * (tile + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _labelled_samples(G, det: YoloDetector, seeds: list[int], psi: float, min_area: int = 1):
    """Per seed: the toy detector's (detections, masks) on the GAN sample and the sample's own label instances."""
    from instseg.toy.labels import label_masks

    for s in seeds:
        with torch.no_grad():
            img, f = G.synthesis(G.mapping(z_from_seed(s, G.z_dim), psi), noise_mode="const", features=("labels",))
        d, masks = det.segment([to_uint8(img)[0]])[0]
        yield d, masks, label_masks(f["labels"][0].numpy(), min_area)


def label_agreement(G, det: YoloDetector, seeds: list[int], psi: float) -> tuple[float, float, int]:
    """The toy detector's confident masks (conf >= 0.5) on GAN samples against the sample's own label
    instances: (mean IoU with the best-matching label instance, share whose best match has the same
    class, number of masks)."""
    ious, same = [], []
    names = list(det.class_names)
    for d, masks, labs in _labelled_samples(G, det, seeds, psi):
        for lab, sc, m in zip(d.labels, d.scores, masks):
            if sc < 0.5:
                continue
            best, cls = 0.0, -1
            for c, lm in labs:
                iou = (m & lm).sum() / max((m | lm).sum(), 1)
                if iou > best:
                    best, cls = iou, c
            ious.append(best)
            same.append(cls == names.index(lab))
    return float(np.mean(ious)) if ious else float("nan"), float(np.mean(same)) if same else float("nan"), len(ious)


def label_confusion(G, det: YoloDetector, seeds: list[int], psi: float = 1.0, min_iou: float = 0.3,
                    min_area: int = 10) -> np.ndarray:
    """Which class the judge sees where the generator labels an instance: [label class, judge class + 'none'] counts.

    Each label instance (4-connected, per class) goes to the class of the confident (conf >= 0.5) detection whose
    mask overlaps it best, or to 'none' below `min_iou`. Label specks under `min_area` pixels are left out (the
    renderer's smallest object, a triangle at 32 px, covers about 38)."""
    return _confusion(_labelled_samples(G, det, seeds, psi, min_area), list(det.class_names), min_iou)


def renderer_confusion(det: YoloDetector, seeds: list[int], min_iou: float = 0.3, min_area: int = 10,
                       world: str = "flat") -> np.ndarray:
    """label_confusion's matrix for renderer scenes (32 px), their labels drawn the way a generator's are read:
    each class's coverage over one half, cut into 4-connected instances. The judge's own miss rate."""
    from instseg.toy.labels import label_masks

    def pairs():
        for s in seeds:
            sc = sample_scene(s, 32, world=world)
            d, masks = det.segment([render_antialiased(sc)])[0]
            yield d, masks, label_masks(class_coverage(sc) - 0.5, min_area)

    return _confusion(pairs(), list(det.class_names), min_iou)


def _confusion(samples, names: list[str], min_iou: float) -> np.ndarray:
    counts = np.zeros((len(names), len(names) + 1), dtype=int)
    for d, masks, labs in samples:
        found = [(names.index(lab), m) for lab, sc, m in zip(d.labels, d.scores, masks) if sc >= 0.5]
        for c, lm in labs:
            ious = [((m & lm).sum() / max((m | lm).sum(), 1), k) for k, m in found]
            best, k = max(ious, default=(0.0, len(names)))
            counts[c, k if best >= min_iou else len(names)] += 1
    return counts


def gan_side(G, det: YoloDetector, seeds: list[int], psi: float, f_real: np.ndarray, real_share: np.ndarray
             ) -> tuple[float, float, float]:
    """GAN samples of `seeds` against renderer features and class shares: (share with a detection at
    conf >= 0.5, largest class-share gap in points, FD-YOLO)."""
    samples = gan_images(G, seeds, psi)
    dets = det(list(samples))
    confident = float(np.mean([len(d.scores) and d.scores.max() >= 0.5 for d in dets]))
    gap = 100 * float(np.abs(class_shares(dets, list(det.class_names)) - real_share).max())
    return confident, gap, frechet(f_real, yolo_features(det, samples))


def class_shares(dets, names: list[str], conf: float = 0.5) -> np.ndarray:
    """Share of each class among the detections at `conf` or more."""
    counts = np.zeros(len(names))
    for d in dets:
        for lab, sc in zip(d.labels, d.scores):
            if sc >= conf:
                counts[names.index(lab)] += 1
    return counts / max(counts.sum(), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gan", default="toy-flat", help="a packaged toy preset")
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--samples", type=int, default=500, help="GAN samples whose label channels meet the detector")
    ap.add_argument("--psi", type=float, default=0.7, help="truncation of the GAN samples scored")
    args = ap.parse_args()
    gan = resolve_gan(args.gan).path
    shipped = build_config(args.gan, {})
    centres = shipped.truncation_centres
    G = set_truncation_centres(load_generator(gan), centres)  # sample as `instseg run` does
    meta = torch.load(gan, weights_only=True)["meta"]
    world, size = meta.get("world", "classic"), G.cfg.resolution
    det = YoloDetector(str(packaged_weights(args.gan)), conf=0.25, max_det=50)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = write_scenes(range(EVAL_SEEDS, EVAL_SEEDS + args.scenes), Path(tmp) / "scenes", size, world=world)
        gt = json.loads(gt_path.read_text())
        pred = pseudo_gt(Path(tmp) / "scenes", YoloDetector(str(packaged_weights(args.gan)), conf=0.001, max_det=50))  # AP: standard per-class NMS
    segm = instance_scores(pred, gt, "segm")
    bbox = instance_scores(pred, gt, "bbox")
    if args.psi == 0.7:
        sheet(G, ROOT / "docs" / ("toy-world.png" if args.gan == "toy-flat" else f"{args.gan}-world.png"), world,
              min(shipped.mix_from))
    rows = [
        "| figure | value |", "|---|---:|",
        f"| toy detector mask AP / AP50 (held-out renderer scenes {EVAL_SEEDS}+, n={args.scenes}) | "
        f"{segm['ap']:.3f} / {segm['ap50']:.3f} |",
        f"| toy detector box AP / AP50 (same scenes) | {bbox['ap']:.3f} / {bbox['ap50']:.3f} |",
        f"| GAN training | {meta.get('iterations')} iterations, {meta.get('images_shown')} images shown |",
    ]
    if G.cfg.label_channels:
        a_iou, a_cls, a_n = label_agreement(G, det, list(range(100_000, 100_000 + args.samples)), args.psi)
        rows.append(f"| label channels vs the detector's confident masks on GAN samples (conf >= 0.5, n={a_n} masks): "
                    f"mean IoU with the best-matching label instance / same class | {a_iou:.3f} / {a_cls:.1%} |")
    trunc = f", truncation toward the nearest of {centres} W centres" if centres > 1 else ""
    body = (f"`{args.gan}` ({world} world, {size}px{trunc}; samples at psi {args.psi}, seeds 100000+). How far the "
            "generator's samples are from the renderer's scenes (FD-YOLO, the share holding an object, class shares) "
            "is `bench.toy_target`'s (section `toy-target`). Seeds here were never used for tuning.\n\n"
            + "\n".join(rows))
    tag = "" if args.psi == 0.7 else f"-psi{args.psi}"
    write_section(f"toy-world-{args.gan}{tag}", f"The toy world: {args.gan}, psi {args.psi}", body, torch.device("cpu"))


if __name__ == "__main__":
    main()
