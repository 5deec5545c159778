"""Reference masks for a run's images from a supervised segmenter (YOLO-seg)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import coco
from .rundir import RunDir
from .visualize import load_image


def pseudo_gt(run_dir: Path, segmenter, on_image: Callable[[int], None] | None = None, data: dict | None = None) -> dict:
    """A COCO dict over the same images as `run_dir`/annotations.json.

    Categories are the run's; for a `--detector none` run ("foreground") every segmenter
    instance counts as foreground, else only the run's classes are kept. Build the segmenter
    with class-agnostic NMS, or one object detected as two classes becomes two references.
    """
    run = data if data is not None else RunDir(run_dir).read_dataset()
    names = [c["name"] for c in sorted(run["categories"], key=lambda c: c["id"])]
    info = RunDir(run_dir).read_run()
    whole = info["config"].get("detector") == "none" if info else names == ["foreground"]
    anns = []
    for im in run["images"]:
        img = load_image(Path(run_dir), im["file_name"])
        det, masks = segmenter.segment([img])[0]
        for label, score, m in zip(det.labels, det.scores, masks):
            if not m.any() or (not whole and label not in names):
                continue
            anns.append(coco.annotation(m, im["id"], 1 if whole else names.index(label) + 1, float(score)))
        if on_image:
            on_image(im["id"])
    if whole:  # one fg annotation per image: the union
        merged: dict[int, np.ndarray] = {}
        for a in anns:
            m = coco.decode_rle(a["segmentation"])
            merged[a["image_id"]] = merged.get(a["image_id"], np.zeros_like(m)) | m
        anns = [coco.annotation(m, i, 1, 1.0) for i, m in merged.items()]
    return coco.dataset(run["images"], anns, names, f"pseudo ground truth for {run_dir}")
