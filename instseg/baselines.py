"""Peer baselines that take the same boxes: GrabCut from a box (k-means ones reuse our clustering)."""
from __future__ import annotations

import numpy as np


def grabcut(image: np.ndarray, box: np.ndarray, iters: int = 5) -> np.ndarray:
    """OpenCV GrabCut initialised from an xyxy box on an RGB uint8 image -> [H, W] bool."""
    import cv2

    H, W = image.shape[:2]
    x0, y0 = int(np.clip(np.floor(box[0]), 0, W - 2)), int(np.clip(np.floor(box[1]), 0, H - 2))
    x1, y1 = int(np.clip(np.ceil(box[2]), x0 + 2, W)), int(np.clip(np.ceil(box[3]), y0 + 2, H))
    mask = np.zeros((H, W), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iters,
                    cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # a degenerate rectangle (e.g. all pixels one colour): call it the whole box
        mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def default_activation_layer(G) -> str:
    """The activation the `activations` baseline clusters: the family's own choice (GeneratorFamily)."""
    return G.default_feature()
