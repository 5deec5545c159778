"""Overlay grids of a run dir: image | variants | cluster map | mask overlay (numpy only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .coco import decode_rle
from .errors import UserError
from .rundir import RunDir, image_path

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]],
                   dtype=np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    """[H, W] int -> [H, W, 3] uint8."""
    return PALETTE[labels % len(PALETTE)]


def overlay(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """Blend one palette colour per mask over the image, with a 1-px outline."""
    out = image.astype(np.float32).copy()
    for i, m in enumerate(masks):
        col = PALETTE[i % len(PALETTE)].astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * col
        edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
        out[edge] = col
    return out.astype(np.uint8)


def _fit(a: np.ndarray, h: int) -> np.ndarray:
    if a.shape[0] == h:
        return a
    w = max(1, round(a.shape[1] * h / a.shape[0]))
    return np.asarray(Image.fromarray(a).resize((w, h), Image.NEAREST))


def load_image(root: Path, file_name: str) -> np.ndarray:
    """A COCO image of a dataset folder (root/images/<file_name>) as [H, W, 3] uint8."""
    return load_rgb(image_path(root, file_name))


def load_rgb(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8; a one-line error when missing or unreadable."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL (and plugins patched in by others) raise many types for a bad file
        raise UserError(f"cannot read image {path} ({type(e).__name__}); rerun to redo it") from None


def run_rows(run_dir: Path, max_images: int = 8, data: dict | None = None) -> list[tuple[int, list[np.ndarray]]]:
    """Per image of a run dir: (seed, [image, variants strip, cluster map, overlay])."""
    run_dir = Path(run_dir)
    data = data if data is not None else RunDir(run_dir).read_dataset()
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    rd = RunDir(run_dir)
    rd.check_no_links()
    rows = []
    for img in data["images"][:max_images]:
        seed = img.get("seed", img["id"])
        image = load_image(run_dir, img["file_name"])
        h = image.shape[0]
        panels = [image]
        strip = rd.preview_file("variants", seed) if isinstance(seed, int) else None
        if strip is not None:
            panels.append(_fit(load_rgb(strip), h))
        parts = rd.preview_file("parts", seed) if isinstance(seed, int) else None
        if parts is not None:
            with Image.open(parts) as p:
                if p.mode not in ("L", "P"):  # a cluster map is one channel of cluster indices
                    raise UserError(f"{parts} is not a cluster map (mode {p.mode}); "
                                    "delete it and rerun the run's command to redo it")
                panels.append(_fit(colorize(np.asarray(p)), h))
        masks = [decode_rle(a["segmentation"]) for a in by_image.get(img["id"], [])]
        masks = [m for m in masks if m.shape == image.shape[:2]]
        panels.append(overlay(image, masks))
        rows.append((seed, panels))
    return rows


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Stack rows of equal-height panels into one image (rows padded to the widest)."""
    lines = []
    for panels in rows:
        h = panels[0].shape[0]
        parts = []
        for p in panels:
            parts += [p, np.full((h, pad, 3), 255, np.uint8)]
        lines.append(np.concatenate(parts[:-1], axis=1))
    width = max(l.shape[1] for l in lines)
    lines = [np.pad(l, ((0, pad), (0, width - l.shape[1]), (0, 0)), constant_values=255) for l in lines]
    return np.concatenate(lines, axis=0)
