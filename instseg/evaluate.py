"""Mask quality of a predicted COCO file against a reference: IoU, trimap IoU and mask AP."""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from .coco import decode_rle
from .errors import UserError


def trimap_band(gt: np.ndarray, width: int) -> np.ndarray:
    """Pixels within `width` px of the reference mask's boundary (both sides)."""
    if not gt.any() or gt.all():
        return np.zeros_like(gt, dtype=bool)
    inner = gt & ~ndimage.binary_erosion(gt, border_value=1)
    outer = ~gt & ndimage.binary_dilation(gt)
    return ndimage.binary_dilation(inner | outer, iterations=max(width - 1, 0)) if width > 1 else inner | outer


def _masks_by_image(data: dict) -> dict[int, list[tuple[int, np.ndarray]]]:
    out: dict[int, list[tuple[int, np.ndarray]]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        out.setdefault(a["image_id"], []).append((a["category_id"], decode_rle(a["segmentation"])))
    return out


def _check_same_images(pred: dict, gt: dict) -> None:
    p = {im["id"]: (im["height"], im["width"]) for im in pred["images"]}
    g = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    if p != g:
        only_p, only_g = sorted(set(p) - set(g))[:3], sorted(set(g) - set(p))[:3]
        raise UserError(f"the files describe different images (only in pred: {only_p}, only in gt: {only_g}, "
                        f"size mismatches: {sum(p[i] != g[i] for i in set(p) & set(g))})")


def _names(data: dict, key) -> dict:
    """image id -> its name by `key`; a name that two images share is refused (it cannot say which is which)."""
    out, seen = {}, {}
    for im in data["images"]:
        n = key(str(im.get("file_name", "")))
        if n in seen:
            raise UserError(f"two images are both named {n!r} ({seen[n]} and {im['id']}); images cannot be matched "
                            "by file name")
        seen[n] = im["id"]
        out[im["id"]] = n
    return out


def match_images(pred: dict, gt: dict) -> tuple[dict, str]:
    """`pred` with its images renumbered as gt's, and how they were matched: by id where both files list the same
    ids and sizes; else by file name (the whole relative name, else the base name), for any two COCO files of the
    same images (a `label` folder against the user's own masks). UserError when neither matches every image."""
    p = {im["id"]: (im["height"], im["width"]) for im in pred["images"]}
    g = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    if p == g:
        return pred, "id"
    for how, key in (("file name", lambda n: n), ("base name", lambda n: n.replace("\\", "/").rsplit("/", 1)[-1])):
        pn, gn = _names(pred, key), _names(gt, key)
        if sorted(pn.values()) != sorted(gn.values()):
            continue
        to_gt = {n: i for i, n in gn.items()}
        ids = {i: to_gt[n] for i, n in pn.items()}
        bad = [pn[i] for i in ids if p[i] != g[ids[i]]]
        if bad:
            raise UserError(f"images matched by {how} differ in size ({', '.join(bad[:3])})")
        return {**pred, "images": [{**im, "id": ids[im["id"]]} for im in pred["images"]],
                "annotations": [{**a, "image_id": ids[a["image_id"]]} for a in pred["annotations"]
                                if a["image_id"] in ids]}, how
    only_p, only_g = sorted(set(p) - set(g))[:3], sorted(set(g) - set(p))[:3]
    raise UserError(f"the files describe different images, by id (only in pred: {only_p}, only in gt: {only_g}) and "
                    "by file name")


GOOD_IOU = 0.5  # a reference instance counts as matched at this IoU or more


def match_masks(gs: list[np.ndarray], ps: list[np.ndarray]) -> dict[int, tuple[int, float]]:
    """One image's reference masks `gs` and predicted masks `ps`, paired one to one greedily by IoU (any
    overlap, class-agnostic): reference index -> (prediction index, IoU). `eval` and `report --gt` share it."""
    pairs = sorted(((float((a & b).sum() / max((a | b).sum(), 1)), i, j) for i, a in enumerate(gs)
                    for j, b in enumerate(ps)), reverse=True)
    got: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou > 0 and i not in got and j not in used:
            got[i] = (j, iou)
            used.add(j)
    return got


def instance_ious(pred: dict, gt: dict, decoded: tuple[dict, dict] | None = None) -> dict[str, Any]:
    """Per reference instance, the IoU of the predicted instance matched to it (`match_masks`; 0 for a
    missed one): their mean (instance mIoU), with matched (IoU >= GOOD_IOU), missed and false counts. `decoded`:
    both files' masks by image, when the caller has them already."""
    pm, gm = decoded or (_masks_by_image(pred), _masks_by_image(gt))
    ious, false = [], 0
    for im in gt["images"]:
        ps, gs = [m for _, m in pm.get(im["id"], [])], [m for _, m in gm.get(im["id"], [])]
        got = match_masks(gs, ps)
        ious += [got[i][1] if i in got else 0.0 for i in range(len(gs))]
        false += len(ps) - len(got)
    return {"instance_miou": float(np.mean(ious)) if ious else float("nan"), "instances": len(ious),
            "matched": int(sum(v >= GOOD_IOU for v in ious)), "missed": int(sum(v < GOOD_IOU for v in ious)),
            "false": false}


class _IoU:
    def __init__(self) -> None:
        self.inter = self.union = 0

    def add(self, a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> None:
        if where is not None:
            a, b = a[where], b[where]
        self.inter += int((a & b).sum())
        self.union += int((a | b).sum())

    def value(self) -> float:
        return self.inter / self.union if self.union else 1.0


def semantic_scores(pred: dict, gt: dict, trimap_width: int = 3, on_image: Callable[[], None] | None = None,
                    decoded: tuple[dict, dict] | None = None) -> dict[str, Any]:
    """Dataset-level IoU (summed intersections over summed unions) of fg/bg and of each class."""
    _check_same_images(pred, gt)
    p_cats = {c["id"]: c["name"] for c in pred["categories"]}
    g_cats = {c["id"]: c["name"] for c in gt["categories"]}
    names = sorted(set(g_cats.values()) | set(p_cats.values()))
    pm, gm = decoded or (_masks_by_image(pred), _masks_by_image(gt))
    fg, bg, tfg, tbg = _IoU(), _IoU(), _IoU(), _IoU()
    per_class = {n: _IoU() for n in names}
    for im in gt["images"]:
        shape = (im["height"], im["width"])
        p_sem = {n: np.zeros(shape, bool) for n in names}
        g_sem = {n: np.zeros(shape, bool) for n in names}
        for cid, m in pm.get(im["id"], []):
            p_sem[p_cats[cid]] |= m
        for cid, m in gm.get(im["id"], []):
            g_sem[g_cats[cid]] |= m
        p_fg = np.any(list(p_sem.values()), axis=0) if names else np.zeros(shape, bool)
        g_fg = np.any(list(g_sem.values()), axis=0) if names else np.zeros(shape, bool)
        band = trimap_band(g_fg, trimap_width)
        fg.add(p_fg, g_fg)
        bg.add(~p_fg, ~g_fg)
        tfg.add(p_fg, g_fg, band)
        tbg.add(~p_fg, ~g_fg, band)
        for n in names:
            per_class[n].add(p_sem[n], g_sem[n])
        if on_image:
            on_image()
    out = {"iou_fg": fg.value(), "iou_bg": bg.value()}
    out["miou"] = (out["iou_fg"] + out["iou_bg"]) / 2
    out["trimap_iou_fg"], out["trimap_iou_bg"] = tfg.value(), tbg.value()
    out["trimap_miou"] = (out["trimap_iou_fg"] + out["trimap_iou_bg"]) / 2
    out["per_class"] = {n: {"iou": v.value()} for n, v in per_class.items()}
    return out


def instance_scores(pred: dict, gt: dict, iou_type: str = "segm") -> dict[str, Any]:
    """Mask (or, with iou_type='bbox', box) AP and AP50 through pycocotools COCOeval; categories
    are matched by name."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _check_same_images(pred, gt)
    g_ids = {c["name"]: c["id"] for c in gt["categories"]}
    p_names = {c["id"]: c["name"] for c in pred["categories"]}
    dets = [{**a, "category_id": g_ids[p_names[a["category_id"]]], "score": float(a.get("score", 1.0))}
            for a in pred["annotations"] if p_names[a["category_id"]] in g_ids]
    for d in dets:
        d.pop("id", None)
        if iou_type == "segm":
            d.pop("bbox", None)  # loadRes recomputes it from the mask
    gt_ann = len(gt["annotations"])
    if not dets or not gt_ann:
        return {"ap": 0.0 if gt_ann else float("nan"), "ap50": 0.0 if gt_ann else float("nan"), "per_class_ap": {}}
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = {**gt, "annotations": [{**a, "iscrowd": a.get("iscrowd", 0)} for a in gt["annotations"]]}
        g.createIndex()
        p = g.loadRes(dets)
        ev = COCOeval(g, p, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for ki, cid in enumerate(ev.params.catIds):
        v = prec[:, :, ki, 0, -1]
        v = v[v > -1]
        per_class[g.cats[cid]["name"]] = float(v.mean()) if v.size else float("nan")
    return {"ap": float(ev.stats[0]), "ap50": float(ev.stats[1]), "per_class_ap": per_class}


def evaluate(pred: dict, gt: dict, trimap_width: int = 3, on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """All scores: iou_fg, iou_bg, miou, trimap_miou (whole image, fg/bg), instance_miou with its counts, ap,
    ap50, and per_class (IoU and AP of the classes either file holds); `matched_by` says how images were paired."""
    pred, how = match_images(pred, gt)
    decoded = (_masks_by_image(pred), _masks_by_image(gt))  # every mask decoded once, for both kinds of score
    sem = semantic_scores(pred, gt, trimap_width, on_image, decoded)
    inst = instance_scores(pred, gt)
    for name, ap in inst.pop("per_class_ap").items():
        sem["per_class"].setdefault(name, {})["ap"] = ap
    present = {c["name"] for data in (pred, gt) for c in data["categories"]
               if any(a["category_id"] == c["id"] for a in data["annotations"])}
    sem["per_class"] = {k: v for k, v in sem["per_class"].items() if k in present}
    return {**sem, **instance_ious(pred, gt, decoded), **inst, "matched_by": how, "images": len(gt["images"])}


def json_safe(obj: Any) -> Any:
    """NaN and inf (e.g. AP with no reference instances) -> None, which JSON can carry."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
