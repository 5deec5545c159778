"""Per-image segmentation: variants -> features -> k-means (all regions at once) -> foreground and
instance records. `segment_image` owns an image end to end: it takes the detections and returns
instance records (box, label, scores and mask together), merged and filtered."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .baselines import default_activation_layer, grabcut
from .cluster import kmeans_batch, kmeans_seed, majority_vote, margin
from .config import RunConfig
from .features import Region, crop_region, pixel_features, resize, synthesis_rows, variant_stacks, work_size
from .foreground import RULES
from .generator import Generator, to_uint8, z_from_seed
from .instances import box_crop, box_in_crop, inside_share, instance_clusters, merge_instances
from .mixing import mix_ws, variant_rng


@dataclass
class Instance:
    """One object of an image: everything about it travels together (like SAM's MaskData)."""

    box: np.ndarray  # [4] xyxy pixels, the detector's box
    label: str  # detector class
    det_score: float  # detector confidence
    mask: Tensor  # [H, W] bool at image resolution (disjoint from the other kept instances)
    mask_confidence: float  # mean k-means margin over the mask, in [0, 1]

    @property
    def score(self) -> float:
        """Detector score x mask confidence: ranks instances for NMS, overlaps and AP."""
        return self.det_score * self.mask_confidence


@dataclass
class ImageSegmentation:
    image: Tensor  # [C, H, W] source image in [-1, 1]
    labels: Tensor  # [h, w] whole-image cluster map at the working resolution
    fg_clusters: Tensor  # [k] bool
    confidence: Tensor  # [h, w] per-pixel k-means margin in [0, 1]
    preview: Tensor  # [n, 3, h, w] a few RGB variants at the working resolution
    label_map: Tensor | None = None  # [H, W] the cluster map at image resolution
    foreground: Tensor | None = None  # [H, W] bool whole-image mask (None when it is below min_area)
    fg_confidence: float = 0.0
    instances: list[Instance] = field(default_factory=list)  # kept instances, best first
    settings: dict = field(default_factory=dict)  # what the method actually ran with


def source_ws(G: Generator, seed: int, truncation_psi: float, device: torch.device) -> Tensor:
    z = z_from_seed(seed, G.z_dim).to(device, G.mapping_net.w_avg.dtype)
    return G.mapping(z, truncation_psi)  # [1, num_ws, w_dim]


def _unit_spread(x: Tensor) -> Tensor:
    """Scale pixel features [P, D] to a mean squared distance of 1 from their mean."""
    return x / (x - x.mean(0)).square().sum(1).mean().clamp_min(1e-12).sqrt()


def joined_features(stack: Tensor, normalize: str, joined: Tensor | None) -> Tensor:
    """Pixel features of a stack [N, C, h, w], with `joined` [1, C', h, w] (the source's activations,
    standardised per pixel) appended; each part is scaled to the same spread over the region's
    pixels, so both weigh equally in the distances."""
    x = pixel_features(stack, normalize)
    if joined is None:
        return x
    return torch.cat([_unit_spread(x), _unit_spread(pixel_features(joined, "standardize"))], 1)


def cluster_regions(stacks: list[list[Tensor]], k: int, iters: int, tol: float, normalize: str,
                    image_seed: int, first_region: int = 0,
                    joined: list[Tensor | None] | None = None) -> list[tuple[Tensor, Tensor]]:
    """stacks[region][repeat] = [N, C, h, w] -> per region (labels [h, w], margin [h, w]).

    Every region and repeat of the image goes into one batched k-means; repeats are merged by
    a per-pixel majority vote. Seeds come from (image seed, first_region + region, repeat) via SeedSequence.
    `joined[region]`, when given, is appended to every repeat's features (`joined_features`)."""
    if not stacks:
        return []
    joined = joined or [None] * len(stacks)
    feats = [[joined_features(st, normalize, j) for st in reps] for reps, j in zip(stacks, joined)]
    flat = [x for reps in feats for x in reps]
    seeds = [kmeans_seed(image_seed, first_region + i, r) for i, reps in enumerate(feats) for r in range(len(reps))]
    results = iter(kmeans_batch(flat, k, iters, tol, seeds))
    out = []
    for reps, st in zip(feats, stacks):
        res = [next(results) for _ in reps]
        labels = [lab for lab, _ in res]
        lab = labels[0] if len(labels) == 1 else majority_vote(torch.stack(labels), k)
        h, w = st[0].shape[-2:]
        out.append((lab.reshape(h, w), margin(reps[0], res[0][1]).reshape(h, w)))
    return out


def cluster_stacks(stacks: list[Tensor], k: int, iters: int = 100, tol: float = 1e-4, normalize: str = "raw",
                   seed: int = 0) -> tuple[Tensor, Tensor]:
    """One region's repeats [N, C, h, w] -> (labels [h, w], margin [h, w])."""
    return cluster_regions([stacks], k, iters, tol, normalize, seed)[0]


def upsample_labels(labels: Tensor, k: int, hw: tuple[int, int]) -> Tensor:
    """Label map [h, w] -> [H, W] by bilinear interpolation of its one-hot planes (smooth edges)."""
    if tuple(labels.shape) == tuple(hw):
        return labels
    onehot = F.one_hot(labels, k).permute(2, 0, 1)[None].float()
    return F.interpolate(onehot, size=hw, mode="bilinear", align_corners=False)[0].argmax(0)


def box_mask(lab: Tensor, conf: Tensor, box: np.ndarray, crop: tuple[int, int, int, int],
             image_hw: tuple[int, int], k: int, rule: str, score: str = "margin") -> tuple[Tensor, float]:
    """A box crop's clustering -> (instance mask [H, W] pasted back into the image, mask confidence).

    The confidence is the mean k-means margin over the mask's pixels; with score 'margin_inside'
    it is multiplied by the share of those pixels inside the box (a mask that spills out of its
    box is more often the wrong cluster)."""
    work_box = box_in_crop(box, crop, tuple(lab.shape))
    chosen = instance_clusters(lab, work_box, k, rule)
    cx0, cy0, cx1, cy1 = crop
    full = upsample_labels(lab, k, (cy1 - cy0, cx1 - cx0))
    mask = torch.zeros(image_hw, dtype=torch.bool, device=lab.device)
    mask[cy0:cy1, cx0:cx1] = chosen[full]
    sel = chosen[lab]
    confidence = float(conf[sel].mean()) if bool(sel.any()) else 0.0
    if score == "margin_inside":
        confidence *= inside_share(sel, work_box)
    return mask, confidence


class Stopwatch:
    """Adds wall time per stage to a dict (synchronising CUDA so GPU work is counted where it runs)."""

    _lock = threading.Lock()  # the writer thread adds its export time to the same dict

    def __init__(self, totals: dict[str, float] | None, device: torch.device):
        self.totals, self.device, self.t = totals, device, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.totals is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        with self._lock:
            self.totals[stage] = self.totals.get(stage, 0.0) + now - self.t
        self.t = now


@torch.no_grad()
def synthesize(G: Generator, ws: Tensor, batch: int) -> Tensor:
    """Images of ws [B, num_ws, w_dim], generated in batches: [B, C, H, W]."""
    rows = synthesis_rows(G, batch, ws.device)
    return torch.cat([G.synthesis(chunk, noise_mode="const")[0] for chunk in ws.split(rows)])


def source_latents(G: Generator, seeds: list[int], truncation_psi: float, device: torch.device) -> Tensor:
    """The source ws of several seeds, each mapped alone (so a seed's ws never depend on its batch)."""
    return torch.cat([source_ws(G, s, truncation_psi, device) for s in seeds])


@torch.no_grad()
def source_images(G: Generator, seeds: list[int], truncation_psi: float, device: torch.device,
                  batch: int) -> Tensor:
    """The source images of several seeds, generated in batches: [B, C, H, W]."""
    return synthesize(G, source_latents(G, seeds, truncation_psi, device), batch)


# ---------------------------------------------------------------------------------------
# Methods: each turns (source image, boxes) into a whole-image clustering and one raw mask per box.

RawMasks = tuple[Tensor, Tensor, Tensor, list[tuple[Tensor, float]], dict]  # labels, fg, conf, [(mask, conf)], settings


def _variants_method(G: Generator, seed: int, ws: Tensor, image: Tensor, boxes: np.ndarray, cfg: RunConfig,
                     preview_out: list, clock: Stopwatch) -> RawMasks:
    """Ours (and the single-image k-means baselines, which cluster the source image alone)."""
    H, W = image.shape[-2:]
    whole_hw = work_size((H, W), cfg.work_res)
    crops = [box_crop(b, cfg.box_margin, (H, W)) for b in boxes]
    regions: list[tuple[Region | None, tuple[int, int]]] = [(None, whole_hw)]
    regions += [((c[0] / W, c[1] / H, c[2] / W, c[3] / H), work_size((c[3] - c[1], c[2] - c[0]), cfg.work_res))
                for c in crops]
    if cfg.method == "variants":
        ws_sets = [mix_ws(G, ws, cfg.variants, cfg.mix_from, variant_rng(seed, r), cfg.truncation_psi)
                   for r in range(cfg.repeats)]
        feature, normalize, shared = cfg.features, cfg.normalize, min(cfg.mix_from)
        settings = {"variants": cfg.variants, "mix_from": list(cfg.mix_from), "repeats": cfg.repeats,
                    "features": feature, "normalize": normalize, "join_features": cfg.join_features}
    else:  # single-image baselines: the "stack" is the source image alone (N = 1)
        ws_sets = [ws]
        feature = "rgb" if cfg.method == "kmeans-rgb" else (
            cfg.features if cfg.features != "rgb" else default_activation_layer(G.feature_names))
        normalize, shared = cfg.normalize, 0
        settings = {"variants": 1, "repeats": 1, "features": feature, "normalize": normalize}
    stacks: list[list[Tensor]] = [[] for _ in regions]
    for r, ws_var in enumerate(ws_sets):
        for acc, st in zip(stacks, variant_stacks(G, ws_var, feature, regions, cfg.batch, shared)):
            acc.append(st)
        if r == 0:
            preview_out.append(stacks[0][0][:4] if feature == "rgb"
                               else variant_stacks(G, ws_var[:4], "rgb", [(None, whole_hw)], cfg.batch, shared)[0])
    joined: list[Tensor | None] = [None] * len(regions)
    if cfg.method == "variants" and cfg.join_features == "image" and len(regions) > 1:  # the image's own pixels
        joined[1:] = [resize(crop_region(image[None].float(), reg), hw) for reg, hw in regions[1:]]
    elif cfg.method == "variants" and cfg.join_features != "none" and len(regions) > 1:  # box crops only
        joined[1:] = variant_stacks(G, ws, cfg.join_features, regions[1:], cfg.batch)
    clock.lap("generate")
    box_k = cfg.box_k or cfg.k
    if box_k == cfg.k:
        clustered = cluster_regions(stacks, cfg.k, cfg.kmeans_iters, cfg.kmeans_tol, normalize, seed, joined=joined)
    else:  # a box crop holds one object and its surroundings: it may want fewer clusters than the whole image
        clustered = cluster_regions(stacks[:1], cfg.k, cfg.kmeans_iters, cfg.kmeans_tol, normalize, seed)
        clustered += cluster_regions(stacks[1:], box_k, cfg.kmeans_iters, cfg.kmeans_tol, normalize, seed, 1,
                                     joined=joined[1:])
    labels, conf = clustered[0]
    fg = RULES[cfg.foreground](labels, cfg.k)
    masks = [box_mask(lab, c, box, crop, (H, W), box_k, cfg.instance_rule, cfg.mask_score)
             for (lab, c), box, crop in zip(clustered[1:], boxes, crops)]
    settings.update(k=cfg.k, box_k=box_k, foreground=cfg.foreground, instance_rule=cfg.instance_rule,
                    mask_score=cfg.mask_score, box_margin=cfg.box_margin)
    return labels, fg, conf, masks, settings


def _grabcut_method(G: Generator, seed: int, ws: Tensor, image: Tensor, boxes: np.ndarray, cfg: RunConfig,
                    preview_out: list, clock: Stopwatch) -> RawMasks:
    """GrabCut from each box, and from a 5%-inset rectangle for the whole image."""
    H, W = image.shape[-2:]
    img8 = to_uint8(image[None])[0]
    labels = torch.from_numpy(grabcut(img8, np.array([0.05 * W, 0.05 * H, 0.95 * W, 0.95 * H]))).long()
    labels = labels.to(image.device)
    masks = [(torch.from_numpy(grabcut(img8, b)).to(image.device), 1.0) for b in boxes]
    clock.lap("cluster")
    preview_out.append(F.interpolate(image[None].float(), size=work_size((H, W), cfg.work_res), mode="bilinear",
                                     align_corners=False))
    fg = torch.tensor([False, True] + [False] * (cfg.k - 2), device=image.device)
    return labels, fg, torch.ones_like(labels, dtype=torch.float), masks, {"grabcut_iters": 5, "whole_inset": 0.05}


Method = Callable[[Generator, int, Tensor, Tensor, np.ndarray, RunConfig, list, Stopwatch], RawMasks]
METHODS: dict[str, Method] = {"variants": _variants_method, "kmeans-rgb": _variants_method,
                              "activations": _variants_method, "grabcut": _grabcut_method}


@torch.no_grad()
def segment_image(G: Generator, seed: int, cfg: RunConfig, device: torch.device, detections=None,
                  image: Tensor | None = None, timings: dict[str, float] | None = None,
                  ws: Tensor | None = None) -> ImageSegmentation:
    """One seed end to end: the whole-image mask and, given `detections` (boxes, scores, labels),
    the merged instance records (mask-NMS, disjoint, at least cfg.min_area pixels, best first).

    `image` and `ws` ([1, num_ws, w_dim]) are the seed's source image and latents when the caller
    already made them (for the detector).
    All regions (the whole image and every box crop) are cut from the same variant pass.
    `timings`, when given, accumulates seconds per stage: generate, cluster.
    """
    clock = Stopwatch(timings, device)
    if ws is None:
        ws = source_ws(G, seed, cfg.truncation_psi, device)
    if image is None:
        image = G.synthesis(ws, noise_mode="const")[0][0]
    H, W = image.shape[-2:]
    boxes = np.zeros((0, 4), np.float32) if detections is None else np.asarray(detections.boxes, np.float32).reshape(-1, 4)
    preview: list[Tensor] = []
    labels, fg, conf, raw, settings = METHODS[cfg.method](G, seed, ws, image, boxes, cfg, preview, clock)
    seg = ImageSegmentation(image, labels, fg, conf, preview[0], settings=settings)
    min_area = max(cfg.min_area, 1)
    seg.label_map = upsample_labels(labels, cfg.k, (H, W))
    mask = fg[seg.label_map]
    if int(mask.sum()) >= min_area:
        sel = conf[fg[labels]]
        seg.foreground, seg.fg_confidence = mask, float(sel.mean()) if sel.numel() else 0.0
    if raw:
        insts = [Instance(b, lab, float(s), m, c) for b, lab, s, (m, c)
                 in zip(boxes, detections.labels, detections.scores, raw)]
        kept, merged = merge_instances(torch.stack([i.mask for i in insts]).cpu(),
                                       torch.tensor([i.score for i in insts]), cfg.nms_iou, min_area)
        seg.instances = [Instance(insts[i].box, insts[i].label, insts[i].det_score, m, insts[i].mask_confidence)
                         for i, m in zip(kept, merged)]
    clock.lap("cluster")
    return seg
