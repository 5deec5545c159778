"""Run configuration: a typed dataclass, YAML presets in configs/ that override it, CLI flags on top."""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

NORMALIZATIONS = ("raw", "standardize", "l2")
FOREGROUND_RULES = ("border", "center")
INSTANCE_RULES = ("combined", "inside", "border", "center")
METHODS = ("variants", "grabcut", "kmeans-rgb", "activations")


@dataclass(frozen=True)
class RunConfig:
    gan: str = "toy-shapes"  # preset name, checkpoint path or URL
    method: str = "variants"  # variants (ours) | grabcut | kmeans-rgb | activations (single-image baselines)
    seeds: tuple[int, ...] = tuple(range(8))  # one image per seed
    variants: int = 32  # N style-mixed variants per image
    mix_from: tuple[int, ...] = (4, 5)  # crossover c: ws[:c] kept, ws[c:] from a fresh z (one c drawn per variant)
    truncation_psi: float = 0.7
    features: str = "rgb"  # "rgb" or a synthesis layer name such as "b32.conv1"
    work_res: int = 128  # longest side at which pixels are clustered (capped by the image)
    normalize: str = "raw"  # per-pixel normalisation over the N*C values: raw | standardize | l2
    k: int = 3  # clusters
    kmeans_iters: int = 100
    kmeans_tol: float = 1e-4
    repeats: int = 1  # k-means repeats with fresh variants, combined by per-pixel majority vote
    foreground: str = "border"  # whole-image foreground rule: border | center
    detector: str = "none"  # none | yolo:PATH|NAME | frcnn[:PATH]
    classes: tuple[str, ...] = ()  # detector classes to keep (categories of the dataset)
    conf: float = 0.25  # detector score threshold
    max_det: int = 20  # detections per image
    box_margin: float = 0.15  # crop = box grown by this fraction of its size on each side
    instance_rule: str = "inside"  # which crop clusters form the instance: inside | combined | border | center
    nms_iou: float = 0.5  # mask-NMS: drop an instance overlapping a better one by more than this IoU
    min_area: int = 16  # instances smaller than this many pixels are dropped
    batch: int = 8  # generator batch size
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        if self.k < 2:
            raise UserError(f"--k must be at least 2, got {self.k}")
        if self.variants < 2:
            raise UserError(f"--variants must be at least 2, got {self.variants}")
        if self.repeats < 1 or self.batch < 1 or self.kmeans_iters < 1 or self.work_res < 4:
            raise UserError("--repeats, --batch and kmeans_iters must be >= 1 and work_res >= 4")
        if not self.mix_from or min(self.mix_from) < 1:
            raise UserError(f"--mix-from needs crossover indices >= 1, got {self.mix_from}")
        if self.normalize not in NORMALIZATIONS:
            raise UserError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if self.foreground not in FOREGROUND_RULES:
            raise UserError(f"foreground must be one of {FOREGROUND_RULES}, got {self.foreground!r}")
        if self.method not in METHODS:
            raise UserError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.instance_rule not in INSTANCE_RULES:
            raise UserError(f"instance_rule must be one of {INSTANCE_RULES}, got {self.instance_rule!r}")
        if not 0 <= self.conf <= 1 or self.max_det < 1 or self.box_margin < 0:
            raise UserError("--conf must lie in [0, 1], --max-det be >= 1 and box_margin >= 0")
        if not self.seeds:
            raise UserError("no seeds to run")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def parse_seeds(text: str, what: str = "seed") -> tuple[int, ...]:
    """'0-99,120' -> (0, ..., 99, 120); ranges are inclusive and must ascend."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"bad {what} spec {part!r} in {text!r}: use integers and ranges like 0-99,120")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise UserError(f"bad {what} range {part!r}: the end is below the start")
        values.extend(range(a, b + 1))
    if len(set(values)) != len(values):
        raise UserError(f"{what} spec {text!r} repeats values")
    return tuple(values)


def parse_ints(text: str) -> tuple[int, ...]:
    """Crossover lists: '4,5' or '4-6' -> (4, 5) or (4, 5, 6)."""
    return parse_seeds(text, what="crossover")


def config_dir() -> Path:
    """The YAML presets: installed as instseg.configs, or configs/ beside a source checkout."""
    try:
        return Path(str(resources.files("instseg.configs")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "configs"


def preset_overrides(name: str) -> dict[str, Any]:
    """The fields configs/<name>.yaml sets ({} when there is no such file)."""
    path = config_dir() / f"{name}.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    check_keys(data, str(path))
    return data


def check_keys(data: dict[str, Any], where: str) -> None:
    names = [f.name for f in dataclasses.fields(RunConfig)]
    for k in data:
        if k not in names:
            near = difflib.get_close_matches(k, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"unknown config key {k!r} in {where}{hint}")


def build_config(gan: str, overrides: dict[str, Any]) -> RunConfig:
    """Dataclass defaults <- the preset's detector and classes <- configs/<gan>.yaml <- `overrides`
    (CLI flags that were set)."""
    from .zoo import PRESETS

    merged: dict[str, Any] = {"gan": gan}
    if gan in PRESETS:
        merged.update(detector=PRESETS[gan].detector, classes=PRESETS[gan].classes)
    merged.update(preset_overrides(gan))
    merged.update({k: v for k, v in overrides.items() if v is not None})
    check_keys(merged, "the options")
    for k in ("seeds", "mix_from"):
        if isinstance(merged.get(k), (list, str)):
            merged[k] = parse_seeds(merged[k]) if isinstance(merged[k], str) else tuple(merged[k])
    if isinstance(merged.get("classes"), (list, str)):
        c = merged["classes"]
        merged["classes"] = tuple(x.strip() for x in c.split(",") if x.strip()) if isinstance(c, str) else tuple(c)
    return RunConfig(**merged)
