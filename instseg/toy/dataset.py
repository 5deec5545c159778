"""Write renderer scenes as a COCO dataset with exact instance masks."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from .. import coco
from ..io import atomic_save_png, atomic_write_json
from ..rundir import image_file, image_id
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
        atomic_save_png(out / image_file(seed), img)
        images.append(coco.image_entry(image_id(seed), image_file(seed), size, size, seed=seed))
        for i, cls in enumerate(classes):
            mask = inst == i + 1
            if mask.any():
                anns.append(coco.annotation(mask, image_id(seed), cls + 1, 1.0))
        if on_seed:
            on_seed(seed)
    atomic_write_json(out / "annotations.json", coco.dataset(images, anns, list(CLASSES), f"toy scenes {size}px, {world}"))
    return out / "annotations.json"
