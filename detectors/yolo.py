"""Ultralytics YOLO (detect or seg weights) as a Detector."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import DetectorError, Detections


def packaged_weights(name: str) -> Path | None:
    """Weights shipped with instseg, e.g. 'toy-shapes' -> instseg/toy/weights/toy-shapes-yolo.pt."""
    from importlib import resources

    p = Path(str(resources.files("instseg.toy") / "weights" / f"{name}-yolo.pt"))
    return p if p.exists() else None


class YoloDetector:
    def __init__(self, weights: str, device: str = "cpu", conf: float = 0.25, max_det: int = 20,
                 imgsz: int | None = None, agnostic_nms: bool = False):
        path = packaged_weights(weights) or Path(weights).expanduser()
        if not path.exists():
            if os.environ.get("YOLO_OFFLINE") or "/" in weights or os.sep in weights:
                raise DetectorError(f"YOLO weights {weights!r} not found locally"
                                    + (" and YOLO_OFFLINE is set" if os.environ.get("YOLO_OFFLINE") else ""))
            path = Path(weights)  # a model name: Ultralytics downloads it on a connected machine
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(path))
        except Exception as e:  # Ultralytics raises many types for missing or bad files
            raise DetectorError(f"cannot load YOLO weights {weights!r}: {str(e).splitlines()[0][:200]}") from None
        self.class_names = [self.model.names[i] for i in sorted(self.model.names)]
        self.device, self.conf, self.max_det, self.imgsz = device, conf, max_det, imgsz
        train_args = (getattr(self.model, "ckpt", None) or {}).get("train_args") or {}
        sz = train_args.get("imgsz")
        self.train_imgsz = sz if isinstance(sz, int) and sz > 0 else 32  # images smaller than this are upscaled
        self.agnostic_nms = agnostic_nms  # one box per object even when two classes both fire on it
        self._predict([np.zeros((self.train_imgsz, self.train_imgsz, 3), np.uint8)])  # set up the predictor now

    def _predict(self, images: Sequence[np.ndarray]) -> list:
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]  # Ultralytics reads arrays as BGR
        imgsz = self.imgsz or max(self.train_imgsz, int(np.ceil(max(images[0].shape[:2]) / 32) * 32))
        import torch

        threads = torch.get_num_threads()
        try:
            return self.model.predict(bgr, conf=self.conf, max_det=self.max_det, device=self.device, imgsz=imgsz,
                                      agnostic_nms=self.agnostic_nms, retina_masks=True, verbose=False)
        finally:  # Ultralytics sets torch to cpu_count - 1 threads on CPU; give the rest of the pipeline its own
            torch.set_num_threads(threads)

    def segment(self, images: Sequence[np.ndarray]) -> list[tuple[Detections, np.ndarray]]:
        """For seg weights: detections plus instance masks [n, H, W] bool at image resolution."""
        out = []
        for det, r in zip(self._detections(res := self._predict(images)), res):
            if r.masks is None:
                if len(det.boxes):
                    raise DetectorError("these YOLO weights predict no masks; use a -seg model as the segmenter")
                masks = np.zeros((0, *r.orig_shape), bool)
            else:
                masks = r.masks.data.cpu().numpy() > 0.5
            out.append((det, masks))
        return out

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        return self._detections(self._predict(images))

    def _detections(self, results: list) -> list[Detections]:
        out = []
        for r in results:
            b = r.boxes
            cls = b.cls.cpu().numpy().astype(int)
            out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                  [self.model.names[int(c)] for c in cls]))
        return out
