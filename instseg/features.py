"""The variant stack (RGB or a synthesis activation) and its per-pixel feature vectors."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .generator import Generator


def work_size(hw: tuple[int, int], work_res: int) -> tuple[int, int]:
    """Scale (H, W) so the longest side is at most work_res."""
    s = min(1.0, work_res / max(hw))
    return max(1, round(hw[0] * s)), max(1, round(hw[1] * s))


def resize(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Area-average when shrinking, bilinear when growing: [B, C, h, w] -> [B, C, *hw]."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(x, hw)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


Region = tuple[float, float, float, float]  # (x0, y0, x1, y1) as fractions of the image


def crop_region(t: Tensor, region: Region) -> Tensor:
    """Slice a [.., H, W] map to a fractional region (at least one pixel)."""
    H, W = t.shape[-2:]
    x0, y0, x1, y1 = region
    ya, xa = min(int(y0 * H), H - 1), min(int(x0 * W), W - 1)
    return t[..., ya:max(ya + 1, round(y1 * H)), xa:max(xa + 1, round(x1 * W))]


CPU_ROW_BYTES = 32 << 20


def synthesis_rows(G: Generator, batch: int, device: torch.device | str) -> int:
    """Rows per synthesis call: at most `batch`, and on a CPU at most what keeps the last block's
    activation within 32 MiB (config-f 256: one row, 1.5x faster per image than eight there:
    the elementwise passes of a big batch miss the cache)."""
    if torch.device(device).type != "cpu":
        return batch
    last = G.blocks[-1]
    row = last.conv1.weight.shape[0] * last.res ** 2 * 4
    return max(1, min(batch, CPU_ROW_BYTES // row))


@torch.no_grad()
def variant_stacks(G: Generator, ws: Tensor, feature: str, regions: list[tuple[Region | None, tuple[int, int]]],
                   batch: int, shared_ws: int = 0) -> list[Tensor]:
    """Synthesise ws [N, num_ws, w_dim] in batches and cut each (region, working size) from every batch.

    Returns one [N, C, h, w] stack per region. Only [batch, C, H, W] is ever held at full
    resolution (fewer rows on a CPU: `synthesis_rows`), so memory stays bounded for 1024x1024
    generators and many boxes. Synthesis stops at the block that makes `feature`; blocks that
    read only the first `shared_ws` ws (the same in every variant) run once per batch.
    """
    parts: list[list[Tensor]] = [[] for _ in regions]
    for chunk in ws.split(synthesis_rows(G, batch, ws.device)):
        t = G.features(chunk, (feature,), noise_mode="const", shared_ws=shared_ws)[feature].float()
        for acc, (region, hw) in zip(parts, regions):
            acc.append(resize(t if region is None else crop_region(t, region), hw))
    return [torch.cat(p) for p in parts]


def variant_stack(G: Generator, ws: Tensor, feature: str, hw: tuple[int, int], batch: int) -> Tensor:
    """The whole-image stack [N, C, *hw] of `feature` ("rgb" or a layer)."""
    return variant_stacks(G, ws, feature, [(None, hw)], batch)[0]


def pixel_features(stack: Tensor, normalize: str = "raw") -> Tensor:
    """[N, C, h, w] -> [h*w, N*C]; 'standardize' makes distances 1 - correlation, 'l2' unit length."""
    n, c, h, w = stack.shape
    x = stack.permute(2, 3, 0, 1).reshape(h * w, n * c).contiguous()  # row-major: matmuls on it are 20x faster
    if normalize == "standardize":
        x = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)
    elif normalize == "l2":
        x = x / (x.norm(dim=1, keepdim=True) + 1e-6)
    elif normalize != "raw":
        raise ValueError(f"unknown normalisation {normalize!r}")
    return x
