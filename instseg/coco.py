"""COCO instance-segmentation records: RLE masks, boxes from masks, the dataset dict."""
from __future__ import annotations

import datetime
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import short


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """[H, W] bool -> compressed RLE with a JSON-ready (str) counts field."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode(rle).astype(bool)


def to_rle(seg: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) -> compressed RLE.
    Raises ValueError for anything else."""
    if isinstance(seg, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and
                              all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                                  for v in p) for p in seg):
            raise ValueError("polygons must be lists of at least 3 finite (x, y) pairs")
        # pycocotools rasterises the polygon's whole extent: a far vertex costs gigabytes or a crash
        if not all(-width <= x <= 2 * width and -height <= y <= 2 * height for p in seg for x, y in zip(p[::2], p[1::2])):
            raise ValueError(f"a polygon vertex lies far outside the {width}x{height} image")
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise ValueError("a segmentation is a polygon list or an RLE dict with counts and size")
    if list(seg["size"]) != [height, width]:
        raise ValueError(f"RLE size {seg['size']} is not the image's {[height, width]}")
    counts = seg["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
            raise ValueError("uncompressed RLE counts must be non-negative and sum to height * width")
        return mask_utils.frPyObjects(seg, height, width)
    if not isinstance(counts, str) or not counts.isascii():
        raise ValueError("RLE counts must be a string or a list of integers")
    rle = {"size": [height, width], "counts": counts}
    if int(mask_utils.area(rle)) > height * width or _rle_length(counts) != height * width:
        raise ValueError("RLE counts do not cover the image")
    return rle


def _rle_length(counts: str) -> int:
    """Total run length of a compressed RLE string (pycocotools' LEB128-like code)."""
    runs, i, total = [], 0, 0
    while i < len(counts):
        x, k, more = 0, 0, True
        while more:
            if i >= len(counts):
                raise ValueError("truncated RLE counts")
            c = ord(counts[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
        if x < 0:
            raise ValueError("negative RLE run")
        total += x
    return total


MAX_PIXELS = 1 << 26  # largest image (height * width) a COCO file read here may claim: 8192 x 8192


def read_coco(path: Any, what: str = "COCO file") -> dict[str, Any]:
    """Read and check a COCO instances file: one-line ValueError-free UserErrors for bad input."""
    import json
    from pathlib import Path

    from .errors import UserError

    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError:
        raise UserError(f"{what} {path} is not JSON") from None
    problem = check_coco(data)
    if problem:
        raise UserError(f"{what} {path} is not a COCO instances file: {problem}")
    ids = [a["id"] for a in data["annotations"]]
    if len(set(ids)) != len(ids):
        import logging

        logging.getLogger(__name__).warning("%s %s repeats annotation ids (%d of %d unique); renumbered 1..%d",
                                            what, path, len(set(ids)), len(ids), len(ids))
        for i, a in enumerate(data["annotations"], 1):
            a["id"] = i
    return data


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_coco(data: Any) -> str | None:
    """What is wrong with a COCO dict, or None. Normalises every segmentation to compressed RLE."""
    if not isinstance(data, dict):
        return "the top level is not an object"
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            return f"no {key!r} list"
    sizes = {}
    for im in data["images"]:
        if not (isinstance(im, dict) and _is_int(im.get("id")) and isinstance(im.get("file_name"), str)
                and _is_int(im.get("height")) and _is_int(im.get("width")) and im["height"] > 0 and im["width"] > 0):
            return "an image entry lacks an integer id, height, width or a file_name"
        if im["id"] in sizes:
            return f"image id {im['id']} appears twice"
        if im["height"] * im["width"] > MAX_PIXELS:
            return f"image {im['id']} claims {im['width']}x{im['height']} pixels, beyond the limit of {MAX_PIXELS:,}"
        sizes[im["id"]] = (im["height"], im["width"])
    cats = set()
    for c in data["categories"]:
        if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str)):
            return "a category lacks an integer id or a name"
        cats.add(c["id"])
    for a in data["annotations"]:
        if not isinstance(a, dict):
            return "an annotation is not an object"
        if not _is_int(a.get("id")):
            return f"an annotation lacks an integer id (got {short(a.get('id'))})"
        if not _is_int(a.get("image_id")) or a["image_id"] not in sizes:
            return f"annotation {a['id']} refers to unknown image_id {short(a.get('image_id'))}"
        if not _is_int(a.get("category_id")) or a["category_id"] not in cats:
            return f"annotation {a['id']} refers to unknown category_id {short(a.get('category_id'))}"
        if "iscrowd" in a and a["iscrowd"] not in (0, 1):
            return f"annotation {a['id']} has iscrowd {short(a['iscrowd'])}; use 0 or 1"
        if "score" in a and (isinstance(a["score"], bool) or not isinstance(a["score"], (int, float))
                             or not np.isfinite(a["score"])):
            return f"annotation {a.get('id')} has a score that is not a finite number: {a['score']!r}"
        box = a.get("bbox", [0, 0, 0, 0])
        if not (isinstance(box, list) and len(box) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in box)
                and box[2] >= 0 and box[3] >= 0):
            return f"annotation {a['id']} has a bbox that is not [x, y, width, height]: {short(box)}"
        try:
            a["segmentation"] = to_rle(a.get("segmentation"), *sizes[a["image_id"]])
        except (ValueError, TypeError, OverflowError) as e:
            return f"annotation {a.get('id')} has a bad segmentation ({e})"
        if "area" not in a:
            a["area"] = float(mask_utils.area(a["segmentation"]))
        elif isinstance(a["area"], bool) or not isinstance(a["area"], (int, float)) or not np.isfinite(a["area"]) \
                or a["area"] < 0:
            return f"annotation {a['id']} has an area that is not a non-negative number: {short(a['area'])}"
    return None



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


def dataset(images: list[dict], annotations: list[dict], categories: list[str], description: str = "",
            licence: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble a COCO dict; annotation ids are numbered 1.. in the given order.

    `licence` ({"id", "name", "url"}) goes into `licenses` and onto every image; `info` adds
    fields to COCO `info` (generator provenance)."""
    anns = [{**a, "id": i + 1} for i, a in enumerate(annotations)]
    if licence:
        images = [{**im, "license": licence["id"]} for im in images]
    return {
        "info": {"description": description or "made by instseg", "version": "1.0",
                 "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 **(info or {})},
        "licenses": [licence] if licence else [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n, "supercategory": n} for i, n in enumerate(categories)],
    }
