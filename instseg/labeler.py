"""`instseg label`: segment a user's real images by projecting each into the generator's W+ and running
the style-mixing method on the projected latents (the I/O edge; projection and segmentation stay pure)."""
from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from detectors import Detections
from torch import Tensor

from . import coco, photo
from .config import BOUNDS, LabelConfig, RunConfig
from .errors import UserError
from .features import resize
from .generator import to_uint8
from .project import project
from .real import Fit, collect, file_digest, photo_tensor, place, read_rgb, stored_name
from .rundir import IMAGES, RunDir, image_id
from .segment import Instance
from .pipeline import Pipeline, pick_device
from .runner import (chunks_to_do, dataset_provenance, generator_record, load_checked, opened_run, validate_checkpoint,
                     versions)
from .zoo import ResolvedGan, resolve_gan, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineTuning:
    """The GrabCut refinement's inner settings (benches pass others in; users do not set them).

    `sure`: a detector score that keeps a box the photo's GrabCut finds empty (tuning scenes: false boxes read
    0.3-0.5)."""

    sure: float = 0.5


SURE = RefineTuning().sure


def label_images(specs: list[str], cfg: RunConfig, lcfg: LabelConfig, out: Path,
                 on_image: Callable[[int, bool], None] | None = None, cache: Path | None = None,
                 on_status: Callable[[str, int | None], None] | None = None,
                 tuning: RefineTuning = RefineTuning(), project_fn: Callable = project) -> Path:
    """Label the images `specs` names (files, folders, globs) into the dataset folder `out`; returns
    annotations.json. Re-running the same command resumes; other images or settings are refused.
    `on_status(text, total)`: what runs now (loading, projecting a chunk), with the image count once known.
    `tuning` and `project_fn` let a bench vary the refinement's inner settings and share projections."""
    status = on_status or (lambda text, total=None: None)
    files = collect(specs)
    status(f"reading {len(files)} images", len(files))
    for f in files:  # every file decoded whole before anything is written (not kept: a folder may not fit in memory)
        read_rgb(f)
    digests = [file_digest(f) for f in files]
    cfg = RunConfig(**{**cfg.__dict__, "seeds": tuple(range(len(files)))})
    if cfg.precision != "fp32":
        raise UserError(f"label projects photos by gradient descent in fp32; precision={cfg.precision} is for "
                        "`instseg run`")
    status(f"loading {cfg.gan}", None)
    gan = resolve_gan(cfg.gan, cache, validate=validate_checkpoint)
    device = pick_device(cfg.device)
    G = load_checked(gan, device)
    if G.c_dim:
        raise UserError(f"label needs an unconditional generator: {cfg.gan} is class-conditional (c_dim={G.c_dim}), "
                        "and a photo's class is not known")
    pipeline = Pipeline(cfg, G, device)
    G, detector, categories = pipeline.G, pipeline.detector, pipeline.categories
    if G.cfg.out_height is not None and G.cfg.out_height != G.cfg.resolution:
        raise UserError("label needs a square generator (this one crops its output)")
    gan_sha = sha256_file(gan.path)
    label_settings = {k: v for k, v in asdict(lcfg).items() if k != "copy"}
    full = {**cfg.to_dict(), "label": label_settings, "inputs": digests}
    with opened_run(out, full, gan_sha, lambda k: "the images" if k == "inputs" else k) as (rd, cid, _):
        rd.write_run({"config": full, "config_id": cid, "seeds": list(cfg.seeds), "device": str(device),
                      "versions": versions(), "command": sys.argv, "inputs": [str(f) for f in files],
                      "generator": generator_record(gan, gan_sha, G)})
        chunks = chunks_to_do(rd, cfg, cid, on_image, lcfg.batch)
        licence, info = photo_provenance(gan, gan_sha, lcfg)
        try:
            for i, chunk in enumerate(chunks):
                status(f"projecting {len(chunk)} image(s) ({lcfg.steps} steps), chunk {i + 1}/{len(chunks)}", None)
                _label_chunk(pipeline, lcfg, rd, cid,
                             [(i, files[i], read_rgb(files[i])) for i in chunk], on_image, tuning, project_fn)
        finally:
            what = "--detector none" if detector is None else f"--detector {cfg.detector}"
            rd.assemble(cfg.seeds, categories, f"instseg label with {cfg.gan}: real images, {what}", licence, info)
    return rd.annotations


def _refined(cfg: RunConfig, refine: str, rgb: np.ndarray, fit: Fit, instances: list[Instance],
             frame: int, tuning: RefineTuning = RefineTuning()) -> list[Instance]:
    """Our instances mapped to the photo's pixels; with `refine` (photo.REFINEMENTS), each mask moved to the
    photo's own edges and the set merged again (refine_objects). `frame`: the generator's size (auto's rule
    reads it)."""
    objects = [replace(inst, mask=fit.to_image(torch.from_numpy(inst.mask)), box=np.asarray(fit.box_to_image(inst.box)))
               for inst in instances]
    if refine == "auto":
        refine = photo.auto_refinement(rgb.shape[:2], frame)
    return refine_objects(cfg, refine, rgb, objects, tuning)


def refine_objects(cfg: RunConfig, refine: str, rgb: np.ndarray, objects: list[Instance],
                   tuning: RefineTuning = RefineTuning()) -> list[Instance]:
    """One image's objects with each mask moved to the image's own edges (`refine`: none | grabcut), then
    merged again (cut to their boxes, mask-NMS, disjoint). rgb [H, W, 3] uint8, masks at its size."""
    if refine not in ("none", "grabcut"):
        raise ValueError(f"refine must be none or grabcut here (auto is resolved by the caller), got {refine!r}")
    if refine == "none" or not objects:
        return objects
    # the photo's own verdict: where GrabCut from the box finds no object, only a sure detection stays
    objects = [o for o in objects if o.det_score >= tuning.sure or photo.grabcut(rgb, o.box).sum() >= max(cfg.min_area, 1)]
    if not objects:
        return []
    masks = [photo.seeded_grabcut(rgb, o.mask, o.box, cfg.clip_margin) for o in objects]
    kept, order = photo.merge(masks, [o.score for o in objects], np.stack([o.box for o in objects]),
                              cfg.clip_margin, cfg.nms_iou, cfg.min_area)
    return [replace(objects[i], mask=m) for m, i in zip(kept, order)]


def _photo_baseline(cfg: RunConfig, rgb: np.ndarray, fit: Fit, det) -> list[Instance]:
    """A single-image baseline run as a user would: on the photo itself, at its size, on the detector's boxes."""
    if det is None or not len(det.boxes):
        return []
    boxes = np.array([fit.box_to_image(b) for b in np.asarray(det.boxes).reshape(-1, 4)], np.float32)
    scores = [float(s) for s in det.scores]
    if cfg.method == "grabcut":
        masks, conf = photo.grabcut_masks(rgb, boxes), [1.0] * len(boxes)
    else:
        x = photo_tensor(rgb)
        work = max(cfg.work_res, 1) * max(1, round(max(rgb.shape[:2]) / fit.size))
        m, c = photo.kmeans_rgb_masks(x, boxes, cfg.box_k or cfg.k, work, cfg.box_margin, cfg.instance_rule,
                                      cfg.mask_score, cfg.normalize)
        masks, conf = list(m.numpy()), c.tolist()
    kept, order = photo.merge(masks, [s * c for s, c in zip(scores, conf)], boxes, cfg.clip_margin, cfg.nms_iou,
                              cfg.min_area)
    return [Instance(boxes[i], det.labels[i], scores[i], m, conf[i]) for m, i in zip(kept, order)]


PHOTOS_LICENCE = {"id": 1, "name": "the photos' own: they are the user's images, and their terms are not known to "
                                  "instseg", "url": ""}


def photo_provenance(gan: ResolvedGan, gan_sha: str, lcfg: LabelConfig) -> tuple[dict, dict]:
    """The COCO licence entry and `info` of a labelled folder: the images are the user's photos, under
    their own terms; only the masks derive from the generator, whose licence `info` names."""
    _, info = dataset_provenance(gan, gan_sha)
    lic = gan.licence
    info = {k: v for k, v in info.items() if k not in ("licence", "licence_url", "licence_note")}
    info.update({
        "images": "the user's own photos, not the generator's: their licence is their owner's",
        "masks_licence": lic.name, "masks_licence_url": lic.url,
        "real_images": (f"projected into the generator's {lcfg.space.upper()} ({lcfg.steps} steps, {lcfg.loss} loss, "
                        f"fit {lcfg.fit}), box crops clustered at the {lcfg.cluster_at}'s pixels (error scale "
                        f"{lcfg.error_scale}), masks refined on the photo: {lcfg.refine}; images below "
                        f"{lcfg.min_psnr} dB PSNR are marked low_fidelity"),
    })
    if lic.note("the masks"):
        info["licence_note"] = lic.note("the masks")
    return PHOTOS_LICENCE, info


class PhotoSegmenter:
    """The method on photos, wrapping the run's Pipeline (as SAM keeps its predictor apart from its automatic mask
    generator): each photo segmented in the generator's frame, or (`at_photo_size`) in a frame of the photo's own
    pixels up to photo.MAX_SCALE times the generator's, the variants upsampled to it (work_res scaled alike)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def __call__(self, items: list[tuple[int, Path, np.ndarray]], fits: list[Fit], ws: Tensor, targets: Tensor,
                 found: list, at_photo_size: bool, trust: Tensor | None) -> tuple[list, list[Fit], list[Tensor]]:
        """Photos of one scale go together. Returns the results, the fits their masks map back with, and the
        images they segmented."""
        pipe = self.pipeline
        size, n = pipe.G.cfg.resolution, len(items)
        scales = [photo.cluster_scale(f.window_side, size) if at_photo_size else 1 for f in fits]
        results: list = [None] * n
        out_fits, shown = list(fits), list(targets)
        groups = [[j for j in range(n) if scales[j] == s] for s in sorted(set(scales))]
        top = int(BOUNDS["work_res"][1])
        for idx in groups:
            scale = scales[idx[0]]
            if scale == 1:
                images, boxes = targets[idx], [found[j] for j in idx]
            else:
                for j in idx:
                    out_fits[j] = Fit(fits[j].mode, fits[j].height, fits[j].width, size * scale)
                images = torch.stack([out_fits[j].to_frame(items[j][2]) for j in idx]).to(targets.device)
                boxes = [None if found[j] is None else Detections(np.asarray(found[j].boxes) * scale, found[j].scores,
                                                                  found[j].labels) for j in idx]
            cfg = pipe.cfg if scale == 1 else replace(pipe.cfg, work_res=min(pipe.cfg.work_res * scale, top))
            done = pipe.segment_images([items[j][0] for j in idx], ws[idx], images, boxes, cfg=cfg,
                                       trust=None if trust is None else trust[idx])
            for j, r, im in zip(idx, done, images):
                results[j], shown[j] = r, im
        return results, out_fits, shown


def _label_chunk(pipeline: Pipeline, lcfg: LabelConfig, rd: RunDir, cid: str, items: list[tuple[int, Path, np.ndarray]],
                 on_image: Callable[[int, bool], None] | None, tuning: RefineTuning = RefineTuning(),
                 project_fn: Callable = project) -> None:
    G, categories = pipeline.G, pipeline.categories
    size = G.cfg.resolution
    fits = [Fit(lcfg.fit, rgb.shape[0], rgb.shape[1], size) for _, _, rgb in items]
    targets = torch.stack([f.to_frame(rgb) for f, (_, _, rgb) in zip(fits, items)]).to(pipeline.device)
    with torch.enable_grad():
        proj = project_fn(G, targets, lcfg.steps, lcfg.lr, lcfg.loss, lcfg.space)
    if not bool(torch.isfinite(proj.images).all()):
        raise UserError("the generator draws NaN or infinite pixels for these photos' projections; its weights or "
                        f"--set precision={pipeline.cfg.precision} do not work together")
    found = pipeline.detect(targets) if pipeline.detector is not None else [None] * len(items)
    at_photo = pipeline.detector is not None and pipeline.cfg.method in ("grabcut", "kmeans-rgb")
    trust = None
    if lcfg.error_scale > 0:  # where the projection misses the photo, its variants count less
        trust = torch.exp(-((proj.images - targets).norm(dim=1, keepdim=True) / lcfg.error_scale) ** 2)
    results, seg_fits, shown = PhotoSegmenter(pipeline)(items, fits, proj.ws, targets, found,
                                                       lcfg.cluster_at == "photo" and not at_photo, trust)
    for j, ((key, path, rgb), fit, seg) in enumerate(zip(items, seg_fits, results)):
        iid = image_id(key)
        if pipeline.detector is None:
            masks = [] if seg.foreground is None else [fit.to_image(torch.from_numpy(seg.foreground))]
            anns = [coco.annotation(m, iid, 1, seg.fg_confidence) for m in masks if m.any()]
        else:
            objects = (_photo_baseline(pipeline.cfg, rgb, fits[j], found[j]) if at_photo
                       else _refined(pipeline.cfg, lcfg.refine, rgb, fit, seg.instances, size, tuning))
            anns = [coco.annotation(o.mask, iid, categories.index(o.label) + 1, o.score, det_score=o.det_score,
                                    det_box=[float(v) for v in o.box], mask_confidence=o.mask_confidence)
                    for o in objects if o.mask.any()]
        name = stored_name(path)
        place(path, rd.root / IMAGES / name, rgb, name == path.name, lcfg.copy)
        psnr, loss = float(proj.psnr[j]), float(proj.loss[j])
        entry = coco.image_entry(iid, name, rgb.shape[0], rgb.shape[1], seed=key, source=str(path), fit=lcfg.fit,
                                 projection_psnr=round(psnr, 3), projection_loss=round(loss, 6),
                                 low_fidelity=psnr < lcfg.min_psnr)
        if psnr < lcfg.min_psnr:
            log.warning("%s reconstructs at %.1f dB PSNR (below %.1f): marked low_fidelity", path, psnr, lcfg.min_psnr)
        image = resize(shown[j][None].float(), seg.preview.shape[1:3])
        preview = np.concatenate([to_uint8(image)[0], *seg.preview], axis=1)  # the image, then variants
        rd.write_record(key, entry, seg.label_map, preview, anns, cid)
        if not rd.settings_recorded:
            rd.record_settings(seg.settings)
        if on_image:
            on_image(key, False)
