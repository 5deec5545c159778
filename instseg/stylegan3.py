"""StyleGAN3 (-T and -R) generator in plain PyTorch, written from the paper (Karras et al. 2021, "Alias-Free
Generative Adversarial Networks") and the documented architecture of its official snapshots.

Synthesis: Fourier features (fixed frequencies and phases, turned and shifted by an affine of w[0] and a
stored user transform, faded near the band limit), then layers that each take their own w: a modulated conv
(input gain from the layer's `magnitude_ema`), then the filtered leaky ReLU (bias, upsample with the layer's
up filter, activate with gain and clamp, filter with its down filter and downsample), and a last 1x1 ToRGB.
Each layer's geometry (sizes, sampling rates, factors, padding) is a `LayerSpec`; the filters are buffers,
read from the file and never recomputed. `design` lays out a new generator by the paper's schedule (for
tests and our own checkpoints)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .generator import (EqualLinear, GeneratorFamily, MappingNetwork, check_number, check_request, modulated_conv2d,
                        repeat_rows, row_groups)

FAMILY = "stylegan3"


@dataclass(frozen=True)
class LayerSpec:
    """One synthesis layer: what it reads and makes, and how it resamples."""

    in_channels: int
    out_channels: int
    in_size: int  # square feature maps, margins included
    out_size: int
    in_rate: float  # sampling rates
    out_rate: float
    kernel: int  # conv kernel (1 for ToRGB and in the -R configuration)
    up: int  # upsampling factor inside the filtered leaky ReLU
    down: int
    up_taps: int  # 1: no filter
    down_taps: int
    down_radial: bool  # a 2D radial down filter (-R, layers not critically sampled)
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) before the up filter
    torgb: bool = False
    fp16: bool = False  # in the official mixed-precision recipe's fp16 layers
    clamp: float | None = 256.0
    in_cutoff: float = 0.0  # band limits, used only to design a new generator's filters
    out_cutoff: float = 0.0
    in_half_width: float = 0.0
    out_half_width: float = 0.0

    def check(self) -> None:
        """The padding must be the one that takes in_size to out_size (a file's claims are not trusted)."""
        for name in ("in_channels", "out_channels", "in_size", "out_size", "kernel", "up", "down", "up_taps",
                     "down_taps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8192:
                raise ValueError(f"layer {name} must be an integer in 1..8192, got {v!r}")
        if self.up > 16 or self.down > 16 or self.up_taps > 256 or self.down_taps > 256:
            raise ValueError("layer resampling factors or filters are implausibly large")
        for name in ("in_rate", "out_rate"):
            check_number(getattr(self, name), f"layer {name}", positive=True)
        for name in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            check_number(getattr(self, name), f"layer {name}")
        if self.clamp is not None:
            check_number(self.clamp, "layer clamp", positive=True)
        for name in ("down_radial", "torgb", "fp16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"layer {name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.padding, tuple) or len(self.padding) != 4:
            raise ValueError(f"layer padding must be 4 integers, got {self.padding!r}")
        if tuple(self.padding) != padding_for(self.in_size, self.out_size, self.kernel, self.up, self.down,
                                              self.up_taps, self.down_taps):
            raise ValueError(f"layer padding {list(self.padding)} does not take {self.in_size} px to {self.out_size} px")


def padding_for(in_size: int, out_size: int, kernel: int, up: int, down: int, up_taps: int,
                down_taps: int) -> tuple[int, int, int, int]:
    """The padding before the up filter that makes a (in_size + kernel - 1) px conv output, upsampled,
    filtered twice and downsampled, exactly out_size px (the lower side gets the extra pixel's half)."""
    total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
    lo = (total + up) // 2
    return (lo, total - lo, lo, total - lo)


@dataclass(frozen=True)
class SG3Config:
    """Architecture of a StyleGAN3 generator; saved beside its weights in the native format."""

    resolution: int
    layers: tuple[LayerSpec, ...]
    input_channels: int
    input_size: int
    input_rate: float
    input_bandwidth: float
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_channels: int = 3
    mapping_layers: int = 2
    mapping_hidden: int | None = None
    mapping_lr_mul: float = 0.01
    output_scale: float = 0.25
    family: str = field(default=FAMILY)
    out_height: int | None = None  # no crops: kept for the fields code reads off any generator's config
    out_width: int | None = None
    label_channels: int = 0

    def __post_init__(self) -> None:
        if self.family != FAMILY:
            raise ValueError(f"not a StyleGAN3 config: family {self.family!r}")
        layers = tuple(x if isinstance(x, LayerSpec) else LayerSpec(**{**x, "padding": tuple(x["padding"])})
                       for x in self.layers)
        object.__setattr__(self, "layers", layers)
        r = self.resolution
        if not isinstance(r, int) or r < 4 or r > 8192:
            raise ValueError(f"resolution must be an integer in 4..8192, got {r!r}")
        if not 2 <= len(layers) <= 64:
            raise ValueError(f"a StyleGAN3 synthesis has 2..64 layers, got {len(layers)}")
        for name, hi in (("z_dim", 8192), ("w_dim", 8192), ("img_channels", 16), ("mapping_layers", 64),
                         ("input_channels", 8192), ("input_size", 8192)):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"{name} must be an integer in 1..{hi}, got {v!r}")
        if not isinstance(self.c_dim, int) or not 0 <= self.c_dim <= 100_000:
            raise ValueError(f"c_dim must be an integer in 0..100000, got {self.c_dim!r}")
        check_number(self.input_rate, "input sampling rate", positive=True)
        check_number(self.input_bandwidth, "input bandwidth", positive=True)
        check_number(self.output_scale, "output_scale")
        check_number(self.mapping_lr_mul, "mapping_lr_mul", positive=True)
        if self.mapping_hidden is not None and not (isinstance(self.mapping_hidden, int) and
                                                    1 <= self.mapping_hidden <= 8192):
            raise ValueError(f"mapping_hidden must be an integer in 1..8192, got {self.mapping_hidden!r}")
        most = 2 * r + 64  # official layers carry margins of about 10 px beyond the image
        if self.input_size > most or any(max(L.in_size, L.out_size) > most for L in layers):
            raise ValueError(f"feature maps above {most} px are implausible for a {r} px generator")
        prev_c, prev_s = self.input_channels, self.input_size
        for i, L in enumerate(layers):
            try:
                L.check()
            except ValueError as e:
                raise ValueError(f"layer {i}: {e}") from None
            if (L.in_channels, L.in_size) != (prev_c, prev_s):
                raise ValueError(f"layer {i} reads {L.in_channels} channels at {L.in_size} px; the layer before "
                                 f"makes {prev_c} at {prev_s}")
            prev_c, prev_s = L.out_channels, L.out_size
        if not layers[-1].torgb or any(L.torgb for L in layers[:-1]):
            raise ValueError("the last layer, and only it, must be the ToRGB layer")
        if (prev_c, prev_s) != (self.img_channels, r):
            raise ValueError(f"the last layer makes {prev_c} channels at {prev_s} px, not {self.img_channels} at {r}")

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [{**asdict(L), "padding": list(L.padding)} for L in self.layers]
        return d


# ---------------------------------------------------------------------------------------
# Filters and the filtered leaky ReLU (pure tensor ops)


def upfirdn(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0),
            gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1; negative crops), convolve with f (1D: separable, 2D:
    as is; None: identity) scaled to `gain` in total, keep every `down`-th pixel. x [B, C, H, W].

    Computed without the zeros: a 1D filter upsamples in `up` phases (each a short filter on the input),
    and every filter downsamples by striding, so no sample that is thrown away is ever computed."""
    if f is None:
        f = torch.ones([1], device=x.device)
    f = f.to(x.dtype) * gain ** (f.ndim / 2)
    if f.ndim == 2:
        if up > 1:
            raise ValueError("2D filters only downsample")
        k = f.flip([0, 1])[None, None].expand(x.shape[1], 1, *f.shape)
        return F.conv2d(F.pad(x, list(padding)), k, stride=down, groups=x.shape[1])
    x = _along(x, f, up, down, padding[0], padding[1], 3)
    return _along(x, f, up, down, padding[2], padding[3], 2)


def _along(x: Tensor, f: Tensor, up: int, down: int, p0: int, p1: int, axis: int) -> Tensor:
    """upfirdn along one axis (3: width, 2: height) with the 1D filter f."""
    B, C = x.shape[:2]
    T = f.shape[0]
    n_out = x.shape[axis] * up + p0 + p1 - T + 1  # samples of the padded, filtered signal before striding

    def kernel(w: Tensor) -> Tensor:  # [rows, K] -> depthwise kernels along the axis
        return w[:, None, None, :] if axis == 3 else w[:, None, :, None]

    def pad(t: Tensor, lo: int, hi: int) -> Tensor:
        return F.pad(t, (lo, hi) if axis == 3 else (0, 0, lo, hi))

    if up == 1:
        full, start, k = x, -p0, f.flip(0)  # out[n] = sum_t x[n - p0 + T - 1 - t] f[t]: correlate from index -p0
    else:  # full[i * up + p] = sum_k x[i - k] f[k * up + p]: one short filter per phase p, interleaved
        K = -(-T // up)
        phases = F.pad(f, (0, K * up - T)).reshape(K, up).t().flip(1)  # [up, K], flipped for correlation
        y = F.conv2d(pad(x, K - 1, K - 1), kernel(phases.repeat(C, 1)), groups=C)  # [B, C * up, H', W']
        H, W = y.shape[2:]
        if axis == 3:
            full = y.reshape(B, C, up, H, W).permute(0, 1, 3, 4, 2).reshape(B, C, H, W * up)
        else:
            full = y.reshape(B, C, up, H, W).permute(0, 1, 3, 2, 4).reshape(B, C, H * up, W)
        start, k, T = T - 1 - p0, None, 1  # out[n] = full[n + T - 1 - p0]
    n = full.shape[axis]
    lo, hi = max(0, -start), max(0, start + n_out + T - 1 - n)
    full = pad(full, lo, hi).narrow(axis, start + lo, n_out + T - 1)
    if k is None:
        return full if down == 1 else full[:, :, :, ::down] if axis == 3 else full[:, :, ::down]
    stride = (1, down) if axis == 3 else (down, 1)
    return F.conv2d(full, kernel(k[None].expand(C, -1)).to(full.dtype), stride=stride, groups=C)


def filtered_lrelu(x: Tensor, bias: Tensor, fu: Tensor | None, fd: Tensor | None, up: int, down: int,
                   padding: Sequence[int], gain: float, slope: float, clamp: float | None) -> Tensor:
    """Bias, upsample (up filter, padding), leaky ReLU times gain and clamp, down filter and downsample: the
    activation that keeps a layer's signal band-limited (the paper's Fig. 4). x [B, C, H, W]."""
    x = x + bias.to(x.dtype)[None, :, None, None]
    x = upfirdn(x, fu, up=up, padding=padding, gain=up ** 2)
    x = F.leaky_relu(x, slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn(x, fd, down=down)


def lowpass(taps: int, cutoff: float, width: float, rate: float, radial: bool = False) -> Tensor | None:
    """A Kaiser-windowed low-pass filter (firwin's design; radial: a jinc with a separable window, as the paper's
    -R configuration), normalised to sum 1. None for one tap (no filtering)."""
    if taps == 1:
        return None
    import scipy.signal
    import scipy.special

    if not radial:
        return torch.as_tensor(scipy.signal.firwin(taps, cutoff, width=width, fs=rate), dtype=torch.float32)
    x = (np.arange(taps) - (taps - 1) / 2) / rate
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(r > 0, scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * r), np.pi * cutoff)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, width / (rate / 2)))
    w = np.kaiser(taps, beta)
    f = f * np.outer(w, w)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def fourier_grid(size: int, rate: float) -> Tensor:
    """Sample positions of a size x size map at `rate` samples per unit, centred on 0: [size] (x and y alike)."""
    return (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) / rate


def input_transform(t: Tensor, user: Tensor) -> Tensor:
    """The Fourier input's transform from the affine of w[0], t [B, 4], all of it divided by |t[:2]|: the rotation
    (cos, sin) = t[:2] after the translation by -t[2:], after the stored user transform [3, 3]: [B, 3, 3]."""
    t = t / t[:, :2].norm(dim=1, keepdim=True)
    B = t.shape[0]
    rot = torch.eye(3, device=t.device, dtype=t.dtype).repeat(B, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
    tra = torch.eye(3, device=t.device, dtype=t.dtype).repeat(B, 1, 1)
    tra[:, 0, 2], tra[:, 1, 2] = -t[:, 2], -t[:, 3]
    return rot @ tra @ user.to(t.dtype)[None]


# ---------------------------------------------------------------------------------------
# Layers


class SynthesisInput(nn.Module):
    """Fourier features: sin(2 pi (f . p + phase)) at fixed frequencies, faded to 0 at the band limit, mixed
    by a learned channel matrix."""

    def __init__(self, cfg: SG3Config):
        super().__init__()
        C = cfg.input_channels
        self.size, self.rate, self.bandwidth = cfg.input_size, cfg.input_rate, cfg.input_bandwidth
        self.weight = nn.Parameter(torch.randn(C, C))
        self.affine = EqualLinear(cfg.w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0, 0, 0]))
        self.register_buffer("transform", torch.eye(3))
        f = torch.randn(C, 2)  # a new generator's frequencies: uniform-ish in the disc of the input's band
        r = f.norm(dim=1, keepdim=True)
        self.register_buffer("freqs", f / (r * r.square().exp().pow(0.25)) * cfg.input_bandwidth)
        self.register_buffer("phases", torch.rand(C) - 0.5)

    def forward(self, w: Tensor) -> Tensor:
        T = input_transform(self.affine(w.float()), self.transform)  # [B, 3, 3]
        phases = self.phases[None] + (self.freqs[None] @ T[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = self.freqs[None] @ T[:, :2, :2]  # [B, C, 2]
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.rate / 2 - self.bandwidth)).clamp(0, 1)
        g = fourier_grid(self.size, self.rate).to(w.device)
        x = (g[None, None, None, :] * freqs[:, :, 0, None, None] + g[None, None, :, None] * freqs[:, :, 1, None, None]
             + phases[:, :, None, None])
        x = torch.sin(x * (2 * math.pi)) * amp[:, :, None, None]  # [B, C, H, W]
        return torch.einsum("bchw,oc->bohw", x, self.weight / math.sqrt(self.weight.shape[0]))


class SG3Layer(nn.Module):
    """Modulated conv (k - 1 padding) with the input gain of `magnitude_ema`, then the filtered leaky ReLU."""

    def __init__(self, spec: LayerSpec, w_dim: int):
        super().__init__()
        self.spec = spec
        self.affine = EqualLinear(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, spec.kernel, spec.kernel))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", None if spec.up_taps == 1 else torch.zeros(spec.up_taps))
        shape = [spec.down_taps] * (2 if spec.down_radial else 1)
        self.register_buffer("down_filter", None if spec.down_taps == 1 else torch.zeros(shape))
        self.clamp = spec.clamp

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        s = self.spec
        styles = self.affine(w)
        if s.torgb:
            styles = styles / math.sqrt(s.in_channels * s.kernel ** 2)
        dt = self.weight.dtype
        x = modulated_conv2d(x.to(dt), self.weight, styles.to(dt), demodulate=not s.torgb, padding=s.kernel - 1,
                             fused=not torch.is_grad_enabled() and x.is_cuda and dt == torch.float32)
        x = x * self.magnitude_ema.rsqrt().to(dt)
        return filtered_lrelu(x, self.bias, self.up_filter, self.down_filter, s.up, s.down, s.padding,
                              1.0 if s.torgb else math.sqrt(2), 1.0 if s.torgb else 0.2, self.clamp)


class SG3Generator(GeneratorFamily):
    """StyleGAN3 generator with our StyleGAN2 `Generator`'s interface: `mapping(z) -> ws`,
    `synthesis(ws) -> (img, features)`; ws[0] drives the Fourier input, ws[i] layer i - 1. Features are
    named by layer as the official snapshots name them (`L3_52_512`), cropped to the image's own area."""

    def __init__(self, cfg: SG3Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.mapping_net = MappingNetwork(cfg)  # type: ignore[arg-type]
        self.input = SynthesisInput(cfg)
        self.layers = nn.ModuleList(SG3Layer(s, cfg.w_dim) for s in cfg.layers)
        self.layer_names = [f"L{i}_{s.out_size}_{s.out_channels}" for i, s in enumerate(cfg.layers)]

    @property
    def c_dim(self) -> int:
        return self.cfg.c_dim

    @property
    def feature_names(self) -> list[str]:
        return self.layer_names[:-1] + ["rgb"]

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.cfg.resolution, self.cfg.resolution)

    @property
    def row_bytes(self) -> int:
        """The largest activation of one row, in fp32 bytes: the Fourier input, or a layer's conv output
        upsampled inside its filtered leaky ReLU."""
        c = self.cfg
        return max([c.input_channels * c.input_size ** 2] +
                   [s.out_channels * ((s.in_size + s.kernel - 1) * s.up) ** 2 for s in c.layers]) * 4

    def mapping(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                c: Tensor | None = None) -> Tensor:
        return self.mapping_net(z, truncation_psi, truncation_cutoff, c)

    def feature_rate(self, name: str) -> float:
        """The sampling rate of a feature: its pixels per image side once cropped."""
        return float(self.cfg.resolution) if name == "rgb" else self.cfg.layers[self.layer_names.index(name)].out_rate

    def synthesis(self, ws: Tensor, noise_mode: str = "const", features: Sequence[str] = (), shared_ws: int = 0,
                  groups: Sequence[int] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """ws [B, num_ws, w_dim] -> image [B, C, H, W] and the requested activations (StyleGAN3 has no noise;
        `noise_mode` is checked and ignored). `shared_ws`/`groups` as for StyleGAN2: layers reading only ws
        shared by a group of rows run once per group."""
        img, feats = self._run(ws, noise_mode, features, shared_ws, groups, stop_early=False)
        return img, feats

    def features(self, ws: Tensor, names: Sequence[str], noise_mode: str = "const", shared_ws: int = 0,
                 groups: Sequence[int] | None = None) -> dict[str, Tensor]:
        return self._run(ws, noise_mode, names, shared_ws, groups, stop_early=True)[1]

    def _run(self, ws: Tensor, noise_mode: str, features: Sequence[str], shared_ws: int,
             groups: Sequence[int] | None, stop_early: bool) -> tuple[Tensor | None, dict[str, Tensor]]:
        want = check_request(self.feature_names, noise_mode, features)
        last = len(self.layers) - 1 if ("rgb" in want or not stop_early) else \
            max((self.layer_names.index(n) for n in want), default=-1)
        B = ws.shape[0]
        rows, heads, g = row_groups(ws, groups)
        compact = shared_ws > 0
        x = self.input((heads if compact else rows)[:, 0])
        feats: dict[str, Tensor] = {}
        for i, (name, layer) in enumerate(zip(self.layer_names, self.layers)):
            if i > last:
                break
            if compact and i + 1 >= shared_ws:
                x, compact = repeat_rows(x, g, rows.shape[0]), False
            x = layer(x, (heads if compact else rows)[:, i + 1].to(layer.weight.dtype))
            if name in want:
                feats[name] = self._crop(repeat_rows(x, g, B) if compact else x[:B], layer.spec)
        if last < len(self.layers) - 1:
            return None, feats
        img = (repeat_rows(x, g, B) if compact else x[:B]).float() * self.cfg.output_scale
        if "rgb" in want:
            feats["rgb"] = img
        return img, feats

    @staticmethod
    def _crop(t: Tensor, spec: LayerSpec) -> Tensor:
        """A layer's map less its margins: the pixels over the image itself (out_rate of them per side)."""
        keep = min(spec.out_size, max(1, int(round(spec.out_rate))))
        a = (spec.out_size - keep) // 2
        return t[:, :, a:a + keep, a:a + keep].float()

    PRECISIONS = ("fp32", "fp16")  # bf16 would need every layer's filters and gains in bf16: not supported

    def default_feature(self) -> str:
        """The last layer sampled nearest 32 per side."""
        return min(reversed(self.feature_names[:-1]), key=lambda n: abs(self.feature_rate(n) - 32))

    def compile_targets(self) -> list[nn.Module]:
        return list(self.layers)

    def mixed_precision(self, dtype: torch.dtype) -> None:
        """The official recipe: the layers flagged fp16 (the highest sampling rates) in `dtype`, clamped."""
        for layer in self.layers:
            if layer.spec.fp16:
                layer.to(dtype)
                layer.clamp = layer.clamp if layer.clamp is not None else 256.0

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "const", c: Tensor | None = None) -> Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, c=c), noise_mode)[0]


# ---------------------------------------------------------------------------------------
# A new generator laid out by the paper's schedule


def design(resolution: int, radial: bool = False, z_dim: int = 512, w_dim: int = 512, c_dim: int = 0,
           img_channels: int = 3, channel_base: int | None = None, channel_max: int | None = None,
           num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2, first_stopband: float = 2 ** 2.1,
           last_stopband_rel: float = 2 ** 0.3, margin: int = 10, filter_size: int = 6, lrelu_up: int = 2,
           fp16_res: int = 4, clamp: float = 256.0, mapping_layers: int = 2) -> SG3Config:
    """The -T (radial False: 3x3 convs) or -R (1x1 convs, radial down filters, twice the channels) layout:
    cutoffs and stopbands rise geometrically to the last critically sampled layers, each layer samples at the
    power of two above twice its stopband (at most the resolution), with `margin` pixels around the image."""
    base = channel_base or (65536 if radial else 32768)
    cmax = channel_max or (1024 if radial else 512)
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    e = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** e
    stopbands = first_stopband * (last_stopband / first_stopband) ** e
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, resolution))))
    sizes = (rates + margin * 2).astype(int)
    sizes[-2:] = resolution
    chans = np.rint(np.minimum((base / 2) / cutoffs, cmax)).astype(int)
    chans[-1] = img_channels
    half = np.maximum(stopbands, rates / 2) - cutoffs
    layers = []
    for i in range(num_layers + 1):
        p = max(i - 1, 0)
        torgb = i == num_layers
        tmp = max(rates[p], rates[i]) * (1 if torgb else lrelu_up)
        up, down = int(round(tmp / rates[p])), int(round(tmp / rates[i]))
        up_taps = filter_size * up if up > 1 and not torgb else 1
        down_taps = filter_size * down if down > 1 and not torgb else 1
        k = 1 if torgb or radial else 3
        layers.append(LayerSpec(int(chans[p]), int(chans[i]), int(sizes[p]), int(sizes[i]), float(rates[p]),
                                float(rates[i]), k, up, down, up_taps, down_taps,
                                radial and i < num_layers - num_critical,
                                padding_for(int(sizes[p]), int(sizes[i]), k, up, down, up_taps, down_taps), torgb,
                                bool(rates[i] * 2 ** fp16_res > resolution), clamp, float(cutoffs[p]),
                                float(cutoffs[i]), float(half[p]), float(half[i])))
    return SG3Config(resolution=resolution, layers=tuple(layers), input_channels=int(chans[0]), input_size=int(sizes[0]),
                     input_rate=float(rates[0]), input_bandwidth=float(cutoffs[0]), z_dim=z_dim, w_dim=w_dim,
                     c_dim=c_dim, img_channels=img_channels, mapping_layers=mapping_layers)


def design_filters(G: SG3Generator) -> None:
    """Fill a freshly built generator's up and down filters by the paper's recipe (a new generator only: a
    loaded one keeps the file's): Kaiser low-passes at the layer's band limits, at its oversampled rate."""
    with torch.no_grad():
        for layer in G.layers:
            s = layer.spec
            tmp = max(s.in_rate, s.out_rate) * (1 if s.torgb else 2)
            if layer.up_filter is not None:
                layer.up_filter.copy_(lowpass(s.up_taps, s.in_cutoff, s.in_half_width * 2, tmp))
            if layer.down_filter is not None:
                layer.down_filter.copy_(lowpass(s.down_taps, s.out_cutoff, s.out_half_width * 2, tmp, s.down_radial))
