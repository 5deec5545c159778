"""`instseg report`: one self-contained HTML page to look at a run (no server, no network, no files beside it)."""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .card import SCORE_MEANING
from .coco import decode_rle, read_coco
from .evaluate import GOOD_IOU, match_images, match_masks
from .rundir import RunDir
from .errors import UserError
from .visualize import load_image, load_rgb

GALLERY_MAX = 240  # instances shown in the gallery (the least confident first); the page says when it samples
EMPTY_MAX = 60  # images without an instance shown
STRIPS_MAX = 4  # seeds whose variant strips are shown
THUMB = 128  # px, the gallery's thumbnail height
VIEWS_MAX = 120  # images shown whole, with all their instances (the worst first)
STATUS_COLOURS = {"matched": (60, 180, 75), "wrong class": (245, 130, 48), "poor mask": (255, 225, 25),
                  "false": (230, 25, 75), "missed": (255, 255, 255)}
STATUS_MEANING = {"matched": f"IoU >= {GOOD_IOU} with a reference object of its class",
                  "wrong class": f"IoU >= {GOOD_IOU} with a reference object of another class",
                  "poor mask": f"paired with a reference object, IoU under {GOOD_IOU}",
                  "false": "overlaps no reference object",
                  "missed": "a reference object no mask overlaps (drawn in white)"}


MASK_COLOUR = np.array([0, 255, 255], np.uint8)  # cyan: no box colour is near it
BOX_COLOURS = np.array([[230, 25, 75], [255, 225, 25], [245, 130, 48], [145, 30, 180], [60, 180, 75],
                        [240, 50, 230], [170, 110, 40], [0, 0, 128]], np.uint8)  # one per class, far from cyan


def _png(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _resized(a: np.ndarray, height: int) -> np.ndarray:
    """An image scaled to `height` px: pixels kept sharp when enlarged, averaged when shrunk."""
    if a.shape[0] == height:
        return a
    w = max(1, round(a.shape[1] * height / a.shape[0]))
    im = Image.fromarray(a)
    return np.asarray(im.resize((w, height), Image.NEAREST if height > a.shape[0] else Image.BILINEAR))


def _box(a: np.ndarray, bbox: list[float], colour: np.ndarray, scale: float) -> np.ndarray:
    """Draw a 2-px COCO [x, y, w, h] box (in image pixels, drawn at `scale`) on a thumbnail."""
    h, w = a.shape[:2]
    x0, y0 = int(np.clip(bbox[0] * scale, 0, w - 1)), int(np.clip(bbox[1] * scale, 0, h - 1))
    x1 = int(np.clip((bbox[0] + bbox[2]) * scale - 1, 0, w - 1))
    y1 = int(np.clip((bbox[1] + bbox[3]) * scale - 1, 0, h - 1))
    for t in range(2):
        a[min(y0 + t, h - 1), x0:x1 + 1] = a[max(y1 - t, 0), x0:x1 + 1] = colour
        a[y0:y1 + 1, min(x0 + t, w - 1)] = a[y0:y1 + 1, max(x1 - t, 0)] = colour
    return a


def _mask_overlay(thumb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A light cyan fill and a 1-px cyan outline of `mask` (already at the thumbnail's size)."""
    out = thumb.astype(np.float32).copy()
    out[mask] = 0.7 * out[mask] + 0.3 * MASK_COLOUR
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out[mask & ~inner] = MASK_COLOUR
    return out.astype(np.uint8)


def _histogram(values: list[float], bins: int, lo: float, hi: float, label: str) -> str:
    """An inline SVG bar chart with labelled axes."""
    if not values or hi <= lo:
        return f"<p>{html.escape(label)}: no values</p>"
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top, w, h, left, bottom = max(int(counts.max()), 1), 360, 120, 36, 30
    bw = w / bins
    bars = "".join(f'<rect x="{left + i * bw:.1f}" y="{h - c / top * h:.1f}" width="{bw - 1:.1f}" '
                   f'height="{c / top * h:.1f}"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    yticks = "".join(f'<text x="{left - 4}" y="{h - v / top * h + 4:.1f}" text-anchor="end">{v}</text>'
                     f'<line x1="{left - 2}" x2="{left}" y1="{h - v / top * h:.1f}" y2="{h - v / top * h:.1f}"/>'
                     for v in sorted({0, top // 2, top}))
    step = _nice_step((hi - lo) / 4)
    xticks = "".join(f'<text x="{left + (v - lo) / (hi - lo) * w:.1f}" y="{h + 14}" text-anchor="middle">{v:g}</text>'
                     for v in np.arange(np.ceil(lo / step) * step, hi + step / 1e6, step))
    axes = (f'<line x1="{left}" x2="{left}" y1="0" y2="{h}"/><line x1="{left}" x2="{left + w}" y1="{h}" y2="{h}"/>'
            f'<text x="{left + w / 2}" y="{h + bottom - 2}" text-anchor="middle">{html.escape(label)}</text>'
            f'<text x="10" y="{h / 2}" text-anchor="middle" transform="rotate(-90 10 {h / 2})">count</text>')
    return (f'<figure><svg width="{left + w + 20}" height="{h + bottom + 10}" role="img" '
            f'aria-label="{html.escape(label)}"><g transform="translate(0 10)">{bars}{axes}{yticks}{xticks}</g></svg>'
            f"<figcaption>{html.escape(label)} (n={len(values)})</figcaption></figure>")


def _nice_step(raw: float) -> float:
    """The round tick step (1, 2 or 5 times a power of ten) nearest above `raw`."""
    if raw <= 0:
        return 1.0
    p = 10 ** np.floor(np.log10(raw))
    return float(next(m * p for m in (1, 2, 5, 10) if m * p >= raw))


def _outline(a: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """A 1-px outline of `mask` (at the picture's size) in `colour`, and a light fill."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out = a.astype(np.float32)
    out[mask] = 0.8 * out[mask] + 0.2 * np.array(colour)
    out[mask & ~inner] = colour
    return out.astype(np.uint8)


def _statuses(anns: list[dict], refs: list[dict], classes: dict[int, str], ref_classes: dict[int, str]
              ) -> tuple[list[tuple[str, float]], list[int]]:
    """Each prediction's status and IoU (evaluate.match_masks), and the reference objects no mask overlaps."""
    got = match_masks([decode_rle(r["segmentation"]) for r in refs], [decode_rle(a["segmentation"]) for a in anns])
    status: list[tuple[str, float]] = [("false", 0.0)] * len(anns)
    for i, (j, iou) in got.items():
        same = classes.get(anns[j]["category_id"]) == ref_classes.get(refs[i]["category_id"])
        status[j] = ("poor mask" if iou < GOOD_IOU else "matched" if same else "wrong class", iou)
    return status, [i for i in range(len(refs)) if i not in got]


def _image_view(run_dir: Path, im: dict, anns: list[dict], classes: dict[int, str], refs: list[dict] | None,
                ref_classes: dict[int, str]) -> tuple[str, dict[str, int], float]:
    """One image whole with all its instances (with a reference: each marked by status, missed objects drawn);
    returns the HTML, the status counts and how bad the image is (errors, for sorting)."""
    image = load_image(run_dir, im["file_name"])
    height = max(THUMB, min(4 * THUMB, image.shape[0]))
    pic = _resized(image, height) if image.shape[0] != height else image.copy()
    del image
    size = pic.shape[1::-1]
    counts = {k: 0 for k in STATUS_COLOURS}
    items = []
    if refs is None:
        for a in anns:
            colour = tuple(int(c) for c in BOX_COLOURS[(a["category_id"] - 1) % len(BOX_COLOURS)])
            m = np.asarray(Image.fromarray(decode_rle(a["segmentation"])).resize(size, Image.NEAREST))
            pic = _outline(pic, m, colour)
            items.append((colour, f'{classes.get(a["category_id"], "?")} {_number(a.get("score"), 1.0):.2f}'))
        bad = 0.0
    else:
        status, missed = _statuses(anns, refs, classes, ref_classes)
        for a, (st, iou) in zip(anns, status):
            m = np.asarray(Image.fromarray(decode_rle(a["segmentation"])).resize(size, Image.NEAREST))
            pic = _outline(pic, m, STATUS_COLOURS[st])
            counts[st] += 1
            items.append((STATUS_COLOURS[st], f'{classes.get(a["category_id"], "?")} {_number(a.get("score"), 1.0):.2f}'
                          f' {st}' + (f" (IoU {iou:.2f})" if st != "false" else "")))
        for i in missed:
            m = np.asarray(Image.fromarray(decode_rle(refs[i]["segmentation"])).resize(size, Image.NEAREST))
            pic = _outline(pic, m, STATUS_COLOURS["missed"])
            counts["missed"] += 1
            items.append((STATUS_COLOURS["missed"], f'{ref_classes.get(refs[i]["category_id"], "?")} missed'))
        bad = counts["false"] + counts["missed"] + counts["wrong class"] + counts["poor mask"]
    lines = "".join(f'<li><span class="sw" style="background:rgb{c}"></span>{html.escape(t)}</li>' for c, t in items)
    view = (f'<figure class="view" data-bad="{bad:g}" data-name="{html.escape(str(im["file_name"]))}">'
            f'<img src="{_png(pic)}" alt="{html.escape(str(im["file_name"]))}"><figcaption>'
            f'{html.escape(str(im["file_name"]))}<ul>{lines or "<li>no instance</li>"}</ul></figcaption></figure>')
    return view, counts, bad


def _number(v: Any, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else default


def _image_cards(run_dir: Path, im: dict, anns: list[dict], classes: dict[int, str], real: bool) -> dict[int, str]:
    """The gallery cards of one image's instances (annotation id -> HTML): its thumbnail beside the overlay.

    One image is decoded at a time and dropped after, so a folder of camera photos stays in memory budget."""
    image = load_image(run_dir, im["file_name"])
    if image.shape[:2] != (im["height"], im["width"]):
        raise UserError(f"image {im['file_name']} is {image.shape[1]}x{image.shape[0]} but annotations.json says "
                        f"{im['width']}x{im['height']}; rerun the command that made {run_dir} to redo it")
    scale = THUMB / image.shape[0]
    thumb = _resized(image, THUMB)
    del image
    plain = _png(thumb)
    extra = ""
    if real:
        psnr = im.get("projection_psnr")
        extra = (f" <small>PSNR {psnr:.1f} dB</small>" if isinstance(psnr, (int, float)) else "") + \
            (' <small class="low">low fidelity</small>' if im.get("low_fidelity") is True else "")
    out = {}
    for a in anns:
        mask = np.asarray(Image.fromarray(decode_rle(a["segmentation"])).resize(thumb.shape[1::-1], Image.NEAREST))
        pic = _mask_overlay(thumb, mask)
        if "bbox" in a:
            pic = _box(pic, a["bbox"], BOX_COLOURS[(a["category_id"] - 1) % len(BOX_COLOURS)], scale)
        name = classes[a["category_id"]]
        out[a["id"]] = (f'<figure class="inst" data-class="{html.escape(name)}"><div class="pair">'
                        f'<img src="{plain}" alt="image"><img src="{_png(pic)}" alt="{html.escape(name)} mask">'
                        f'</div><figcaption>{html.escape(name)} {_number(a.get("score"), 1.0):.3f}{extra}'
                        f' <small>{html.escape(str(im["file_name"]))}</small></figcaption></figure>')
    return out


def _legend(classes: dict[int, str]) -> str:
    swatch = '<span class="sw" style="background:rgb({},{},{})"></span>'
    boxes = "".join(f"<li>{swatch.format(*BOX_COLOURS[(cid - 1) % len(BOX_COLOURS)])}{html.escape(n)}: "
                    "the detector's box</li>" for cid, n in classes.items())
    return (f'<ul class="legend"><li>{swatch.format(*MASK_COLOUR)}the mask: outline and light fill</li>{boxes}</ul>')


def build(run_dir: Path, gt: Path | None = None) -> str:
    """The page for a run folder, as a string; with `gt` (a COCO file of the same images: exact labels, `toy
    labels`, your own masks), every instance is marked against it and missed objects are drawn."""
    run_dir = Path(run_dir)
    rd = RunDir(run_dir)
    data = rd.read_dataset()
    ref = None
    if gt is not None:
        ref = read_coco(gt, "--gt")
        data, matched_by = match_images(data, ref)
    run = rd.read_run() or {}
    classes = {c["id"]: c["name"] for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    anns = data["annotations"]
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    licences = data.get("licenses") if isinstance(data.get("licenses"), list) else []
    lic = licences[0] if licences and isinstance(licences[0], dict) else {}
    real = isinstance((run.get("config") or {}).get("label"), dict) or "real_images" in info
    per_class = {name: sum(a["category_id"] == cid for a in anns) for cid, name in classes.items()}
    with_inst = {a["image_id"] for a in anns}
    empty = [im for im in data["images"] if im["id"] not in with_inst]
    scores = [_number(a.get("score"), 1.0) for a in anns]
    areas = [_number(a.get("area"), 0.0) for a in anns]

    order = sorted(range(len(anns)), key=lambda i: (scores[i], anns[i]["id"]))
    shown = [anns[i] for i in order[:GALLERY_MAX]]
    by_image: dict[int, list[dict]] = {}
    for a in shown:
        by_image.setdefault(a["image_id"], []).append(a)
    made: dict[int, str] = {}
    for iid, its in by_image.items():
        made.update(_image_cards(run_dir, images[iid], its, classes, real))
    cards = [made[a["id"]] for a in shown]
    empties = [f'<figure><img src="{_png(_resized(load_image(run_dir, im["file_name"]), THUMB // 2))}" alt="empty">'
               f'<figcaption>{html.escape(str(im["file_name"]))}</figcaption></figure>' for im in empty[:EMPTY_MAX]]
    strips = []
    for im in data["images"][:STRIPS_MAX]:
        seed = im.get("seed")
        path = rd.preview_file("variants", seed) if isinstance(seed, int) and not isinstance(seed, bool) else None
        if path is not None:
            strips.append(f'<figure><img src="{_png(_resized(load_rgb(path), THUMB // 2))}" '
                          f'alt="variants of seed {seed}"><figcaption>seed {seed}</figcaption></figure>')

    ref_classes = {c["id"]: c["name"] for c in ref["categories"]} if ref else {}
    ref_by_image: dict[int, list[dict]] = {}
    for r in (ref or {}).get("annotations", []):
        ref_by_image.setdefault(r["image_id"], []).append(r)
    anns_by_image: dict[int, list[dict]] = {}
    for a in anns:
        anns_by_image.setdefault(a["image_id"], []).append(a)
    views, totals = [], {k: 0 for k in STATUS_COLOURS}
    for im in data["images"]:
        its = anns_by_image.get(im["id"], [])
        if ref is None and len(views) >= VIEWS_MAX:
            break
        view, counts, bad = _image_view(run_dir, im, its, classes, None if ref is None else
                                        ref_by_image.get(im["id"], []), ref_classes)
        views.append((bad, view))
        totals = {k: totals[k] + counts[k] for k in totals}
    views.sort(key=lambda v: -v[0])
    if ref is not None:
        n_ref = len(ref["annotations"])
        good = totals["matched"] + totals["wrong class"]
        verdict = (f"<p>Against {html.escape(Path(gt).name)} (images matched by {html.escape(matched_by)}): "
                   f'<span id="n-ref">{n_ref}</span> reference objects; <span id="n-matched">{good}</span> matched '
                   f'(IoU >= {GOOD_IOU}; <span id="n-wrong-class">{totals["wrong class"]}</span> of them with the '
                   f'wrong class), <span id="n-poor">{totals["poor mask"]}</span> poor masks, '
                   f'<span id="n-missed">{totals["missed"]}</span> missed; <span id="n-false">{totals["false"]}'
                   f"</span> false masks. <code>instseg eval</code> counts the same: its matched {good}, missed "
                   f"{totals['poor mask'] + totals['missed']} (poor masks and missed objects), false "
                   f"{totals['false']}.</p>")
    else:
        verdict = ("<p>No reference given: each image shows its instances with their class and score. Give "
                   "<code>--gt FILE</code> (exact labels, <code>instseg toy labels</code> or your own COCO masks) "
                   "to mark each as matched, wrong class, poor or false, and to draw missed objects.</p>")
    status_legend = "" if ref is None else "".join(
        f'<li><span class="sw" style="background:rgb{c}"></span>{html.escape(k)}: {html.escape(STATUS_MEANING[k])}</li>'
        for k, c in STATUS_COLOURS.items())
    shown_views = views[:VIEWS_MAX]
    views_note = (f"{len(shown_views)} of {len(views)} images, the worst first" if ref is not None else
                  f"{len(shown_views)} images") + (" (sort below)" if shown_views else "")

    sampled = (f"The gallery shows the {len(shown)} least confident of {len(anns)} instances."
               if len(shown) < len(anns) else f"The gallery shows all {len(anns)} instances, least confident first.")
    counts = {"images": len(images), "instances": len(anns), "empty": len(empty), "per_class": per_class}
    rows = "".join(f'<tr><td>{html.escape(n)}</td><td class="n" data-class-count="{html.escape(n)}">{c}</td></tr>'
                   for n, c in per_class.items())
    options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in per_class)
    note = info.get("licence_note")
    warn = f'<p class="warn"><b>Non-commercial.</b> {html.escape(note)}</p>' if isinstance(note, str) and note else ""
    command = run.get("command")
    command = " ".join(map(str, command)) if isinstance(command, list) else str(command or "")
    generator = str(info.get("generator") or run_dir.name)
    if real:
        title = f"instseg report: your photos, labelled with {generator}"
        intro = ("<p>The images are your own photos. Only the masks come from the generator: each photo was "
                 "projected into it, and its style variants were clustered. A card gives the projection's PSNR; "
                 "below the run's threshold a photo is marked low fidelity (its masks deserve less trust).</p>")
    else:
        title, intro = f"instseg report: {generator}", ""
    empty_note = html.escape(f"showing {min(len(empty), EMPTY_MAX)} of {len(empty)}") if empty else "none"
    return _PAGE.format(
        title=html.escape(title), intro=intro, warn=warn, score_meaning=html.escape(SCORE_MEANING),
        verdict=verdict, status_legend=status_legend, views="".join(v for _, v in shown_views),
        views_note=html.escape(views_note),
        counts_json=json.dumps(counts).replace("<", "\\u003c"), n_images=len(images), n_inst=len(anns),
        n_empty=len(empty), rows=rows, options=options, sampled=html.escape(sampled), cards="".join(cards),
        legend=_legend(classes),
        hist_score=_histogram(scores, 20, 0.0, max(1.0, max(scores, default=1.0)), "instance score"),
        hist_area=_histogram(areas, 20, 0.0, max(areas, default=1.0), "instance area (pixels)"),
        empties="".join(empties), empty_note=empty_note,
        strips="".join(strips) or "<p>no variant strips in this folder</p>",
        provenance="".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
                           for k, v in {**info, "licence": lic.get("name", info.get("licence", "?")),
                                        "command": command}.items()))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def write(run_dir: Path, out: Path, gt: Path | None = None) -> Path:
    """Write the page to `out` (refused when `out` is one of the run folder's own files)."""
    from .io import atomic_write_bytes

    RunDir(run_dir).check_own_file(out)
    page = build(run_dir, gt)
    atomic_write_bytes(out, page.encode("utf-8", "backslashreplace"))  # undecodable file names stay visible
    return Path(out)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
.warn {{ background: #fff3cd; border: 1px solid #e0c060; padding: .6em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; }} figure img {{ image-rendering: pixelated; display: block; }}
figcaption {{ font-size: 12px; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }} td.n {{ text-align: right; }}
svg rect {{ fill: #3b6ea8; }} svg line {{ stroke: #555; }} svg text {{ font-size: 11px; fill: #333; }}
.view figcaption ul {{ list-style: none; padding: 0; margin: 2px 0; }} .view {{ max-width: 520px; }}
.pager button {{ margin-right: 4px; }} .pair {{ display: flex; gap: 2px; }} .low {{ color: #b00; }}
.legend {{ list-style: none; padding: 0; display: flex; gap: 1.2em; flex-wrap: wrap; }}
.sw {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px;
       border: 1px solid #888; }}
</style></head><body>
<h1>{title}</h1>
{warn}{intro}
<script type="application/json" id="counts">{counts_json}</script>
<p><span id="n-images">{n_images}</span> images, <span id="n-instances">{n_inst}</span> instances,
<span id="n-empty">{n_empty}</span> images with no instance.</p>
<h2>Classes</h2><table><tr><th>class</th><th>instances</th></tr>{rows}</table>
<p><b>Score</b> of an instance: {score_meaning}</p>
<div class="grid">{hist_score}{hist_area}</div>
<h2>Images</h2>
{verdict}<ul class="legend">{status_legend}</ul>
<p>{views_note}. <label>Sort: <select id="sort"><option value="bad">worst first</option>
<option value="name">by name</option></select></label></p>
<div class="grid" id="views">{views}</div>
<h2>Gallery</h2>
<p>{sampled} Each card shows the image, then its mask over it.</p>{legend}
<p><label>Class: <select id="cls"><option value="">all</option>{options}</select></label></p>
<div class="pager" id="pager"></div>
<div class="grid" id="gallery">{cards}</div>
<h2>Images with no instance</h2><p>{empty_note}</p><div class="grid">{empties}</div>
<h2>Style variants</h2><div class="grid">{strips}</div>
<h2>Provenance</h2><table>{provenance}</table>
<script>
(function () {{
  var per = 60, page = 0, sel = document.getElementById("cls");
  var cards = Array.prototype.slice.call(document.querySelectorAll("#gallery .inst"));
  function shown() {{ return cards.filter(function (c) {{ return !sel.value || c.dataset.class === sel.value; }}); }}
  function draw() {{
    var s = shown(), pages = Math.max(1, Math.ceil(s.length / per));
    page = Math.min(page, pages - 1);
    cards.forEach(function (c) {{ c.style.display = "none"; }});
    s.slice(page * per, (page + 1) * per).forEach(function (c) {{ c.style.display = ""; }});
    var p = document.getElementById("pager");
    p.textContent = "";
    for (var i = 0; pages > 1 && i < pages; i++) {{
      var b = document.createElement("button");
      b.textContent = String(i + 1);
      b.disabled = i === page;
      b.onclick = (function (k) {{ return function () {{ page = k; draw(); }}; }})(i);
      p.appendChild(b);
    }}
  }}
  sel.onchange = function () {{ page = 0; draw(); }};
  var sortSel = document.getElementById("sort"), box = document.getElementById("views");
  sortSel.onchange = function () {{
    var vs = Array.prototype.slice.call(box.querySelectorAll(".view"));
    vs.sort(function (a, b) {{
      if (sortSel.value === "name") {{ return a.dataset.name < b.dataset.name ? -1 : a.dataset.name > b.dataset.name ? 1 : 0; }}
      return Number(b.dataset.bad) - Number(a.dataset.bad);
    }});
    vs.forEach(function (v) {{ box.appendChild(v); }});
  }};
  var counts = JSON.parse(document.getElementById("counts").textContent);
  document.body.setAttribute("data-instances", String(counts.instances));
  draw();
}})();
</script>
</body></html>
"""
