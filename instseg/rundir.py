"""The run folder: its layout, the record format (`Encoded`, `record_bytes`), run.json, the id rules, the
writer's lock and the assembly of annotations.json. Everyone else asks this module where things are.

Layout of DIR:
  run.json            config, generator provenance, seeds, config identity
  images/<seed>.png   source images (COCO file_name "<seed>.png", relative to images/ as COCO readers
                      expect; image id seed + 1)
  parts/<seed>.png    whole-image cluster map
  variants/<seed>.png a strip of style variants
  records/<seed>.json the seed's COCO image entry and annotations; written last, so it marks the seed done
  annotations.json    assembled from the records when a run ends
  .lock               held (flock) by the one process writing the folder
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from . import __version__, coco
from .errors import UserError, short
from .card import card
from .io import atomic_path, atomic_save_png, atomic_write_bytes, atomic_write_json, strict_json
from .locks import Busy, clean_stale_temps, lock_file

log = logging.getLogger(__name__)
SUBDIRS = ("images", "parts", "variants", "records")


def image_id(seed: int) -> int:
    """COCO image id of a seed (ids start at 1; seed 0 is a valid seed)."""
    return seed + 1


IMAGES = "images"  # the COCO image root of a run folder: file_names are relative to it
_LEGACY_PREFIX = IMAGES + "/"  # runs made before that named files relative to the run folder


PREVIEW_LEVEL = 1  # PNG zlib level of the cluster map and variant strip: speed first


def record_bytes(entry: dict, anns: list[dict], cid: str) -> bytes:
    """A seed's record file: its image entry, annotations and the config identity it was made with."""
    return strict_json({"image": entry, "annotations": anns, "config_id": cid}, indent=1).encode()


@dataclass
class Encoded:
    """One seed, ready to write: the image, cluster map and variant strip as PNG bytes, and its record."""

    seed: int
    image: bytes
    parts: bytes
    variants: bytes
    record: bytes
    settings: dict


def image_file(seed: int) -> str:
    """COCO file_name of a seed's image, relative to the run's images/ folder."""
    return f"{seed}.png"


def current_name(file_name: str) -> str:
    """A file_name as this version writes it (a legacy 'images/<seed>.png' loses its prefix)."""
    return file_name[len(_LEGACY_PREFIX):] if isinstance(file_name, str) and file_name.startswith(_LEGACY_PREFIX) \
        else file_name


def image_path(root: str | os.PathLike, file_name: str) -> Path:
    """Where a COCO image of the dataset folder `root` lies: root/images/<file_name>, never outside it."""
    return check_inside(Path(root) / IMAGES, current_name(file_name))


def check_inside(root: Path, relative: str) -> Path:
    """`root`/`relative` for a plain relative name: no absolute path, no '..' or empty part, no backslash,
    and no symbolic link on the way below `root` (whatever it would resolve to)."""
    root = Path(root)
    parts = relative.split("/") if isinstance(relative, str) else []
    if not relative or any(p in ("", ".", "..") for p in parts) or "\\" in relative or "\0" in relative:
        raise UserError(f"file_name {short(relative)} is not a plain relative path inside {root}; refusing it")
    path = refuse_link(root)
    for p in parts:
        path = refuse_link(path / p)
    return path


def refuse_link(path: Path) -> Path:
    """`path`, unless it is a symbolic link: nothing of a dataset is read through one."""
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; instseg reads no file of a dataset through a link")
    return path


class RunDir:
    """One run folder. Writers take `lock()` first; readers need no lock."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.settings_recorded = False

    # layout -----------------------------------------------------------------------------
    def path(self, sub: str, seed: int) -> Path:
        ext = "json" if sub == "records" else "png"
        return self.root / sub / f"{seed}.{ext}"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations.json"

    def prepare(self) -> None:
        """Create the folders; a one-line error when `root` cannot be written, is not ours, or links out."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.check_no_links()
            self.check_ours()
            for sub in SUBDIRS:
                (self.root / sub).mkdir(exist_ok=True)
            with atomic_path(self.root / ".write-test") as tmp:
                tmp.write_bytes(b"")
            (self.root / ".write-test").unlink()
        except OSError as e:
            raise UserError(f"cannot write to --out {self.root}: {e.strerror or e}") from None

    def check_no_links(self) -> None:
        """Refuse subfolders that are symbolic links: nothing is read or written through a link out of the folder."""
        for sub in SUBDIRS:
            if (self.root / sub).is_symlink():
                raise UserError(f"{self.root / sub} is a symbolic link; instseg uses only real folders inside a run")

    def read_dataset(self) -> dict:
        """annotations.json, checked, for a command that reads the folder (no link inside it is followed)."""
        from .coco import read_coco

        self.check_no_links()
        for name in ("annotations.json", "run.json"):
            refuse_link(self.root / name)
        return read_coco(self.annotations, "annotations")

    def preview_file(self, sub: str, seed: int) -> Path | None:
        """A seed's cluster map or variant strip for reading: None when absent; a link is refused."""
        path = refuse_link(self.path(sub, seed))
        return path if path.is_file() else None

    def check_own_file(self, out: str | os.PathLike, flag: str = "--out") -> None:
        """Refuse an output path that is one of this folder's own files (its dataset, records, images...)."""
        out, root = Path(out).resolve(), self.root.resolve()
        if out.parent == root and out.name in ("run.json", "annotations.json", "README.md", ".lock"):
            raise UserError(f"{flag} {out} is this dataset's own {out.name}; write somewhere else")
        if any(root / sub in out.parents for sub in (*SUBDIRS, "yolo", "coco")):
            raise UserError(f"{flag} {out} lies inside this dataset's own {out.relative_to(root).parts[0]}/; "
                            "write somewhere else")

    def check_ours(self) -> None:
        """Refuse a folder holding a dataset that instseg did not write (its run.json, or records, say so)."""
        present = [n for n in ("run.json", "annotations.json", "images", "records")
                   if (self.root / n).is_symlink() or (self.root / n).is_file()
                   or ((self.root / n).is_dir() and any((self.root / n).iterdir()))]
        if not present or self.read_run() is not None or self.record_ids() - {None}:
            return
        raise UserError(f"{self.root} holds {', '.join(present)} that instseg did not write (no instseg run.json "
                        "or records); use a new or empty --out")

    # lock -------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock; a second writer gets a one-line refusal at once."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with lock_file(self.root / ".lock", blocking=False):
                yield
        except Busy as e:
            raise UserError(f"{self.root} is being written by another instseg process (pid {e.holder}); "
                            "wait for it to finish or use another --out") from None

    def clean_stale_temps(self) -> int:
        """Remove temp files a killed writer left (call with the lock held: no writer is active)."""
        return sum(clean_stale_temps(folder) for folder in [self.root, *(self.root / sub for sub in SUBDIRS)]
                   if folder.is_dir() and not folder.is_symlink())

    # run.json ---------------------------------------------------------------------------
    def read_run(self) -> dict | None:
        """run.json as a dict; None when missing or unreadable (the caller decides)."""
        try:
            data = json.loads(self.run_json.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("config"), dict) else None

    def begin(self, cid: str, describe_diff: Callable[[dict], list[str]]) -> list[int]:
        """Check that the folder holds nothing of another config; returns the seeds run.json lists.

        `describe_diff(old_run_json)` names the fields that differ from ours. A run.json with no
        records behind it never blocks: an aborted start must not lock out the corrected command.
        """
        ids = self.record_ids()
        if not ids:
            return []
        old = self.read_run()
        if old is None and self.run_json.exists():
            raise UserError(f"{self.run_json} is unreadable and {self.root} holds records; use another --out")
        diff = describe_diff(old) if old is not None else []
        if diff:
            raise UserError(f"{self.root} holds a run with a different config ({', '.join(diff)}); use another --out")
        if ids - {cid, None}:
            raise UserError(f"{self.root} holds records made with a different config; use another --out")
        if None in ids and old is None:
            raise UserError(f"{self.root} holds records without a config identity and no run.json; use another --out")
        seeds = old.get("seeds", []) if old else []
        return [s for s in seeds if isinstance(s, int)] if isinstance(seeds, list) else []

    def write_run(self, info: dict) -> None:
        atomic_write_json(self.run_json, info)

    def record_settings(self, settings: dict) -> None:
        """Add to run.json the settings the method actually ran with (a baseline's differ from the config's)."""
        info = self.read_run()
        if info is not None:
            atomic_write_json(self.run_json, {**info, "method_settings": settings})
        self.settings_recorded = True

    # records ----------------------------------------------------------------------------
    def record_ids(self) -> set[str | None]:
        """The config identities found in the records (None for records that carry none)."""
        ids: set[str | None] = set()
        folder = self.root / "records"
        if not folder.is_dir():
            return ids
        for p in folder.glob("*.json"):
            rec = _read_json(p)
            if isinstance(rec, dict):
                ids.add(rec.get("config_id"))
        return ids

    def record(self, seed: int) -> dict | None:
        """A seed's record, or None when missing, truncated or malformed."""
        path = self.path("records", seed)
        rec = None if path.is_symlink() else _read_json(path)
        if not (isinstance(rec, dict) and isinstance(rec.get("image"), dict) and isinstance(rec.get("annotations"), list)):
            return None
        return rec

    def done(self, seed: int, cid: str | None = None) -> bool:
        """A seed is done when its record is valid (and of config `cid`) and its PNGs are regular files
        that decode, the image at the size its record gives."""
        rec = self.record(seed)
        if rec is None or (cid is not None and rec.get("config_id", cid) != cid):
            return False
        size = (rec["image"].get("width"), rec["image"].get("height"))
        try:
            image = image_path(self.root, rec["image"].get("file_name"))
        except UserError:
            return False
        return _decodes(image, size) and _decodes(self.path("parts", seed)) and _decodes(self.path("variants", seed))

    def write_encoded(self, enc: Encoded) -> None:
        """Images first, the record last: a record's presence marks the seed as complete."""
        for folder, data in (("images", enc.image), ("parts", enc.parts), ("variants", enc.variants),
                             ("records", enc.record)):
            atomic_write_bytes(self.path(folder, enc.seed), data)

    def write_record(self, seed: int, entry: dict, parts: np.ndarray, preview: np.ndarray, anns: list[dict],
                     cid: str) -> None:
        """The previews, then the record (its image is in place already): the record marks the seed done."""
        atomic_save_png(self.path("parts", seed), parts.astype(np.uint8), PREVIEW_LEVEL)
        atomic_save_png(self.path("variants", seed), preview, PREVIEW_LEVEL)
        atomic_write_bytes(self.path("records", seed), record_bytes(entry, anns, cid))

    # assembly ---------------------------------------------------------------------------
    def assemble(self, seeds: Iterable[int], categories: list[str], description: str,
                 licence: dict | None = None, info: dict | None = None) -> Path:
        """Stream the done seeds' records into annotations.json (one record in memory at a time)."""
        head = coco.dataset([], [], categories, description, licence=licence, info=info)
        with atomic_path(self.annotations) as tmp, open(tmp, "w") as f:
            f.write("{\n")
            for key in ("info", "licenses"):
                f.write(f'"{key}": {json.dumps(head[key])},\n')
            images, anns = _JsonList(f, "images"), _JsonList(f, "annotations", close=False)
            next_id = 1
            counts: dict[int, list[int]] = {}  # category id -> [instances, images holding one]
            for s in seeds:
                rec = self.record(s)
                if rec is None:
                    continue
                images.add(_with_licence(rec["image"], licence))
                for a in rec["annotations"]:
                    anns.add({**{k: v for k, v in a.items() if k != "id"}, "id": next_id})
                    next_id += 1
                    counts.setdefault(a.get("category_id"), [0, 0])[0] += 1
                for c in {a.get("category_id") for a in rec["annotations"]}:
                    counts[c][1] += 1
            images.close()
            anns.finish()
            f.write(f',\n"categories": {json.dumps(head["categories"])}\n}}\n')
        per_class = {name: tuple(counts.get(i + 1, (0, 0))) for i, name in enumerate(categories)}
        text = card(self.read_run(), head["info"], licence, categories, images.n, per_class, __version__)
        atomic_write_bytes(self.root / "README.md", text.encode("utf-8", "backslashreplace"))  # undecodable names stay visible
        return self.annotations


def _with_licence(entry: dict, licence: dict | None) -> dict:
    entry = {**entry, "file_name": current_name(entry.get("file_name"))}
    return {**entry, "license": licence["id"]} if licence else entry


class _JsonList:
    """Writes `"name": [ ... ]` item by item. Annotations come after all images, so they go to a
    temp file first and are copied in at the end (memory stays flat for any run size)."""

    def __init__(self, f: Any, name: str, close: bool = True):
        import tempfile

        self.f, self.name, self.n = f, name, 0
        self.side = None if close else tempfile.TemporaryFile("w+")
        if close:
            f.write(f'"{name}": [')

    def add(self, item: dict) -> None:
        out = self.f if self.side is None else self.side
        out.write(("," if self.n else "") + "\n" + strict_json(item))
        self.n += 1

    def close(self) -> None:
        self.f.write("\n]")

    def finish(self) -> None:
        self.f.write(f',\n"{self.name}": [')
        self.side.seek(0)
        while chunk := self.side.read(1 << 20):
            self.f.write(chunk)
        self.side.close()
        self.f.write("\n]")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _decodes(path: Path, size: tuple | None = None) -> bool:
    """Whether `path` is a regular file (not a link) holding a whole image, of `size` (w, h) when given.

    A PNG is checked by its structure (signature, IHDR size, the IEND chunk at the very end): a cut-short
    or resized file fails, and a resume of a large run reads 45 bytes per file instead of decoding it.
    Other formats (a labelled user's JPEG) are decoded."""
    import stat
    import struct

    from PIL import Image

    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 57:
            return False
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                f.seek(-12, os.SEEK_END)
                tail = f.read(12)
                w, h = struct.unpack(">II", f.seek(16) and f.read(8))
                return tail == b"\x00\x00\x00\x00IEND\xaeB`\x82" and (size is None or (w, h) == tuple(size))
        with Image.open(path) as im:
            if size is not None and im.size != tuple(size):
                return False
            im.load()
        return True
    except Exception:  # unreadable, not an image: the seed is redone
        return False
