"""The compute of a run, pure of the run folder: the device, the prepared generator and detector, and a
chunk of seeds turned into named records. The local loop (`runner`) and Ray actors (`distributed`) both
call `process_chunk` on the same chunks, so the dataset does not depend on how many workers ran."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from detectors import Detections, Detector, DetectorError, check_classes, load_detector

from . import coco
from .config import RunConfig
from .errors import UserError
from .generator import Generator, to_uint8
from .rundir import image_id
from .segment import Stopwatch, segment_image, source_latents, synthesize


def pick_device(spec: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda:N' is checked against the machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {spec}: only cpu and cuda are supported")
    if dev.type == "cpu" and dev.index is not None:
        raise UserError(f"--device {spec}: cpu takes no index; use cpu")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {spec}: no such CUDA device on this machine")
    return dev


def build_detector(cfg: RunConfig, device: torch.device) -> tuple[Detector | None, list[str]]:
    """The detector and the dataset categories (the requested classes, in the detector's order)."""
    try:
        det = load_detector(cfg.detector, str(device), cfg.conf, cfg.max_det)
        if det is None:
            return None, [cfg.category]
        check_classes(cfg.classes, det.class_names)
    except DetectorError as e:
        raise UserError(str(e)) from None
    wanted = set(cfg.classes) or set(det.class_names)
    return det, [c for c in det.class_names if c in wanted]


def prepare_generator(G: Generator, cfg: RunConfig, device: torch.device) -> Generator:
    """Apply --precision and --compile to a loaded generator."""
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 runs on CUDA only; on a CPU use bf16 or fp32")
    if cfg.precision != "fp32":
        G = G.to({"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.precision])
    if cfg.compile:
        from torch._dynamo import config as dynamo_config

        from .generator import SynthesisLayer, ToRGB

        # every layer shares one forward: give dynamo a cache entry per layer shape, not its default 8
        dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)

        for m in G.modules():
            if isinstance(m, (SynthesisLayer, ToRGB)):
                m.compile(dynamic=False)
    return G


def check_generator(G: Generator, cfg: RunConfig) -> None:
    """The layers and crossovers the config names must exist in this generator."""
    if cfg.features not in G.feature_names or cfg.features == "labels":
        valid = [n for n in G.feature_names if n != "labels"]
        raise UserError(f"--features {cfg.features!r} is not a layer of this generator; valid: {', '.join(valid)}")
    if cfg.join_features not in ("none", "image") and (cfg.join_features not in G.feature_names
                                                        or cfg.join_features in ("labels", "rgb")):
        valid = [n for n in G.feature_names if n not in ("labels", "rgb")]
        raise UserError(f"--join-features {cfg.join_features!r} is not a synthesis layer of this generator; "
                        f"valid: none, image, {', '.join(valid)}")
    if max(cfg.mix_from) >= G.num_ws:
        raise UserError(f"--mix-from {max(cfg.mix_from)} must be below the generator's num_ws={G.num_ws}")


@dataclass
class SeedRecord:
    """What one seed gives the writer: its image, cluster map, variant strip, COCO annotations and the
    settings the method ran with."""

    seed: int
    image: np.ndarray  # [H, W, 3] uint8
    cluster_map: np.ndarray  # [H, W] uint8, cluster indices
    preview: np.ndarray  # [h, n * w, 3] uint8, a strip of style variants
    annotations: list[dict]
    settings: dict


def process_chunk(G: Generator, detector: Detector | None, cfg: RunConfig, device: torch.device, chunk: list[int],
                  categories: list[str], timings: dict[str, float] | None = None) -> list[SeedRecord]:
    """Segment a chunk of seeds (source images and detections batched) into what gets written.

    Pure of the run folder: the local loop and Ray workers both call it on the same chunks,
    so the dataset does not depend on how many workers ran."""
    found: dict[int, Detections] = {}
    images: dict[int, torch.Tensor] = {}
    latents: dict[int, torch.Tensor] = {}
    if detector is not None:  # the chunk's source images and detections, each in one batched call
        clock = Stopwatch(timings, device)
        ws = source_latents(G, chunk, cfg.truncation_psi, device)
        batch_images = synthesize(G, ws, cfg.batch)
        clock.lap("source")  # the chunk's source images, for the detector
        for j, (seed, img, d) in enumerate(zip(chunk, batch_images, detector(list(to_uint8(batch_images))))):
            images[seed], latents[seed] = img, ws[j:j + 1]
            found[seed] = d.keep(np.array([i for i, lab in enumerate(d.labels) if lab in categories], dtype=int))
        clock.lap("detect")
    out = []
    for seed in chunk:
        det = found.get(seed)
        seg = segment_image(G, seed, cfg, device, det, images.get(seed), timings=timings, ws=latents.get(seed))
        clock = Stopwatch(timings, device)
        iid = image_id(seed)
        if detector is None:
            anns = ([] if seg.foreground is None else
                    [coco.annotation(seg.foreground.cpu().numpy(), iid, 1, seg.fg_confidence, seed=seed)])
        else:
            anns = [coco.annotation(i.mask.cpu().numpy(), iid, categories.index(i.label) + 1, i.score,
                                    det_score=i.det_score, det_box=[float(v) for v in i.box],
                                    mask_confidence=i.mask_confidence, seed=seed) for i in seg.instances]
        out.append(SeedRecord(seed, to_uint8(seg.image[None])[0], seg.label_map.cpu().numpy().astype(np.uint8),
                              np.concatenate(list(to_uint8(seg.preview)), axis=1), anns, seg.settings))
        clock.lap("export")
    return out
