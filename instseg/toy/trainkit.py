"""What the toy trainers share: the discriminator, the real-scene supply, optimisers, R1 and start-up."""
from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..allocator import keep_freed_memory
from ..generator import Generator, GeneratorConfig, lrelu
from .render import class_coverage, render_antialiased, render_seed, sample_scene

TRAIN_SEEDS = 1_000_000  # first renderer seed used for training (disjoint from every evaluation seed)


class EqConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * k * k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.weight.shape[-1] // 2)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.gain, self.bias)


def _down(x: Tensor, blur: bool) -> Tensor:
    """Halve the resolution: StyleGAN2's [1, 3, 3, 1] binomial filter, or a 2x2 box.

    [1, 3, 3, 1] / 8 is [1, 2, 1] / 4 then [1, 1] / 2, so three average pools do it (a grouped 4x4 conv
    is several times slower on a CPU, R1's double backward included).
    """
    if blur:
        x = F.avg_pool2d(F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 2, 1), 2, 1)  # [1, 2, 1] / 4
    return F.avg_pool2d(x, 2)


class DBlock(nn.Module):
    """conv0 at the block's resolution, conv1 then 2x down (or, with `pool_first`, down then conv1 at the lower
    resolution, as StyleGAN2's strided conv1: a quarter of its cost), plus a 1x1 skip."""

    def __init__(self, cin: int, cout: int, blur: bool = False, pool_first: bool = False):
        super().__init__()
        self.conv0, self.conv1 = EqConv(cin, cin, 3), EqConv(cin, cout, 3)
        self.skip = EqConv(cin, cout, 1, bias=False)
        self.blur, self.pool_first = blur, pool_first

    def forward(self, x: Tensor) -> Tensor:
        y = self.skip(_down(x, self.blur))
        x = lrelu(self.conv0(x))
        x = lrelu(self.conv1(_down(x, self.blur))) if self.pool_first else _down(lrelu(self.conv1(x)), self.blur)
        return (x + y) / math.sqrt(2)


def mbstd_group(batch: int, max_group: int = 4) -> int:
    """The largest group size <= max_group that divides the batch (any batch works)."""
    return max(g for g in range(1, min(max_group, batch) + 1) if batch % g == 0)


class Discriminator(nn.Module):
    """Residual D with equalised learning rate and minibatch stddev; `in_channels` defaults to image + labels."""

    def __init__(self, cfg: GeneratorConfig, in_channels: int | None = None, blur: bool = False, mbstd: int = 4,
                 pool_first: bool = False):
        super().__init__()
        self.mbstd = mbstd
        res = cfg.block_resolutions[::-1]  # top -> 8
        cin = cfg.img_channels + cfg.label_channels if in_channels is None else in_channels
        self.fromrgb = EqConv(cin, cfg.channels(res[0]), 1)
        self.blocks = nn.Sequential(*[DBlock(cfg.channels(r), cfg.channels(r // 2), blur, pool_first)
                                      for r in res[:-1]])
        c = cfg.channels(4)
        self.conv = EqConv(c + 1, c, 3)
        self.fc = EqLinear(c * 16, c)
        self.out = EqLinear(c, 1)

    def forward(self, img: Tensor) -> Tensor:
        x = self.blocks(lrelu(self.fromrgb(img)))  # [B, C, 4, 4]
        g = mbstd_group(x.shape[0], self.mbstd)
        s = x.reshape(g, -1, *x.shape[1:]).std(dim=0).mean(dim=[1, 2, 3])  # [B/g]
        s = s.repeat(g)[:, None, None, None].expand(-1, 1, 4, 4)
        x = lrelu(self.conv(torch.cat([x, s], 1)))
        return self.out(lrelu(self.fc(x.flatten(1)))).squeeze(1)


def render_rows(first_seed: int, n: int, size: int, world: str, labels: bool) -> np.ndarray:
    """Scenes first_seed.. as uint8 [n, size, size, 3 (+ one anti-aliased coverage per class)]."""
    rows = []
    for seed in range(first_seed, first_seed + n):
        if not labels:
            rows.append(render_seed(seed, size, world)[0])
            continue
        scene = sample_scene(seed, size, world=world)
        cov = (class_coverage(scene).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([render_antialiased(scene), cov], axis=2))
    return np.stack(rows)


def _to_tensor(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def render_dataset(n: int, size: int, first_seed: int = TRAIN_SEEDS, world: str = "classic", labels: bool = False,
                   workers: int = 1) -> Tensor:
    """Rendered scenes as uint8 [n, 3 (+ label coverages), size, size]; `workers` processes (0: all cores)."""
    workers = min(workers or os.cpu_count() or 1, max(1, n // 256))
    if workers <= 1:
        return _to_tensor(render_rows(first_seed, n, size, world, labels))
    step = -(-n // workers)
    starts = list(range(0, n, step))
    with ProcessPoolExecutor(workers) as ex:
        parts = ex.map(render_rows, [first_seed + s for s in starts], [min(step, n - s) for s in starts],
                       [size] * len(starts), [world] * len(starts), [labels] * len(starts))
        return _to_tensor(np.concatenate(list(parts)))


class SceneStream:
    """Fresh renderer scenes for every batch: batch i holds seeds TRAIN_SEEDS + i * batch + [0, batch).

    The seeds follow from the iteration alone, so a resumed run sees the scenes it would have seen.
    With workers > 1, that many processes render batches ahead of the trainer.
    """

    def __init__(self, batch: int, size: int, world: str, labels: bool, start: int, workers: int):
        self.batch, self.size, self.world, self.labels, self.next = batch, size, world, labels, start
        self.pool = ProcessPoolExecutor(workers) if workers > 1 else None
        self.ahead: deque[Future] = deque()
        self.depth = 2 * workers

    def _submit(self, i: int):
        args = (TRAIN_SEEDS + i * self.batch, self.batch, self.size, self.world, self.labels)
        return self.pool.submit(render_rows, *args) if self.pool else render_rows(*args)

    def __call__(self) -> Tensor:
        if self.pool is None:
            out = self._submit(self.next)
        else:
            while len(self.ahead) < self.depth:
                self.ahead.append(self._submit(self.next + len(self.ahead)))
            out = self.ahead.popleft().result()
        self.next += 1
        return _to_tensor(out)

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(cancel_futures=True)


def begin_training(threads: int, device: str, out: str, seed: int) -> tuple[torch.device, Path]:
    """What every toy trainer does first: threads, device (TF32 off: fp32 as the recipe assumes), the
    output folder and the seed."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    else:
        keep_freed_memory()
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return dev, path


def optimisers(g_params, d_params, lr: float, r1_every: int) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and beta2 are scaled for lazy R1 every `r1_every` steps."""
    c = r1_every / (r1_every + 1)
    return (torch.optim.Adam(g_params, lr=lr, betas=(0.0, 0.99)),
            torch.optim.Adam(d_params, lr=lr * c, betas=(0.0, 0.99**c)))


def r1_penalty(D: nn.Module, real: Tensor, gamma: float) -> Tensor:
    """gamma/2 * E|grad_x D(x)|^2 on real data (applied lazily: the caller scales it by the interval)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2)


def mixed_ws(G: Generator, batch: int, mix_prob: float, device: torch.device) -> Tensor:
    """ws for a training batch, with style-mixing regularisation at probability `mix_prob`."""
    z = torch.randn(batch, G.z_dim, device=device)
    ws = G.mapping(z)
    if mix_prob > 0 and torch.rand(()) < mix_prob:
        cut = int(torch.randint(1, G.num_ws, ()))
        ws2 = G.mapping(torch.randn_like(z))
        ws = torch.cat([ws[:, :cut], ws2[:, cut:]], 1)
    return ws
