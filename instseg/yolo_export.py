"""COCO run dir -> the Ultralytics YOLO-seg layout (images/, labels/ with polygons, data.yaml)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml

from .coco import decode_rle
from .errors import UserError
from .locks import Busy, clean_stale_temps, lock_file
from .rundir import check_inside


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

    The export is built in a temp folder beside `out` and swapped in whole, so nothing of an
    earlier export survives and a failed export leaves the old one as it was. The split is by
    image order: the last `val_fraction` of images (at least one) is val.
    """
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with lock_file(out.parent / f".{out.name}.lock", blocking=False):
            # trees a killed export left: its temp folder, or the old export of an interrupted swap
            for pattern in (f".{out.name}.*.tmp", f".{out.name}.old-*"):
                clean_stale_temps(out.parent, pattern)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
            try:
                _write(coco, Path(image_root), tmp, out, val_fraction, link)
                _swap(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Busy as e:
        raise UserError(f"{out} is being exported by another instseg process (pid {e.holder})") from None
    return out / "data.yaml"


def _write(coco: dict, image_root: Path, tmp: Path, final: Path, val_fraction: float, link: bool) -> None:
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = coco["images"]
    n_val = max(1, round(len(images) * val_fraction)) if len(images) > 1 else 0
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            (tmp / sub / split).mkdir(parents=True, exist_ok=True)
    stems = set()
    for i, im in enumerate(images):
        split = "val" if i >= len(images) - n_val else "train"
        src = check_inside(image_root, im["file_name"])
        if not src.is_file() or src.stat().st_size == 0:
            raise UserError(f"image {im['file_name']} of {image_root} is missing or empty; rerun the run to redo it")
        stem = Path(im["file_name"]).stem
        if stem in stems:
            raise UserError(f"two images share the name {stem!r}; YOLO labels are matched to images by name")
        stems.add(stem)
        dst = tmp / "images" / split / f"{stem}{src.suffix}"
        try:
            if not link:
                raise OSError
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        lines = label_lines(by_image.get(im["id"], []), cat_index, im["width"], im["height"])
        (tmp / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    data = {"path": str(final.resolve()), "train": "images/train", "val": "images/val" if n_val else "images/train",
            "names": {i: c["name"] for i, c in enumerate(cats)}}
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


_EXPORT_ENTRIES = {"images", "labels", "data.yaml", "labels.cache"}


def _check_replaceable(out: Path) -> None:
    """Only an earlier export (or an empty folder) may be replaced, never an unrelated folder."""
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not (names <= _EXPORT_ENTRIES and "data.yaml" in names):
            raise UserError(f"--out {out} holds files that are not a YOLO export; give an empty or new folder")


def _swap(new: Path, out: Path) -> None:
    """Put `new` at `out`, replacing an earlier export: two renames, the old tree removed last."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
