"""Which clusters are foreground. Each rule maps a label map [h, w] to a bool per cluster [k]."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Rule = Callable[[Tensor, int], Tensor]


def _ensure_both(is_fg: Tensor, score: Tensor) -> Tensor:
    """At least one foreground and one background cluster; `score` ranks foreground-ness."""
    if not is_fg.any():
        is_fg = is_fg.clone()
        is_fg[score.argmax()] = True
    if is_fg.all():
        is_fg = is_fg.clone()
        is_fg[score.argmin()] = False
    return is_fg


def border_rule(labels: Tensor, k: int, ratio: float = 0.5) -> Tensor:
    """Background = clusters whose border-pixel density is at least `ratio` times the image's.

    A cluster spread over the whole image touches the border as often as the image does; an
    object touches it rarely or not at all.
    """
    h, w = labels.shape
    border = torch.zeros_like(labels, dtype=torch.bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    size = torch.bincount(labels.flatten(), minlength=k).float()
    on_border = torch.bincount(labels[border], minlength=k).float()
    density = on_border / size.clamp_min(1)
    image_density = border.sum() / (h * w)
    is_fg = (density < ratio * image_density) & (size > 0)
    return _ensure_both(is_fg, -density + (size == 0) * -1e9)


def center_rule(labels: Tensor, k: int, sigma: float = 0.5) -> Tensor:
    """Foreground = clusters more central than the image on average under a Gaussian prior
    (sigma = `sigma` x the image size), as in the public re-implementation."""
    h, w = labels.shape
    ys = (torch.arange(h, device=labels.device) + 0.5) / h - 0.5
    xs = (torch.arange(w, device=labels.device) + 0.5) / w - 0.5
    prior = torch.exp(-(ys[:, None] ** 2 + xs[None] ** 2) / (2 * sigma**2))
    size = torch.bincount(labels.flatten(), minlength=k).float()
    mean_prior = torch.zeros(k, device=labels.device).index_add_(0, labels.flatten(), prior.flatten()) / size.clamp_min(1)
    is_fg = (mean_prior > prior.mean()) & (size > 0)
    return _ensure_both(is_fg, mean_prior)


RULES: dict[str, Rule] = {"border": border_rule, "center": center_rule}
