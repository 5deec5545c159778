"""Mask quality of our method and the baselines on the same toy images and boxes.

    python -m bench.accuracy accuracy [--gan toy-flat] [--seeds 20000-20199]    # every method, held-out seeds
    python -m bench.accuracy ablations [--gan toy-flat] [--seeds 10000-10099]   # our settings, tuning seeds
    python -m bench.accuracy label-boxes [--gan toy-flat] [--seeds 20000-20199] # boxes of the exact labels

References: (1) `labels`, the generator's own label channels (exact: `instseg toy labels`), when it
draws them; (2) `yolo`, the toy YOLOv8n-seg's masks on the same GAN images (pseudo ground truth, as
the paper uses DeepLabV3). Boxes: the toy YOLOv8n-seg's detections, identical for every method.
Tuning seeds (10000+) choose the defaults; the accuracy table uses seeds 20000+ that no choice looked at.
`label-boxes` gives every method the tight boxes of the exact label instances instead, so the
masks are scored without the detector's misses and loose boxes.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import method_overrides, write_section
from detectors import Detections
from detectors.yolo import YoloDetector, packaged_weights
from instseg.checkpoints import load_generator, native_meta
from instseg.config import build_config, parse_seeds
from instseg.evaluate import evaluate
from instseg.generator import to_uint8
from instseg.pseudo_gt import pseudo_gt
from instseg.runner import run
from instseg.sampling import set_truncation_centres, source_images
from instseg.toy.labels import sample_labels
from instseg.config import MASK_SCORES
from instseg.instances import RULES as INSTANCE_RULES
from instseg.segment import METHODS as SEGMENT_METHODS
from instseg.zoo import resolve_gan

COLS = ("iou_fg", "iou_bg", "miou", "trimap_miou", "instance_miou", "ap", "ap50")
METHODS = tuple(SEGMENT_METHODS)  # the dispatch table's names


def references(gan: str, run_dir: Path, cfg) -> dict[str, dict]:
    """The reference masks of a run's images: the label channels (if any), then the YOLO pseudo ground truth."""
    path = resolve_gan(gan).path
    G = set_truncation_centres(load_generator(path), cfg.truncation_centres)
    refs = {}
    if G.cfg.label_channels:
        names = native_meta(path).get("label_names")
        refs["labels"] = sample_labels(G, cfg.seeds, names, cfg.truncation_psi)
    seg = YoloDetector(str(packaged_weights(gan)), conf=0.25, max_det=50, agnostic_nms=True)
    refs["yolo"] = pseudo_gt(run_dir, seg)
    return refs


class LabelBoxes:
    """A stand-in detector that returns the tight boxes of each image's exact label instances
    (score 1). It finds an image's seed by the nearest source image, so any chunking works."""

    def __init__(self, G, seeds: tuple[int, ...], labels: dict, truncation_psi: float):
        self.seeds = list(seeds)
        self.images = to_uint8(source_images(G, self.seeds, truncation_psi, torch.device("cpu"), 16)).astype(np.int16)
        names = {c["id"]: c["name"] for c in labels["categories"]}
        self.class_names = [c["name"] for c in labels["categories"]]
        self.found: dict[int, Detections] = {}
        by_image: dict[int, list[dict]] = {}
        for a in labels["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        seed_of = {im["id"]: im["seed"] for im in labels["images"]}
        for iid, seed in seed_of.items():
            anns = by_image.get(iid, [])
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32).reshape(-1, 4)
            self.found[seed] = Detections(boxes, np.ones(len(anns), np.float32), [names[a["category_id"]] for a in anns])

    def __call__(self, images):
        out = []
        for img in images:
            i = int(np.abs(self.images - img.astype(np.int16)).reshape(len(self.seeds), -1).sum(1).argmin())
            out.append(self.found[self.seeds[i]])
        return out


def image_key(cfg) -> tuple:
    """What a run's images depend on besides the generator and seeds."""
    return cfg.truncation_psi, cfg.truncation_centres


def refined(pred: dict, images: Path, cfg, refine: str) -> dict:
    """A run's annotations with each image's masks refined on the sample itself, as `instseg label` refines a
    photo's (labeler.refine_objects: moved to the image's edges, then merged again); other fields kept."""
    from PIL import Image

    from instseg.coco import annotation, decode_rle
    from instseg.labeler import refine_objects
    from instseg.segment import Instance

    by_image: dict[int, list] = {}
    for a in pred["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    anns = []
    for im in pred["images"]:
        rgb = np.asarray(Image.open(images / im["file_name"]).convert("RGB"))
        own = by_image.get(im["id"], [])
        # the label carries each annotation's index; the merge ranks by det score x mask confidence
        objects = [Instance(np.asarray(a["det_box"]), str(i), a["det_score"], decode_rle(a["segmentation"]).astype(bool),
                            a["mask_confidence"]) for i, a in enumerate(own)]
        for o in refine_objects(cfg, refine, rgb, objects):
            kept = {k: v for k, v in own[int(o.label)].items() if k not in ("id", "segmentation", "area", "bbox")}
            anns.append(annotation(o.mask, **kept))
    return {**pred, "annotations": [{**a, "id": j + 1} for j, a in enumerate(anns)]}


def measure(gan: str, overrides: dict, seeds: tuple[int, ...], tmp: Path, refs: dict, detector=None) -> dict:
    """{reference name: scores} for one setting; `refs` maps image_key -> {reference name: COCO}, filled on
    first use of each (a row that changes the truncation draws other images, with other references).
    `_refine` in the overrides refines every mask on its sample after the run (`refined`)."""
    overrides = dict(overrides)
    refine = overrides.pop("_refine", "none")
    cfg = build_config(gan, {**method_overrides(overrides), "seeds": seeds})
    out = tmp / f"run{len(list(tmp.iterdir()))}"
    t = time.perf_counter()
    run(cfg, out, detector=detector)
    pred = json.loads((out / "annotations.json").read_text())
    if refine != "none":
        pred = refined(pred, out / "images", cfg, refine)
    dt = (time.perf_counter() - t) / len(seeds)
    if image_key(cfg) not in refs:
        refs[image_key(cfg)] = references(gan, out, cfg)
    res = {}
    for name, ref in refs[image_key(cfg)].items():
        r = evaluate(pred, ref)
        r["s_per_image"], r["instances"] = dt, len(pred["annotations"])
        res[name] = r
    return res


def row(name: str, res: dict) -> str:
    cells = []
    for ref, r in res.items():
        cells += [f"{r[c]:.3f}" for c in (COLS if ref == "labels" or len(res) == 1 else ("miou", "ap"))]
    r = next(iter(res.values()))
    return f"| {name} | " + " | ".join(cells) + f" | {r['instances']} | {r['s_per_image']:.3f} |"


def header(refs: list[str]) -> list[str]:
    cols, first = [], True
    for ref in refs:
        names = (("IoU fg", "IoU bg", "mIoU", "trimap mIoU", "instance mIoU", "mask AP", "AP50") if first
                 else ("mIoU", "mask AP"))
        cols += [f"{n} ({ref})" for n in names]
        first = False
    return ["| setting | " + " | ".join(cols) + " | instances | s/img |", "|---|" + "---:|" * (len(cols) + 2)]


def ref_names(gan: str) -> list[str]:
    return (["labels"] if load_generator(resolve_gan(gan).path).cfg.label_channels else []) + ["yolo"]


def judge(gan: str) -> str:
    """The detector trained on renderer scenes only: the judge of the GAN side and the pseudo ground truth."""
    return f"yolo:{gan}"


def extra_settings(gan: str) -> list[tuple[str, dict]]:
    """The strongest baseline setting on the tuning seeds (ablations-normalize), ours on its variant stack alone,
    and, when the preset's detector is not the renderer-trained one, ours and that baseline with the latter's boxes."""
    extra = [("activations, normalize=standardize", {"method": "activations", "normalize": "standardize"})]
    cfg = build_config(gan, {})
    if cfg.join_features != "none":
        extra.append(("variants, join_features=none (the variant stack alone)", {"join_features": "none"}))
    if cfg.detector != judge(gan):
        extra += [(f"variants (ours), detector={judge(gan)}", {"detector": judge(gan)}),
                  (f"activations, normalize=standardize, detector={judge(gan)}",
                   {"method": "activations", "normalize": "standardize", "detector": judge(gan)})]
    return extra


def instance_share(gan: str, seeds: tuple[int, ...], tmp: Path, detector: str, conf: float = 0.5) -> float:
    """The share of images that `instseg run --conf 0.5` gives at least one instance (ours, that detector)."""
    out = tmp / f"share{len(list(tmp.iterdir()))}"
    run(build_config(gan, {"seeds": seeds, "conf": conf, "detector": detector}), out)
    anns = json.loads((out / "annotations.json").read_text())["annotations"]
    return len({a["image_id"] for a in anns}) / len(seeds)


def accuracy(gan: str, seeds: tuple[int, ...]) -> str:
    rows = header(ref_names(gan))
    with tempfile.TemporaryDirectory() as tmp:
        refs: dict = {}
        for m in METHODS:
            rows.append(row(f"{m}{' (ours)' if m == 'variants' else ''}, per instance", measure(gan, {"method": m}, seeds, Path(tmp), refs)))
            print(rows[-1], flush=True)
        for name, ov in extra_settings(gan):
            rows.append(row(f"{name}, per instance", measure(gan, ov, seeds, Path(tmp), refs)))
            print(rows[-1], flush=True)
        for m in METHODS:  # whole image: one fg/bg mask per image (AP is per class, so it means nothing here)
            r = measure(gan, {"method": m, "detector": "none"}, seeds, Path(tmp), refs)
            rows.append(row(f"{m}, whole image fg/bg", r))
            print(rows[-1], flush=True)
        n_gt = {k: len(v["annotations"]) for k, v in refs[image_key(build_config(gan, {}))].items()}
        shipped = build_config(gan, {}).detector
        shares = {d: instance_share(gan, seeds, Path(tmp), d) for d in dict.fromkeys([shipped, judge(gan)])}
    share_line = "; ".join(f"{v:.1%} with `--detector {d}`" for d, v in shares.items())
    return (f"{gan}, {len(seeds)} held-out seeds ({seeds[0]}-{seeds[-1]}), shipped defaults, boxes from `{shipped}` "
            f"(conf 0.25). References: " + ", ".join(f"{k} ({v} instances)" for k, v in n_gt.items())
            + f". `labels` = the generator's own label channels (exact), `yolo` = the masks of `{judge(gan)}` (trained "
            "on renderer scenes only; pseudo ground truth). IoU over all pixels of all images (fg = union of "
            "instances); AP = COCO mask AP (not meaningful for the whole-image rows, whose one category is "
            "'foreground').\n\n" + "\n".join(rows)
            + f"\n\nImages that `instseg run --conf 0.5` (ours) gives at least one instance: {share_line}.")


def label_boxes(gan: str, seeds: tuple[int, ...]) -> str:
    cfg = build_config(gan, {"seeds": seeds})
    G = set_truncation_centres(load_generator(resolve_gan(gan).path), cfg.truncation_centres)
    if not G.cfg.label_channels:
        raise SystemExit(f"{gan} draws no label channels")
    labels = sample_labels(G, seeds, native_meta(resolve_gan(gan).path).get("label_names"), cfg.truncation_psi)
    refs = {image_key(cfg): {"labels": labels}}
    boxes = LabelBoxes(G, seeds, labels, cfg.truncation_psi)
    rows = header(["labels"])
    settings = [(f"{m}{' (ours)' if m == 'variants' else ''}", {"method": m}) for m in METHODS] + extra_settings(gan)
    # the number of clusters per box depends on how tight the boxes are: the other choice of two and three
    alt = 2 if (cfg.box_k or cfg.k) == 3 else 3
    settings += [(f"variants (ours), box_k={alt}", {"box_k": alt}),
                 (f"activations, normalize=standardize, box_k={alt}", {"method": "activations", "normalize": "standardize",
                                                                      "box_k": alt})]
    with tempfile.TemporaryDirectory() as tmp:
        for name, ov in settings:
            rows.append(row(f"{name}, label boxes", measure(gan, ov, seeds, Path(tmp), refs, detector=boxes)))
            print(rows[-1], flush=True)
    return (f"{gan}, {len(seeds)} held-out seeds ({seeds[0]}-{seeds[-1]}), shipped defaults; every method gets the "
            f"tight boxes of the exact label instances ({len(labels['annotations'])}, score 1) instead of the "
            "detector's, so misses and loose boxes are out of the scores. Reference: the label channels.\n\n"
            + "\n".join(rows))


def ablation_list(gan: str) -> list[tuple[str, dict]]:
    G = load_generator(resolve_gan(gan).path)
    defaults = build_config(gan, {}).to_dict()
    feats = [f for f in G.feature_names if f.endswith(".conv1")][-2:]
    return [
        ("shipped defaults", {}),
        *[(f"N={n}", {"variants": n}) for n in (4, 8, 16, 64)],
        *[(f"mix_from={c}", {"mix_from": (c,)}) for c in range(2, G.num_ws)],
        *[(f"k={k}", {"k": k}) for k in (2, 4, 5) if k != defaults["k"]],
        *[(f"normalize={n}", {"normalize": n}) for n in ("raw", "standardize", "l2") if n != defaults["normalize"]],
        *[(f"features={f}", {"features": f}) for f in feats],
        *[(f"join_features={f}", {"join_features": f}) for f in ["none", *feats, feats[-1].replace("conv1", "conv0")]
          if f != defaults["join_features"]],
        *[(f"join_weight={w:g}", {"join_weight": w}) for w in (1.0, 2.0, 4.0, 8.0, 16.0)
          if defaults["join_features"] != "none" and w != defaults["join_weight"]],
        *[(f"join_features=image (the source's own pixels, raw), join_weight={w:g}",
           {"join_features": "image", "join_weight": w}) for w in (4.0, 8.0)],
        ("repeats=3 (vote)", {"repeats": 3}),
        # what helps photos, on samples: each mask refined on the sample as `instseg label --refine` refines a
        # photo's (GrabCut seeded from it), for ours and the strongest baseline (--only refine)
        ("refine=grabcut on the sample (as label refines photos)", {"_refine": "grabcut"}),
        *[(f"activations baseline, normalize=standardize, refine={r}",
           {"method": "activations", "normalize": "standardize", "_refine": r}) for r in ("none", "grabcut")],
        *[(f"detector={d}", {"detector": d}) for d in ("yolo:toy-flat", "yolo:toy-flat-gan")
          if d != defaults["detector"] and packaged_weights(d[5:])],
        *[(f"truncation_centres={c}", {"truncation_centres": c}) for c in (1, 64, 256)
          if c != defaults["truncation_centres"]],
        *[(f"box_k={b}", {"box_k": b}) for b in (2, 3, 4) if b != (defaults["box_k"] or defaults["k"])],
        *[(f"box_margin={m}", {"box_margin": m}) for m in (0.15, 0.3, 0.5, 0.75) if m != defaults["box_margin"]],
        *[(f"clip_margin={m:g}{' (no cut)' if m >= defaults['box_margin'] else ''}", {"clip_margin": m})
          for m in (0.0, 0.05, 0.1, 0.2, 2.0) if m != defaults["clip_margin"]],
        *[(f"instance_rule={r}", {"instance_rule": r}) for r in INSTANCE_RULES
          if r != defaults["instance_rule"]],
        *[(f"mask_score={m}", {"mask_score": m}) for m in MASK_SCORES if m != defaults["mask_score"]],
        # the mask score applies to every k-means method: the strongest baseline with each (run with --only mask_score)
        *[(f"activations baseline, normalize=standardize, mask_score={m}",
           {"method": "activations", "normalize": "standardize", "mask_score": m}) for m in MASK_SCORES],
        # normalisation with the activation-layer stack, against the activations baseline given the same
        # normalisation (fair: it helps both); run with --only normalize
        *[(f"features={feats[-1]} + normalize={n}", {"features": feats[-1], "normalize": n}) for n in ("standardize", "l2")],
        *[(f"activations baseline, normalize={n}", {"method": "activations", "normalize": n})
          for n in ("raw", "standardize", "l2")],
        # the single-setting winners joined (run with --only combined; skipped otherwise)
        ("combined: k=2 + l2", {"k": 2, "normalize": "l2"}),
        ("combined: k=2 + standardize", {"k": 2, "normalize": "standardize"}),
        ("combined: k=2 + l2 + N=64", {"k": 2, "normalize": "l2", "variants": 64}),
        ("combined: k=2 + l2 + mix_from=4", {"k": 2, "normalize": "l2", "mix_from": (4,)}),
        ("combined: mix_from=6,7", {"mix_from": (6, 7)}),
        ("combined: mix_from=7 + standardize", {"mix_from": (7,), "normalize": "standardize"}),
        ("combined: mix_from=7 + k=4", {"mix_from": (7,), "k": 4}),
        ("combined: mix_from=7 + instance_rule=center", {"mix_from": (7,), "instance_rule": "center"}),
        ("combined: mix_from=7 + N=16", {"mix_from": (7,), "variants": 16}),
    ]


def ablations(gan: str, seeds: tuple[int, ...], only: str | None) -> str:
    rows = header(ref_names(gan))
    with tempfile.TemporaryDirectory() as tmp:
        refs: dict = {}
        for name, ov in ablation_list(gan):
            if name != "shipped defaults" and ((only and only not in name) or (not only and ("combined:" in name or " + " in name
                                                                                            or "baseline" in name))):
                continue
            rows.append(row(name, measure(gan, ov, seeds, Path(tmp), refs)))
            print(rows[-1], flush=True)
    return (f"{gan}, tuning seeds {seeds[0]}-{seeds[-1]}; each row changes one setting of the shipped defaults. "
            "References and boxes as in the accuracy table.\n\n" + "\n".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("table", choices=["accuracy", "ablations", "label-boxes"])
    ap.add_argument("--gan", default="toy-flat", help="a packaged toy preset")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--only", default=None, help="ablations whose name contains this")
    args = ap.parse_args()
    tag = "" if args.gan == "toy-flat" else f"-{args.gan}"
    if args.table == "accuracy":
        seeds = parse_seeds(args.seeds or "20000-20199")
        write_section(f"accuracy{tag}", f"Accuracy: our method vs. baselines ({args.gan})", accuracy(args.gan, seeds),
                      torch.device("cpu"))
    elif args.table == "label-boxes":
        seeds = parse_seeds(args.seeds or "20000-20199")
        write_section(f"accuracy-label-boxes{tag}", f"Accuracy with the exact labels' boxes ({args.gan})",
                      label_boxes(args.gan, seeds), torch.device("cpu"))
    else:
        seeds = parse_seeds(args.seeds or "10000-10099")
        name = f"ablations{tag}" + (f"-{args.only.replace(' ', '-')}" if args.only else "")
        title = f"Ablations of our method ({args.gan}, tuning seeds)" + (f": rows matching '{args.only}'" if args.only else "")
        write_section(name, title, ablations(args.gan, seeds, args.only), torch.device("cpu"))


if __name__ == "__main__":
    main()
