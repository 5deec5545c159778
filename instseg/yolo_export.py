"""COCO run dir -> the Ultralytics YOLO-seg layout (images/, labels/ with polygons, data.yaml)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import yaml

from .coco import decode_rle
from .io import atomic_write_bytes


def mask_polygon(mask: np.ndarray) -> np.ndarray | None:
    """Outline of the mask's largest connected part as [n, 2] (x, y) pixel coordinates."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    if len(c) < 3:  # a 1-2 pixel sliver: use its pixel box
        x, y, w, h = cv2.boundingRect(c)
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
    return c[:, 0, :].astype(np.float64)


def label_lines(anns: list[dict], cat_index: dict[int, int], width: int, height: int) -> list[str]:
    lines = []
    for a in anns:
        poly = mask_polygon(decode_rle(a["segmentation"]))
        if poly is None:
            continue
        poly = poly / [width, height]
        coords = " ".join(f"{v:.6f}" for v in np.clip(poly, 0, 1).flatten())
        lines.append(f"{cat_index[a['category_id']]} {coords}")
    return lines


def export_yolo(coco: dict, image_root: Path, out: Path, val_fraction: float = 0.1, link: bool = True) -> Path:
    """Write `out`/images/{train,val}, `out`/labels/{train,val} and `out`/data.yaml; returns data.yaml.

    The split is by image order: the last `val_fraction` of images (at least one) is val.
    """
    out = Path(out)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = coco["images"]
    n_val = max(1, round(len(images) * val_fraction)) if len(images) > 1 else 0
    for i, im in enumerate(images):
        split = "val" if i >= len(images) - n_val else "train"
        src = Path(image_root) / im["file_name"]
        stem = Path(im["file_name"]).stem
        for sub in ("images", "labels"):
            (out / sub / split).mkdir(parents=True, exist_ok=True)
        dst = out / "images" / split / f"{stem}{src.suffix}"
        if not dst.exists():
            if link:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            else:
                shutil.copy2(src, dst)
        lines = label_lines(by_image.get(im["id"], []), cat_index, im["width"], im["height"])
        atomic_write_bytes(out / "labels" / split / f"{stem}.txt", ("\n".join(lines) + ("\n" if lines else "")).encode())
    data = {"path": str(out.resolve()), "train": "images/train", "val": "images/val" if n_val else "images/train",
            "names": {i: c["name"] for i, c in enumerate(cats)}}
    atomic_write_bytes(out / "data.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    return out / "data.yaml"
