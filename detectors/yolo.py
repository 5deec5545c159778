"""Ultralytics YOLO (detect or seg weights) as a Detector."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import DetectorError, Detections


def packaged_weights(name: str) -> Path | None:
    """Weights shipped with instseg, e.g. 'toy-flat' -> instseg/toy/weights/toy-flat-yolo.pt."""
    from importlib import resources

    p = Path(str(resources.files("instseg.toy") / "weights" / f"{name}-yolo.pt"))
    return p if p.exists() else None


# Classes a YOLO file may name beyond torch's own weights-only allow-list: model classes only.
_MODEL_MODULES = ("ultralytics.nn.", "torch.nn.modules.")
_EXTRA_CLASSES = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace")


def _allowed_global(name: str) -> type | None:
    """The class a checkpoint global names, when it is a module class of torch or Ultralytics; else None."""
    import importlib

    import torch

    module, _, attr = name.rpartition(".")
    if not (module.startswith(_MODEL_MODULES) or name in _EXTRA_CLASSES):
        return None
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type) or not (issubclass(obj, torch.nn.Module) or name in _EXTRA_CLASSES):
        return None
    return obj


def check_yolo_bytes(data: bytes, what: str) -> None:
    """Load a YOLO checkpoint through torch's weights-only unpickler, allowing only model classes.

    Ultralytics unpickles with weights_only=False, so this runs first: a file naming any other global
    (a function such as os.system, or any non-module class) is refused, and nothing in it runs."""
    import io

    import torch

    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception as e:  # not a torch zip file, truncated ...
        raise DetectorError(f"cannot load YOLO weights {what}: not a PyTorch checkpoint "
                            f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    classes = []
    for g in sorted(unsafe):
        cls = _allowed_global(g)
        if cls is None:
            raise DetectorError(f"refusing YOLO weights {what}: the file names {g}, which is not a model class")
        classes.append(cls)
    try:
        with torch.serialization.safe_globals(classes):
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise DetectorError(f"refusing YOLO weights {what}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model") or ckpt.get("ema"), torch.nn.Module):
        raise DetectorError(f"cannot load YOLO weights {what}: no model in the file")


def resolve_weights(weights: str, cache: Path | None = None) -> Path:
    """Where a yolo:ARG spec's file is: packaged toy weights, a path, or a bare model name in our cache.

    A bare name (no folder part) is looked up in the cache's detectors/ folder, never in the working
    directory; on a connected machine Ultralytics' release file of that name is downloaded there."""
    packaged = packaged_weights(weights)
    if packaged is not None:
        return packaged
    if "/" in weights or os.sep in weights or weights.startswith("~"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DetectorError(f"YOLO weights {weights!r} not found")
        return path
    if cache is None:
        raise DetectorError(f"YOLO weights {weights!r}: not a file, and no cache folder was given to look in")
    path = Path(cache) / "detectors" / weights
    if path.is_file():
        return path
    if os.environ.get("YOLO_OFFLINE"):
        raise DetectorError(f"YOLO weights {weights!r} are not in the cache and YOLO_OFFLINE is set; put the file at "
                            f"{path} or pass yolo:./{weights} for a file in this folder")
    from ultralytics.utils.downloads import attempt_download_asset

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(attempt_download_asset(str(path)))
    except Exception as e:
        raise DetectorError(f"cannot download YOLO weights {weights!r}: {str(e).splitlines()[0][:160]}") from None
    if not got.is_file():
        raise DetectorError(f"cannot download YOLO weights {weights!r}; put the file at {path}")
    return got


def _import_yolo() -> type:
    """Ultralytics' YOLO class; its first import prints no settings banner into our output (the quiet setting
    is read at import time and taken back after, so a `yolo` command this process starts is as verbose as ever)."""
    import sys

    if "ultralytics" in sys.modules:
        from ultralytics import YOLO

        return YOLO
    before = os.environ.get("YOLO_VERBOSE")
    os.environ["YOLO_VERBOSE"] = "False"
    try:
        from ultralytics import YOLO
    finally:
        if before is None:
            del os.environ["YOLO_VERBOSE"]
        else:
            os.environ["YOLO_VERBOSE"] = before
    return YOLO


class YoloDetector:
    def __init__(self, weights: str, device: str = "cpu", conf: float = 0.25, max_det: int = 20,
                 imgsz: int | None = None, agnostic_nms: bool = False, cache: Path | None = None):
        import tempfile

        path = resolve_weights(weights, cache)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DetectorError(f"cannot read YOLO weights {weights!r}: {e.strerror or e}") from None
        check_yolo_bytes(data, repr(weights))
        YOLO = _import_yolo()

        # Ultralytics reads the bytes just checked (a private copy), not a file that could change meanwhile
        with tempfile.TemporaryDirectory(prefix="instseg-yolo-") as tmp:
            copy = Path(tmp) / (path.stem + ".pt")
            copy.write_bytes(data)
            try:
                self.model = YOLO(str(copy))
            except Exception as e:  # Ultralytics raises many types for bad files
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
