"""Generator checkpoints: detect the format and read it into our `Generator`.

Supported, all read with PyTorch alone and without running code stored in the file:
  (a) NVIDIA StyleGAN2 TensorFlow pickles (`Gs` of the (G, D, Gs) tuple);
  (b) StyleGAN2-ADA / StyleGAN3-repo PyTorch pickles (`G_ema`): StyleGAN2 (class-conditional too) and
      StyleGAN3 -T and -R;
  (c) rosinality state dicts {"g_ema", "latent_avg"};
  (d) the native format written by `save_native`.
"""
from __future__ import annotations

import argparse
import codecs
import collections
import dataclasses
import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import CheckpointError
from .generator import Generator, GeneratorConfig
from .stylegan3 import FAMILY as SG3, LayerSpec, SG3Config, SG3Generator
from .io import atomic_torch_save

NATIVE_FORMAT = "instseg-native"
SUPPORTED = (
    "supported formats: NVIDIA StyleGAN2 TF pickle, StyleGAN2-ADA/StyleGAN3-repo PyTorch pickle "
    "(StyleGAN2, conditional or not, and StyleGAN3 -T/-R), rosinality {g_ema, latent_avg} .pt, instseg native .pt"
)
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# ---------------------------------------------------------------------------------------
# Native format


def save_native(G: Generator | SG3Generator, path: str | os.PathLike, meta: dict | None = None, half: bool = False) -> None:
    """Write the native format: architecture config + state dict (+ free-form meta).

    `half` stores float16 tensors (half the size; loading casts back to float32).
    """
    sd = {k: v.detach().cpu() for k, v in G.state_dict().items()}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    atomic_torch_save({"format": NATIVE_FORMAT, "version": 1, "config": G.cfg.to_dict(), "state_dict": sd,
                       "meta": meta or {}}, path)


def native_meta(path: str | os.PathLike) -> dict:
    """The free-form meta of a native checkpoint."""
    return dict(torch.load(path, map_location="cpu", weights_only=True).get("meta", {}))


def _from_native(obj: dict) -> Generator | SG3Generator:
    conf = obj["config"]
    if not isinstance(conf, dict):
        raise CheckpointError(f"native checkpoint: its config is not a mapping; {SUPPORTED}")
    cfg = SG3Config(**conf) if conf.get("family") == SG3 else GeneratorConfig(**conf)
    return _build(cfg, obj["state_dict"], "native checkpoint")


# ---------------------------------------------------------------------------------------
# Restricted unpickling


class _TFNetwork:
    """Stand-in for dnnlib.tflib.network.Network: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: dict) -> None:
        self.state = state

    def variables(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(v) for name, v in self.state["variables"]}


class _Persistent:
    """Stand-in for an object pickled by torch_utils.persistence; its embedded source is never run."""

    def __init__(self, meta: dict):
        self.class_name = meta.get("class_name")
        self.module_src = meta.get("module_src") or ""
        self.state = meta.get("state") or {}


class _EasyDict(dict):
    pass


def _load_storage_bytes(b: bytes) -> Any:
    return torch.load(io.BytesIO(b), weights_only=True)


def _rebuild_parameter(data: Tensor, requires_grad: bool, backward_hooks: Any, *state: Any) -> Tensor:
    return data


DIRECT_ARRAY_BYTES = 1 << 20  # a pickle's own arrays arrive with their data; one built from a bare shape is tiny


class _GuardedArray(np.ndarray):
    """numpy.ndarray as a pickle may name it: a class for numpy's `_reconstruct` (whose data the pickle then
    holds), or a constructor called on a bare shape, refused above DIRECT_ARRAY_BYTES (a few bytes of
    pickle must not allocate gigabytes)."""

    def __new__(cls, shape: Any = (), dtype: Any = float, *args: Any, **kw: Any) -> np.ndarray:
        try:
            dims = [int(shape)] if np.ndim(shape) == 0 else [int(d) for d in shape]
            size = np.dtype(dtype).itemsize
        except (TypeError, ValueError, OverflowError):
            raise CheckpointError(f"refused to unpickle: an array of shape {short_repr(shape)}; {SUPPORTED}") from None
        total = size
        for d in dims:
            total *= max(d, 0)
        if total > DIRECT_ARRAY_BYTES:
            raise CheckpointError(f"refused to unpickle: an empty array of {total} bytes is built from its shape "
                                  f"alone; {SUPPORTED}")
        return np.ndarray(tuple(dims), dtype, *args, **kw)


def _numpy(name: str) -> Any:
    core = getattr(np, "_core", None) or np.core
    return getattr(core.multiarray, name)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): _TFNetwork,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): _GuardedArray,
    ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles (old TF files) store byte strings this way
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _numpy("_reconstruct")
    _ALLOWED[(_mod, "scalar")] = _numpy("scalar")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(f"refused to unpickle: it asks for {module}.{name}, which is not allowed; {SUPPORTED}")


# ---------------------------------------------------------------------------------------
# Architecture inference shared by the official formats


def _infer_channels(chans: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing `chans` = {res: channels} under our formula."""
    cmax = max(chans.values())
    below = [r for r, c in chans.items() if c < cmax]
    base = chans[min(below)] * min(below) if below else cmax * max(chans)
    return base, cmax


def _config(z_dim: int, w_dim: int, img_ch: int, chans: dict[int, int], n_map: int, lr_mul: float,
            clamp: float | None = None, out_hw: tuple[int | None, int | None] = (None, None),
            hidden: int | None = None, c_dim: int = 0) -> GeneratorConfig:
    base, cmax = _infer_channels(chans)
    cfg = GeneratorConfig(resolution=max(chans), z_dim=z_dim, w_dim=w_dim, img_channels=img_ch, channel_base=base,
                          channel_max=cmax, mapping_layers=n_map, mapping_lr_mul=lr_mul, conv_clamp=clamp,
                          out_height=out_hw[0], out_width=out_hw[1],
                          mapping_hidden=None if hidden in (None, w_dim) or n_map < 2 else hidden, c_dim=c_dim)
    if any(cfg.channels(r) != c for r, c in chans.items()):
        raise CheckpointError(f"unsupported channel layout {chans}; {SUPPORTED}")
    return cfg


def make_generator(cfg: GeneratorConfig | SG3Config) -> Generator | SG3Generator:
    """An untrained generator of either family for its config."""
    return SG3Generator(cfg) if isinstance(cfg, SG3Config) else Generator(cfg)


def _build(cfg: GeneratorConfig | SG3Config, sd: dict[str, Tensor], source: str) -> Generator | SG3Generator:
    """A Generator of `cfg` holding `sd`, checked key by key and shape by shape before any memory is
    allocated (on the meta device), so a file with a huge config and few weights is refused cheaply."""
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{source}: the weights are not a mapping of tensors; {SUPPORTED}")
    with torch.device("meta"):
        own = make_generator(cfg).state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        kind = "StyleGAN3 generator" if isinstance(cfg, SG3Config) else "StyleGAN2 skip generator"
        raise CheckpointError(f"{source}: variables do not match a {kind} "
                              f"(missing {missing[:3]}, unexpected {extra[:3]}); {SUPPORTED}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    check_tensors(sd, source)
    G = make_generator(cfg)
    G.load_state_dict({k: v.float() for k, v in sd.items()})
    return G


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensors(sd: dict[str, Tensor], source: str) -> None:
    """Every tensor a loader accepts: a float dtype, its values stored (each element backed by its own bytes:
    no stride-0 or overlapping views that materialise into more memory than the file holds) and finite.
    What the tensors claim in all is counted against what their storages hold before anything is allocated."""
    claimed, held, seen = 0, 0, set()
    for k, v in sd.items():
        if v.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{source}: {k} is {str(v.dtype).replace('torch.', '')}, not a float tensor")
        n = v.numel() * v.element_size()
        st = v.untyped_storage()
        if v.numel() > 1 and not _dense(v) or v.storage_offset() * v.element_size() + n > st.nbytes():
            raise CheckpointError(f"{source}: {k} is not backed by its own stored values (a strided or repeated "
                                  "view); refused")
        claimed += n
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            held += st.nbytes()
    if claimed > held:
        raise CheckpointError(f"{source}: its tensors claim {claimed} bytes but store {held}; refused")
    for k, v in sd.items():
        if not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{source}: {k} holds NaN or infinite values; refused")


def _dense(v: Tensor) -> bool:
    """Its elements occupy numel distinct, adjacent slots (contiguous in some order of the dimensions)."""
    dims = sorted((st, sz) for st, sz in zip(v.stride(), v.shape) if sz > 1)
    expect = 1
    for st, sz in dims:
        if st != expect:
            return False
        expect *= sz
    return True


def _t(a: Any) -> Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32)).clone()


# ---------------------------------------------------------------------------------------
# (a) TensorFlow pickles


def _from_tf(Gs: _TFNetwork) -> Generator:
    comps = Gs.state.get("components", {})
    if "mapping" not in comps or "synthesis" not in comps:
        raise CheckpointError(f"TF pickle without mapping/synthesis components; {SUPPORTED}")
    mv, sv, own = comps["mapping"].variables(), comps["synthesis"].variables(), Gs.variables()
    n_map = len([k for k in mv if re.fullmatch(r"Dense\d+/weight", k)])
    z_dim, hidden = mv["Dense0/weight"].shape
    w_dim = mv[f"Dense{n_map - 1}/weight"].shape[1]
    ress = sorted({int(m.group(1)) for k in sv if (m := re.match(r"(\d+)x\1/", k))})
    if any(f"{r}x{r}/ToRGB/weight" not in sv for r in ress):
        raise CheckpointError(f"only the skip generator (config-e/f) is supported; {SUPPORTED}")
    chans = {r: sv[f"{r}x{r}/Conv{'' if r == 4 else '1'}/weight"].shape[3] for r in ress}
    img_ch = sv["4x4/ToRGB/weight"].shape[3]
    kw = {**comps["mapping"].state.get("static_kwargs", {}), **Gs.state.get("static_kwargs", {})}
    cfg = _config(z_dim, w_dim, img_ch, chans, n_map, float(kw.get("mapping_lrmul", 0.01)), hidden=hidden)

    sd: dict[str, Tensor] = {"mapping_net.w_avg": _t(own["dlatent_avg"])}
    for i in range(n_map):
        sd[f"mapping_net.fcs.{i}.weight"] = _t(mv[f"Dense{i}/weight"]).t()
        sd[f"mapping_net.fcs.{i}.bias"] = _t(mv[f"Dense{i}/bias"])
    layer = 0
    for bi, r in enumerate(ress):
        scope = f"{r}x{r}"
        if r == 4:
            sd[f"blocks.{bi}.const"] = _t(sv[f"{scope}/Const/const"])[0]
            convs = [("conv1", "Conv", False)]
        else:
            convs = [("conv0", "Conv0_up", True), ("conv1", "Conv1", False)]
        for name, tf_name, flip in convs:
            p, q = f"blocks.{bi}.{name}", f"{scope}/{tf_name}"
            w = _t(sv[f"{q}/weight"]).permute(3, 2, 0, 1)
            sd[f"{p}.weight"] = w.flip([2, 3]) if flip else w
            sd[f"{p}.affine.weight"] = _t(sv[f"{q}/mod_weight"]).t()
            sd[f"{p}.affine.bias"] = _t(sv[f"{q}/mod_bias"]) + 1
            sd[f"{p}.bias"] = _t(sv[f"{q}/bias"])
            sd[f"{p}.noise_strength"] = _t(sv[f"{q}/noise_strength"]).reshape([])
            sd[f"{p}.noise_const"] = _t(sv[f"noise{layer}"])[0, 0]
            layer += 1
        q = f"{scope}/ToRGB"
        sd[f"blocks.{bi}.torgb.weight"] = _t(sv[f"{q}/weight"]).permute(3, 2, 0, 1)
        sd[f"blocks.{bi}.torgb.affine.weight"] = _t(sv[f"{q}/mod_weight"]).t()
        sd[f"blocks.{bi}.torgb.affine.bias"] = _t(sv[f"{q}/mod_bias"]) + 1
        sd[f"blocks.{bi}.torgb.bias"] = _t(sv[f"{q}/bias"])
    return _build(cfg, sd, "TF pickle")


# ---------------------------------------------------------------------------------------
# (b) StyleGAN2-ADA / StyleGAN3-repo pickles


def _flatten_persistent(obj: _Persistent, prefix: str = "") -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for k, v in (obj.state.get(group) or {}).items():
            if v is not None:
                out[prefix + k] = v
    for k, m in (obj.state.get("_modules") or {}).items():
        if isinstance(m, _Persistent):
            out.update(_flatten_persistent(m, f"{prefix}{k}."))
    return out


def _int(v: Any, name: str, lo: int = 0, hi: int = 1 << 20) -> int:
    """A size or count from a pickle's attributes (a Python or numpy integer, or a 2-vector of equal ones)."""
    a = np.asarray(v)
    if a.ndim == 1 and a.size == 2 and a[0] == a[1]:
        a = a[0]
    if a.ndim != 0 or a.dtype.kind not in "iu" or not lo <= int(a) <= hi:
        raise CheckpointError(f"{name} must be an integer in {lo}..{hi} (square maps only), got {short_repr(v)}")
    return int(a)


def _float(v: Any, name: str) -> float:
    a = np.asarray(v)
    if a.ndim != 0 or a.dtype.kind not in "iuf" or not np.isfinite(a):
        raise CheckpointError(f"{name} must be a finite number, got {short_repr(v)}")
    return float(a)


def short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _mapping(st: dict, src: dict[str, Tensor]) -> tuple[int, float, int]:
    """(layers, lr multiplier, class count) of an ADA/StyleGAN3 mapping network."""
    mapping = st["_modules"]["mapping"]
    n_map = _int(mapping.state.get("num_layers", len([k for k in src if re.fullmatch(r"mapping\.fc\d+\.weight", k)])),
                 "mapping num_layers", 1, 64)
    lr_mul = _float(mapping.state["_modules"]["fc0"].state.get("bias_gain", 0.01), "mapping lr multiplier")
    c_dim = _int(st.get("c_dim", 0), "c_dim", 0, 100_000)
    if c_dim and "mapping.embed.weight" not in src:
        raise CheckpointError(f"a conditional generator (c_dim={c_dim}) without its class embedding; {SUPPORTED}")
    if c_dim and tuple(src["mapping.embed.weight"].shape) != (int(st["w_dim"]), c_dim):
        raise CheckpointError(f"class embedding of shape {tuple(src['mapping.embed.weight'].shape)}: only "
                              f"embed_features = w_dim is supported; {SUPPORTED}")
    return n_map, lr_mul, c_dim


def _mapping_sd(src: dict[str, Tensor], n_map: int, c_dim: int) -> dict[str, Tensor]:
    sd: dict[str, Tensor] = {"mapping_net.w_avg": src["mapping.w_avg"]}
    for i in range(n_map):
        for k in ("weight", "bias"):
            sd[f"mapping_net.fcs.{i}.{k}"] = src[f"mapping.fc{i}.{k}"]
    if c_dim:
        sd["mapping_net.embed.weight"], sd["mapping_net.embed.bias"] = src["mapping.embed.weight"], src["mapping.embed.bias"]
    return sd


def _from_sg3(G: _Persistent) -> SG3Generator:
    """A StyleGAN3 snapshot: every layer's geometry from its attributes (checked for consistency), every
    weight, filter and buffer from its state."""
    st = G.state
    syn = st["_modules"]["synthesis"]
    src = _flatten_persistent(G)
    n_map, lr_mul, c_dim = _mapping(st, src)
    names = syn.state.get("layer_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise CheckpointError(f"StyleGAN3 synthesis without a list of layer names; {SUPPORTED}")
    inp = syn.state["_modules"]["input"].state
    specs = []
    for n in names:
        m = syn.state["_modules"].get(n)
        if not isinstance(m, _Persistent):
            raise CheckpointError(f"StyleGAN3 layer {n} is missing; {SUPPORTED}")
        a = m.state
        up_taps, down_taps = _int(a["up_taps"], f"{n}.up_taps", 1, 256), _int(a["down_taps"], f"{n}.down_taps", 1, 256)
        clamp = a.get("conv_clamp")
        try:
            specs.append(LayerSpec(
                _int(a["in_channels"], f"{n}.in_channels", 1, 8192), _int(a["out_channels"], f"{n}.out_channels", 1, 8192),
                _int(a["in_size"], f"{n}.in_size", 1, 8192), _int(a["out_size"], f"{n}.out_size", 1, 8192),
                _float(a["in_sampling_rate"], f"{n}.in_sampling_rate"),
                _float(a["out_sampling_rate"], f"{n}.out_sampling_rate"),
                _int(a["conv_kernel"], f"{n}.conv_kernel", 1, 16), _int(a["up_factor"], f"{n}.up_factor", 1, 16),
                _int(a["down_factor"], f"{n}.down_factor", 1, 16), up_taps, down_taps, bool(a.get("down_radial", False)),
                tuple(_int(v, f"{n}.padding", -(1 << 16), 1 << 16) for v in a["padding"]), bool(a["is_torgb"]),
                bool(a.get("use_fp16", False)), None if clamp is None else _float(clamp, f"{n}.conv_clamp"),
                *(_float(a.get(k, 0.0), f"{n}.{k}") for k in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"))))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"StyleGAN3 layer {n}: {e}; {SUPPORTED}") from None
    try:
        cfg = SG3Config(
            resolution=_int(syn.state["img_resolution"], "img_resolution", 4, 8192), layers=tuple(specs),
            input_channels=_int(inp["channels"], "input channels", 1, 8192), input_size=_int(inp["size"], "input size", 1, 8192),
            input_rate=_float(inp["sampling_rate"], "input sampling_rate"), input_bandwidth=_float(inp["bandwidth"], "input bandwidth"),
            z_dim=_int(st["z_dim"], "z_dim", 1, 8192), w_dim=_int(st["w_dim"], "w_dim", 1, 8192), c_dim=c_dim,
            img_channels=_int(st["img_channels"], "img_channels", 1, 16), mapping_layers=n_map, mapping_lr_mul=lr_mul,
            mapping_hidden=None, output_scale=_float(syn.state.get("output_scale", 1.0), "output_scale"))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"StyleGAN3 synthesis: {e}; {SUPPORTED}") from None
    if cfg.num_ws != _int(syn.state.get("num_ws", cfg.num_ws), "num_ws", 1, 128):
        raise CheckpointError(f"StyleGAN3 synthesis says num_ws {syn.state['num_ws']}, its layers take {cfg.num_ws}")
    sd = _mapping_sd(src, n_map, c_dim)
    for k in ("weight", "affine.weight", "affine.bias", "transform", "freqs", "phases"):
        sd[f"input.{k}"] = src[f"synthesis.input.{k}"]
    for i, n in enumerate(names):
        for k in ("weight", "bias", "affine.weight", "affine.bias", "magnitude_ema", "up_filter", "down_filter"):
            if f"synthesis.{n}.{k}" in src:
                sd[f"layers.{i}.{k}"] = src[f"synthesis.{n}.{k}"]
    return _build(cfg, sd, "StyleGAN3 pickle")


def _from_ada(G: _Persistent) -> Generator | SG3Generator:
    st = G.state
    syn = st.get("_modules", {}).get("synthesis")
    if not isinstance(syn, _Persistent):
        raise CheckpointError(f"ADA pickle without a synthesis network; {SUPPORTED}")
    if "input" in syn.state.get("_modules", {}):
        return _from_sg3(G)
    src = _flatten_persistent(G)
    n_map, lr_mul, c_dim = _mapping(st, src)
    ress = sorted(int(k.split(".")[1][1:]) for k in src if re.fullmatch(r"synthesis\.b\d+\.conv1\.weight", k))
    chans = {r: src[f"synthesis.b{r}.conv1.weight"].shape[0] for r in ress}
    clamp = syn.state["_modules"][f"b{ress[-1]}"].state.get("conv_clamp")
    cfg = _config(int(st["z_dim"]), int(st["w_dim"]), int(st["img_channels"]), chans, n_map, lr_mul,
                  None if clamp is None else float(clamp), hidden=int(src["mapping.fc0.weight"].shape[0]), c_dim=c_dim)
    sd = _mapping_sd(src, n_map, c_dim)
    for bi, r in enumerate(ress):  # ADA's block names are ours: synthesis.b{r}.X -> blocks.{i}.X
        prefix = f"synthesis.b{r}."
        for k, v in src.items():
            part = k[len(prefix):].split(".")[0] if k.startswith(prefix) else ""
            if part in ("const", "conv0", "conv1", "torgb") and not k.endswith("resample_filter"):
                sd[f"blocks.{bi}.{k[len(prefix):]}"] = v
    return _build(cfg, sd, "ADA pickle")


# ---------------------------------------------------------------------------------------
# (c) rosinality state dicts


def _from_rosinality(obj: dict) -> Generator:
    g = obj["g_ema"]
    n_map = len([k for k in g if re.fullmatch(r"style\.\d+\.weight", k)])
    w_dim = g["style.1.weight"].shape[0]
    n_up = len([k for k in g if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
    ress = [2**i for i in range(2, 3 + n_up)]
    chans = {4: g["conv1.conv.weight"].shape[1]}
    for i, r in enumerate(ress[1:]):
        chans[r] = g[f"convs.{2 * i}.conv.weight"].shape[1]
    cfg = _config(g["style.1.weight"].shape[1], g[f"style.{n_map}.weight"].shape[0], g["to_rgb1.conv.weight"].shape[1],
                  chans, n_map, 0.01, hidden=w_dim)

    sd: dict[str, Tensor] = {"mapping_net.w_avg": obj["latent_avg"].reshape(-1)}
    for i in range(n_map):
        sd[f"mapping_net.fcs.{i}.weight"] = g[f"style.{i + 1}.weight"]
        sd[f"mapping_net.fcs.{i}.bias"] = g[f"style.{i + 1}.bias"]

    def conv(p: str, q: str, layer: int) -> None:
        sd[f"{p}.weight"] = g[f"{q}.conv.weight"][0]
        sd[f"{p}.affine.weight"] = g[f"{q}.conv.modulation.weight"]
        sd[f"{p}.affine.bias"] = g[f"{q}.conv.modulation.bias"]
        sd[f"{p}.bias"] = g[f"{q}.activate.bias"]
        sd[f"{p}.noise_strength"] = g[f"{q}.noise.weight"].reshape([])
        sd[f"{p}.noise_const"] = g[f"noises.noise_{layer}"][0, 0]

    def torgb(p: str, q: str) -> None:
        sd[f"{p}.weight"] = g[f"{q}.conv.weight"][0]
        sd[f"{p}.affine.weight"] = g[f"{q}.conv.modulation.weight"]
        sd[f"{p}.affine.bias"] = g[f"{q}.conv.modulation.bias"]
        sd[f"{p}.bias"] = g[f"{q}.bias"].reshape(-1)

    sd["blocks.0.const"] = g["input.input"][0]
    conv("blocks.0.conv1", "conv1", 0)
    torgb("blocks.0.torgb", "to_rgb1")
    for i in range(n_up):
        conv(f"blocks.{i + 1}.conv0", f"convs.{2 * i}", 2 * i + 1)
        conv(f"blocks.{i + 1}.conv1", f"convs.{2 * i + 1}", 2 * i + 2)
        torgb(f"blocks.{i + 1}.torgb", f"to_rgbs.{i}")
    return _build(cfg, sd, "rosinality checkpoint")


# ---------------------------------------------------------------------------------------
# Entry points


def _torch_load(data: bytes) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(e))
        what = f"it asks for {m.group(1)}, which is not allowed" if m else "it holds objects other than tensors"
        raise CheckpointError(f"refused to load: {what}; {SUPPORTED}") from None


def detect_and_load(data: bytes, name: str = "checkpoint") -> tuple[Generator | SG3Generator, str]:
    """Read a checkpoint's bytes into a Generator; returns (generator, format name)."""
    try:
        if data[:4] == b"PK\x03\x04":
            obj: Any = _torch_load(data)
        else:
            obj = _RestrictedUnpickler(io.BytesIO(data)).load()
            if type(obj) is int and obj == _TORCH_LEGACY_MAGIC:
                obj = _torch_load(data)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{name} is corrupt or truncated ({type(e).__name__}); {SUPPORTED}") from None

    try:
        if isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT:
            return _from_native(obj), "native"
        if isinstance(obj, dict) and "g_ema" in obj:
            return _from_rosinality(obj), "rosinality"
        if isinstance(obj, dict) and isinstance(obj.get("G_ema"), _Persistent):
            G = _from_ada(obj["G_ema"])
            return G, ("stylegan3" if isinstance(G, SG3Generator) else "ada")
        if isinstance(obj, tuple) and len(obj) == 3 and isinstance(obj[2], _TFNetwork):
            return _from_tf(obj[2]), "tf"
    except CheckpointError:
        raise
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{name}: incomplete or unexpected contents ({type(e).__name__}: {e}); {SUPPORTED}") from None
    raise CheckpointError(f"{name}: unrecognised checkpoint contents; {SUPPORTED}")


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   out_hw: tuple[int, int] | None = None) -> Generator:
    """Load any supported checkpoint file into an eval-mode Generator on `device`.

    `out_hw` centre-crops the output, for generators trained on padded non-square data
    (LSUN car: 512x384 inside a 512x512 output).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    return generator_from_bytes(data, str(path), device, out_hw)


def generator_from_bytes(data: bytes, name: str = "checkpoint", device: str | torch.device = "cpu",
                         out_hw: tuple[int, int] | None = None) -> Generator:
    """`load_generator` for a checkpoint already in memory (e.g. shipped to Ray workers)."""
    G, _ = detect_and_load(data, name)
    if out_hw is not None and max(out_hw) != G.cfg.resolution:
        raise CheckpointError(f"{name} is a {G.cfg.resolution}px generator; a {out_hw[1]}x{out_hw[0]} one is needed")
    if out_hw is not None and out_hw != G.out_hw:
        if isinstance(G, SG3Generator):
            raise CheckpointError(f"{name} is a square StyleGAN3 generator; output crops are for StyleGAN2 only")
        cropped = Generator(dataclasses.replace(G.cfg, out_height=out_hw[0], out_width=out_hw[1]))
        cropped.load_state_dict(G.state_dict())
        G = cropped
    return G.eval().requires_grad_(False).to(device)
