"""Exports of a dataset folder: the standard COCO split tree, and what every export shares (the
deterministic split, linking images, a temp tree swapped in whole under a lock)."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from .errors import UserError
from .io import make_temp_dir, strict_json
from .locks import Busy, clean_stale_temps, lock_file
from .rundir import current_name, image_path

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def parse_split(text: str) -> dict[str, float]:
    """'train=0.8,val=0.1,test=0.1' -> {'train': 0.8, 'val': 0.1, 'test': 0.1}; shares sum to 1."""
    out: dict[str, float] = {}
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\w+)\s*=\s*([0-9]*\.?[0-9]+)\s*", part)
        if not m or m.group(1) not in SPLITS or m.group(1) in out:
            raise UserError(f"--split {text!r}: use NAME=SHARE pairs of {', '.join(SPLITS)}, e.g. train=0.8,val=0.2")
        out[m.group(1)] = float(m.group(2))
    if "train" not in out or abs(sum(out.values()) - 1) > 1e-6:
        raise UserError(f"--split {text!r}: needs a train share, and the shares must sum to 1")
    return out


def _place(key: int) -> float:
    """A key's fixed place in [0, 1): its split never depends on which other images exist."""
    return int(hashlib.sha256(f"instseg-split:{key}".encode()).hexdigest()[:13], 16) / 16**13


def split_counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Images per split for n images: each share's floor, the rest to the largest remainders (ties: in
    SPLITS order), so 20 images at 0.8/0.1/0.1 give 16/2/2. A split with a share keeps at least one image
    while the largest can spare one."""
    names = [s for s in SPLITS if s in shares]
    exact = {s: n * shares[s] for s in names}
    counts = {s: int(exact[s]) for s in names}
    for s in sorted(names, key=lambda s: (-(exact[s] - counts[s]), names.index(s)))[:n - sum(counts.values())]:
        counts[s] += 1
    for s in names:
        if shares[s] > 0 and counts[s] == 0:
            donor = max(names, key=lambda d: counts[d])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[s] += 1
    return counts


def assign_splits(images: list[dict], shares: dict[str, float]) -> dict[str, list[dict]]:
    """Images per split with exact shares (`split_counts`): the images in the order of each seed's fixed
    place in [0, 1) (a hash, so the order never depends on the file order), cut into consecutive runs."""
    names = [s for s in SPLITS if s in shares]
    counts = split_counts(len(images), shares)
    empty = [s for s in names if shares[s] > 0 and not counts[s]]
    if empty:
        log.warning("%d image(s) cannot fill %d splits: %s stay empty", len(images), len(names), ", ".join(empty))
    ranked = sorted(images, key=lambda im: _place(im.get("seed", im["id"])))
    out, at = {}, 0
    for s in names:
        out[s] = ranked[at:at + counts[s]]
        at += counts[s]
    order = {id(im): i for i, im in enumerate(images)}
    return {s: sorted(v, key=lambda im: order[id(im)]) for s, v in out.items()}


def link_or_copy(src: Path, dst: Path, link: bool = True) -> None:
    try:
        if not link:
            raise OSError
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def source_image(root: Path, im: dict) -> Path:
    """A COCO image entry's file in the dataset folder `root`; a one-line error when missing or empty."""
    src = image_path(root, im["file_name"])
    if not src.is_file() or src.stat().st_size == 0:
        raise UserError(f"image {src} is missing or empty; rerun the run to redo it")
    return src


def replace_tree(out: Path, kind: str, is_export: Callable[[set[str]], bool], build: Callable[[Path], None]) -> None:
    """Build an export in a temp folder beside `out` with `build(tmp)` and swap it in whole, under a lock.

    Only an earlier export (`is_export` of its entry names) or an empty folder may be replaced. Trees a
    killed export left are removed first; nothing of an earlier export survives, and a failed export
    leaves the old one as it was."""
    out = Path(out)
    if out.is_file():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        if names and not is_export(names):
            raise UserError(f"--out {out} holds files that are not a {kind} export; give an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with lock_file(out.parent / f".{out.name}.lock", blocking=False):
            for pattern in (f".{out.name}.*.tmp", f".{out.name}.old-*"):
                clean_stale_temps(out.parent, pattern)
            tmp = make_temp_dir(out.parent, f".{out.name}.")
            try:
                build(tmp)
                _swap(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Busy as e:
        raise UserError(f"{out} is being exported by another instseg process (pid {e.holder})") from None


def _swap(new: Path, out: Path) -> None:
    """Put `new` at `out`, replacing an earlier export: two renames, the old tree removed last."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_coco(coco: dict, root: Path, out: Path, shares: dict[str, float], link: bool = True,
                on_image: Callable[[], None] | None = None) -> Path:
    """The standard COCO tree: out/annotations/instances_<split>.json and out/images/<split>/ (hard links
    where possible). Returns out/annotations. `on_image` is called per image written."""

    def build(tmp: Path) -> None:
        by_image: dict[int, list[dict]] = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        (tmp / "annotations").mkdir()
        sources = {im["id"]: source_image(root, im) for im in coco["images"]}  # every file checked first
        for split, images in assign_splits(coco["images"], shares).items():
            (tmp / "images" / split).mkdir(parents=True)
            entries, anns = [], []
            for im in images:
                name = current_name(im["file_name"])
                (tmp / "images" / split / name).parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(sources[im["id"]], tmp / "images" / split / name, link)
                entries.append({**im, "file_name": name})
                anns += by_image.get(im["id"], [])
                if on_image:
                    on_image()
            data = {**{k: v for k, v in coco.items() if k not in ("images", "annotations")},
                    "images": entries, "annotations": anns}
            (tmp / "annotations" / f"instances_{split}.json").write_text(strict_json(data))

    replace_tree(out, "COCO", lambda names: names <= {"annotations", "images"} and "annotations" in names, build)
    return Path(out) / "annotations"
