"""Instances, batched over a chunk's boxes: which clusters of each box crop form the object, pasting
the masks back, and merging each image's instances (mask-NMS, disjoint), all with tensor ops."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .config import INSTANCE_RULES
from .features import upsample_labels
from .foreground import (
    border_rule,
    cluster_counts,
    cluster_means,
    ensure_both,
    map_sizes,
    pixel_grid,
    valid_pixels,
)


def box_crop(box: np.ndarray, margin: float, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel crop (x0, y0, x1, y1) around an xyxy box, grown by `margin` x its size on each side."""
    H, W = hw
    x0, y0, x1, y1 = [float(v) for v in box]
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    cx0, cy0 = max(0, int(np.floor(x0 - mx))), max(0, int(np.floor(y0 - my)))
    cx1, cy1 = min(W, int(np.ceil(x1 + mx))), min(H, int(np.ceil(y1 + my)))
    return cx0, cy0, max(cx1, cx0 + 1), max(cy1, cy0 + 1)


def work_boxes(boxes: np.ndarray, crops: list[tuple[int, int, int, int]], work_hws: list[tuple[int, int]]) -> Tensor:
    """Each box in its crop's working-resolution pixel coordinates: [n, 4] xyxy (computed on the host)."""
    out = []
    for box, (cx0, cy0, cx1, cy1), (h, w) in zip(boxes, crops, work_hws):
        sx, sy = w / (cx1 - cx0), h / (cy1 - cy0)
        out.append([(box[0] - cx0) * sx, (box[1] - cy0) * sy, (box[2] - cx0) * sx, (box[3] - cy0) * sy])
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 4)


def in_box(labels: Tensor, sizes: Tensor, boxes: Tensor) -> Tensor:
    """[n, h, w]: pixels of each map whose centres lie in its box (xyxy, map pixels)."""
    ys, xs = pixel_grid(labels.shape, labels.device)
    yc, xc = ys + 0.5, xs + 0.5
    b = boxes[:, :, None, None]
    return valid_pixels(labels, sizes) & (xc >= b[:, 0]) & (xc <= b[:, 2]) & (yc >= b[:, 1]) & (yc <= b[:, 3])


def _inside_frac(labels: Tensor, sizes: Tensor, boxes: Tensor, k: int) -> tuple[Tensor, Tensor]:
    size = cluster_counts(labels, k, valid_pixels(labels, sizes))
    return size, cluster_counts(labels, k, in_box(labels, sizes, boxes)) / size.clamp_min(1)


def inside_rule(labels: Tensor, sizes: Tensor, boxes: Tensor, k: int, inside_min: float = 0.7) -> Tensor:
    """Clusters with most of their mass inside the box."""
    size, inside_frac = _inside_frac(labels, sizes, boxes, k)
    return ensure_both((inside_frac >= inside_min) & (size > 0), inside_frac)


def border_instance_rule(labels: Tensor, sizes: Tensor, boxes: Tensor, k: int) -> Tensor:
    """Clusters that rarely touch the crop border (the crop has a margin around the box)."""
    return border_rule(labels, k, sizes=sizes)


def center_instance_rule(labels: Tensor, sizes: Tensor, boxes: Tensor, k: int) -> Tensor:
    """Clusters closer to the box centre than the crop is on average (Gaussian prior)."""
    ys, xs = pixel_grid(labels.shape, labels.device)
    b = boxes[:, :, None, None]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    sig2 = ((b[:, 2] - b[:, 0]) ** 2 + (b[:, 3] - b[:, 1]) ** 2).clamp_min(1) / 8
    prior = torch.exp(-((xs + 0.5 - cx) ** 2 + (ys + 0.5 - cy) ** 2) / (2 * sig2))  # [n, h, w]
    valid = valid_pixels(labels, sizes)
    mean_prior = cluster_means(labels, k, prior, valid)
    crop_mean = (prior * valid).sum((1, 2)) / valid.sum((1, 2))
    size = cluster_counts(labels, k, valid)
    return ensure_both((mean_prior > crop_mean[:, None]) & (size > 0), mean_prior)


def combined_rule(labels: Tensor, sizes: Tensor, boxes: Tensor, k: int, inside_min: float = 0.7) -> Tensor:
    """Inside and border together."""
    size, inside_frac = _inside_frac(labels, sizes, boxes, k)
    not_bg = border_rule(labels, k, sizes=sizes)
    return ensure_both((inside_frac >= inside_min) & not_bg & (size > 0), inside_frac * not_bg)


InstanceRule = Callable[[Tensor, Tensor, Tensor, int], Tensor]
RULES: dict[str, InstanceRule] = dict(zip(INSTANCE_RULES, (combined_rule, inside_rule, border_instance_rule,
                                                            center_instance_rule), strict=True))  # names: config's


def clip_to_boxes(masks: Tensor, boxes: np.ndarray, margin: float) -> Tensor:
    """Masks [n, H, W] cut to their xyxy boxes [n, 4] grown by `margin` x the box size per side (pixel
    centres): a neighbour whose pixels co-vary with the object's stays out of its mask."""
    b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4), device=masks.device)
    grow = margin * torch.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]] * 2, 1) * torch.tensor([-1, -1, 1, 1], device=b.device)
    return masks & in_box(masks, map_sizes(masks, None), b + grow)


def paste_masks(labels: list[Tensor], chosen: Tensor, crops: list[tuple[int, int, int, int]],
                image_hw: tuple[int, int], k: int) -> Tensor:
    """Each crop's chosen clusters [n, k], upsampled to the crop and pasted into its image: [n, H, W] bool."""
    masks = torch.zeros((len(labels), *image_hw), dtype=torch.bool, device=chosen.device)
    for i, (lab, (cx0, cy0, cx1, cy1)) in enumerate(zip(labels, crops)):
        masks[i, cy0:cy1, cx0:cx1] = chosen[i][upsample_labels(lab, k, (cy1 - cy0, cx1 - cx0))]
    return masks


def merge_instances(masks: Tensor, scores: Tensor, owner: np.ndarray, n_images: int, nms_iou: float = 0.5,
                    min_area: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """Per image: mask-NMS, then make masks disjoint. masks [n, H, W] bool, scores [n], owner [n]
    (the image of each mask, on the host).

    In each image, duplicates (mask IoU above nms_iou with a higher-scoring kept mask) are dropped;
    a pixel claimed by several kept masks goes to the highest score; masks left smaller than
    min_area pixels are dropped. Returns (disjoint masks [n, H, W], kept [n], rank [n]: the
    position in its image's score order). Tensor ops only: the loops run over the most masks
    any one image has, whatever their content."""
    n, dev = len(masks), masks.device
    if n == 0:
        return masks, torch.zeros(0, dtype=torch.bool, device=dev), torch.zeros(0, dtype=torch.long, device=dev)
    slot = np.zeros(n, dtype=np.int64)
    for b in range(n_images):
        mine = owner == b
        slot[mine] = np.arange(mine.sum())
    m = int(slot.max()) + 1
    o, s = torch.as_tensor(owner, device=dev), torch.as_tensor(slot, device=dev)
    flat = torch.zeros((n_images, m, masks[0].numel()), dtype=torch.bool, device=dev)
    flat[o, s] = masks.flatten(1)
    S = torch.full((n_images, m), -torch.inf, device=dev)
    S[o, s] = scores.float()
    valid = torch.zeros((n_images, m), dtype=torch.bool, device=dev)
    valid[o, s] = True
    order = S.argsort(dim=1, descending=True, stable=True)  # [B, m]
    f = flat.float()
    area = f.sum(2)  # exact: integers below 2^24
    inter = f @ f.transpose(1, 2)
    union = area[:, :, None] + area[:, None, :] - inter
    iou = torch.where(union > 0, inter.double() / union.double().clamp_min(1), 0.0)  # as Python's float division
    big = valid & (area >= min_area)
    rows = torch.arange(n_images, device=dev)
    kept = torch.zeros_like(valid)
    for t in range(m):
        i = order[:, t]
        clash = ((iou[rows, i] > nms_iou) & kept).any(1)
        kept[rows, i] = big[rows, i] & ~clash
    taken = torch.zeros_like(flat[:, 0])
    final = torch.zeros_like(flat)
    for t in range(m):
        i = order[:, t]
        mine = flat[rows, i] & kept[rows, i, None] & ~taken
        taken |= mine
        final[rows, i] = mine
    keep = kept & (final.sum(2) >= min_area)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(m, device=dev).expand(n_images, m))
    return final[o, s].reshape(masks.shape), keep[o, s], rank[o, s]

