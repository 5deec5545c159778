"""StyleGAN2 generator (config-f family, skip architecture) in plain PyTorch.

Weight conventions follow the StyleGAN2-ADA layout ([out, in, kh, kw] kernels, up-sampling
kernels already flipped relative to TensorFlow), so every official format maps onto it
by renaming and transposing only (see `checkpoints.py`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cluster import nearest_centre

NOISE_MODES = ("const", "random", "none")


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of one generator; saved beside its weights in the native format."""

    resolution: int = 256  # square synthesis resolution, a power of two
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0  # classes of a class-conditional generator (StyleGAN2-ADA's embedding); 0: unconditional
    img_channels: int = 3
    label_channels: int = 0  # extra output channels drawn with the image (toy world: one per class)
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mapping_layers: int = 8
    mapping_hidden: int | None = None  # width of the mapping's hidden layers; None = w_dim
    mapping_lr_mul: float = 0.01
    conv_clamp: float | None = None  # ADA configs clamp activations to +-256
    out_height: int | None = None  # centre crop of the output, e.g. LSUN car 384 of 512
    out_width: int | None = None

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1) or r > 8192:
            raise ValueError(f"resolution must be a power of two in 4..8192, got {r}")
        for name, hi in (("z_dim", 8192), ("w_dim", 8192), ("img_channels", 16), ("label_channels", 256),
                         ("channel_max", 8192), ("mapping_layers", 64), ("c_dim", 100_000)):
            v = getattr(self, name)
            if not isinstance(v, int) or not (0 if name in ("label_channels", "c_dim") else 1) <= v <= hi:
                raise ValueError(f"{name} must be an integer in 0..{hi}, got {v!r}")
        for name in ("out_height", "out_width"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 0 < v <= r):
                raise ValueError(f"{name} must lie in 1..{r}, got {v!r}")
        if self.mapping_hidden is not None and not (isinstance(self.mapping_hidden, int) and
                                                    1 <= self.mapping_hidden <= 8192):
            raise ValueError(f"mapping_hidden must be an integer in 1..8192, got {self.mapping_hidden!r}")
        check_number(self.mapping_lr_mul, "mapping_lr_mul", positive=True)
        if self.conv_clamp is not None:
            check_number(self.conv_clamp, "conv_clamp", positive=True)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Low-level ops


def fir_kernel(taps: Sequence[float] = (1, 3, 3, 1)) -> Tensor:
    """Separable 2D FIR filter normalised to sum 1: [k, k]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, pad: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Zero-insertion upsampling by `up`, padding (x0, x1, y0, y1), then convolution with `f`."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, list(pad))
    k = (f * gain).flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, k, groups=c)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """2x upsampling with the FIR filter, as used on the skip-architecture image."""
    return upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4.0)


def modulated_conv2d(
    x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True, up: bool = False, f: Tensor | None = None,
    fused: bool = False, padding: int | None = None,
) -> Tensor:
    """Modulated (and optionally demodulated) conv. x [B, I, H, W], weight [O, I, k, k], styles [B, I].

    With `up`, a stride-2 transposed conv followed by the FIR blur gives a 2x larger output.
    `padding` defaults to k // 2 (same size; StyleGAN3 pads k - 1). `fused` folds styles and demodulation into per-row weights and runs one grouped conv: the
    same result up to rounding, without two elementwise passes over x (for inference).
    """
    if demodulate and x.dtype == torch.float16:  # scale both so the demodulation sums stay in fp16's range
        # (the result is the same: demodulation divides out a per-output weight scale and a per-row style scale)
        k2 = weight[0].numel()
        weight = (weight.float() / (k2 ** 0.5 * weight.float().abs().amax(dim=[1, 2, 3], keepdim=True))).to(x.dtype)
        styles = (styles.float() / styles.float().abs().amax(dim=1, keepdim=True)).to(x.dtype)
    pad = weight.shape[-1] // 2 if padding is None else padding
    if fused:
        B, I, H, W = x.shape
        O, k = weight.shape[0], weight.shape[-1]
        w = weight[None] * styles[:, None, :, None, None]  # [B, O, I, k, k]
        if demodulate:
            w = w * torch.rsqrt(w.square().sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
        x = x.reshape(1, B * I, H, W)
        if up:
            x = F.conv_transpose2d(x, w.transpose(1, 2).reshape(B * I, O, k, k), stride=2, groups=B)
            x = upfirdn2d(x, f, pad=(1, 1, 1, 1), gain=4.0)
        else:
            x = F.conv2d(x, w.reshape(B * O, I, k, k), padding=pad, groups=B)
        return x.reshape(B, O, *x.shape[2:])
    x = x * styles[:, :, None, None]
    if up:
        assert f is not None
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # [B, O, 2H+1, 2W+1]
        x = upfirdn2d(x, f, pad=(1, 1, 1, 1), gain=4.0)
    else:
        x = F.conv2d(x, weight, padding=pad)
    if demodulate:
        d = torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8)  # [B, O]
        x = x * d[:, :, None, None]
    return x


def _fuse(x: Tensor) -> bool:
    """Per-row modulated weights for inference on CUDA in fp32, as StyleGAN2 does (a grouped conv; on a
    CPU that runs up to 6x slower, and half precision takes the shared-weight form). Never decided by
    the number of rows, so a row's result does not depend on the batch it came in."""
    return not torch.is_grad_enabled() and x.is_cuda and x.dtype == torch.float32


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * math.sqrt(2)


# ---------------------------------------------------------------------------------------
# Layers


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate (runtime weight scaling)."""

    def __init__(self, in_f: int, out_f: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_f], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_f)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(x) if self.act else x


class MappingNetwork(nn.Module):
    """z (and, for a conditional generator, a one-hot class c) -> ws. The class enters as ADA's layout has it:
    the normalised z and the normalised embedding of c, concatenated, before the first layer."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        hidden = cfg.mapping_hidden or cfg.w_dim
        self.c_dim = cfg.c_dim
        self.embed = EqualLinear(cfg.c_dim, cfg.w_dim) if cfg.c_dim else None
        dims = [cfg.z_dim + (cfg.w_dim if cfg.c_dim else 0)] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        self.fcs = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul, act=True) for i in range(cfg.mapping_layers)
        )
        self.num_ws = cfg.num_ws
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        # multi-modal truncation: [k, w_dim] centres, each w pulled toward its nearest (sampling.set_truncation_centres)
        self.register_buffer("w_centres", None, persistent=False)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                c: Tensor | None = None) -> Tensor:
        x = _normalize(z)
        if self.c_dim:
            if c is None:
                raise ValueError(f"this generator is class-conditional (c_dim={self.c_dim}): give each row a class")
            if c.shape != (z.shape[0], self.c_dim):
                raise ValueError(f"classes must be one-hot rows of shape [{z.shape[0]}, {self.c_dim}], got {list(c.shape)}")
            x = torch.cat([x, _normalize(self.embed(c.to(x.dtype)))], 1)
        elif c is not None:
            raise ValueError("this generator is not class-conditional: it takes no class")
        for fc in self.fcs:
            x = fc(x)
        ws = x[:, None, :].repeat(1, self.num_ws, 1)  # [B, num_ws, w_dim]
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            if self.w_centres is None:
                ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)
            else:
                c = self.w_centres
                ws[:, :cut] = c[nearest_centre(x, c.float()), None].lerp(ws[:, :cut], truncation_psi)
        return ws


def _normalize(x: Tensor) -> Tensor:
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


def check_number(v: object, name: str, positive: bool = False) -> float:
    """A config's real number: an int or float (not a bool or a string), finite, and > 0 where `positive`."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or positive and v <= 0:
        raise ValueError(f"{name} must be a finite{' positive' if positive else ''} number, got {v!r}")
    return float(v)


def one_hot(classes: Sequence[int], c_dim: int, device: torch.device | str = "cpu") -> Tensor | None:
    """Class indices -> one-hot rows [B, c_dim] (None for an unconditional generator, c_dim 0)."""
    if not c_dim:
        return None
    idx = torch.as_tensor(list(classes), dtype=torch.long)
    if len(idx) and not 0 <= int(idx.min()) <= int(idx.max()) < c_dim:
        raise ValueError(f"class indices must lie in 0..{c_dim - 1}")
    out = torch.zeros(len(idx), c_dim, device=device)
    out[torch.arange(len(idx)), idx.to(device)] = 1
    return out


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + noise + bias + lrelu, optionally upsampling 2x."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool, conv_clamp: float | None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up = up
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor, noise_mode: str, f: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w), demodulate=True, up=self.up, f=f, fused=_fuse(x))
        if noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn_like(x[:, :1]) * self.noise_strength
        else:
            noise = None
        if not torch.is_grad_enabled():  # in place: at 256 px and up these passes are memory-bound
            if noise is not None:
                x.add_(noise)
            x = F.leaky_relu_(x.add_(self.bias[:, None, None]), 0.2).mul_(math.sqrt(2))
            return x if self.conv_clamp is None else x.clamp_(-self.conv_clamp, self.conv_clamp)
        x = lrelu((x if noise is None else x + noise) + self.bias[None, :, None, None])
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, img_ch: int, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_ch))
        self.weight_gain = 1 / math.sqrt(in_ch)
        self.conv_clamp = conv_clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False,
                             fused=_fuse(x))
        x = x + self.bias[None, :, None, None]
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (const | up-conv0) -> conv1 -> ToRGB."""

    def __init__(self, cfg: GeneratorConfig, res: int):
        super().__init__()
        out_ch = cfg.channels(res)
        self.res = res
        if res == 4:
            self.const = nn.Parameter(torch.randn(out_ch, 4, 4))
        else:
            self.conv0 = SynthesisLayer(cfg.channels(res // 2), out_ch, cfg.w_dim, res, True, cfg.conv_clamp)
        self.conv1 = SynthesisLayer(out_ch, out_ch, cfg.w_dim, res, False, cfg.conv_clamp)
        self.torgb = ToRGB(out_ch, cfg.img_channels + cfg.label_channels, cfg.w_dim, cfg.conv_clamp)
        self.num_conv = 1 if res == 4 else 2


class GeneratorFamily(nn.Module):
    """What the pipeline asks of a generator family (StyleGAN2 here, StyleGAN3 in stylegan3.py): `mapping(z) ->
    ws`, `synthesis(ws) -> (img, features)`, `feature_names`, `row_bytes`, and the methods below, so no caller
    has to ask which family it holds."""

    PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")  # what `instseg run --precision` may ask of it

    def mixed_precision(self, dtype: torch.dtype) -> None:
        """Run the layers the family's own recipe marks in `dtype` (the rest stay fp32)."""
        raise NotImplementedError

    def default_feature(self) -> str:
        """The activation the single-image `activations` baseline clusters (about 32 px, as Editing in Style)."""
        raise NotImplementedError

    def compile_targets(self) -> list[nn.Module]:
        """The layers `--compile` hands to torch.compile (each one shape, so one cache entry each)."""
        raise NotImplementedError


FP16_BLOCKS = 4  # StyleGAN2's recipe: the highest-resolution blocks in fp16 ...
FP16_CLAMP = 256.0  # ... with activations clamped to +-256 (unless the generator clamps already)


class Generator(GeneratorFamily):
    """StyleGAN2 generator: `mapping(z) -> ws`, `synthesis(ws) -> (img, features)`."""

    def mixed_precision(self, dtype: torch.dtype, blocks: int = FP16_BLOCKS, clamp: float = FP16_CLAMP) -> None:
        """The highest-resolution `blocks` in `dtype` with activations clamped to +-clamp (unless the generator
        clamps already); the mapping, the low-resolution blocks and the image sum stay fp32."""
        for blk in self.blocks[-blocks:]:
            blk.to(dtype)
            for layer in (getattr(blk, "conv0", None), blk.conv1, blk.torgb):
                if layer is not None and layer.conv_clamp is None:
                    layer.conv_clamp = clamp

    def default_feature(self) -> str:
        convs = [n for n in self.feature_names if n.endswith(".conv1")]
        return min(convs, key=lambda n: abs(int(n[1:].split(".")[0]) - 32))

    def compile_targets(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (SynthesisLayer, ToRGB))]

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.mapping_net = MappingNetwork(cfg)
        self.blocks = nn.ModuleList(SynthesisBlock(cfg, r) for r in cfg.block_resolutions)
        self.register_buffer("fir", fir_kernel(), persistent=False)

    @property
    def feature_names(self) -> list[str]:
        """Names accepted by `synthesis(features=...)`: each block's conv outputs and its partial
        skip image `b{res}.rgb`, the final 'rgb', and 'labels' for a generator with label channels."""
        names = []
        for b in self.blocks:
            names += ([] if b.res == 4 else [f"b{b.res}.conv0"]) + [f"b{b.res}.conv1", f"b{b.res}.rgb"]
        return names + ["rgb"] + (["labels"] if self.cfg.label_channels else [])

    @property
    def out_hw(self) -> tuple[int, int]:
        r = self.cfg.resolution
        return (self.cfg.out_height or r, self.cfg.out_width or r)

    @property
    def c_dim(self) -> int:
        return self.cfg.c_dim

    @property
    def row_bytes(self) -> int:
        """Bytes of the largest fp32 activation of one row (sizes synthesis calls)."""
        last = self.blocks[-1]
        return last.conv1.weight.shape[0] * last.res ** 2 * 4

    def mapping(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                c: Tensor | None = None) -> Tensor:
        """z [B, z_dim] (and one-hot classes c [B, c_dim] for a conditional generator) -> ws [B, num_ws, w_dim]."""
        return self.mapping_net(z, truncation_psi, truncation_cutoff, c)

    def synthesis(
        self, ws: Tensor, noise_mode: str = "const", features: Sequence[str] = (), shared_ws: int = 0,
        groups: Sequence[int] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """ws [B, num_ws, w_dim] -> image [B, C, H, W] in about [-1, 1], and the requested activations.

        The image never includes label channels; ask for them as the 'labels' feature.
        `shared_ws`: the first that many ws are the same in every row of a group (`groups`: the sizes
        of consecutive row groups, style variants of one image each; default: all rows), so blocks
        that read only those run once per group and are repeated; same result."""
        img, feats = self._run(ws, noise_mode, features, shared_ws, stop_early=False, groups=groups)
        return img, feats

    def features(self, ws: Tensor, names: Sequence[str], noise_mode: str = "const",
                 shared_ws: int = 0, groups: Sequence[int] | None = None) -> dict[str, Tensor]:
        """Only the requested activations; synthesis stops after the last block they need."""
        return self._run(ws, noise_mode, names, shared_ws, stop_early=True, groups=groups)[1]

    @staticmethod
    def block_ws(block_index: int) -> list[int]:
        """Indices into ws that block `block_index` reads (its convs and its ToRGB)."""
        return [0, 1] if block_index == 0 else [2 * block_index - 1, 2 * block_index, 2 * block_index + 1]

    def _run(self, ws: Tensor, noise_mode: str, features: Sequence[str], shared_ws: int,
             stop_early: bool, groups: Sequence[int] | None = None) -> tuple[Tensor | None, dict[str, Tensor]]:
        want = check_request(self.feature_names, noise_mode, features)
        needs_end = bool(want & {"rgb", "labels"}) or not stop_early
        last = max((int(n[1:].split(".")[0]) for n in want if n.startswith("b")), default=0)
        B = ws.shape[0]
        if noise_mode == "random":  # per-row noise: nothing is shared
            shared_ws = 0
        rows, heads, g = row_groups(ws, groups)
        feats: dict[str, Tensor] = {}
        x = img = None
        compact = True  # x holds one row per group (shared blocks) until the first block that differs per row
        i = 0
        for bi, blk in enumerate(self.blocks):
            shared = compact and max(self.block_ws(bi)) < shared_ws
            if not shared and compact and x is not None:
                x, img = repeat_rows(x, g, rows.shape[0]), repeat_rows(img, g, rows.shape[0])
            compact = shared
            dt = blk.conv1.weight.dtype  # mixed precision: each block computes in its own dtype
            w = (heads if shared else rows).to(dt)
            x = None if x is None else x.to(dt)
            if blk.res == 4:
                x = blk.const[None].expand(w.shape[0], -1, -1, -1)
                x = blk.conv1(x, w[:, 0], noise_mode, self.fir)
            else:
                x = blk.conv0(x, w[:, i], noise_mode, self.fir)
                self._keep(feats, want, f"b{blk.res}.conv0", x, B, g, compact)
                x = blk.conv1(x, w[:, i + 1], noise_mode, self.fir)
            self._keep(feats, want, f"b{blk.res}.conv1", x, B, g, compact)
            i += blk.num_conv
            y = blk.torgb(x, w[:, i])
            img = y if img is None else upsample2d(img, self.fir) + y.to(img.dtype)  # the image keeps the first dtype
            self._keep(feats, want, f"b{blk.res}.rgb", img[:, : self.cfg.img_channels], B, g, compact)
            if stop_early and not needs_end and blk.res >= last:
                return None, feats
        img = self._crop(repeat_rows(img, g, B) if compact else img[:B])
        c = self.cfg.img_channels
        if "labels" in want:
            feats["labels"] = img[:, c:]  # [B, label_channels, H, W]
        img = img[:, :c]
        if "rgb" in want:
            feats["rgb"] = img
        return img, feats

    def _keep(self, feats: dict[str, Tensor], want: set[str], name: str, t: Tensor, B: int, g: Tensor,
              compact: bool) -> None:
        if name in want:
            feats[name] = self._crop(repeat_rows(t, g, B) if compact else t[:B])

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const", c: Tensor | None = None) -> Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, c=c), noise_mode)[0]

    def _crop(self, t: Tensor) -> Tensor:
        """Centre-crop a map by the same fraction as the output crop (non-square generators)."""
        oh, ow = self.out_hw
        r = self.cfg.resolution
        if (oh, ow) == (r, r):
            return t
        h = max(1, round(t.shape[2] * oh / r))
        w = max(1, round(t.shape[3] * ow / r))
        y0, x0 = (t.shape[2] - h) // 2, (t.shape[3] - w) // 2
        return t[:, :, y0 : y0 + h, x0 : x0 + w]


def check_request(names: list[str], noise_mode: str, features: Sequence[str]) -> set[str]:
    """The requested feature names as a set, once the noise mode and every name are known valid."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    unknown = set(features) - set(names)
    if unknown:
        raise ValueError(f"unknown feature layer(s) {sorted(unknown)}; valid: {', '.join(names)}")
    return set(features)


def row_groups(ws: Tensor, groups: Sequence[int] | None) -> tuple[Tensor, Tensor, Tensor]:
    """For a synthesis call over ws [B, ...] in consecutive groups (default: one): every row's ws and one row
    per group (each padded on a CPU), and each row's group index [B]."""
    B = ws.shape[0]
    groups = [B] if groups is None else list(groups)
    if sum(groups) != B or min(groups) < 1:
        raise ValueError(f"groups {groups} do not split {B} rows")
    firsts = torch.as_tensor(np.cumsum([0] + groups[:-1]), device=ws.device)
    g = torch.as_tensor(np.repeat(np.arange(len(groups)), groups), device=ws.device)
    return _padded_rows(ws, B), _padded_rows(ws[firsts], len(groups)), g


CPU_MIN_ROWS = 4  # MKL's GEMM and oneDNN's conv take other kernels below 4 rows (other rounding)


def _padded_rows(ws: Tensor, n: int) -> Tensor:
    """ws [n, ...] padded on a CPU to at least CPU_MIN_ROWS rows (copies of the last), so a row's
    result never depends on how many rows came with it."""
    if ws.is_cuda or n >= CPU_MIN_ROWS:
        return ws
    return torch.cat([ws, ws[-1:].expand(CPU_MIN_ROWS - n, *ws.shape[1:])])


def repeat_rows(t: Tensor, group: Tensor, rows: int) -> Tensor:
    """A shared block's output, one row per group (and padding), repeated to every row of its group
    (`group`: [rows] group index per row; padding rows repeat the last group)."""
    if rows > len(group):
        group = torch.cat([group, group[-1:].expand(rows - len(group))])
    return t.index_select(0, group)


def to_uint8(img: Tensor) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> [B, H, W, C] uint8."""
    x = (img.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
