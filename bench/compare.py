"""Compare two run folders made from the same seeds: bitwise images, cluster maps and masks, or by how much
they differ (pixels, mask IoU, scores).

    python -m bench.compare OLD_DIR NEW_DIR [--json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def _load(folder: Path) -> dict:
    return json.loads((folder / "annotations.json").read_text())


def compare(old: Path, new: Path) -> dict:
    a, b = _load(old), _load(new)
    imgs_a = {im["seed"]: im for im in a["images"]}
    imgs_b = {im["seed"]: im for im in b["images"]}
    seeds = sorted(set(imgs_a) & set(imgs_b))
    out = {"seeds": len(seeds), "seeds_only_in_one": len(set(imgs_a) ^ set(imgs_b)), "images_equal": 0,
           "image_pixels_differing": 0, "cluster_maps_equal": 0, "cluster_pixels_differing": 0,
           "annotations_old": len(a["annotations"]), "annotations_new": len(b["annotations"]),
           "masks_equal": 0, "masks_matched": 0, "min_mask_iou": 1.0, "mean_mask_iou": 1.0, "max_score_diff": 0.0,
           "ids_equal": True}
    ious = []
    by_a: dict[int, list] = {}
    by_b: dict[int, list] = {}
    for ann in a["annotations"]:
        by_a.setdefault(ann["image_id"], []).append(ann)
    for ann in b["annotations"]:
        by_b.setdefault(ann["image_id"], []).append(ann)
    for s in seeds:
        ia, ib = imgs_a[s], imgs_b[s]
        out["ids_equal"] &= ia["id"] == ib["id"]
        pa = np.asarray(Image.open(old / "images" / Path(ia["file_name"]).name))
        pb = np.asarray(Image.open(new / "images" / Path(ib["file_name"]).name))
        diff = int((pa != pb).any(-1).sum())
        out["images_equal"] += diff == 0
        out["image_pixels_differing"] += diff
        ca = np.asarray(Image.open(old / "parts" / f"{s}.png"))
        cb = np.asarray(Image.open(new / "parts" / f"{s}.png"))
        cd = int((ca != cb).sum())
        out["cluster_maps_equal"] += cd == 0
        out["cluster_pixels_differing"] += cd
        la, lb = by_a.get(ia["id"], []), by_b.get(ib["id"], [])
        for x, y in zip(la, lb):
            ma, mb = mask_utils.decode(x["segmentation"]), mask_utils.decode(y["segmentation"])
            inter, union = int((ma & mb).sum()), int((ma | mb).sum())
            iou = inter / union if union else 1.0
            out["masks_matched"] += 1
            out["masks_equal"] += bool((ma == mb).all()) and x["category_id"] == y["category_id"]
            out["min_mask_iou"] = min(out["min_mask_iou"], iou)
            ious.append(iou)
            out["max_score_diff"] = max(out["max_score_diff"], abs(x["score"] - y["score"]))
        out["ids_equal"] &= [x["id"] for x in la] == [y["id"] for y in lb]
    if ious:
        out["mean_mask_iou"] = sum(ious) / len(ious)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args()
    print(json.dumps(compare(args.old, args.new)))


if __name__ == "__main__":
    main()
