"""Exact labels of GAN samples: a generator with label channels draws each sample's masks with it.

Per class, the label channel thresholded at 0 (labels are trained in [-1, 1]) and split into
connected components gives the instances. Images and ids follow the run-folder rules
(image id = seed + 1, file_name <seed>.png), so `instseg eval --gt` pairs the file with
an `instseg run` over the same seeds.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from scipy import ndimage

from .. import coco
from ..errors import UserError
from ..generator import Generator
from ..rundir import image_file, image_id
from ..sampling import source_ws


def label_masks(labels: np.ndarray, min_area: int = 1) -> list[tuple[int, np.ndarray]]:
    """[L, H, W] label channels -> [(class index, [H, W] bool instance mask)], 4-connected components."""
    out = []
    for c, channel in enumerate(labels):
        comp, n = ndimage.label(channel > 0)
        for i in range(1, n + 1):
            m = comp == i
            if m.sum() >= min_area:
                out.append((c, m))
    return out


@torch.no_grad()
def sample_labels(G: Generator, seeds: Iterable[int], names: list[str] | None = None, truncation_psi: float = 0.7,
                  device: str = "cpu", min_area: int = 1, on_seed: Callable[[int], None] | None = None) -> dict:
    """A COCO dict of the generator's own labels for `seeds`; categories are `names` (one per channel)."""
    names = list(names or [])
    if not G.cfg.label_channels:
        raise UserError("this generator draws no label channels; use --gan toy-flat, or train one with "
                        "`instseg toy train-gan --labels`")
    if len(names) != G.cfg.label_channels:
        names = [f"class{i}" for i in range(G.cfg.label_channels)]
    H, W = G.out_hw
    images, anns = [], []
    for seed in seeds:
        ws = source_ws(G, seed, truncation_psi, torch.device(device))
        labels = G.synthesis(ws, noise_mode="const", features=("labels",))[1]["labels"][0].float().cpu().numpy()
        images.append(coco.image_entry(image_id(seed), image_file(seed), H, W, seed=seed))
        for c, m in label_masks(labels, min_area):
            anns.append(coco.annotation(m, image_id(seed), c + 1, 1.0))
        if on_seed:
            on_seed(seed)
    return coco.dataset(images, anns, names, "label channels of the toy generator's samples")
