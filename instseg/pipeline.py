"""The compute of a run, pure of the run folder: a `Pipeline` built once from (RunConfig, device) holds
the prepared generator, the detector and the categories, and turns a chunk of seeds into `SeedRecord`s.
The local loop (`runner`) and Ray actors (`distributed`) both call it on the same chunks, so the dataset
does not depend on how many workers ran."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from detectors import Detections, Detector, DetectorError, check_classes, load_detector
from torch import Tensor

from .config import RunConfig
from .errors import UserError
from .generator import Generator, to_uint8
from .sampling import set_truncation_centres, source_latents, synthesis_rows, synthesize
from .segment import Boxes, Chunk, ImageResult, segment_chunk
from .timing import Stopwatch


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


FP16_BLOCKS = 4  # StyleGAN2-ADA's recipe: the 4 highest-resolution blocks in fp16 ...
FP16_CLAMP = 256.0  # ... with their activations clamped to +-256


def mixed_precision(G: Generator, dtype: torch.dtype, blocks: int = FP16_BLOCKS, clamp: float = FP16_CLAMP) -> Generator:
    """The highest-resolution `blocks` in `dtype` with activations clamped to +-clamp (unless the
    generator clamps already); the mapping, the low-resolution blocks and the image sum stay fp32."""
    for blk in G.blocks[-blocks:]:
        blk.to(dtype)
        for layer in (getattr(blk, "conv0", None), blk.conv1, blk.torgb):
            if layer is not None and layer.conv_clamp is None:
                layer.conv_clamp = clamp
    return G


def prepare_generator(G: Generator, cfg: RunConfig, device: torch.device) -> Generator:
    """Apply --truncation-centres, --precision (fp16: the official mixed recipe; bf16: everything) and --compile
    to a loaded generator."""
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 runs on CUDA only; on a CPU use bf16 or fp32")
    set_truncation_centres(G, cfg.truncation_centres)
    if cfg.precision == "fp16":
        G = mixed_precision(G, torch.float16)
    elif cfg.precision == "bf16":
        G = G.to(torch.bfloat16)
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
class Annotation:
    """One object of a seed before encoding: its mask and what its COCO annotation says."""

    mask: np.ndarray  # [H, W] bool
    category_id: int
    score: float
    extra: dict


@dataclass
class SeedRecord:
    """What one seed gives the writer: its image, cluster map, variant strip, objects and the
    settings the method ran with (encoding to PNG and RLE happens in `encode`)."""

    seed: int
    image: np.ndarray  # [H, W, 3] uint8
    cluster_map: np.ndarray  # [H, W] uint8, cluster indices
    preview: np.ndarray  # [h, n * w, 3] uint8, a strip of style variants
    objects: list[Annotation]
    settings: dict


class Pipeline:
    """Built once per run (or per Ray actor); `pipeline(seeds)` -> one SeedRecord per seed.

    Holds the generator prepared for `cfg.precision` and `cfg.compile`, the detector and the dataset
    categories, checked against the config. A chunk is processed on the device as a whole: the
    source images in one pass, the variants of every seed through synthesis together
    (`synthesis_rows` per call), one k-means over every region, tensor-op instance selection and
    merging, then one crossing to the host. `timings`, when given, sums seconds per stage (and
    synchronises the GPU to do so). `padded` forces the batched k-means on or off (default: on GPUs)."""

    def __init__(self, cfg: RunConfig, G: Generator, device: torch.device, detector: Detector | None = None,
                 categories: list[str] | None = None, timings: dict[str, float] | None = None,
                 padded: bool | None = None):
        self.cfg, self.device, self.timings, self.padded = cfg, device, timings, padded
        self.G = prepare_generator(G.to(device).eval(), cfg, device)
        check_generator(self.G, cfg)
        if detector is None and categories is None:
            detector, categories = build_detector(cfg, device)
        self.detector = detector
        self.categories = categories if categories is not None else (list(cfg.classes) or detector.class_names)
        self.rows = synthesis_rows(self.G, device)

    def __call__(self, seeds: list[int]) -> list[SeedRecord]:
        results = self.segment(seeds, source_latents(self.G, seeds, self.cfg.truncation_psi, self.device))
        return [self.record(seed, r) for seed, r in zip(seeds, results)]

    @torch.no_grad()
    def segment(self, keys: list[int], ws: Tensor, images: Tensor | None = None) -> list[ImageResult]:
        """Images from ws [B, num_ws, w_dim] (or given `images`, for real photos), detected and segmented;
        `keys` name each image's random streams (its seed)."""
        clock = Stopwatch(self.timings, self.device)
        if images is None:
            images = synthesize(self.G, ws, self.rows)
        clock.lap("source")
        found = self.detect(images)
        clock.lap("detect")
        boxes = Boxes.of(found, tuple(images.shape[-2:]), self.cfg.box_margin)
        seg = segment_chunk(self.G, self.cfg, Chunk(keys, ws, images, boxes, self.rows, self.padded), clock)
        out = seg.to_host()
        clock.lap("host")
        return out

    def detect(self, images: Tensor) -> list[Detections | None]:
        """The detector's boxes of the run's classes on images [B, C, H, W] (None each without a detector)."""
        if self.detector is None:
            return [None] * len(images)
        wanted = set(self.categories)
        return [d.keep(np.array([i for i, lab in enumerate(d.labels) if lab in wanted], dtype=int))
                for d in self.detector(list(to_uint8(images)))]

    def record(self, seed: int, r: ImageResult) -> SeedRecord:
        """An image's result as the writer's record (objects in score order)."""
        if self.detector is None:
            objects = [] if r.foreground is None else [Annotation(r.foreground, 1, r.fg_confidence, {"seed": seed})]
        else:
            objects = [Annotation(i.mask, self.categories.index(i.label) + 1, i.score,
                                  {"det_score": i.det_score, "det_box": [float(v) for v in i.box],
                                   "mask_confidence": i.mask_confidence, "seed": seed}) for i in r.instances]
        return SeedRecord(seed, r.image, r.label_map, np.concatenate(list(r.preview), axis=1), objects, r.settings)
