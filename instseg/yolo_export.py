"""COCO run dir -> the Ultralytics YOLO-seg layout (images/, labels/ with polygons, data.yaml)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .coco import decode_rle
from .errors import UserError
from .export import assign_splits, link_or_copy, replace_tree, source_image


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


def export_yolo(coco: dict, root: Path, out: Path, shares: dict[str, float] | None = None, link: bool = True,
                on_image: Callable[[], None] | None = None) -> Path:
    """Write `out`/images/<split>, `out`/labels/<split> and `out`/data.yaml; returns data.yaml.

    `shares` splits the images by seed (export.assign_splits; default train 0.9, val 0.1). The export is
    built in a temp folder beside `out` and swapped in whole."""
    shares = shares or {"train": 0.9, "val": 0.1}
    replace_tree(out, "YOLO", lambda names: names <= _EXPORT_ENTRIES and "data.yaml" in names,
                 lambda tmp: _write(coco, Path(root), tmp, shares, link, on_image))
    return Path(out) / "data.yaml"


def _write(coco: dict, root: Path, tmp: Path, shares: dict[str, float], link: bool,
           on_image: Callable[[], None] | None = None) -> None:
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    stems: set[str] = set()
    sources = {im["id"]: source_image(root, im) for im in coco["images"]}  # every file checked before any is written
    splits = assign_splits(coco["images"], shares)
    for split, images in splits.items():
        for sub in ("images", "labels"):
            (tmp / sub / split).mkdir(parents=True, exist_ok=True)
        for im in images:
            src = sources[im["id"]]
            stem = Path(im["file_name"]).stem
            if stem in stems:
                raise UserError(f"two images share the name {stem!r}; YOLO labels are matched to images by name")
            stems.add(stem)
            link_or_copy(src, tmp / "images" / split / f"{stem}{src.suffix}", link)
            lines = label_lines(by_image.get(im["id"], []), cat_index, im["width"], im["height"])
            (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            if on_image:
                on_image()
    # no `path:`: Ultralytics and FiftyOne resolve these from the yaml's own folder, so a moved export still loads
    data = {"train": "images/train",
            "val": "images/val" if splits.get("val") else "images/train"}
    if splits.get("test"):
        data["test"] = "images/test"
    data["names"] = {i: c["name"] for i, c in enumerate(cats)}
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


_EXPORT_ENTRIES = {"images", "labels", "data.yaml", "labels.cache"}
