"""Per-image segmentation core: variants -> features -> k-means (with repeats) -> foreground."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cluster import kmeans, majority_vote, margin
from .config import RunConfig
from .features import pixel_features, variant_stack, work_size
from .foreground import RULES
from .generator import Generator, z_from_seed
from .mixing import mix_ws, variant_rng


@dataclass
class ImageSegmentation:
    image: Tensor  # [C, H, W] source image in [-1, 1]
    labels: Tensor  # [h, w] cluster map at the working resolution
    fg_clusters: Tensor  # [k] bool
    confidence: Tensor  # [h, w] per-pixel k-means margin in [0, 1]
    preview: Tensor  # [n, 3, h, w] a few RGB variants at the working resolution


def source_ws(G: Generator, seed: int, truncation_psi: float, device: torch.device) -> Tensor:
    return G.mapping(z_from_seed(seed, G.z_dim).to(device), truncation_psi)  # [1, num_ws, w_dim]


def cluster_stacks(stacks: list[Tensor], cfg: RunConfig, seed: int) -> tuple[Tensor, Tensor]:
    """Cluster each repeat's stack [N, C, h, w]; vote across repeats -> (labels [h, w], margin [h, w])."""
    h, w = stacks[0].shape[-2:]
    labels, conf = [], None
    for r, st in enumerate(stacks):
        x = pixel_features(st, cfg.normalize)
        lab, centers = kmeans(x, cfg.k, cfg.kmeans_iters, cfg.kmeans_tol, seed=seed * 1000 + r)
        labels.append(lab)
        if conf is None:
            conf = margin(x, centers)
    lab = labels[0] if len(labels) == 1 else majority_vote(torch.stack(labels), cfg.k)
    return lab.reshape(h, w), conf.reshape(h, w)


@torch.no_grad()
def segment_image(G: Generator, seed: int, cfg: RunConfig, device: torch.device, n_preview: int = 4) -> ImageSegmentation:
    """The whole-image path: cluster all pixels of one seed's image and pick foreground clusters."""
    ws = source_ws(G, seed, cfg.truncation_psi, device)
    image = G.synthesis(ws, noise_mode="const")[0][0]
    hw = work_size(tuple(image.shape[-2:]), cfg.work_res)
    stacks = []
    for r in range(cfg.repeats):
        ws_var = mix_ws(G, ws, cfg.variants, cfg.mix_from, variant_rng(seed, r), cfg.truncation_psi)
        stacks.append(variant_stack(G, ws_var, cfg.features, hw, cfg.batch))
    if cfg.features == "rgb":
        preview = stacks[0][:n_preview]
    else:
        preview = variant_stack(G, ws_var[:n_preview], "rgb", hw, cfg.batch)
    labels, conf = cluster_stacks(stacks, cfg, seed)
    fg = RULES[cfg.foreground](labels, cfg.k)
    return ImageSegmentation(image, labels, fg, conf, preview)


def upsample_labels(labels: Tensor, k: int, hw: tuple[int, int]) -> Tensor:
    """Label map [h, w] -> [H, W] by bilinear interpolation of its one-hot planes (smooth edges)."""
    if tuple(labels.shape) == tuple(hw):
        return labels
    onehot = F.one_hot(labels, k).permute(2, 0, 1)[None].float()
    return F.interpolate(onehot, size=hw, mode="bilinear", align_corners=False)[0].argmax(0)
