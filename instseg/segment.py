"""Segmentation of a chunk of images, on the device: variants -> features -> one k-means over every
region of every image -> foreground and instance masks, scored, NMS'd and made disjoint with tensor
ops. The chunk crosses to the host once, at the end (`Segmented.to_host`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from detectors import Detections
from torch import Tensor

from .baselines import default_activation_layer, grabcut
from .cluster import kmeans_batch, kmeans_seed, majority_vote, margin
from .config import METHODS as CONFIG_METHODS
from .config import RunConfig
from .features import (
    Region,
    crop_region,
    pixel_features,
    resize,
    upsample_labels,
    variant_stacks,
    work_size,
)
from .foreground import RULES as FOREGROUND_RULES
from .foreground import valid_pixels
from .generator import Generator, to_uint8
from .instances import RULES as INSTANCE_RULES
from .instances import (
    box_crop,
    clip_to_boxes,
    in_box,
    merge_instances,
    paste_masks,
    work_boxes,
)
from .sampling import variant_latents
from .timing import Stopwatch

PREVIEW_VARIANTS = 4


@dataclass
class Instance:
    """One object of an image, on the host: everything about it travels together."""

    box: np.ndarray  # [4] xyxy pixels, the detector's box
    label: str  # detector class
    det_score: float  # detector confidence
    mask: np.ndarray  # [H, W] bool (disjoint from the other kept instances)
    mask_confidence: float  # mean k-means margin over the mask, in [0, 1]

    @property
    def score(self) -> float:
        """Detector score x mask confidence: ranks instances for NMS, overlaps and AP."""
        return self.det_score * self.mask_confidence


@dataclass
class ImageResult:
    """One image's segmentation on the host."""

    image: np.ndarray  # [H, W, 3] uint8
    label_map: np.ndarray  # [H, W] uint8, clusters at image resolution
    labels: np.ndarray  # [h, w] clusters at the working resolution
    confidence: np.ndarray  # [h, w] per-pixel k-means margin in [0, 1]
    preview: np.ndarray  # [n, h, w, 3] uint8, a few RGB variants at the working resolution
    foreground: np.ndarray | None  # [H, W] bool whole-image mask (None below min_area)
    fg_confidence: float
    instances: list[Instance]  # kept instances, best first
    settings: dict = field(default_factory=dict)  # what the method actually ran with


@dataclass
class Boxes:
    """A chunk's detections flattened: box i belongs to image `owner[i]` (host geometry)."""

    xyxy: np.ndarray  # [n, 4]
    scores: np.ndarray  # [n]
    labels: list[str]
    owner: np.ndarray  # [n] image index in the chunk
    crops: list[tuple[int, int, int, int]]  # pixel crop around each box (box + margin)

    @classmethod
    def of(cls, detections: list[Detections | None], hw: tuple[int, int], margin: float) -> Boxes:
        xyxy, scores, labels, owner = [], [], [], []
        for b, det in enumerate(detections):
            if det is None:
                continue
            bx = np.asarray(det.boxes, np.float32).reshape(-1, 4)
            xyxy.append(bx)
            scores.append(np.asarray(det.scores, np.float32).reshape(-1))
            labels += list(det.labels)
            owner += [b] * len(bx)
        xy = np.concatenate(xyxy) if xyxy else np.zeros((0, 4), np.float32)
        return cls(xy, np.concatenate(scores) if scores else np.zeros(0, np.float32), labels,
                   np.asarray(owner, dtype=np.int64), [box_crop(b, margin, hw) for b in xy])

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass
class Clustered:
    """What a method returns, on the device."""

    labels: Tensor  # [B, h, w] whole-image clusters
    conf: Tensor  # [B, h, w] margins
    fg: Tensor  # [B, k] bool, foreground clusters
    masks: Tensor  # [n, H, W] bool raw instance mask per box
    mask_conf: Tensor  # [n] mask confidence
    previews: Tensor  # [B, n, 3, h, w]
    settings: dict


@dataclass
class Chunk:
    """A method's input: the chunk's keys (random streams), source ws and images, and boxes."""

    keys: list[int]
    ws: Tensor  # [B, num_ws, w_dim]
    images: Tensor  # [B, C, H, W] in [-1, 1]
    boxes: Boxes
    rows: int  # rows per synthesis call
    padded: bool | None  # the batched k-means (default: on GPUs)
    classes: list[int] | None = None  # each image's class, for a class-conditional generator
    trust: Tensor | None = None  # [B, 1, h, w] in [0, 1]: per-pixel weight of the variants beside joined pixels

    @property
    def hw(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]


def _unit_spread(x: Tensor) -> Tensor:
    """Scale pixel features [P, D] to a mean squared distance of 1 from their mean."""
    return x / (x - x.mean(0)).square().sum(1).mean().clamp_min(1e-12).sqrt()


def joined_features(stack: Tensor, normalize: str, joined: Tensor | None, weight: float = 1.0,
                    join_normalize: str = "standardize", trust: Tensor | None = None) -> Tensor:
    """Pixel features of a stack [N, C, h, w], with `joined` [1, C', h, w] appended (the source's
    activations, standardised per pixel; an image's own pixels raw, so brightness counts); each part is
    scaled to the same spread over the region's pixels, then the joined part's squared distances are
    multiplied by `weight`. `trust` [1, 1, h, w] in [0, 1] scales the stack's part per pixel (a photo's
    pixels that its projection misses lean on the joined part)."""
    x = pixel_features(stack, normalize)
    if joined is None:
        return x
    x = _unit_spread(x)
    if trust is not None:
        x = x * trust.reshape(-1, 1)
    return torch.cat([x, _unit_spread(pixel_features(joined, join_normalize)) * weight ** 0.5], 1)


def cluster_regions(stacks: list[list[Tensor]], k: int, iters: int, tol: float, normalize: str,
                    keys: list[tuple[int, int]], joined: list[Tensor | None] | None = None,
                    padded: bool | None = None, join_weight: float = 1.0,
                    join_normalize: str = "standardize",
                    trust: list[Tensor | None] | None = None) -> list[tuple[Tensor, Tensor]]:
    """stacks[set][repeat] = [N, C, h, w] -> per set (labels [h, w], margin [h, w]).

    Every set and repeat goes into one batched k-means; repeats are merged by a per-pixel majority
    vote. keys[set] = (image key, region): the k-means seed comes from (key, region, repeat).
    `joined[set]`, when given, is appended to every repeat's features (`joined_features`, with `join_weight`
    and the per-pixel `trust[set]`)."""
    if not stacks:
        return []
    joined = joined or [None] * len(stacks)
    trust = trust or [None] * len(stacks)
    feats = [[joined_features(st, normalize, j, join_weight, join_normalize, t) for st in reps]
             for reps, j, t in zip(stacks, joined, trust)]
    flat = [x for reps in feats for x in reps]
    seeds = [kmeans_seed(key, region, r) for (key, region), reps in zip(keys, feats) for r in range(len(reps))]
    done: list[tuple[Tensor, Tensor] | None] = [None] * len(flat)
    for dim in sorted({x.shape[1] for x in flat}):  # one k-means per feature width (joined crops are wider)
        idx = [i for i, x in enumerate(flat) if x.shape[1] == dim]
        for i, res in zip(idx, kmeans_batch([flat[i] for i in idx], k, iters, tol, [seeds[i] for i in idx], padded)):
            done[i] = res
    results = iter(done)
    out = []
    for reps, st in zip(feats, stacks):
        res = [next(results) for _ in reps]
        labels = [lab for lab, _ in res]
        lab = labels[0] if len(labels) == 1 else majority_vote(torch.stack(labels), k)  # repeats: reads k x k to the host
        h, w = st[0].shape[-2:]
        out.append((lab.reshape(h, w), margin(reps[0], res[0][1]).reshape(h, w)))
    return out


def cluster_stacks(stacks: list[Tensor], k: int, iters: int = 100, tol: float = 1e-4, normalize: str = "raw",
                   seed: int = 0) -> tuple[Tensor, Tensor]:
    """One region's repeats [N, C, h, w] -> (labels [h, w], margin [h, w])."""
    return cluster_regions([stacks], k, iters, tol, normalize, [(seed, 0)])[0]


def _pad_maps(maps: list[Tensor], fill: float | int = 0) -> tuple[Tensor, Tensor]:
    """Maps [h_i, w_i] -> padded [n, h, w] and their sizes [n, 2]."""
    dev = maps[0].device
    h, w = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
    out = torch.full((len(maps), h, w), fill, dtype=maps[0].dtype, device=dev)
    for i, m in enumerate(maps):
        out[i, : m.shape[0], : m.shape[1]] = m
    return out, torch.tensor([tuple(m.shape) for m in maps], device=dev)


def box_masks(labels: list[Tensor], conf: list[Tensor], boxes: Boxes, image_hw: tuple[int, int], k: int,
              rule: str, score: str = "margin") -> tuple[Tensor, Tensor]:
    """The box crops' clusterings -> (instance masks [n, H, W] pasted back into their images, mask
    confidence [n]).

    The confidence is the mean k-means margin over the mask's pixels; with score 'margin_inside'
    it is multiplied by the share of those pixels inside the box (a mask that spills out of its
    box is more often the wrong cluster)."""
    dev = labels[0].device
    lab, sizes = _pad_maps(labels)
    cf, _ = _pad_maps(conf)
    wb = work_boxes(boxes.xyxy, boxes.crops, [tuple(m.shape) for m in labels]).to(dev)
    chosen = INSTANCE_RULES[rule](lab, sizes, wb, k)  # [n, k]
    masks = paste_masks(labels, chosen, boxes.crops, image_hw, k)
    valid, inside = valid_pixels(lab, sizes), in_box(lab, sizes, wb)
    sel = chosen.gather(1, lab.flatten(1)).reshape(lab.shape) & valid
    n_sel = sel.sum((1, 2))
    confidence = torch.where(n_sel > 0, (cf * sel).sum((1, 2)) / n_sel.clamp_min(1), 0.0)
    if score == "margin_inside":
        confidence = confidence * torch.where(n_sel > 0, (sel & inside).sum((1, 2)) / n_sel.clamp_min(1), 0.0)
    return masks, confidence


# ---------------------------------------------------------------------------------------
# Methods: each turns a chunk into whole-image clusterings and one raw mask per box.


def _regions(chunk: Chunk, work_res: int) -> tuple[tuple[int, int], list[list[tuple[Region | None, tuple[int, int]]]]]:
    """Per image: the whole image and its boxes' crops, as (fractional region, working size)."""
    H, W = chunk.hw
    whole = work_size((H, W), work_res)
    regions: list[list[tuple[Region | None, tuple[int, int]]]] = [[(None, whole)] for _ in chunk.keys]
    for b, c in zip(chunk.boxes.owner, chunk.boxes.crops):
        regions[b].append(((c[0] / W, c[1] / H, c[2] / W, c[3] / H), work_size((c[3] - c[1], c[2] - c[0]), work_res)))
    return whole, regions


def _variants_method(G: Generator, chunk: Chunk, cfg: RunConfig, clock: Stopwatch) -> Clustered:
    """Ours (and the single-image k-means baselines, which cluster the source image alone)."""
    B = len(chunk.keys)
    whole_hw, regions = _regions(chunk, cfg.work_res)
    if cfg.method == "variants":
        n, repeats, feature, shared = cfg.variants, cfg.repeats, cfg.features, min(cfg.mix_from)
        ws = variant_latents(G, chunk.keys, chunk.ws, n, cfg.mix_from, repeats, cfg.truncation_psi, chunk.classes)
        settings = {"variants": n, "mix_from": list(cfg.mix_from), "repeats": repeats,
                    "features": feature, "normalize": cfg.normalize, "join_features": cfg.join_features,
                    "join_weight": cfg.join_weight}
    else:  # single-image baselines: the "stack" is the source image alone (N = 1)
        n, repeats, ws, shared = 1, 1, chunk.ws, 0
        feature = "rgb" if cfg.method == "kmeans-rgb" else (
            cfg.features if cfg.features != "rgb" else default_activation_layer(G))
        settings = {"variants": 1, "repeats": 1, "features": feature, "normalize": cfg.normalize}
    # groups of n rows: (image, repeat); every group of an image cuts that image's regions
    stacks = variant_stacks(G, ws, feature, [regions[b] for b in range(B) for _ in range(repeats)], chunk.rows, shared)
    if feature == "rgb":
        previews = torch.stack([stacks[b * repeats][0][:PREVIEW_VARIANTS] for b in range(B)])
    else:
        first = ws.reshape(B, repeats * n, *ws.shape[1:])[:, :min(n, PREVIEW_VARIANTS)].flatten(0, 1)
        previews = torch.stack([s[0] for s in variant_stacks(G, first, "rgb", [[(None, whole_hw)]] * B, chunk.rows,
                                                             shared)])
    per_image = [[[stacks[b * repeats + r][j] for r in range(repeats)] for j in range(len(regions[b]))]
                 for b in range(B)]
    joined: list[list[Tensor | None]] = [[None] * len(r) for r in regions]
    trust: list[list[Tensor | None]] = [[None] * len(r) for r in regions]
    if cfg.method == "variants" and len(chunk.boxes):
        if cfg.join_features == "image":  # the image's own pixels
            for b in range(B):
                joined[b][1:] = [resize(crop_region(chunk.images[b:b + 1].float(), reg), hw)
                                 for reg, hw in regions[b][1:]]
                if chunk.trust is not None:
                    trust[b][1:] = [resize(crop_region(chunk.trust[b:b + 1].float(), reg), hw)
                                    for reg, hw in regions[b][1:]]
        elif cfg.join_features != "none":  # the source's activations, box crops only
            src = variant_stacks(G, chunk.ws, cfg.join_features, [r[1:] for r in regions], chunk.rows)
            for b in range(B):
                joined[b][1:] = src[b]
    clock.lap("generate")
    box_k = cfg.box_k or cfg.k
    iters, tol, norm = cfg.kmeans_iters, cfg.kmeans_tol, cfg.normalize
    join_norm = "raw" if cfg.join_features == "image" else "standardize"
    box_sets = [(b, j) for b in range(B) for j in range(1, len(regions[b]))]
    whole_sets = [per_image[b][0] for b in range(B)]
    whole_keys = [(key, 0) for key in chunk.keys]
    if box_k == cfg.k:  # one k-means over every region of every image
        done = cluster_regions(whole_sets + [per_image[b][j] for b, j in box_sets], cfg.k, iters, tol, norm,
                               whole_keys + [(chunk.keys[b], j) for b, j in box_sets],
                               [None] * B + [joined[b][j] for b, j in box_sets], chunk.padded, cfg.join_weight,
                               join_norm, [None] * B + [trust[b][j] for b, j in box_sets])
    else:  # a box crop holds one object and its surroundings: it may want fewer clusters than the whole image
        done = cluster_regions(whole_sets, cfg.k, iters, tol, norm, whole_keys, padded=chunk.padded)
        done += cluster_regions([per_image[b][j] for b, j in box_sets], box_k, iters, tol, norm,
                                [(chunk.keys[b], j) for b, j in box_sets], [joined[b][j] for b, j in box_sets],
                                chunk.padded, cfg.join_weight, join_norm, [trust[b][j] for b, j in box_sets])
    labels = torch.stack([lab for lab, _ in done[:B]])
    conf = torch.stack([c for _, c in done[:B]])
    fg = FOREGROUND_RULES[cfg.foreground](labels, cfg.k)
    if len(chunk.boxes):
        masks, mask_conf = box_masks([lab for lab, _ in done[B:]], [c for _, c in done[B:]], chunk.boxes, chunk.hw,
                                     box_k, cfg.instance_rule, cfg.mask_score)
    else:
        masks, mask_conf = _no_masks(chunk)
    settings.update(k=cfg.k, box_k=box_k, foreground=cfg.foreground, instance_rule=cfg.instance_rule,
                    mask_score=cfg.mask_score, box_margin=cfg.box_margin, clip_margin=cfg.clip_margin)
    return Clustered(labels, conf, fg, masks, mask_conf, previews, settings)


def _no_masks(chunk: Chunk) -> tuple[Tensor, Tensor]:
    dev = chunk.images.device
    return torch.zeros((0, *chunk.hw), dtype=torch.bool, device=dev), torch.zeros(0, device=dev)


def _grabcut_method(G: Generator, chunk: Chunk, cfg: RunConfig, clock: Stopwatch) -> Clustered:
    """GrabCut (OpenCV, on the host) from each box, and from a 5%-inset rectangle for the whole image."""
    H, W = chunk.hw
    dev = chunk.images.device
    imgs = to_uint8(chunk.images)
    inset = np.array([0.05 * W, 0.05 * H, 0.95 * W, 0.95 * H])
    labels = torch.from_numpy(np.stack([grabcut(im, inset) for im in imgs])).long().to(dev)
    raw = [grabcut(imgs[b], box) for b, box in zip(chunk.boxes.owner, chunk.boxes.xyxy)]
    masks = torch.from_numpy(np.stack(raw)).bool().to(dev) if raw else _no_masks(chunk)[0]
    clock.lap("cluster")
    previews = F.interpolate(chunk.images.float(), size=work_size((H, W), cfg.work_res), mode="bilinear",
                             align_corners=False)[:, None]
    fg = torch.zeros(len(chunk.keys), cfg.k, dtype=torch.bool, device=dev)
    fg[:, 1] = True
    return Clustered(labels, torch.ones_like(labels, dtype=torch.float), fg, masks,
                     torch.ones(len(raw), device=dev), previews, {"grabcut_iters": 5, "whole_inset": 0.05})


Method = Callable[[Generator, Chunk, "RunConfig", Stopwatch], Clustered]
# config.METHODS names them: variants, grabcut, kmeans-rgb, activations (the last two are the variant path on one
# image's RGB or activations)
METHODS: dict[str, Method] = dict(zip(CONFIG_METHODS, (_variants_method, _grabcut_method, _variants_method,
                                                       _variants_method), strict=True))


@dataclass
class Segmented:
    """A segmented chunk, still on the device."""

    images: Tensor  # [B, C, H, W]
    clustered: Clustered
    label_maps: Tensor  # [B, H, W]
    fg_masks: Tensor  # [B, H, W] bool
    fg_keep: Tensor  # [B] bool
    fg_conf: Tensor  # [B]
    masks: Tensor  # [n, H, W] bool, merged (disjoint within an image)
    keep: Tensor  # [n] bool
    rank: Tensor  # [n] position of each box in its image's score order
    boxes: Boxes

    def to_host(self) -> list[ImageResult]:
        """The one crossing to the host: uint8 images and maps, bool masks, and a few floats."""
        c = self.clustered
        images = to_uint8(self.images)
        label_maps = self.label_maps.to(torch.uint8).cpu().numpy()
        previews = to_uint8(c.previews.flatten(0, 1))
        previews = previews.reshape(*c.previews.shape[:2], *previews.shape[1:])
        labels, conf = c.labels.cpu().numpy(), c.conf.cpu().numpy()
        fg_masks, fg_keep, fg_conf = self.fg_masks.cpu().numpy(), self.fg_keep.tolist(), self.fg_conf.tolist()
        masks, keep, rank = self.masks.cpu().numpy(), self.keep.tolist(), self.rank.tolist()
        mask_conf = c.mask_conf.tolist()
        out = []
        for b in range(len(images)):
            mine = sorted((rank[i], i) for i in np.flatnonzero(self.boxes.owner == b) if keep[i])
            insts = [Instance(self.boxes.xyxy[i], self.boxes.labels[i], float(self.boxes.scores[i]), masks[i],
                              mask_conf[i]) for _, i in mine]
            out.append(ImageResult(images[b], label_maps[b], labels[b], conf[b], previews[b],
                                   fg_masks[b] if fg_keep[b] else None, fg_conf[b], insts, c.settings))
        return out


@torch.no_grad()
def segment_chunk(G: Generator, cfg: RunConfig, chunk: Chunk, clock: Stopwatch | None = None) -> Segmented:
    """A chunk end to end on the device: the whole-image masks and, given boxes, the merged instance
    masks (mask-NMS, disjoint, at least cfg.min_area pixels). No host reads that grow with the
    images or boxes (GrabCut, and majority votes across repeats, read on the host by nature).
    `clock` takes the generate and cluster laps."""
    clock = clock or Stopwatch(None, chunk.images.device)
    c = METHODS[cfg.method](G, chunk, cfg, clock)
    min_area = max(cfg.min_area, 1)
    label_maps = upsample_labels(c.labels, cfg.k, chunk.hw)
    fg_masks = c.fg.gather(1, label_maps.flatten(1)).reshape(label_maps.shape)
    fg_keep = fg_masks.sum((1, 2)) >= min_area
    sel = c.fg.gather(1, c.labels.flatten(1))
    n_sel = sel.sum(1)
    fg_conf = torch.where(n_sel > 0, (c.conf.flatten(1) * sel).sum(1) / n_sel.clamp_min(1), 0.0)
    boxes = chunk.boxes
    scores = torch.as_tensor(boxes.scores, device=c.mask_conf.device) * c.mask_conf
    raw = c.masks if cfg.clip_margin >= cfg.box_margin else clip_to_boxes(c.masks, boxes.xyxy, cfg.clip_margin)
    masks, keep, rank = merge_instances(raw, scores, boxes.owner, len(chunk.keys), cfg.nms_iou, min_area)
    clock.lap("cluster")
    return Segmented(chunk.images, c, label_maps, fg_masks, fg_keep, fg_conf, masks, keep, rank, boxes)
