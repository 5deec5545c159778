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

from .coco import decode_rle, read_coco
from .rundir import RunDir
from .visualize import PALETTE, load_image, load_rgb, overlay

GALLERY_MAX = 240  # instances shown in the gallery (the least confident first); the page says when it samples
EMPTY_MAX = 60  # images without an instance shown
STRIPS_MAX = 4  # seeds whose variant strips are shown
THUMB = 128  # px, the gallery's thumbnail height


def _png(a: np.ndarray, height: int | None = None) -> str:
    im = Image.fromarray(a)
    if height and im.height != height:
        im = im.resize((max(1, round(im.width * height / im.height)), height), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _box(a: np.ndarray, bbox: list[float], colour: np.ndarray) -> np.ndarray:
    """Draw a 1-px COCO [x, y, w, h] box on an image."""
    h, w = a.shape[:2]
    x0, y0 = int(max(0, min(w - 1, bbox[0]))), int(max(0, min(h - 1, bbox[1])))
    x1, y1 = int(max(0, min(w - 1, bbox[0] + bbox[2] - 1))), int(max(0, min(h - 1, bbox[1] + bbox[3] - 1)))
    a[y0, x0:x1 + 1] = a[y1, x0:x1 + 1] = colour
    a[y0:y1 + 1, x0] = a[y0:y1 + 1, x1] = colour
    return a


def _histogram(values: list[float], bins: int, lo: float, hi: float, label: str) -> str:
    """An inline SVG bar chart."""
    if not values or hi <= lo:
        return f"<p>{html.escape(label)}: no values</p>"
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    top, w, h = max(int(counts.max()), 1), 360, 120
    bw = w / bins
    bars = "".join(f'<rect x="{i * bw:.1f}" y="{h - c / top * h:.1f}" width="{bw - 1:.1f}" height="{c / top * h:.1f}">'
                   f"<title>{edges[i]:.3g}-{edges[i + 1]:.3g}: {c}</title></rect>" for i, c in enumerate(counts))
    return (f'<figure><svg width="{w}" height="{h + 16}" role="img" aria-label="{html.escape(label)}">{bars}'
            f'<text x="0" y="{h + 14}">{lo:.3g}</text><text x="{w}" y="{h + 14}" text-anchor="end">{hi:.3g}</text>'
            f"</svg><figcaption>{html.escape(label)} (n={len(values)}, max bin {top})</figcaption></figure>")


def build(run_dir: Path) -> str:
    """The page for a run folder, as a string."""
    run_dir = Path(run_dir)
    data = read_coco(run_dir / "annotations.json", "annotations")
    run = RunDir(run_dir).read_run() or {}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    images = {im["id"]: im for im in data["images"]}
    anns = data["annotations"]
    per_class = {name: sum(a["category_id"] == cid for a in anns) for cid, name in cats.items()}
    with_inst = {a["image_id"] for a in anns}
    empty = [im for im in data["images"] if im["id"] not in with_inst]
    scores = [float(a.get("score", 1.0)) for a in anns]
    areas = [float(a.get("area", 0)) for a in anns]

    order = sorted(range(len(anns)), key=lambda i: (float(anns[i].get("score", 1.0)), anns[i]["id"]))
    shown = order[:GALLERY_MAX]
    cache: dict[int, np.ndarray] = {}
    cards = []
    for i in shown:
        a = anns[i]
        im = images[a["image_id"]]
        if a["image_id"] not in cache:
            cache[a["image_id"]] = load_image(run_dir, im["file_name"])
        colour = PALETTE[(a["category_id"] - 1) % len(PALETTE)]
        pic = _box(overlay(cache[a["image_id"]], [decode_rle(a["segmentation"])]), a["bbox"], colour) \
            if "bbox" in a else overlay(cache[a["image_id"]], [decode_rle(a["segmentation"])])
        name = cats[a["category_id"]]
        cards.append(f'<figure class="inst" data-class="{html.escape(name)}"><img src="{_png(pic, THUMB)}" '
                     f'alt="{html.escape(name)}"><figcaption>{html.escape(name)} {float(a.get("score", 1.0)):.3f}'
                     f' <small>{html.escape(str(im["file_name"]))}</small></figcaption></figure>')
    empties = [f'<figure><img src="{_png(load_image(run_dir, im["file_name"]), THUMB // 2)}" alt="empty">'
               f'<figcaption>{html.escape(str(im["file_name"]))}</figcaption></figure>' for im in empty[:EMPTY_MAX]]
    strips = []
    rd = RunDir(run_dir)
    for im in data["images"][:STRIPS_MAX]:
        seed = im.get("seed")
        if isinstance(seed, int) and rd.path("variants", seed).is_file():
            strips.append(f'<figure><img src="{_png(load_rgb(rd.path("variants", seed)), THUMB // 2)}" '
                          f'alt="variants of seed {seed}"><figcaption>seed {seed}</figcaption></figure>')

    info, lic = data.get("info") or {}, (data.get("licenses") or [{}])[0]
    sampled = (f"The gallery shows the {len(shown)} least confident of {len(anns)} instances."
               if len(shown) < len(anns) else f"The gallery shows all {len(anns)} instances, least confident first.")
    counts = {"images": len(images), "instances": len(anns), "empty": len(empty), "per_class": per_class}
    rows = "".join(f'<tr><td>{html.escape(n)}</td><td class="n" data-class-count="{html.escape(n)}">{c}</td></tr>'
                   for n, c in per_class.items())
    options = "".join(f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in per_class)
    warn = (f'<p class="warn"><b>Non-commercial.</b> {html.escape(info["licence_note"])}</p>'
            if info.get("licence_note") else "")
    command = " ".join(map(str, run.get("command") or []))
    return _PAGE.format(
        title=html.escape(f"instseg report: {info.get('generator', run_dir.name)}"), warn=warn,
        counts_json=html.escape(json.dumps(counts)), n_images=len(images), n_inst=len(anns), n_empty=len(empty),
        rows=rows, options=options, sampled=html.escape(sampled), cards="".join(cards),
        hist_score=_histogram(scores, 20, 0.0, max(1.0, max(scores, default=1.0)), "instance score"),
        hist_area=_histogram(areas, 20, 0.0, max(areas, default=1.0), "instance area (pixels)"),
        empties="".join(empties) or "<p>none</p>",
        empty_note=html.escape(f"showing {min(len(empty), EMPTY_MAX)} of {len(empty)}"),
        strips="".join(strips) or "<p>no variant strips in this folder</p>",
        provenance="".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_text(v))}</td></tr>"
                           for k, v in {**info, "licence": lic.get("name", info.get("licence", "?")),
                                        "command": command}.items()))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def write(run_dir: Path, out: Path) -> Path:
    from .io import atomic_write_bytes

    atomic_write_bytes(out, build(run_dir).encode())
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
svg rect {{ fill: #3b6ea8; }} .pager button {{ margin-right: 4px; }}
</style></head><body>
<h1>{title}</h1>
{warn}
<script type="application/json" id="counts">{counts_json}</script>
<p><span id="n-images">{n_images}</span> images, <span id="n-instances">{n_inst}</span> instances,
<span id="n-empty">{n_empty}</span> images with no instance.</p>
<h2>Classes</h2><table><tr><th>class</th><th>instances</th></tr>{rows}</table>
<div class="grid">{hist_score}{hist_area}</div>
<h2>Gallery</h2>
<p>{sampled} <label>Class: <select id="cls"><option value="">all</option>{options}</select></label></p>
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
    for (var i = 0; i < pages; i++) {{
      var b = document.createElement("button");
      b.textContent = String(i + 1);
      b.disabled = i === page;
      b.onclick = (function (k) {{ return function () {{ page = k; draw(); }}; }})(i);
      p.appendChild(b);
    }}
  }}
  sel.onchange = function () {{ page = 0; draw(); }};
  draw();
}})();
</script>
</body></html>
"""
