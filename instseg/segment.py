"""Per-image segmentation core: variants -> features -> k-means (with repeats) -> foreground/instances."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .baselines import default_activation_layer, grabcut
from .cluster import kmeans, majority_vote, margin
from .config import RunConfig
from .features import Region, pixel_features, variant_stacks, work_size
from .foreground import RULES
from .generator import Generator, to_uint8, z_from_seed
from .instances import box_crop, box_in_crop, instance_clusters
from .mixing import mix_ws, variant_rng


@dataclass
class BoxSegmentation:
    mask: Tensor  # [H, W] bool at image resolution
    confidence: float  # mean k-means margin over the mask


@dataclass
class ImageSegmentation:
    image: Tensor  # [C, H, W] source image in [-1, 1]
    labels: Tensor  # [h, w] whole-image cluster map at the working resolution
    fg_clusters: Tensor  # [k] bool
    confidence: Tensor  # [h, w] per-pixel k-means margin in [0, 1]
    preview: Tensor  # [n, 3, h, w] a few RGB variants at the working resolution
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # [n, 4] xyxy
    instances: list[BoxSegmentation] = field(default_factory=list)  # one per box


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


def upsample_labels(labels: Tensor, k: int, hw: tuple[int, int]) -> Tensor:
    """Label map [h, w] -> [H, W] by bilinear interpolation of its one-hot planes (smooth edges)."""
    if tuple(labels.shape) == tuple(hw):
        return labels
    onehot = F.one_hot(labels, k).permute(2, 0, 1)[None].float()
    return F.interpolate(onehot, size=hw, mode="bilinear", align_corners=False)[0].argmax(0)


def segment_box(stacks: list[Tensor], box: np.ndarray, crop: tuple[int, int, int, int], image_hw: tuple[int, int],
                cfg: RunConfig, seed: int) -> BoxSegmentation:
    """Cluster one box crop's stacks (one per repeat, [N, C, h, w]) and paste the instance mask back."""
    lab, conf = cluster_stacks(stacks, cfg, seed)
    chosen = instance_clusters(lab, box_in_crop(box, crop, tuple(lab.shape)), cfg.k, cfg.instance_rule)
    cx0, cy0, cx1, cy1 = crop
    full = upsample_labels(lab, cfg.k, (cy1 - cy0, cx1 - cx0))
    mask = torch.zeros(image_hw, dtype=torch.bool, device=lab.device)
    mask[cy0:cy1, cx0:cx1] = chosen[full]
    sel = conf[chosen[lab]]
    return BoxSegmentation(mask, float(sel.mean()) if sel.numel() else 0.0)


def _grabcut_image(image: Tensor, boxes: np.ndarray, whole_hw: tuple[int, int], cfg: RunConfig,
                   clock: "Stopwatch") -> ImageSegmentation:
    """The GrabCut baseline: one GrabCut per box, and one from a 5%-inset rectangle for the whole image."""
    H, W = image.shape[-2:]
    img8 = to_uint8(image[None])[0]
    whole = grabcut(img8, np.array([0.05 * W, 0.05 * H, 0.95 * W, 0.95 * H]))
    labels = torch.from_numpy(whole).long().to(image.device)
    instances = []
    for b in boxes:
        m = torch.from_numpy(grabcut(img8, b)).to(image.device)
        instances.append(BoxSegmentation(m, 1.0))
    clock.lap("cluster")
    preview = F.interpolate(image[None].float(), size=whole_hw, mode="bilinear", align_corners=False)
    fg = torch.tensor([False, True] + [False] * (cfg.k - 2), device=image.device)
    return ImageSegmentation(image, labels, fg, torch.ones_like(labels, dtype=torch.float), preview,
                             np.asarray(boxes, np.float32).reshape(-1, 4), instances)


class Stopwatch:
    """Adds wall time per stage to a dict (synchronising CUDA so GPU work is counted where it runs)."""

    def __init__(self, totals: dict[str, float] | None, device: torch.device):
        self.totals, self.device, self.t = totals, device, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.totals is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.totals[stage] = self.totals.get(stage, 0.0) + now - self.t
        self.t = now


@torch.no_grad()
@torch.no_grad()
def source_images(G: Generator, seeds: list[int], truncation_psi: float, device: torch.device,
                  batch: int) -> Tensor:
    """The source images of several seeds, generated in batches: [B, C, H, W]."""
    ws = torch.cat([source_ws(G, s, truncation_psi, device) for s in seeds])
    return torch.cat([G.synthesis(chunk, noise_mode="const")[0] for chunk in ws.split(batch)])


@torch.no_grad()
def segment_image(G: Generator, seed: int, cfg: RunConfig, device: torch.device, boxes: np.ndarray | None = None,
                  image: Tensor | None = None, n_preview: int = 4,
                  timings: dict[str, float] | None = None) -> ImageSegmentation:
    """One seed: the whole-image clustering and one instance mask per box ([n, 4] xyxy pixels).

    `image` is the seed's source image when the caller already made it (for the detector).
    All regions (the whole image and every box crop) are cut from the same variant pass.
    `timings`, when given, accumulates seconds per stage: generate, cluster.
    """
    clock = Stopwatch(timings, device)
    ws = source_ws(G, seed, cfg.truncation_psi, device)
    if image is None:
        image = G.synthesis(ws, noise_mode="const")[0][0]
    H, W = image.shape[-2:]
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
    whole_hw = work_size((H, W), cfg.work_res)
    if cfg.method == "grabcut":
        return _grabcut_image(image, boxes, whole_hw, cfg, clock)
    crops = [box_crop(b, cfg.box_margin, (H, W)) for b in boxes]
    crop_hws = [work_size((c[3] - c[1], c[2] - c[0]), cfg.work_res) for c in crops]
    regions: list[tuple[Region | None, tuple[int, int]]] = [(None, whole_hw)]
    regions += [((c[0] / W, c[1] / H, c[2] / W, c[3] / H), hw) for c, hw in zip(crops, crop_hws)]
    feature_stacks: list[list[Tensor]] = [[] for _ in regions]
    preview = None
    feature = cfg.features
    if cfg.method == "variants":
        ws_sets = [mix_ws(G, ws, cfg.variants, cfg.mix_from, variant_rng(seed, r), cfg.truncation_psi)
                   for r in range(cfg.repeats)]
    else:  # single-image baselines: the "stack" is the source image alone (N = 1)
        ws_sets = [ws]
        feature = "rgb" if cfg.method == "kmeans-rgb" else (
            cfg.features if cfg.features != "rgb" else default_activation_layer(G.feature_names))
        cfg = replace(cfg, normalize="raw", repeats=1)
    for r, ws_var in enumerate(ws_sets):
        for acc, st in zip(feature_stacks, variant_stacks(G, ws_var, feature, regions, cfg.batch)):
            acc.append(st)
        if r == 0:
            preview = (feature_stacks[0][0][:n_preview] if feature == "rgb"
                       else variant_stacks(G, ws_var[:n_preview], "rgb", [(None, whole_hw)], cfg.batch)[0])
    clock.lap("generate")
    labels, conf = cluster_stacks(feature_stacks[0], cfg, seed)
    fg = RULES[cfg.foreground](labels, cfg.k)
    instances = [segment_box(feature_stacks[i + 1], box, crop, (H, W), cfg, seed * 100 + i)
                 for i, (box, crop) in enumerate(zip(boxes, crops))]
    clock.lap("cluster")
    return ImageSegmentation(image, labels, fg, conf, preview, np.asarray(boxes, np.float32).reshape(-1, 4), instances)
