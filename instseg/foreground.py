"""Which clusters are foreground. Each rule maps label maps [n, h, w] to a bool per cluster [n, k];
maps padded to a common size give their own sizes [n, 2] (rows, columns), and pixels beyond are ignored."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .config import FOREGROUND_RULES

Rule = Callable[[Tensor, int], Tensor]


def pixel_grid(shape: tuple[int, ...] | torch.Size, device: torch.device) -> tuple[Tensor, Tensor]:
    """Row and column indices of [n, h, w] maps, broadcastable: ys [1, h, 1], xs [1, 1, w]."""
    h, w = shape[-2:]
    return torch.arange(h, device=device)[None, :, None], torch.arange(w, device=device)[None, None, :]


def map_sizes(labels: Tensor, sizes: Tensor | None) -> Tensor:
    """[n, 2] map sizes: given, or every map's full size."""
    if sizes is not None:
        return sizes
    return torch.tensor(labels.shape[-2:], device=labels.device).expand(labels.shape[0], 2)


def valid_pixels(labels: Tensor, sizes: Tensor) -> Tensor:
    """[n, h, w] bool: the pixels that belong to each (possibly padded) map."""
    ys, xs = pixel_grid(labels.shape, labels.device)
    return (ys < sizes[:, 0, None, None]) & (xs < sizes[:, 1, None, None])


def cluster_counts(labels: Tensor, k: int, where: Tensor) -> Tensor:
    """Pixels of each cluster among `where` [n, h, w]: [n, k] float."""
    onehot = labels[..., None] == torch.arange(k, device=labels.device)
    return (onehot & where[..., None]).sum((1, 2)).float()


def cluster_means(labels: Tensor, k: int, values: Tensor, where: Tensor) -> Tensor:
    """Mean of `values` [n, h, w] per cluster among `where`: [n, k] (0 for an empty cluster)."""
    onehot = ((labels[..., None] == torch.arange(k, device=labels.device)) & where[..., None]).float()
    total = (onehot * values[..., None]).sum((1, 2))
    return total / cluster_counts(labels, k, where).clamp_min(1)


def ensure_both(is_fg: Tensor, score: Tensor) -> Tensor:
    """At least one foreground and one background cluster per map; `score` [n, k] ranks foreground-ness."""
    k = is_fg.shape[1]
    ks = torch.arange(k, device=is_fg.device)
    is_fg = torch.where(~is_fg.any(1, keepdim=True), is_fg | (ks == score.argmax(1, keepdim=True)), is_fg)
    return torch.where(is_fg.all(1, keepdim=True), is_fg & (ks != score.argmin(1, keepdim=True)), is_fg)


def border_rule(labels: Tensor, k: int, ratio: float = 0.5, sizes: Tensor | None = None) -> Tensor:
    """Background = clusters whose border-pixel density is at least `ratio` times the map's.

    A cluster spread over the whole image touches the border as often as the image does; an
    object touches it rarely or not at all.
    """
    sizes = map_sizes(labels, sizes)
    ys, xs = pixel_grid(labels.shape, labels.device)
    h, w = sizes[:, 0, None, None], sizes[:, 1, None, None]
    valid = valid_pixels(labels, sizes)
    border = valid & ((ys == 0) | (ys == h - 1) | (xs == 0) | (xs == w - 1))
    size = cluster_counts(labels, k, valid)
    density = cluster_counts(labels, k, border) / size.clamp_min(1)
    image_density = border.sum((1, 2)) / (sizes[:, 0] * sizes[:, 1])
    is_fg = (density < ratio * image_density[:, None]) & (size > 0)
    return ensure_both(is_fg, -density + (size == 0) * -1e9)


def center_rule(labels: Tensor, k: int, sigma: float = 0.5) -> Tensor:
    """Foreground = clusters more central than the image on average under a Gaussian prior
    (sigma = `sigma` x the image size), as in the public re-implementation."""
    h, w = labels.shape[-2:]
    ys = (torch.arange(h, device=labels.device) + 0.5) / h - 0.5
    xs = (torch.arange(w, device=labels.device) + 0.5) / w - 0.5
    prior = torch.exp(-(ys[:, None] ** 2 + xs[None] ** 2) / (2 * sigma**2))
    everywhere = torch.ones_like(labels, dtype=torch.bool)
    mean_prior = cluster_means(labels, k, prior.expand_as(labels), everywhere)
    is_fg = (mean_prior > prior.mean()) & (cluster_counts(labels, k, everywhere) > 0)
    return ensure_both(is_fg, mean_prior)


RULES: dict[str, Rule] = dict(zip(FOREGROUND_RULES, (border_rule, center_rule), strict=True))  # names: config's
