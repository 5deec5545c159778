"""Run configuration: a typed dataclass, YAML presets in configs/ that override it, CLI flags on top."""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, short
from . import zoo

NORMALIZATIONS = ("raw", "standardize", "l2")
PRECISIONS = ("fp32", "fp16", "bf16")
FOREGROUND_RULES = ("border", "center")
INSTANCE_RULES = ("combined", "inside", "border", "center")
MASK_SCORES = ("margin", "margin_inside")
METHODS = ("variants", "grabcut", "kmeans-rgb", "activations")
FITS = ("crop", "pad", "resize")  # how `label` puts an image into the generator's square frame
PROJECTION_LOSSES = ("pixel", "multiscale")
CLUSTER_AT = ("photo", "frame")  # where `label` clusters a photo's box crops: at its own pixels, or in the frame
PROJECTION_SPACES = ("w+", "w")
REFINEMENTS = ("auto", "none", "grabcut")  # `label --refine` (instseg.photo implements them)
WORLDS = ("classic", "flat", "textured")  # the toy renderer's worlds (instseg.toy.render draws them)


MAX_SEEDS = 10_000_000  # one run; larger datasets are made in shards (--seeds ranges) and merged
MAX_SEED = 2**32 - 2  # NVIDIA's z per seed uses RandomState(seed), which takes seeds below 2**32

# Inclusive (low, high) bounds of the numeric fields; every float must also be finite.
BOUNDS: dict[str, tuple[float, float]] = {
    "variants": (2, 1024), "k": (2, 32), "box_k": (0, 32), "kmeans_iters": (1, 10_000), "kmeans_tol": (0, 1), "repeats": (1, 32),
    "truncation_psi": (-2, 2), "truncation_centres": (1, 4096), "join_weight": (0, 1000), "work_res": (4, 4096), "conf": (0, 1),
    "max_det": (1, 1000), "box_margin": (0, 2), "clip_margin": (0, 2), "nms_iou": (0, 1), "min_area": (0, 1 << 24), "batch": (1, 1024), "encoders": (-1, 64),
}


@dataclass(frozen=True)
class RunConfig:
    gan: str = "toy-flat"  # preset name, checkpoint path or URL
    method: str = "variants"  # variants (ours) | grabcut | kmeans-rgb | activations (single-image baselines)
    seeds: tuple[int, ...] = tuple(range(8))  # one image per seed
    variants: int = 32  # N style-mixed variants per image
    mix_from: tuple[int, ...] = (4, 5)  # crossover c: ws[:c] kept, ws[c:] from a fresh z (one c drawn per variant)
    truncation_psi: float = 0.7
    truncation_centres: int = 1  # 1: toward w_avg (classic); k: toward the nearest of k W-space k-means centres
    features: str = "rgb"  # "rgb" or a synthesis layer name such as "b32.conv1"
    join_features: str = "none"  # box crops also cluster on the source's activations of this layer, or on its
    # own pixels ("image": for `label`, the real photo's), standardised
    join_weight: float = 1.0  # the joined features' weight in the squared distances, the variant stack's being 1
    work_res: int = 128  # longest side at which pixels are clustered (capped by the image)
    normalize: str = "raw"  # per-pixel normalisation over the N*C values: raw | standardize | l2
    k: int = 3  # clusters (whole image)
    box_k: int = 0  # clusters inside a detector box's crop; 0: the same as k
    kmeans_iters: int = 100
    kmeans_tol: float = 1e-4
    repeats: int = 1  # k-means repeats with fresh variants, combined by per-pixel majority vote
    foreground: str = "border"  # whole-image foreground rule: border | center
    category: str = "foreground"  # the single category of a whole-image (--detector none) run
    detector: str = "none"  # none | yolo:PATH|NAME | frcnn[:PATH]
    classes: tuple[str, ...] = ()  # detector classes to keep, or a conditional generator's classes to make (categories)
    class_names: tuple[str, ...] = ()  # a class-conditional generator's class names, one per index
    conf: float = 0.25  # detector score threshold
    max_det: int = 20  # detections per image
    box_margin: float = 0.15  # crop = box grown by this fraction of its size on each side
    clip_margin: float = 0.1  # instance masks are cut to the box grown by this fraction (>= box_margin: no cut)
    instance_rule: str = "inside"  # which crop clusters form the instance: inside | combined | border | center
    mask_score: str = "margin_inside"  # margin: mean k-means margin over the mask; margin_inside: x its share in the box
    nms_iou: float = 0.5  # mask-NMS: drop an instance overlapping a better one by more than this IoU
    min_area: int = 16  # instances smaller than this many pixels are dropped
    batch: int = 8  # seeds per chunk, processed together (rows per generator call follow a memory budget)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # generator arithmetic: fp32 | fp16 (CUDA only) | bf16; clustering stays fp32
    compile: bool = False  # torch.compile the synthesis layers (same results; pays off on long GPU runs)
    encoders: int = -1  # processes that encode PNGs and records beside the compute; -1: by device (0 on a CPU)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            want = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(str(f.type))
            if want and ((isinstance(v, bool) and want is not bool) or not isinstance(v, want)):
                raise UserError(f"{_flag(f.name)} must be {str(f.type)}, got {short(v)}")
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"{_flag(f.name)} must be a finite number, got {v}")
            if f.name in BOUNDS and not BOUNDS[f.name][0] <= v <= BOUNDS[f.name][1]:
                lo, hi = BOUNDS[f.name]
                raise UserError(f"{_flag(f.name)} must lie in {_num(lo)}..{_num(hi)}, got {v}")
        for name, typ in (("seeds", int), ("mix_from", int), ("classes", str), ("class_names", str)):
            v = getattr(self, name)
            if not isinstance(v, tuple) or not all(isinstance(x, typ) and not isinstance(x, bool) for x in v):
                raise UserError(f"{_flag(name)} must be a list of {typ.__name__} values, got {short(v)}")
        for name, allowed in (("method", METHODS), ("normalize", NORMALIZATIONS), ("foreground", FOREGROUND_RULES),
                              ("instance_rule", INSTANCE_RULES), ("mask_score", MASK_SCORES),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.box_k == 1:
            raise UserError("--box-k must be 0 (same as --k) or at least 2, got 1")
        if not self.mix_from or min(self.mix_from) < 1:
            raise UserError(f"--mix-from needs crossover indices >= 1, got {self.mix_from}")
        if not self.seeds:
            raise UserError("no seeds to run")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError("seeds repeat values; each seed is one image")
        if len(self.seeds) > MAX_SEEDS or min(self.seeds) < 0 or max(self.seeds) > MAX_SEED:
            raise UserError(f"seeds must be at most {MAX_SEEDS:,} values in 0..{MAX_SEED}")
        for name in ("classes", "class_names"):
            v = getattr(self, name)
            if any(not n.strip() for n in v) or len(set(v)) != len(v):
                raise UserError(f"{_flag(name)} must be distinct, non-empty names, got {short(','.join(v))}")
        if not self.category.strip() or not self.gan or not self.device:
            raise UserError("category, --gan and --device must not be empty")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def parse_seeds(text: str, what: str = "seed", limit: int = MAX_SEEDS) -> tuple[int, ...]:
    """'0-99,120' -> (0, ..., 99, 120); ranges are inclusive and must ascend."""
    spans: list[tuple[int, int]] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{1,12})(?:-(\d{1,12}))?", part)
        if not m:
            raise UserError(f"bad {what} spec {part!r} in {text!r}: use integers and ranges like 0-99,120")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise UserError(f"bad {what} range {part!r}: the end is below the start")
        if b > MAX_SEED:
            raise UserError(f"{what} {b} is too large: {what}s lie in 0..{MAX_SEED}")
        spans.append((a, b))
    if sum(b - a + 1 for a, b in spans) > limit:
        raise UserError(f"{what} spec {text!r} asks for more than {limit:,} values; split the run into shards")
    values = [v for a, b in spans for v in range(a, b + 1)]
    if len(set(values)) != len(values):
        raise UserError(f"{what} spec {text!r} repeats values")
    return tuple(values)


def format_seeds(seeds: tuple[int, ...] | list[int]) -> str:
    """(0, 1, 2, 5) -> '0-2,5': the inverse of parse_seeds, in the seeds' order."""
    parts: list[str] = []
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(f"{seeds[i]}-{seeds[j]}" if j > i else str(seeds[i]))
        i = j + 1
    return ",".join(parts)


def parse_ints(text: str) -> tuple[int, ...]:
    """Crossover lists: '4,5' or '4-6' -> (4, 5) or (4, 5, 6)."""
    return parse_seeds(text, what="crossover")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def field_default(name: str) -> Any:
    """The dataclass default of a RunConfig field (CLI help reads it from here)."""
    return next(f.default for f in dataclasses.fields(RunConfig) if f.name == name)


def check_keys(data: dict[str, Any], where: str, label_keys: bool = False) -> None:
    """Every key a RunConfig field (or, with `label_keys`, a `label.` key or `label:` mapping, checked later
    against LabelConfig), with a did-you-mean for a near miss."""
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of RunConfig fields, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(RunConfig)]
    for k in data:
        if label_keys and (k == "label" or str(k).startswith("label.")):
            continue
        if k not in names:
            near = difflib.get_close_matches(str(k), names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise UserError(f"unknown config key {k!r} in {where}{hint}")


MAX_YAML_BYTES = 1 << 20  # a --config file or a --set value larger than this is refused


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with the 1.2 core schema's plain scalars (010 is 10; no, on, 0x10, 1:30 and dates stay
    strings), no aliases (an alias bomb expands to gigabytes) and no duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        keys = [self.construct_object(k, deep=True) for k, _ in node.value]
        dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None) if all(
            isinstance(k, (str, int, float, bool, type(None))) for k in keys) else None
        if dup is not None:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {str(dup)[:40]!r}", node.start_mark)
        return super().construct_mapping(node, deep)


_CORE = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")
_Yaml12Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in _CORE] for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(_CORE[0], re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Yaml12Loader.add_implicit_resolver(_CORE[1], re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(
    _CORE[2], re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                         r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Yaml12Loader.add_constructor(_CORE[1], lambda loader, node: int(loader.construct_scalar(node), 10))


def read_yaml(text: str, where: str) -> Any:
    """Parse YAML text with the strict loader; one-line errors that never echo an expanded value."""
    if len(text) > MAX_YAML_BYTES:
        raise UserError(f"{where} is larger than {MAX_YAML_BYTES >> 20} MB; refusing to read it")
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where} is not valid YAML ({str(problem)[:120]})") from None
    except RecursionError:
        raise UserError(f"{where} nests too deeply") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of RunConfig fields (the `run:` part of a preset, for a custom checkpoint)."""
    try:
        raw = Path(path).read_bytes()[: MAX_YAML_BYTES + 1]
    except OSError as e:
        raise UserError(f"cannot read --config {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--config {path} is not UTF-8 text") from None
    data = read_yaml(text, f"--config {path}")
    data = {} if data is None else data
    check_keys(data, f"--config {path}", label_keys=True)
    return data


def parse_set(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """--set key=value pairs; values are read as YAML scalars or lists (k=4, mix_from=[6,7])."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {short(item)}: use key=value, e.g. --set nms_iou=0.6")
        out[key.strip()] = read_yaml(value, f"--set {key.strip()[:40]}") if value.strip() else ""
    check_keys(out, "--set", label_keys=True)
    return out


def _int_list(v: Any, k: str) -> tuple[int, ...]:
    what = "seed" if k == "seeds" else "crossover"
    if isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return parse_seeds(str(v), what)
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return tuple(v)
    raise UserError(f"{_flag(k)} must be integers, a list of integers or a range such as 0-99, got {short(v)}")


def _coerce(merged: dict[str, Any]) -> dict[str, Any]:
    """YAML and --set values to the field types (lists -> tuples, '0-9' strings -> seed tuples)."""
    for k in ("seeds", "mix_from"):
        if k in merged:
            merged[k] = _int_list(merged[k], k)
    for k in ("classes", "class_names"):
        if k in merged:
            c = merged[k]
            if isinstance(c, str):  # an empty slot ("a,,b") stays, to be refused: dropping it shifts the names
                merged[k] = tuple(x.strip() for x in c.split(",")) if c.strip() else ()
            elif isinstance(c, (list, tuple)) and all(isinstance(x, str) for x in c):
                merged[k] = tuple(c)
            else:
                raise UserError(f"{_flag(k)} must be class names (a,b or a list), got {short(c)}")
    for k in ("truncation_psi", "kmeans_tol", "conf", "box_margin", "clip_margin", "nms_iou", "join_weight"):
        if isinstance(merged.get(k), int) and not isinstance(merged.get(k), bool):
            merged[k] = float(merged[k])
    return merged


# What `instseg label` changes for photos: box crops also cluster on the photo's own pixels, at this weight
# (chosen on the flat world's tuning scenes; the sweep's table is in git history, BENCHMARKS.md shows the result).
PHOTO_DEFAULTS: dict[str, Any] = {"join_features": "image", "join_weight": 16.0}


def build_config(gan: str, overrides: dict[str, Any], config_file: dict[str, Any] | None = None,
                 sets: dict[str, Any] | None = None, photos: bool = False) -> RunConfig:
    """Dataclass defaults <- the preset (detector, classes, category, its `run` fields) <- PHOTO_DEFAULTS
    when labelling photos <- --config FILE <- --set pairs <- CLI flags that were set (`overrides`)."""
    merged: dict[str, Any] = {"gan": gan}
    p = zoo.presets().get(gan)
    if p is not None:
        merged.update(detector=p.detector, classes=p.classes, category=p.category, class_names=p.class_names)
        merged.update(p.run)
    if photos:  # what labelling photos changes: the preset's own photo settings, else the defaults
        merged.update(PHOTO_DEFAULTS if p is None or p.photos is None else p.photos)
    for layer, where in ((config_file or {}, "--config"), (sets or {}, "--set"),
                         ({k: v for k, v in overrides.items() if v is not None}, "the options")):
        check_keys(layer, where)
        if "gan" in layer and where != "the options":
            raise UserError(f"set the generator with --gan, not in {where}")
        merged.update(layer)
    return RunConfig(**_coerce(merged))


@dataclass(frozen=True)
class LabelConfig:
    """`instseg label`'s projection and refinement settings; bounds and choices in LABEL_BOUNDS/LABEL_CHOICES,
    which the CLI's options and `--set label.KEY=VALUE` both read."""

    fit: str = "crop"  # crop | pad | resize: how an image enters the generator's square frame
    steps: int = 100  # projection steps (100 read as well as 300 and 600 once the photo joins: real-images tuning)
    lr: float = 0.05  # projection learning rate (Adam, cosine decay over the last quarter)
    loss: str = "pixel"  # pixel | multiscale (pixel MSE plus L1 at 1/2 and 1/4 scale)
    space: str = "w+"  # w+: a w per layer; w: one w shared by all layers
    min_psnr: float = 20.0  # below this reconstruction PSNR (dB) an image is flagged low_fidelity
    batch: int = 16  # images projected together
    copy: bool = False  # copy the user's files into images/ (default: hard links where possible)
    cluster_at: str = "photo"  # photo: box crops clustered at the photo's pixels (up to 4x the frame, 1024 px); frame: in it
    error_scale: float = 0.2  # the variants' weight at a pixel: exp(-(e / this)^2), e its reconstruction error; 0: 1
    refine: str = "auto"  # auto | none | grabcut: our masks refined with the photo's own evidence, at its size

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            flag = f"label.{f.name}"
            if f.name in LABEL_CHOICES and v not in LABEL_CHOICES[f.name]:
                raise UserError(f"{flag} must be one of {', '.join(LABEL_CHOICES[f.name])}, got {short(v)}")
            if f.name in LABEL_BOUNDS:
                lo, hi = LABEL_BOUNDS[f.name]
                kind = int if isinstance(f.default, int) else float
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
                    raise UserError(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {short(v)}")
                if not math.isfinite(v) or not lo <= v <= hi or (f.name == "lr" and v <= 0):
                    raise UserError(f"{flag} must lie in {_num(lo)}..{_num(hi)}{' and be above 0' if f.name == 'lr' else ''}, "
                                    f"got {v}")
            if f.name == "copy" and not isinstance(v, bool):
                raise UserError(f"{flag} must be true or false, got {short(v)}")


LABEL_BOUNDS: dict[str, tuple[float, float]] = {
    "steps": (1, 100_000), "lr": (0, 10), "min_psnr": (0, 100), "batch": (1, 4096), "error_scale": (0, 10)}
LABEL_CHOICES: dict[str, tuple[str, ...]] = {
    "fit": FITS, "loss": PROJECTION_LOSSES, "space": PROJECTION_SPACES, "cluster_at": CLUSTER_AT,
    "refine": REFINEMENTS}


def label_config(sets: dict[str, Any], flags: dict[str, Any], gan: str | None = None) -> LabelConfig:
    """LabelConfig defaults <- the preset's `label` fields <- `label.` keys of --config/--set <- the label flags
    that were given."""
    names = [f.name for f in dataclasses.fields(LabelConfig)]
    p = zoo.presets().get(gan) if gan else None
    sets = {**(p.label if p else {}), **sets}
    for k in sets:
        if k not in names:
            near = difflib.get_close_matches(str(k), names, n=1)
            raise UserError(f"unknown label key 'label.{k}'" + (f"; did you mean 'label.{near[0]}'?" if near else ""))
    return LabelConfig(**{**sets, **{k: v for k, v in flags.items() if v is not None}})


def split_label_keys(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A --set/--config mapping split into RunConfig keys and `label.` keys (a `label:` mapping in a file too)."""
    run, lab = {}, {}
    for k, v in data.items():
        if k == "label" and isinstance(v, dict):
            lab.update(v)
        elif isinstance(k, str) and k.startswith("label."):
            lab[k[len("label."):]] = v
        else:
            run[k] = v
    return run, lab


def label_choices(name: str) -> tuple[str, ...]:
    """The values a LabelConfig choice field takes."""
    return LABEL_CHOICES[name]


def label_default(name: str) -> Any:
    """The dataclass default of a LabelConfig field (`instseg label`'s help reads it from here)."""
    return next(f.default for f in dataclasses.fields(LabelConfig) if f.name == name)
