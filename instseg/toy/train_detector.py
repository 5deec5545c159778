"""Train the toy YOLOv8n-seg from its yaml (no pretrained weights) on rendered scenes, and
optionally on a label-drawing generator's samples with their exact labels.

    instseg toy train-detector --out toy-train/detector --scenes 4000 --epochs 30
    instseg toy train-detector --world flat --size 32 --gan toy-flat --gan-samples 4000 ...
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..io import atomic_write_json
from ..yolo_export import export_yolo
from .dataset import interleave, write_gan_samples, write_scenes
from .recipe import DETECTOR_RECIPE
from .render import CLASSES

log = logging.getLogger(__name__)
FIRST_SEED = 2_000_000  # training scenes; evaluation uses seeds from 3_000_000 on
GAN_SEED = 6_000_000  # training samples of a generator: no run, table or benchmark uses these seeds


def train(out: Path, scenes: int = DETECTOR_RECIPE["scenes"], epochs: int = DETECTOR_RECIPE["epochs"],
          imgsz: int = DETECTOR_RECIPE["imgsz"], batch: int = DETECTOR_RECIPE["batch"], size: int = DETECTOR_RECIPE["size"],
          device: str = "cpu", world: str = "flat", name: str | None = None, gan: str | None = None,
          gan_samples: int = 0, truncation_psi: float = 0.7) -> Path:
    """Render scenes (and, with `gan`, write that generator's samples with their exact labels), export
    them as YOLO-seg, train; returns the best weights path (`name`, default toy-WORLD-yolo.pt)."""
    name = name or f"toy-{world}-yolo.pt"
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    out = Path(out)
    G = _label_generator(gan) if gan is not None and gan_samples > 0 else None  # refused before any rendering
    data_dir = out / "scenes"
    if not (data_dir / "annotations.json").exists():
        write_scenes(range(FIRST_SEED, FIRST_SEED + scenes), data_dir, size, world=world)
    data = json.loads((data_dir / "annotations.json").read_text())
    if G is not None:  # the samples' images go beside the scenes': one image root for both sources
        data = interleave(data, _gan_samples(G, gan_samples, data_dir, out / "gan-samples.json", truncation_psi),
                          f"{data['info']['description']} + {gan_samples} samples of {gan} with their label channels")
    data_yaml = export_yolo(data, data_dir, out / "yolo")
    model = YOLO("yolov8n-seg.yaml")
    model.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=0,
                amp=False, pretrained=False, plots=False, project=str(out.resolve()), name="run", exist_ok=True,
                seed=0, deterministic=True, verbose=False)
    best = out / "run" / "weights" / "best.pt"
    shutil.copy2(best, out / name)
    return out / name


def _label_generator(gan: str):
    """The generator named by `gan`; it must draw label channels named as the toy classes."""
    from ..checkpoints import load_generator, native_meta
    from ..errors import UserError
    from ..zoo import resolve_gan

    path = resolve_gan(gan).path
    G = load_generator(path)
    names = (native_meta(path).get("label_names") or []) if G.cfg.label_channels else []
    if list(names) != list(CLASSES):
        raise UserError(f"--gan {gan}: needs label channels named {', '.join(CLASSES)} (it has {', '.join(names) or 'none'})")
    return G


def _gan_samples(G, n: int, folder: Path, cached: Path, truncation_psi: float) -> dict:
    """The generator's samples (seeds GAN_SEED..) written to `folder`/images, and their exact labels
    (cached in `cached`, so a rerun does not write them again)."""
    if cached.exists():
        data = json.loads(cached.read_text())
        if len(data["images"]) == n:
            return data
    data = write_gan_samples(G, range(GAN_SEED, GAN_SEED + n), folder, list(CLASSES), truncation_psi)
    atomic_write_json(cached, data)
    return data

