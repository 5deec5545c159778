"""The dataset card: a README.md in every run folder, rewritten each time annotations.json is."""
from __future__ import annotations

from typing import Any

# Settings of the method worth a reader's eye (the rest are in run.json).
_SETTINGS = ("method", "variants", "mix_from", "truncation_psi", "truncation_centres", "features", "k", "box_k",
             "normalize", "join_features", "join_weight", "repeats", "detector", "classes", "class_names", "conf",
             "box_margin",
             "clip_margin", "instance_rule", "mask_score", "nms_iou", "min_area")


SCORE_MEANING = ("its detector score times its mask confidence (without a detector, the mask confidence alone). The "
                 "mask confidence is the mean k-means margin over the mask's pixels: how clearly they sit in their "
                 "cluster rather than the next. Both lie in 0..1; a visibly right mask often reads 0.2-0.6, so rank "
                 "by score rather than cut it at 0.5.")


def card(run: dict | None, info: dict, licence: dict | None, categories: list[str], images: int,
         per_class: dict[str, tuple[int, int]], version: str) -> str:
    """Markdown for a run folder. `per_class` maps a class to (instances, images holding one)."""
    info = info or {}
    gen = info.get("generator") or (run or {}).get("config", {}).get("gan", "?")
    lic = (licence or {}).get("name") or info.get("licence") or "unknown"
    photos = "real_images" in info
    title = f"your photos labelled with `{gen}`" if photos else gen
    lines = [f"# instseg dataset: {title}", ""]
    gen_lic = info.get("masks_licence", lic) if photos else lic
    gen_url = info.get("masks_licence_url" if photos else "licence_url")
    if info.get("licence_note"):  # one licence statement: the banner where it is known to be non-commercial
        lines += [f"> **Non-commercial.** {info['licence_note']} Licence: {gen_lic}"
                  + (f" ({gen_url})" if gen_url else "") + ".", ""]
    elif not photos:
        lines += [f"Licence of the generator, and so of these images: {lic}.", ""]
    if photos:
        lines += ["The images are the user's own photos, not the generator's: their licence is their owner's, "
                  f"unknown to instseg. Only the masks derive from the generator `{gen}` (licence: {gen_lic}); "
                  "each photo was projected into it and segmented from style variants of its projection "
                  f"({info['real_images']}).", ""]
    else:
        lines += [f"Synthetic images made by the generator `{gen}` and labelled with no human labels and no network "
                  "trained (StyleGAN2 style mixing, then k-means on each pixel's variant stack; see instseg's "
                  "docs/method.md).", ""]
    total = sum(n for n, _ in per_class.values())
    lines += [
        f"- images: {images}, instances: {total}",
        f"- generator sha256: `{info.get('generator_sha256', '?')}`",
        f"- made with: {info.get('made_with', f'instseg {version}')}",
    ]
    if run and run.get("command"):
        lines.append(f"- command: `{' '.join(map(str, run['command']))}`")
    if info.get("merged_from"):
        lines.append(f"- merged from {len(info['merged_from'])} shard folders")
    cond = (run or {}).get("conditional")
    if isinstance(cond, dict) and isinstance(cond.get("classes"), list):
        lines.append(f"- class-conditional generator: each image drawn for one class of "
                     f"{', '.join(map(str, cond['classes']))} ({cond.get('rule', '')}); COCO `images[].class` names it")
    lines += [f"- `score` of an instance: {SCORE_MEANING}",
              "", "| class | instances | images with one |", "|---|---:|---:|"]
    lines += [f"| {c} | {per_class.get(c, (0, 0))[0]} | {per_class.get(c, (0, 0))[1]} |" for c in categories]
    cfg = (run or {}).get("config") or {}
    if cfg:  # the values the method ran with (run.json's method_settings) over the config's; empty ones left out
        used = {**cfg, **((run or {}).get("method_settings") or {})}
        lines += ["", "## Method settings", ""]
        lines += [f"- `{k}`: {_value(used[k])}" for k in _SETTINGS if k in used and used[k] not in ("", [], (), None)]
        if isinstance(cfg.get("label"), dict):  # a labelled folder: how the photos were projected and refined
            lines += [f"- `label.{k}`: {_value(v)}" for k, v in cfg["label"].items()]
    lines += ["", "## Files", "",
              "- `images/<name>`: your photos (hard links or copies; an EXIF-turned one upright as `<name>.png`); COCO "
              "`file_name`s are relative to `images/`" if photos else
              "- `images/<seed>.png`: the images; COCO `file_name`s are relative to `images/`",
              "- `annotations.json`: COCO instances, compressed RLE masks, `score` per instance",
              "- `parts/`, `variants/`, `records/`, `run.json`: cluster maps, style variants, per-seed records, "
              "provenance",
              "", "## Load it", "", "```python",
              "from pycocotools.coco import COCO",
              "coco = COCO('annotations.json')  # masks: coco.annToMask(coco.loadAnns(ids)[0])",
              "",
              "from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2",
              "ds = wrap_dataset_for_transforms_v2(CocoDetection('images', 'annotations.json'),",
              "                                    target_keys=('boxes', 'labels', 'masks'))",
              "",
              "import fiftyone as fo  # needs pycocotools installed beside it",
              "ds = fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset, data_path='images',",
              "                         labels_path='annotations.json', label_types=['segmentations'])",
              "```", "",
              "For Ultralytics: `instseg export . --format yolo --split train=0.8,val=0.2`, then "
              "`yolo segment train data=yolo/data.yaml` (the paths in `data.yaml` are relative to it, so the export "
              "can be moved; FiftyOne's YOLO importer takes it with `yaml_path=\"data.yaml\"`). For the standard "
              "split tree, which datumaro reads (it needs an `annotations/` folder): `instseg export . --format coco` "
              "(`coco/annotations/instances_<split>.json`, `coco/images/<split>/`). torchmetrics' "
              "`MeanAveragePrecision(iou_type=\"segm\")` needs `pip install \"torchmetrics[detection]\"`.",
              ""]
    return "\n".join(lines)


def _value(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
