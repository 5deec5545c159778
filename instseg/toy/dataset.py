"""Write renderer scenes as a COCO dataset with exact instance masks."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterable

import torch

from .. import coco
from ..errors import UserError
from ..generator import Generator, to_uint8
from ..io import atomic_save_png, atomic_write_json
from ..rundir import IMAGES, image_file, image_id
from ..sampling import source_images
from .labels import sample_labels
from .render import CLASSES, render_seed


def write_scenes(seeds: Iterable[int], out: Path, size: int = 64, on_seed: Callable[[int], None] | None = None,
                 world: str = "classic") -> Path:
    """Render each seed to `out`/images/<seed>.png and write `out`/annotations.json (categories = CLASSES).
    Ids follow the run-folder rules (image id = seed + 1), so `instseg eval` pairs them with runs."""
    out = Path(out)
    check_render_folder(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for seed in seeds:
        img, inst, classes = render_seed(seed, size, world)
        atomic_save_png(out / IMAGES / image_file(seed), img)
        images.append(coco.image_entry(image_id(seed), image_file(seed), size, size, seed=seed))
        for i, cls in enumerate(classes):
            mask = inst == i + 1
            if mask.any():
                anns.append(coco.annotation(mask, image_id(seed), cls + 1, 1.0))
        if on_seed:
            on_seed(seed)
    data = coco.dataset(images, anns, list(CLASSES), f"toy scenes {size}px, {world}", info={"made_by": RENDER_MARK})
    atomic_write_json(out / "annotations.json", data)
    return out / "annotations.json"


RENDER_MARK = "instseg toy render"


def check_render_folder(out: Path) -> None:
    """Refuse an --out that would be written through a link, or that holds a dataset `toy render` did not make
    (an instseg run, another tool's COCO folder): rendering there would replace its images and annotations."""
    for name in ("images", "annotations.json"):
        if (out / name).is_symlink():
            raise UserError(f"{out / name} is a symbolic link; instseg writes nothing through a link")
    if (out / "run.json").exists() or (out / "records").exists():
        raise UserError(f"{out} holds an instseg run; render into a new or empty folder")
    ann = out / "annotations.json"
    if ann.exists():
        try:
            info = json.loads(ann.read_text()).get("info", {})
            ours = info.get("made_by") == RENDER_MARK or re.fullmatch(r"toy scenes \d+px, \w+", info.get("description"))
        except (OSError, ValueError, AttributeError, TypeError):  # older renders carry only their description
            ours = False
        if not ours:
            raise UserError(f"{out} holds a dataset that `instseg toy render` did not make ({ann}); "
                            "render into a new or empty folder")
    elif (out / "images").is_dir() and any(
            not (re.fullmatch(r"\d+\.png", p.name) or p.name.startswith(".")) or not p.is_file()
            for p in (out / "images").iterdir()):
        raise UserError(f"{out / 'images'} holds files that are not rendered scenes; render into a new or empty folder")


def write_gan_samples(G: Generator, seeds: Iterable[int], out: Path, names: list[str], truncation_psi: float = 0.7,
                      min_area: int = 4, batch: int = 64) -> dict:
    """Write a label-drawing generator's samples to `out`/images/<seed>.png (as `instseg run` makes its
    source images) and return the COCO dict of their exact labels (the label channels)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    for i in range(0, len(seeds), batch):
        chunk = seeds[i:i + batch]
        for seed, img in zip(chunk, to_uint8(source_images(G, chunk, truncation_psi, torch.device("cpu"), batch))):
            atomic_save_png(out / IMAGES / image_file(seed), img)
    return sample_labels(G, seeds, names, truncation_psi, min_area=min_area)


def interleave(a: dict, b: dict, description: str) -> dict:
    """One COCO dict from two with the same categories, their images alternating (so a split by
    image order, as the YOLO export makes, holds both sources)."""
    if [c["name"] for c in a["categories"]] != [c["name"] for c in b["categories"]]:
        raise ValueError("the two datasets have different categories")
    images = [im for pair in zip(a["images"], b["images"]) for im in pair]
    n = min(len(a["images"]), len(b["images"]))
    images += a["images"][n:] + b["images"][n:]
    return coco.dataset(images, a["annotations"] + b["annotations"], [c["name"] for c in a["categories"]], description)
