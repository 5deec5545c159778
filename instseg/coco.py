"""COCO instance-segmentation records: RLE masks, boxes from masks, the dataset dict."""
from __future__ import annotations

import datetime
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """[H, W] bool -> compressed RLE with a JSON-ready (str) counts field."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode(rle).astype(bool)


def mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight [x, y, w, h] of a non-empty mask, in pixels."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def annotation(mask: np.ndarray, image_id: int, category_id: int, score: float, **extra: Any) -> dict[str, Any]:
    """One annotation (id assigned later by `dataset`); bbox and area come from the mask."""
    return {"image_id": image_id, "category_id": category_id, "segmentation": encode_rle(mask),
            "area": float(mask.sum()), "bbox": mask_bbox(mask), "iscrowd": 0, "score": float(score), **extra}


def image_entry(image_id: int, file_name: str, height: int, width: int, **extra: Any) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "height": height, "width": width, **extra}


def dataset(images: list[dict], annotations: list[dict], categories: list[str], description: str = "") -> dict[str, Any]:
    """Assemble a COCO dict; annotation ids are numbered 1.. in the given order."""
    anns = [{**a, "id": i + 1} for i, a in enumerate(annotations)]
    return {
        "info": {"description": description or "made by instseg", "version": "1.0",
                 "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(categories)],
    }
