"""A real photo at its own resolution: the single-image baselines on the photo itself, and refinement of
our masks with the photo's own evidence (GrabCut seeded from them).
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
                   core: float = 0.15) -> np.ndarray:
    """GrabCut seeded from a mask instead of a rectangle: the mask's core is definite object, the crop
    outside the box grown by `margin` definite background, the rest probable as the mask says; the
    colour models and the photo's edges then move the boundary. photo [H, W, 3] uint8, mask [H, W] bool.
    `core`: the mask eroded by this share of the box's shorter side is definite (0: nothing is)."""
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
