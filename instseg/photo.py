"""A real photo at its own resolution: the single-image baselines on the photo itself, and refinement of
our masks with the photo's own evidence (seeded GrabCut, a vote of the photo's colour clusters, a guided filter).
Pure arrays and tensors."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .baselines import grabcut  # noqa: F401  (photo.grabcut: GrabCut from a box)
from .config import REFINEMENTS  # noqa: F401  (the names; implemented here)
from .features import resize, work_size
from .instances import box_crop, clip_to_boxes, merge_instances
from .segment import Boxes, box_masks, cluster_regions

AUTO_SCALE = 2  # auto: GrabCut for a photo at least this many times the generator's frame, else none


MAX_SCALE = 4  # cluster_at photo: a frame of at most this many times the generator's size,
MAX_SIDE = 1024  # and at most this many pixels across (memory: whole frames and masks are held per chunk)


def cluster_scale(window_side: int, frame: int) -> int:
    """cluster_at photo: the photo's frame is this many times the generator's (whole times, not above the
    photo's own pixels, at most MAX_SCALE and MAX_SIDE)."""
    return max(1, min(MAX_SCALE, window_side // frame, MAX_SIDE // frame))


def auto_refinement(photo_hw: tuple[int, int], frame: int) -> str:
    """`--refine auto`: GrabCut where the photo is larger than the generator's frame (the masks, made in the
    frame, need the photo's edges), none at the frame's own size (there GrabCut and its empty-box check cost
    more than they give on noisy photos; tuning scenes; the table is in git history, BENCHMARKS.md shows the held-out result)."""
    return "grabcut" if max(photo_hw) >= AUTO_SCALE * frame else "none"


def kmeans_rgb_masks(photo: Tensor, boxes: np.ndarray, k: int, work_res: int, margin: float, rule: str,
                     score: str, normalize: str = "raw", seed: int = 0) -> tuple[Tensor, Tensor]:
    """k-means on the photo's own colours in each box crop: photo [3, H, W] in [-1, 1], boxes [n, 4] xyxy
    in photo pixels -> (masks [n, H, W] bool, mask confidence [n])."""

    H, W = photo.shape[-2:]
    crops = [box_crop(b, margin, (H, W)) for b in boxes]
    stacks = [[resize(photo[None, :, c[1]:c[3], c[0]:c[2]].float(), work_size((c[3] - c[1], c[2] - c[0]), work_res))]
              for c in crops]
    done = cluster_regions(stacks, k, 100, 1e-4, normalize, [(seed, j + 1) for j in range(len(crops))])
    one_image = Boxes(np.asarray(boxes, np.float32), np.ones(len(boxes), np.float32), [""] * len(boxes),
                      np.zeros(len(boxes), np.int64), crops)
    return box_masks([lab for lab, _ in done], [c for _, c in done], one_image, (H, W), k, rule, score)


def grabcut_masks(photo: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """OpenCV GrabCut from each xyxy box on the photo [H, W, 3] uint8."""
    return [grabcut(photo, b) for b in boxes]


def mask_core(mask: np.ndarray, box: np.ndarray, core: float = 0.15) -> np.ndarray:
    """The mask eroded by `core` of its box's shorter side: the pixels it is sure of. mask [H, W] bool."""
    import cv2

    side = max(1, int(round(core * min(box[2] - box[0], box[3] - box[1]))))
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * side + 1, 2 * side + 1), np.uint8)).astype(bool)


def seeded_grabcut(photo: np.ndarray, mask: np.ndarray, box: np.ndarray, margin: float, iters: int = 3,
                   core: float = 0.15, others: np.ndarray | None = None) -> np.ndarray:
    """GrabCut seeded from a mask instead of a rectangle: the mask's core is definite object, the crop
    outside the box grown by `margin` definite background, the rest probable as the mask says; the
    colour models and the photo's edges then move the boundary. photo [H, W, 3] uint8, mask [H, W] bool.
    `core`: the mask eroded by this share of the box's shorter side is definite (0: nothing is).
    `others` [H, W] bool: pixels that are definitely another object's (so background here)."""
    import cv2

    H, W = mask.shape
    if mask.sum() < 4:
        return mask
    x0, y0, x1, y1 = box_crop(box, max(margin, 0.1) * 2, (H, W))
    m = mask[y0:y1, x0:x1]
    gx0, gy0, gx1, gy1 = box_crop(box, margin, (H, W))  # outside this: background (masks are cut to it)
    init = np.where(m, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    if core > 0:
        init[mask_core(m, box, core)] = cv2.GC_FGD
    if others is not None:
        init[others[y0:y1, x0:x1] & (init != cv2.GC_FGD)] = cv2.GC_BGD
    outside = np.ones_like(m)
    outside[gy0 - y0:gy1 - y0, gx0 - x0:gx1 - x0] = False
    init[outside] = cv2.GC_BGD
    if not (init == cv2.GC_BGD).any() and not (init == cv2.GC_PR_BGD).any():
        return mask
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(photo[y0:y1, x0:x1, ::-1]), init, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # one colour, or no background to model: keep the mask
        return mask
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)
    return out


def cluster_vote(photo: Tensor, mask: np.ndarray, box: np.ndarray, k: int, margin: float, seed: int = 0) -> np.ndarray:
    """The photo's own colour clusters, voted by a mask: k-means on the raw colours of the box crop (grown by
    `margin`) at the photo's own size, and each cluster is object when most of its pixels are in `mask`. The
    photo draws the edges; the mask decides which of its segments belong to the object. photo [3, H, W] in
    [-1, 1], mask [H, W] bool."""

    H, W = mask.shape
    x0, y0, x1, y1 = box_crop(box, margin, (H, W))
    crop = photo[None, :, y0:y1, x0:x1].float()
    labels, _ = cluster_regions([[crop]], k, 100, 1e-4, "raw", [(seed, 0)])[0]
    labels = labels.numpy()
    inside = mask[y0:y1, x0:x1]
    share = np.array([inside[labels == c].mean() if (labels == c).any() else 0.0 for c in range(k)])
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = (share > 0.5)[labels]
    return out


def box_mean(x: Tensor, radius: int) -> Tensor:
    """The mean of x [H, W] over the (2 radius + 1)^2 window at each pixel, cut to the image: running sums along
    each axis, so its cost does not grow with the radius."""
    out = x.double()
    for dim in (0, 1):
        n = out.shape[dim]
        c = torch.cat([torch.zeros_like(out.narrow(dim, 0, 1)), out.cumsum(dim)], dim)
        i = torch.arange(n)
        lo, hi = (i - radius).clamp(min=0), (i + radius + 1).clamp(max=n)
        shape = (-1, 1) if dim == 0 else (1, -1)
        out = (c.index_select(dim, hi) - c.index_select(dim, lo)) / (hi - lo).double().view(shape)
    return out.to(x.dtype)


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """He et al.'s guided filter with a grey guide: guide, src [H, W] -> the filtered src [H, W]."""
    def box(x: Tensor) -> Tensor:
        return box_mean(x, radius)
    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def guided_refine(photo: np.ndarray, soft: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
    """A soft mask [H, W] in [0, 1] at the photo's size, filtered with the photo [H, W, 3] uint8 as guide
    (edges follow the photo's), then cut at 0.5."""
    grey = torch.from_numpy(photo.astype(np.float32).mean(2) / 255.0)
    return (guided_filter(grey, torch.from_numpy(soft.astype(np.float32)), radius, eps) > 0.5).numpy()


def merge(masks: list[np.ndarray], scores: list[float], boxes: np.ndarray, clip_margin: float, nms_iou: float,
          min_area: int) -> tuple[list[np.ndarray], list[int]]:
    """One image's masks cut to their boxes, mask-NMS'd and made disjoint: (masks, indices kept, best first)."""
    if not masks:
        return [], []
    m = clip_to_boxes(torch.from_numpy(np.stack(masks)), boxes, clip_margin)
    s = torch.tensor(scores, dtype=torch.float32)
    out, keep, rank = merge_instances(m, s, np.zeros(len(masks), np.int64), 1, nms_iou, max(min_area, 1))
    kept = sorted((int(rank[i]), i) for i in range(len(masks)) if keep[i])
    return [out[i].numpy() for _, i in kept], [i for _, i in kept]
