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


def class_colour(category_id: int) -> np.ndarray:
    """The colour of a COCO category (ids from 1) in overlays, legends and `show`."""
    return PALETTE[(category_id - 1) % len(PALETTE)]


def natural_key(name: str) -> list:
    """Sort key that puts 2.png before 10.png."""
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def overlay(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5,
            colours: list[np.ndarray] | None = None) -> np.ndarray:
    """Blend a colour per mask (`colours`, e.g. each one's class colour; default: the palette in turn) over the
    image, with a 1-px outline."""
    out = image.astype(np.float32).copy()
    for i, m in enumerate(masks):
        col = (PALETTE[i % len(PALETTE)] if colours is None else np.asarray(colours[i])).astype(np.float32)
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
        anns = [a for a in by_image.get(img["id"], []) if decode_rle(a["segmentation"]).shape == image.shape[:2]]
        panels.append(overlay(image, [decode_rle(a["segmentation"]) for a in anns],
                              colours=[class_colour(a["category_id"]) for a in anns]))
        rows.append((seed, panels))
    return rows


def labelled_grid(run_dir: Path, max_images: int = 8, min_height: int = 128) -> np.ndarray:
    """`instseg show`'s picture: a header naming the columns, then per image its panels enlarged to at least
    `min_height` px, a caption (seed, each instance's class and score), and a legend of the class colours."""
    from PIL import ImageDraw, ImageFont

    data = RunDir(run_dir).read_dataset()
    rows = run_rows(run_dir, max_images, data)
    if not rows:
        raise UserError(f"{run_dir} has no images yet")
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_seed: dict = {}
    for im in data["images"][:max_images]:
        by_seed[im.get("seed", im["id"])] = [a for a in data["annotations"] if a["image_id"] == im["id"]]
    font = ImageFont.load_default()
    line = 14
    blocks = []
    for seed, panels in rows:
        h = max(min_height, panels[0].shape[0])
        body = grid([[_fit(p, h) for p in panels]])
        caption = f"seed {seed}: " + (", ".join(f"{names.get(a['category_id'], '?')} {a.get('score', 0):.2f}"
                                                for a in by_seed.get(seed, [])) or "no instance")
        band = Image.new("RGB", (body.shape[1], line + 4), (255, 255, 255))
        ImageDraw.Draw(band).text((2, 2), caption, fill=(0, 0, 0), font=font)
        blocks.append(np.concatenate([np.asarray(band), body], axis=0))
    width = max(b.shape[1] for b in blocks)
    header = Image.new("RGB", (width, line + 6), (255, 255, 255))
    titles = ["image", "style variants", "cluster map", "masks (class colours)"]
    first = rows[0][1]
    x = 0
    for t, p in zip(titles if len(first) == 4 else [titles[0], titles[-1]], first):
        ImageDraw.Draw(header).text((x + 2, 3), t, fill=(0, 0, 0), font=font)
        x += _fit(p, max(min_height, first[0].shape[0])).shape[1] + 2
    legend = Image.new("RGB", (width, line + 6), (255, 255, 255))
    draw, x = ImageDraw.Draw(legend), 2
    for cid, n in names.items():
        draw.rectangle([x, 4, x + 10, 14], fill=tuple(int(v) for v in class_colour(cid)))
        draw.text((x + 14, 3), n, fill=(0, 0, 0), font=font)
        x += 14 + int(draw.textlength(n, font=font)) + 12
    parts = [np.asarray(header)] + [np.pad(b, ((0, 2), (0, width - b.shape[1]), (0, 0)), constant_values=255)
                                    for b in blocks] + [np.asarray(legend)]
    return np.concatenate(parts, axis=0)


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
