"""Writers of small checkpoints in the official layouts, for the loader tests.

Each takes one of our generators and writes its weights under the official variable names
and shape conventions (TF: [kh, kw, in, out] kernels, Conv0_up flipped, mod_bias without +1;
ADA: persistence-pickled modules; rosinality: its state-dict names), so loading the file
back must give the same image as the native model.
"""
from __future__ import annotations

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


def ada_pickle_bytes(G: Generator, stylegan3: bool = False) -> bytes:
    cfg = G.cfg
    sd = G.state_dict()
    P = nn.Parameter

    def fc(prefix: str, lr_mul: float) -> _Persist:
        m = _Persist("FullyConnectedLayer", bias_gain=lr_mul, weight_gain=lr_mul / np.sqrt(sd[f"{prefix}.weight"].shape[1]))
        m.weight, m.bias = P(sd[f"{prefix}.weight"].clone()), P(sd[f"{prefix}.bias"].clone())
        return m

    mapping = _Persist("MappingNetwork", z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                       num_layers=cfg.mapping_layers, w_avg_beta=0.995)
    for i in range(cfg.mapping_layers):
        setattr(mapping, f"fc{i}", fc(f"mapping_net.fcs.{i}", cfg.mapping_lr_mul))
    mapping.register_buffer("w_avg", sd["mapping_net.w_avg"].clone())
    synthesis = _Persist("SynthesisNetwork", w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                         img_channels=cfg.img_channels, num_ws=cfg.num_ws)
    fir = torch.tensor([1.0, 3, 3, 1])
    fir = (fir[:, None] * fir[None]) / 64
    if stylegan3:
        synthesis.input = _Persist("SynthesisInput")
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
    G_ema = _Persist("Generator", z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution,
                     img_channels=cfg.img_channels, num_ws=cfg.num_ws)
    G_ema.mapping, G_ema.synthesis = mapping, synthesis
    return pickle.dumps({"G": G_ema, "D": None, "G_ema": G_ema, "augment_pipe": None,
                         "training_set_kwargs": None}, protocol=4)


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
