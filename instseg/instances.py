"""Instances: which clusters of a box crop form the object, pasting back, and merging instances."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .foreground import _ensure_both, border_rule


def box_crop(box: np.ndarray, margin: float, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel crop (x0, y0, x1, y1) around an xyxy box, grown by `margin` x its size on each side."""
    H, W = hw
    x0, y0, x1, y1 = [float(v) for v in box]
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    cx0, cy0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    cx1, cy1 = min(W, int(np.ceil(x1 + mx))), min(H, int(np.ceil(y1 + my)))
    return cx0, cy0, max(cx1, cx0 + 1), max(cy1, cy0 + 1)


def box_in_crop(box: np.ndarray, crop: tuple[int, int, int, int], work_hw: tuple[int, int]) -> Tensor:
    """The box in the crop's working-resolution pixel coordinates: [4] xyxy."""
    cx0, cy0, cx1, cy1 = crop
    sx, sy = work_hw[1] / (cx1 - cx0), work_hw[0] / (cy1 - cy0)
    return torch.tensor([(box[0] - cx0) * sx, (box[1] - cy0) * sy, (box[2] - cx0) * sx, (box[3] - cy0) * sy])


def _in_box(hw: tuple[int, int], box: Tensor, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Pixel-centre coordinates xs [1, w], ys [h, 1] and whether each centre lies in the box: [h, w]."""
    ys = torch.arange(hw[0], device=device)[:, None] + 0.5
    xs = torch.arange(hw[1], device=device)[None] + 0.5
    return xs, ys, (xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])


def _box_stats(labels: Tensor, box: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    xs, ys, inside = _in_box(tuple(labels.shape), box, labels.device)
    flat = labels.flatten()
    size = torch.bincount(flat, minlength=k).float()
    inside_frac = torch.bincount(flat[inside.flatten()], minlength=k).float() / size.clamp_min(1)
    return xs, ys, flat, size, inside_frac


def inside_share(mask: Tensor, box: Tensor) -> float:
    """The share of a crop mask's [h, w] pixels whose centres lie inside the box (xyxy, crop pixels)."""
    inside = _in_box(tuple(mask.shape), box, mask.device)[2]
    n = int(mask.sum())
    return int((mask & inside).sum()) / n if n else 0.0


def inside_rule(labels: Tensor, box: Tensor, k: int, inside_min: float = 0.7) -> Tensor:
    """Clusters with most of their mass inside the box."""
    _, _, _, size, inside_frac = _box_stats(labels, box, k)
    return _ensure_both((inside_frac >= inside_min) & (size > 0), inside_frac)


def border_instance_rule(labels: Tensor, box: Tensor, k: int) -> Tensor:
    """Clusters that rarely touch the crop border (the crop has a margin around the box)."""
    return border_rule(labels, k)


def center_instance_rule(labels: Tensor, box: Tensor, k: int) -> Tensor:
    """Clusters closer to the box centre than the crop is on average (Gaussian prior)."""
    h, w = labels.shape
    xs, ys, flat, size, _ = _box_stats(labels, box, k)
    bc = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    sig2 = ((box[2] - box[0]) ** 2 + (box[3] - box[1]) ** 2).clamp_min(1) / 8
    prior = torch.exp(-((xs - bc[0]) ** 2 + (ys - bc[1]) ** 2) / (2 * sig2)).expand(h, w)
    mean_prior = torch.zeros(k).index_add_(0, flat.cpu(), prior.flatten().cpu()) / size.cpu().clamp_min(1)
    return _ensure_both((mean_prior > prior.mean().cpu()) & (size.cpu() > 0), mean_prior).to(labels.device)


def combined_rule(labels: Tensor, box: Tensor, k: int, inside_min: float = 0.7) -> Tensor:
    """Inside and border together."""
    _, _, _, size, inside_frac = _box_stats(labels, box, k)
    not_bg = border_rule(labels, k)
    return _ensure_both((inside_frac >= inside_min) & not_bg & (size > 0), inside_frac * not_bg)


InstanceRule = Callable[[Tensor, Tensor, int], Tensor]
RULES: dict[str, InstanceRule] = {"combined": combined_rule, "inside": inside_rule, "border": border_instance_rule,
                                  "center": center_instance_rule}


def instance_clusters(labels: Tensor, box: Tensor, k: int, rule: str = "combined") -> Tensor:
    """Pick the object's clusters in a crop label map [h, w] from box evidence -> bool [k]."""
    if rule not in RULES:
        raise ValueError(f"unknown instance rule {rule!r}; use one of {', '.join(RULES)}")
    return RULES[rule](labels, box, k)


def mask_iou(a: Tensor, b: Tensor) -> float:
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    return inter / union if union else 0.0


def merge_instances(masks: Tensor, scores: Tensor, nms_iou: float = 0.5, min_area: int = 8) -> tuple[list[int], Tensor]:
    """Mask-NMS, then make masks disjoint. masks [n, H, W] bool, scores [n].

    Duplicates (mask IoU above nms_iou with a higher-scoring kept mask) are dropped. A pixel
    claimed by several kept instances goes to the one with the highest score. Instances left
    smaller than min_area pixels are dropped. Returns (kept indices in score order, [m, H, W]).
    """
    kept: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if masks[i].sum() < min_area:
            continue
        if all(mask_iou(masks[i], masks[j]) <= nms_iou for j in kept):
            kept.append(i)
    taken = torch.zeros_like(masks[0]) if len(masks) else None
    out_idx, out = [], []
    for i in kept:
        m = masks[i] & ~taken
        taken |= m
        if m.sum() >= min_area:
            out_idx.append(i)
            out.append(m)
    shape = masks.shape[1:] if len(masks) else (0, 0)
    return out_idx, torch.stack(out) if out else torch.zeros((0, *shape), dtype=torch.bool)
