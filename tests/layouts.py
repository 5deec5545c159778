"""Writers of small checkpoints in the official layouts, for the loader tests.

Each takes one of our generators and writes its weights under the official variable names
and shape conventions (TF: [kh, kw, in, out] kernels, Conv0_up flipped, mod_bias without +1;
ADA: persistence-pickled modules; rosinality: its state-dict names), so loading the file
back must give the same image as the native model.
"""
from __future__ import annotations

import functools
import pickle
import sys
import types

import numpy as np
import torch
from torch import nn

from instseg.generator import Generator


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------
# NVIDIA TF pickle


def _fake_dnnlib() -> type:
    """Register a stand-in dnnlib.tflib.network.Network so pickle records that class path."""
    mod = sys.modules.get("dnnlib.tflib.network")
    if mod is None:
        for name in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"):
            sys.modules[name] = types.ModuleType(name)

        class Network:
            def __init__(self, state: dict):
                self._state = state

            def __getstate__(self) -> dict:
                return self._state

        Network.__module__ = "dnnlib.tflib.network"
        Network.__qualname__ = "Network"
        sys.modules["dnnlib.tflib.network"].Network = Network
        mod = sys.modules["dnnlib.tflib.network"]
    return mod.Network


def tf_pickle_bytes(G: Generator, protocol: int = 4) -> bytes:
    Network = _fake_dnnlib()
    sd = {k: v for k, v in G.state_dict().items()}
    cfg = G.cfg
    mv = []
    for i in range(cfg.mapping_layers):
        mv += [(f"Dense{i}/weight", _np(sd[f"mapping_net.fcs.{i}.weight"]).T),
               (f"Dense{i}/bias", _np(sd[f"mapping_net.fcs.{i}.bias"]))]
    sv, noises, layer = [], [], 0
    for bi, r in enumerate(cfg.block_resolutions):
        s = f"{r}x{r}"
        if r == 4:
            sv.append((f"{s}/Const/const", _np(sd[f"blocks.{bi}.const"])[None]))
            convs = [("conv1", "Conv", False)]
        else:
            convs = [("conv0", "Conv0_up", True), ("conv1", "Conv1", False)]
        for name, tf_name, flip in convs:
            p = f"blocks.{bi}.{name}"
            w = sd[f"{p}.weight"]
            w = w.flip([2, 3]) if flip else w
            sv += [(f"{s}/{tf_name}/weight", _np(w).transpose(2, 3, 1, 0)),
                   (f"{s}/{tf_name}/mod_weight", _np(sd[f"{p}.affine.weight"]).T),
                   (f"{s}/{tf_name}/mod_bias", _np(sd[f"{p}.affine.bias"]) - 1),
                   (f"{s}/{tf_name}/noise_strength", _np(sd[f"{p}.noise_strength"])),
                   (f"{s}/{tf_name}/bias", _np(sd[f"{p}.bias"]))]
            noises.append((f"noise{layer}", _np(sd[f"{p}.noise_const"])[None, None]))
            layer += 1
        p = f"blocks.{bi}.torgb"
        sv += [(f"{s}/ToRGB/weight", _np(sd[f"{p}.weight"]).transpose(2, 3, 1, 0)),
               (f"{s}/ToRGB/mod_weight", _np(sd[f"{p}.affine.weight"]).T),
               (f"{s}/ToRGB/mod_bias", _np(sd[f"{p}.affine.bias"]) - 1),
               (f"{s}/ToRGB/bias", _np(sd[f"{p}.bias"]))]

    def net(name: str, variables: list, components: dict | None = None, **kw: object) -> object:
        return Network({"version": 4, "name": name, "static_kwargs": kw, "components": components or {},
                        "build_module_src": "raise RuntimeError('never run')", "build_func_name": "G_main",
                        "variables": variables})

    mapping = net("G_mapping", mv, mapping_lrmul=cfg.mapping_lr_mul)
    synthesis = net("G_synthesis", sv + noises)
    Gs = net("Gs", [("dlatent_avg", _np(sd["mapping_net.w_avg"]))], {"mapping": mapping, "synthesis": synthesis})
    D = net("D", [])
    return pickle.dumps((Gs, D, Gs), protocol=protocol)


# ---------------------------------------------------------------------------------------
# StyleGAN2-ADA pickle


def _fake_persistence() -> object:
    mod = sys.modules.get("torch_utils.persistence")
    if mod is None:
        for name in ("torch_utils", "torch_utils.persistence"):
            sys.modules[name] = types.ModuleType(name)

        def _reconstruct_persistent_obj(meta: dict) -> object:
            raise RuntimeError("the reader must never call NVIDIA's reconstructor")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
        mod = sys.modules["torch_utils.persistence"]
    return mod._reconstruct_persistent_obj


class _Persist(nn.Module):
    """A module that pickles the way torch_utils.persistence does: source + class name + state."""

    def __init__(self, class_name: str, **attrs: object):
        super().__init__()
        self._cls = class_name
        for k, v in attrs.items():
            setattr(self, k, v)

    def __reduce__(self) -> tuple:
        state = dict(self.__dict__)
        cls = state.pop("_cls")
        meta = {"type": "class", "version": 4, "module_src": "import os\nos.system('echo pwned')\n",
                "class_name": cls, "state": state}
        return (_fake_persistence(), (meta,))


def _fc(sd: dict, prefix: str, lr_mul: float) -> _Persist:
    m = _Persist("FullyConnectedLayer", bias_gain=lr_mul, weight_gain=lr_mul / np.sqrt(sd[f"{prefix}.weight"].shape[1]),
                 in_features=sd[f"{prefix}.weight"].shape[1], out_features=sd[f"{prefix}.weight"].shape[0])
    m.weight, m.bias = nn.Parameter(sd[f"{prefix}.weight"].clone()), nn.Parameter(sd[f"{prefix}.bias"].clone())
    return m


def _mapping(G, sd: dict) -> _Persist:
    """ADA's and StyleGAN3's MappingNetwork (with `embed` for a conditional generator)."""
    cfg = G.cfg
    mapping = _Persist("MappingNetwork", z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                       num_layers=cfg.mapping_layers, w_avg_beta=0.995,
                       embed_features=cfg.w_dim if cfg.c_dim else 0)
    if cfg.c_dim:
        mapping.embed = _fc(sd, "mapping_net.embed", 1.0)
    for i in range(cfg.mapping_layers):
        setattr(mapping, f"fc{i}", _fc(sd, f"mapping_net.fcs.{i}", cfg.mapping_lr_mul))
    mapping.register_buffer("w_avg", sd["mapping_net.w_avg"].clone())
    return mapping


def _snapshot(G, synthesis: _Persist, sd: dict) -> bytes:
    cfg = G.cfg
    G_ema = _Persist("Generator", z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                     img_channels=cfg.img_channels, num_ws=cfg.num_ws)
    G_ema.mapping, G_ema.synthesis = _mapping(G, sd), synthesis
    return pickle.dumps({"G": G_ema, "D": None, "G_ema": G_ema, "augment_pipe": None,
                         "training_set_kwargs": None}, protocol=4)


def ada_pickle_bytes(G: Generator) -> bytes:
    cfg = G.cfg
    sd = G.state_dict()
    P = nn.Parameter
    fc = functools.partial(_fc, sd)
    synthesis = _Persist("SynthesisNetwork", w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                         img_channels=cfg.img_channels, num_ws=cfg.num_ws)
    fir = torch.tensor([1.0, 3, 3, 1])
    fir = (fir[:, None] * fir[None]) / 64
    for bi, r in enumerate(cfg.block_resolutions):
        blk = _Persist("SynthesisBlock", resolution=r, architecture="skip", conv_clamp=cfg.conv_clamp,
                       num_conv=1 if r == 4 else 2, num_torgb=1)
        blk.register_buffer("resample_filter", fir.clone())
        if r == 4:
            blk.const = P(sd[f"blocks.{bi}.const"].clone())
        for name in (["conv1"] if r == 4 else ["conv0", "conv1"]):
            p = f"blocks.{bi}.{name}"
            L = _Persist("SynthesisLayer", resolution=r, up=2 if name == "conv0" else 1, conv_clamp=cfg.conv_clamp,
                         activation="lrelu", act_gain=np.sqrt(2))
            L.affine = fc(f"{p}.affine", 1.0)
            L.weight, L.bias = P(sd[f"{p}.weight"].clone()), P(sd[f"{p}.bias"].clone())
            L.noise_strength = P(sd[f"{p}.noise_strength"].clone())
            L.register_buffer("noise_const", sd[f"{p}.noise_const"].clone())
            L.register_buffer("resample_filter", fir.clone())
            setattr(blk, name, L)
        p = f"blocks.{bi}.torgb"
        T = _Persist("ToRGBLayer", conv_clamp=cfg.conv_clamp, weight_gain=1 / np.sqrt(sd[f"{p}.weight"].shape[1]))
        T.affine = fc(f"{p}.affine", 1.0)
        T.weight, T.bias = P(sd[f"{p}.weight"].clone()), P(sd[f"{p}.bias"].clone())
        blk.torgb = T
        setattr(synthesis, f"b{r}", blk)
    return _snapshot(G, synthesis, sd)


def sg3_pickle_bytes(G) -> bytes:
    """A StyleGAN3 snapshot of our SG3Generator: the official module names (L{i}_{size}_{channels}), each
    layer's geometry as the attributes the official layers keep (numpy scalars and 2-vectors), and its
    weights, filters and buffers."""
    cfg = G.cfg
    sd = G.state_dict()
    P = nn.Parameter
    synthesis = _Persist("SynthesisNetwork", w_dim=cfg.w_dim, num_ws=cfg.num_ws, img_resolution=cfg.resolution,
                         img_channels=cfg.img_channels, num_layers=len(cfg.layers) - 1, num_critical=2, margin_size=10,
                         output_scale=cfg.output_scale, num_fp16_res=4, layer_names=list(G.layer_names))
    inp = _Persist("SynthesisInput", w_dim=cfg.w_dim, channels=cfg.input_channels,
                   size=np.array([cfg.input_size, cfg.input_size]), sampling_rate=np.float64(cfg.input_rate),
                   bandwidth=np.float64(cfg.input_bandwidth))
    inp.weight = P(sd["input.weight"].clone())
    inp.affine = _fc(sd, "input.affine", 1.0)
    for k in ("transform", "freqs", "phases"):
        inp.register_buffer(k, sd[f"input.{k}"].clone())
    synthesis.input = inp
    for i, (name, spec) in enumerate(zip(G.layer_names, cfg.layers)):
        L = _Persist("SynthesisLayer", w_dim=cfg.w_dim, is_torgb=spec.torgb, is_critically_sampled=False,
                     use_fp16=spec.fp16, in_channels=spec.in_channels, out_channels=spec.out_channels,
                     in_size=np.array([spec.in_size] * 2), out_size=np.array([spec.out_size] * 2),
                     in_sampling_rate=np.float64(spec.in_rate), out_sampling_rate=np.float64(spec.out_rate),
                     in_cutoff=np.float64(spec.in_cutoff), out_cutoff=np.float64(spec.out_cutoff),
                     in_half_width=np.float64(spec.in_half_width), out_half_width=np.float64(spec.out_half_width),
                     conv_kernel=spec.kernel, conv_clamp=spec.clamp, magnitude_ema_beta=0.999,
                     up_factor=np.int64(spec.up), up_taps=spec.up_taps, up_radial=False, down_factor=np.int64(spec.down),
                     down_taps=spec.down_taps, down_radial=spec.down_radial, padding=[int(v) for v in spec.padding])
        L.affine = _fc(sd, f"layers.{i}.affine", 1.0)
        L.weight, L.bias = P(sd[f"layers.{i}.weight"].clone()), P(sd[f"layers.{i}.bias"].clone())
        L.register_buffer("magnitude_ema", sd[f"layers.{i}.magnitude_ema"].clone())
        for k in ("up_filter", "down_filter"):
            L.register_buffer(k, sd[f"layers.{i}.{k}"].clone() if f"layers.{i}.{k}" in sd else None)
        setattr(synthesis, name, L)
    return _snapshot(G, synthesis, sd)


# ---------------------------------------------------------------------------------------
# rosinality state dict


def rosinality_dict(G: Generator) -> dict:
    sd = G.state_dict()
    cfg = G.cfg
    g: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        g[f"style.{i + 1}.weight"] = sd[f"mapping_net.fcs.{i}.weight"]
        g[f"style.{i + 1}.bias"] = sd[f"mapping_net.fcs.{i}.bias"]

    def conv(q: str, p: str, layer: int) -> None:
        g[f"{q}.conv.weight"] = sd[f"{p}.weight"][None]
        g[f"{q}.conv.modulation.weight"] = sd[f"{p}.affine.weight"]
        g[f"{q}.conv.modulation.bias"] = sd[f"{p}.affine.bias"]
        g[f"{q}.noise.weight"] = sd[f"{p}.noise_strength"].reshape(1)
        g[f"{q}.activate.bias"] = sd[f"{p}.bias"]
        g[f"noises.noise_{layer}"] = sd[f"{p}.noise_const"][None, None]

    def torgb(q: str, p: str) -> None:
        g[f"{q}.conv.weight"] = sd[f"{p}.weight"][None]
        g[f"{q}.conv.modulation.weight"] = sd[f"{p}.affine.weight"]
        g[f"{q}.conv.modulation.bias"] = sd[f"{p}.affine.bias"]
        g[f"{q}.bias"] = sd[f"{p}.bias"].reshape(1, -1, 1, 1)

    g["input.input"] = sd["blocks.0.const"][None]
    conv("conv1", "blocks.0.conv1", 0)
    torgb("to_rgb1", "blocks.0.torgb")
    for i in range(len(cfg.block_resolutions) - 1):
        conv(f"convs.{2 * i}", f"blocks.{i + 1}.conv0", 2 * i + 1)
        conv(f"convs.{2 * i + 1}", f"blocks.{i + 1}.conv1", 2 * i + 2)
        torgb(f"to_rgbs.{i}", f"blocks.{i + 1}.torgb")
    return {"g_ema": {k: v.clone() for k, v in g.items()}, "latent_avg": sd["mapping_net.w_avg"].clone()}
