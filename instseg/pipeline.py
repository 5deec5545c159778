"""The compute of a run, pure of the run folder: a `Pipeline` built once from (RunConfig, device) holds
the prepared generator, the detector and the categories, and turns a chunk of seeds into `SeedRecord`s.
The local loop (`runner`) and Ray actors (`distributed`) both call it on the same chunks, so the dataset
does not depend on how many workers ran."""
from __future__ import annotations

from dataclasses import dataclass, field

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
from .zoo import default_cache


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


@dataclass(frozen=True)
class Conditioning:
    """A class-conditional generator's classes: every name (one per index) and the ones a run makes. The
    image of seed s is of class chosen[s mod len(chosen)], whichever shard or chunk draws it."""

    names: tuple[str, ...]
    chosen: tuple[str, ...]

    RULE = "the image of seed s is drawn for class classes[s mod len(classes)]"

    def index(self, seed: int) -> int:
        return self.names.index(self.name(seed))

    def name(self, seed: int) -> str:
        return self.chosen[seed % len(self.chosen)]

    def record(self) -> dict:
        return {"class_names": list(self.names), "classes": list(self.chosen), "rule": self.RULE}


def conditioning(cfg: RunConfig, c_dim: int) -> Conditioning | None:
    """The classes of a run on a class-conditional generator (None for an unconditional one): names from
    --class-names (else class0, class1, ...), made from --classes (else all), in index order."""
    if not c_dim:
        if cfg.class_names:
            raise UserError("--class-names is for class-conditional generators; this generator takes no class")
        return None
    names = tuple(cfg.class_names) or tuple(f"class{i}" for i in range(c_dim))
    if len(names) != c_dim:
        raise UserError(f"--class-names gives {len(names)} name(s); the generator has {c_dim} classes (one name each)")
    unknown = [c for c in cfg.classes if c not in names]
    if unknown:
        raise UserError(f"--classes {', '.join(unknown)}: not a class of this generator; its classes: {', '.join(names)}")
    return Conditioning(names, tuple(n for n in names if not cfg.classes or n in cfg.classes))


def build_detector(cfg: RunConfig, device: torch.device, made: tuple[str, ...] = ()) -> tuple[Detector | None, list[str]]:
    """The detector and the dataset categories (the requested classes, in the detector's order; `made`: a
    conditional generator's chosen classes, which are the categories whatever the detector)."""
    try:
        det = load_detector(cfg.detector, str(device), cfg.conf, cfg.max_det, cache=default_cache())
        if det is None:
            return None, list(made) or [cfg.category]
        if made:
            missing = [c for c in made if c not in det.class_names]
            if missing:
                raise UserError(f"the detector has no class {', '.join(missing)}; pick classes it knows with --classes, "
                                "or run with --detector none")
            return det, list(made)
        check_classes(cfg.classes, det.class_names)
    except DetectorError as e:
        raise UserError(str(e)) from None
    wanted = set(cfg.classes) or set(det.class_names)
    return det, [c for c in det.class_names if c in wanted]




def prepare_generator(G: Generator, cfg: RunConfig, device: torch.device) -> Generator:
    """Apply --truncation-centres, --precision (fp16: the family's mixed recipe; bf16: everything) and --compile
    to a loaded generator."""
    if cfg.precision == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 runs on CUDA only; on a CPU use bf16 or fp32")
    if cfg.precision not in G.PRECISIONS:
        raise UserError(f"--precision {cfg.precision} is not supported by this generator family "
                        f"({type(G).__name__}: {', '.join(G.PRECISIONS)})")
    set_truncation_centres(G, cfg.truncation_centres)
    if cfg.precision == "fp16":
        G.mixed_precision(torch.float16)
    elif cfg.precision == "bf16":
        G = G.to(torch.bfloat16)
    if cfg.compile:
        from torch._dynamo import config as dynamo_config

        # every layer shares one forward: give dynamo a cache entry per layer shape, not its default 8
        dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)
        for m in G.compile_targets():
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
    image_extra: dict = field(default_factory=dict)  # more fields of its COCO image entry (a conditional run's class)


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
        self.cond = conditioning(cfg, self.G.c_dim)
        made = self.cond.chosen if self.cond else ()
        if detector is None and categories is None:
            detector, categories = build_detector(cfg, device, made)
        self.detector = detector
        self.categories = categories if categories is not None else (
            list(made) or list(cfg.classes) or detector.class_names)
        self.rows = synthesis_rows(self.G, device)
        self._check_synthesis()

    @torch.no_grad()
    def _check_synthesis(self) -> None:
        """One image at the run's settings before anything is written: a generator that draws NaN or
        infinite pixels (or fails at this precision) is refused while --out is still untouched."""
        ws = source_latents(self.G, [0], self.cfg.truncation_psi, self.device, [0] if self.cond else None)
        try:
            img = self.G.synthesis(ws, noise_mode="const")[0]
        except RuntimeError as e:
            raise UserError(f"the generator does not run at --precision {self.cfg.precision}: "
                            f"{str(e).splitlines()[0][:120]}") from None
        if not bool(torch.isfinite(img).all()):
            raise UserError(f"the generator draws NaN or infinite pixels at --precision {self.cfg.precision}; its "
                            "weights or settings are broken")

    def __call__(self, seeds: list[int]) -> list[SeedRecord]:
        classes = [self.cond.index(s) for s in seeds] if self.cond else None
        ws = source_latents(self.G, seeds, self.cfg.truncation_psi, self.device, classes)
        results = self.segment(seeds, ws, classes=classes)
        return [self.record(seed, r) for seed, r in zip(seeds, results)]

    @torch.no_grad()
    def segment(self, keys: list[int], ws: Tensor, classes: list[int] | None = None) -> list[ImageResult]:
        """The generator's images of ws [B, num_ws, w_dim], detected and segmented; `keys` name each image's
        random streams (its seed); `classes`: each image's class index, for a class-conditional generator (its
        variants keep it, and a detector keeps boxes of it only)."""
        clock = Stopwatch(self.timings, self.device)
        images = synthesize(self.G, ws, self.rows)
        if not bool(torch.isfinite(images).all()):
            raise UserError(f"the generator drew NaN or infinite pixels (seeds {', '.join(map(str, keys[:4]))}); "
                            f"its weights or --precision {self.cfg.precision} do not work together")
        clock.lap("source")
        found = self.detect(images, None if classes is None else [self.cond.names[c] for c in classes])
        clock.lap("detect")
        return self.segment_images(keys, ws, images, found, classes, clock=clock)

    @torch.no_grad()
    def segment_images(self, keys: list[int], ws: Tensor, images: Tensor, found: list[Detections | None],
                       classes: list[int] | None = None, cfg: RunConfig | None = None, trust: Tensor | None = None,
                       clock: Stopwatch | None = None) -> list[ImageResult]:
        """Given images [B, C, H, W] with their boxes `found` (in their pixels) and the ws whose style variants
        segment them: the method's core, which `segment` (samples) and labelling photos (labeler.PhotoSegmenter)
        share. `cfg` replaces the run's (a photo clustered at its own size works at a larger work_res), `trust`
        [B, 1, h, w] weighs the variants per pixel beside a joined image."""
        clock = clock or Stopwatch(self.timings, self.device)
        boxes = Boxes.of(found, tuple(images.shape[-2:]), self.cfg.box_margin)
        chunk = Chunk(keys, ws, images, boxes, self.rows, self.padded, classes, trust)
        seg = segment_chunk(self.G, cfg or self.cfg, chunk, clock)
        out = seg.to_host()
        clock.lap("host")
        return out

    def detect(self, images: Tensor, classes: list[str] | None = None) -> list[Detections | None]:
        """The detector's boxes of the run's classes on images [B, C, H, W] (None each without a detector);
        with `classes` (one per image), of that image's class only."""
        if self.detector is None:
            return [None] * len(images)
        wanted = [set(self.categories) if classes is None else {classes[b]} for b in range(len(images))]
        return [d.keep(np.array([i for i, lab in enumerate(d.labels) if lab in wanted[b]], dtype=int))
                for b, d in enumerate(self.detector(list(to_uint8(images))))]

    def record(self, seed: int, r: ImageResult) -> SeedRecord:
        """An image's result as the writer's record (objects in score order)."""
        extra = {"class": self.cond.name(seed), "class_index": self.cond.index(seed)} if self.cond else {}
        if self.detector is None:
            cid = self.categories.index(self.cond.name(seed)) + 1 if self.cond else 1
            objects = [] if r.foreground is None else [Annotation(r.foreground, cid, r.fg_confidence, {"seed": seed})]
        else:
            objects = [Annotation(i.mask, self.categories.index(i.label) + 1, i.score,
                                  {"det_score": i.det_score, "det_box": [float(v) for v in i.box],
                                   "mask_confidence": i.mask_confidence, "seed": seed}) for i in r.instances]
        return SeedRecord(seed, r.image, r.label_map, np.concatenate(list(r.preview), axis=1), objects, r.settings,
                          extra)
