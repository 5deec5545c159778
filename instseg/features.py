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


def _calls(n_groups: int, group: int, rows: int) -> list[tuple[int, int, list[int]]]:
    """Synthesis calls over n_groups groups of `group` rows, `rows` rows each (the last fewer):
    (first row, end row, sizes of the group pieces in the call)."""
    total, out = n_groups * group, []
    for a in range(0, total, rows):
        b = min(a + rows, total)
        cuts = sorted({a, b} | set(range((a // group + 1) * group, b, group)))
        out.append((a, b, [hi - lo for lo, hi in zip(cuts, cuts[1:])]))
    return out


@torch.no_grad()
def variant_stacks(G: Generator, ws: Tensor, feature: str, regions: list[list[tuple[Region | None, tuple[int, int]]]],
                   rows: int, shared_ws: int = 0) -> list[list[Tensor]]:
    """Synthesise ws [n_groups * N, num_ws, w_dim] (groups of N rows, one image's variants each),
    `rows` per call whatever the groups, and cut each group's (region, working size) from every call.

    Returns per group one [N, C, h, w] stack per region. Only [rows, C, H, W] is ever held at full
    resolution, so memory stays bounded for 1024x1024 generators and many boxes. Synthesis stops at
    the block that makes `feature`; blocks that read only the first `shared_ws` ws (the same in every
    row of a group) run once per group piece in a call."""
    n_groups = len(regions)
    group = ws.shape[0] // n_groups
    parts: list[list[list[Tensor]]] = [[[] for _ in reg] for reg in regions]
    for a, b, pieces in _calls(n_groups, group, rows):
        t = G.features(ws[a:b], (feature,), noise_mode="const", shared_ws=shared_ws, groups=pieces)[feature].float()
        whole: dict[tuple[int, int], Tensor] = {}  # the whole image at one size: resized for the call at once
        lo = a
        for size in pieces:
            gi = lo // group
            piece = t[lo - a:lo - a + size]
            for acc, (region, hw) in zip(parts[gi], regions[gi]):
                if region is None:
                    if hw not in whole:
                        whole[hw] = resize(t, hw)
                    acc.append(whole[hw][lo - a:lo - a + size])
                else:
                    acc.append(resize(crop_region(piece, region), hw))
            lo += size
    return [[torch.cat(p) for p in reg] for reg in parts]


def upsample_labels(labels: Tensor, k: int, hw: tuple[int, int]) -> Tensor:
    """Label maps [..., h, w] -> [..., H, W] by bilinear interpolation of their one-hot planes (smooth edges)."""
    if tuple(labels.shape[-2:]) == tuple(hw):
        return labels
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, *labels.shape[-2:])
    onehot = (flat[:, None] == torch.arange(k, device=labels.device)[None, :, None, None]).float()
    up = F.interpolate(onehot, size=hw, mode="bilinear", align_corners=False).argmax(1)
    return up.reshape(*lead, *hw)


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
