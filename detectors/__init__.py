"""Box detectors behind one small protocol: images in, per-image boxes, scores and class names out.

Spec strings (CLI `--detector`): `none`, `yolo:PATH|NAME`, `frcnn` or `frcnn:PATH`.
Ultralytics and torchvision are imported only when a detector is built.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np


class DetectorError(Exception):
    """A detector spec or class list the user can fix (shown as one line)."""


@dataclass
class Detections:
    boxes: np.ndarray  # [n, 4] xyxy, pixels
    scores: np.ndarray  # [n]
    labels: list[str] = field(default_factory=list)  # class name per box

    def keep(self, idx: np.ndarray) -> "Detections":
        return Detections(self.boxes[idx], self.scores[idx], [self.labels[i] for i in idx])


class Detector(Protocol):
    class_names: list[str]

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """RGB uint8 images [H, W, 3] -> one Detections per image."""
        ...


def parse_spec(spec: str, flag: str = "--detector") -> tuple[str, str | None]:
    """'yolo:x.pt' -> ('yolo', 'x.pt'); 'frcnn' -> ('frcnn', None); 'none' -> ('none', None).
    `flag` names the option in messages."""
    kind, _, arg = spec.partition(":")
    if kind not in ("none", "yolo", "frcnn"):
        raise DetectorError(f"{flag} {spec!r}: use none, yolo:PATH|NAME or frcnn[:PATH]")
    if kind == "yolo" and not arg:
        raise DetectorError(f"{flag} yolo needs a weights path or model name, e.g. yolo:yolov8n.pt")
    if kind == "none" and arg:
        raise DetectorError(f"{flag} {spec!r}: 'none' takes no argument")
    return kind, arg or None


def load_detector(spec: str, device: str = "cpu", conf: float = 0.25, max_det: int = 20,
                  cache: Path | None = None) -> Detector | None:
    """Build the detector a spec names (None for 'none'); `cache` is the folder named weights download into
    (the caller's: instseg passes its own cache)."""
    kind, arg = parse_spec(spec)
    if kind == "none":
        return None
    if kind == "yolo":
        from .yolo import YoloDetector

        return YoloDetector(arg, device=device, conf=conf, max_det=max_det, cache=cache)
    from .frcnn import FasterRCNNDetector

    return FasterRCNNDetector.from_spec(arg, device=device, conf=conf, max_det=max_det)


def check_classes(requested: Sequence[str], available: Sequence[str]) -> None:
    """Every requested class must be one of the detector's; the error names the nearest valid ones."""
    for c in requested:
        if c not in available:
            near = difflib.get_close_matches(c, list(available), n=3, cutoff=0.5)
            names = list(available)
            hint = (f"; nearest: {', '.join(near)}" if near else
                    f"; valid: {', '.join(names[:12])}{'...' if len(names) > 12 else ''}")
            raise DetectorError(f"unknown class {c!r} for this detector{hint}")
