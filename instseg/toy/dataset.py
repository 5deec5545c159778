"""Write renderer scenes as a COCO dataset with exact instance masks."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch

from .. import coco
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
    atomic_write_json(out / "annotations.json", coco.dataset(images, anns, list(CLASSES), f"toy scenes {size}px, {world}"))
    return out / "annotations.json"


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
