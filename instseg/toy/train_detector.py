"""Train the toy YOLOv8n-seg from its yaml (no pretrained weights) on rendered scenes.

    python -m instseg.toy.train_detector --out toy-train/detector --scenes 4000 --epochs 30
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from ..yolo_export import export_yolo
from .dataset import write_scenes

log = logging.getLogger(__name__)
FIRST_SEED = 2_000_000  # training scenes; evaluation uses seeds from 3_000_000 on


def train(out: Path, scenes: int = 4000, epochs: int = 30, imgsz: int = 64, batch: int = 64, size: int = 64,
          device: str = "cpu", world: str = "classic", name: str = "toy-shapes-yolo.pt") -> Path:
    """Render scenes, export them as YOLO-seg, train; returns the best weights path."""
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    out = Path(out)
    data_dir = out / "scenes"
    if not (data_dir / "annotations.json").exists():
        write_scenes(range(FIRST_SEED, FIRST_SEED + scenes), data_dir, size, world=world)
    data_yaml = export_yolo(json.loads((data_dir / "annotations.json").read_text()), data_dir, out / "yolo")
    model = YOLO("yolov8n-seg.yaml")
    model.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=0,
                amp=False, pretrained=False, plots=False, project=str(out.resolve()), name="run", exist_ok=True,
                seed=0, deterministic=True, verbose=False)
    best = out / "run" / "weights" / "best.pt"
    shutil.copy2(best, out / name)
    return out / name


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="toy-train/detector")
    ap.add_argument("--scenes", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--imgsz", type=int, default=64)
    ap.add_argument("--size", type=int, default=64, help="rendered scene size")
    ap.add_argument("--world", default="classic")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    print(train(Path(a.out), a.scenes, a.epochs, a.imgsz, size=a.size, device=a.device, world=a.world))
