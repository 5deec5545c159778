"""`instseg run`: drive the pipeline over seeds and write the dataset (the I/O edge)."""
from __future__ import annotations

import json
import logging
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from detectors import Detections, Detector, DetectorError, check_classes, load_detector

from . import __version__
from . import coco
from .checkpoints import load_generator
from .config import RunConfig
from .errors import UserError
from .generator import Generator, to_uint8
from .io import atomic_save_png, atomic_write_json
from .instances import merge_instances
from .segment import ImageSegmentation, Stopwatch, segment_image, source_images, upsample_labels
from .zoo import Progress, ResolvedGan, resolve_gan, sha256_file

log = logging.getLogger(__name__)
# Fields that do not change the result: a resumed run may change them freely.
_FREE_FIELDS = ("seeds", "device", "batch")


def pick_device(spec: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda:N' is checked against the machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UserError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {spec}: no such CUDA device on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {spec}: only cpu and cuda are supported")
    return dev


def prepare_out(out: Path) -> None:
    try:
        for sub in ("images", "parts", "variants", "records"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror or e}") from None


def _versions() -> dict[str, str]:
    import PIL

    return {"instseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__}


def _identity(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in _FREE_FIELDS}


def check_resume(out: Path, cfg: RunConfig, gan_sha: str) -> list[int]:
    """Seeds of an earlier run in `out`; refuses a different config or generator."""
    path = out / "run.json"
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise UserError(f"{path} is unreadable; use a fresh --out") from None
    a, b = _identity(old.get("config", {})), _identity(cfg.to_dict())
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if old.get("generator", {}).get("sha256") != gan_sha:
        diff.append("generator weights")
    if diff:
        raise UserError(f"{out} holds a run with a different config ({', '.join(diff)}); use another --out")
    return list(old.get("seeds", []))


@dataclass
class Dataset:
    """The per-seed records of a run dir, assembled into annotations.json."""

    out: Path
    categories: list[str]
    description: str

    def record_path(self, seed: int) -> Path:
        return self.out / "records" / f"{seed}.json"

    def done(self, seed: int) -> bool:
        return self.record_path(seed).exists()

    def write(self, seeds: list[int]) -> None:
        images, anns = [], []
        for s in seeds:
            if self.done(s):
                rec = json.loads(self.record_path(s).read_text())
                images.append(rec["image"])
                anns.extend(rec["annotations"])
        atomic_write_json(self.out / "annotations.json", coco.dataset(images, anns, self.categories, self.description))


def _write_seed(ds: Dataset, seed: int, image: np.ndarray, parts: np.ndarray, preview: np.ndarray,
                anns: list[dict]) -> None:
    """Images first, the record last: a record's presence marks the seed as complete."""
    out = ds.out
    atomic_save_png(out / "images" / f"{seed}.png", image)
    atomic_save_png(out / "parts" / f"{seed}.png", parts.astype(np.uint8))
    atomic_save_png(out / "variants" / f"{seed}.png", np.concatenate(list(preview), axis=1))
    h, w = image.shape[:2]
    entry = coco.image_entry(seed + 1, f"images/{seed}.png", h, w, seed=seed)
    atomic_write_json(ds.record_path(seed), {"image": entry, "annotations": anns})


def _detector(cfg: RunConfig, device: torch.device) -> tuple[Detector | None, list[str]]:
    """The detector and the dataset categories (the requested classes, in the detector's order)."""
    try:
        det = load_detector(cfg.detector, str(device), cfg.conf, cfg.max_det)
        if det is None:
            return None, ["foreground"]
        check_classes(cfg.classes, det.class_names)
    except DetectorError as e:
        raise UserError(str(e)) from None
    wanted = set(cfg.classes) or set(det.class_names)
    return det, [c for c in det.class_names if c in wanted]


def _instance_annotations(seg: ImageSegmentation, det: Detections, categories: list[str], cfg: RunConfig,
                          seed: int) -> list[dict]:
    """Merge the per-box masks of one image into disjoint COCO annotations."""
    if not seg.instances:
        return []
    masks = torch.stack([s.mask for s in seg.instances])
    conf = torch.tensor([s.confidence for s in seg.instances])
    det_scores = torch.as_tensor(det.scores, dtype=torch.float32)
    scores = det_scores * conf
    kept, merged = merge_instances(masks.cpu(), scores, cfg.nms_iou, cfg.min_area)
    anns = []
    for i, m in zip(kept, merged):
        anns.append(coco.annotation(m.numpy(), seed + 1, categories.index(det.labels[i]) + 1, float(scores[i]),
                                    det_score=float(det_scores[i]), det_box=[float(v) for v in det.boxes[i]],
                                    mask_confidence=float(conf[i]), seed=seed))
    return anns


def run(cfg: RunConfig, out: Path, on_seed: Callable[[int, bool], None] | None = None,
        download_progress: Progress | None = None, cache: Path | None = None,
        timings: dict[str, float] | None = None, detector: Detector | None = None) -> Path:
    """Make (or resume) the dataset for cfg.seeds in `out`; returns the annotations path.

    `timings`, when given, accumulates seconds per stage (generate, detect, cluster, export).
    `detector` replaces the one cfg.detector names (benchmarks use fixed boxes).
    """
    gan: ResolvedGan = resolve_gan(cfg.gan, cache, download_progress)
    prepare_out(out)
    gan_sha = sha256_file(gan.path)
    old_seeds = check_resume(out, cfg, gan_sha)
    device = pick_device(cfg.device)
    G: Generator = load_generator(gan.path, device, (gan.preset.height, gan.preset.width) if gan.preset else None)
    if cfg.features not in G.feature_names:
        raise UserError(f"--features {cfg.features!r} is not a layer of this generator; valid: {', '.join(G.feature_names)}")
    if max(cfg.mix_from) >= G.num_ws:
        raise UserError(f"--mix-from {max(cfg.mix_from)} must be below the generator's num_ws={G.num_ws}")
    if detector is None:  # before run.json: a bad --classes must not leave a run behind
        detector, categories = _detector(cfg, device)
    else:
        categories = list(cfg.classes) or detector.class_names
    seeds = old_seeds + [s for s in cfg.seeds if s not in old_seeds]
    atomic_write_json(out / "run.json", {
        "config": cfg.to_dict(), "seeds": seeds, "device": str(device), "versions": _versions(), "command": sys.argv,
        "generator": {"source": gan.source, "path": str(gan.path), "sha256": gan_sha, "config": G.cfg.to_dict()},
    })
    what = "--detector none" if detector is None else f"--detector {cfg.detector}, classes {', '.join(categories)}"
    ds = Dataset(out, categories, f"instseg {cfg.gan}: style-mixing segmentation, {what}")
    last_write = 0.0
    for seed in cfg.seeds:
        if ds.done(seed) and on_seed:
            on_seed(seed, True)
    todo = [s for s in cfg.seeds if not ds.done(s)]
    for start in range(0, len(todo), cfg.batch):
        chunk = todo[start:start + cfg.batch]
        found: dict[int, Detections] = {}
        images: dict[int, torch.Tensor] = {}
        if detector is not None:  # the chunk's source images and detections, each in one batched call
            clock = Stopwatch(timings, device)
            batch_images = source_images(G, chunk, cfg.truncation_psi, device, cfg.batch)
            clock.lap("generate")
            for seed, img, d in zip(chunk, batch_images, detector(list(to_uint8(batch_images)))):
                images[seed] = img
                found[seed] = d.keep(np.array([i for i, l in enumerate(d.labels) if l in categories], dtype=int))
            clock.lap("detect")
        for seed in chunk:
            _segment_and_write(G, seed, cfg, device, ds, found.get(seed), images.get(seed), categories, timings)
            if on_seed:
                on_seed(seed, False)
            if time.time() - last_write > 10:
                ds.write(seeds)
                last_write = time.time()
    ds.write(seeds)
    return out / "annotations.json"


def _segment_and_write(G: Generator, seed: int, cfg: RunConfig, device: torch.device, ds: Dataset,
                       det: Detections | None, image: torch.Tensor | None, categories: list[str],
                       timings: dict[str, float] | None) -> None:
    """Segment one seed (whole image, plus its boxes when `det` is given) and write its files."""
    seg = segment_image(G, seed, cfg, device, None if det is None else det.boxes, image, timings=timings)
    clock = Stopwatch(timings, device)
    hw = tuple(seg.image.shape[-2:])
    labels = upsample_labels(seg.labels, cfg.k, hw)
    if det is None:
        mask = seg.fg_clusters[labels]
        conf = seg.confidence[seg.fg_clusters[seg.labels]]
        score = float(conf.mean()) if conf.numel() else 0.0
        anns = [coco.annotation(mask.cpu().numpy(), seed + 1, 1, score, seed=seed)] if mask.sum() >= cfg.min_area else []
    else:
        anns = _instance_annotations(seg, det, categories, cfg, seed)
    _write_seed(ds, seed, to_uint8(seg.image[None])[0], labels.cpu().numpy(), to_uint8(seg.preview), anns)
    clock.lap("export")
