"""Shards: a deterministic share of a run's seeds, and the merge of shard folders into one dataset."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .errors import UserError
from .rundir import RunDir

# run.json fields that may differ between shards of one dataset
_FREE = ("seeds", "device", "batch")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the third of eight shards (0-based index)."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UserError(f"--shard {text!r}: use i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard_seeds(seeds: tuple[int, ...], index: int, count: int) -> tuple[int, ...]:
    """Every count-th seed from position `index`: the shards of a seed list are disjoint and cover it."""
    return tuple(seeds[index::count])


def _read(d: Path) -> tuple[dict, dict]:
    run = RunDir(d).read_run()
    if run is None:
        raise UserError(f"{d} has no readable run.json; is it an instseg run dir?")
    try:
        ann = json.loads((d / "annotations.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{d} has no readable annotations.json; rerun its command to finish it") from None
    if not isinstance(ann, dict):
        raise UserError(f"{d}/annotations.json is not a COCO file")
    return run, ann


def _identity(run: dict) -> dict:
    cfg = {k: v for k, v in (run.get("config") or {}).items() if k not in _FREE}
    return {"config": cfg, "generator_sha256": (run.get("generator") or {}).get("sha256")}


def merge(dirs: list[Path], out: Path) -> Path:
    """Assemble shard folders made with one config and generator into `out`; returns annotations.json.

    Files are hard-linked where possible (copied otherwise). A seed found in several shards
    is the same image (same config, deterministic), so it is taken once."""
    if not dirs:
        raise UserError("give at least one shard folder to merge")
    runs = [(Path(d), *_read(Path(d))) for d in dirs]
    ref_dir, ref, ref_ann = runs[0]
    for d, run, ann in runs[1:]:
        a, b = _identity(ref), _identity(run)
        diff = sorted(k for k in set(a["config"]) | set(b["config"]) if a["config"].get(k) != b["config"].get(k))
        if a["generator_sha256"] != b["generator_sha256"]:
            diff.append("generator weights")
        if ann.get("licenses") != ref_ann.get("licenses"):
            diff.append("licence")
        if diff:
            raise UserError(f"{d} was made with a different config than {ref_dir} ({', '.join(diff)}); "
                            "only shards of one run can be merged")
    cid = ref.get("config_id")
    rd = RunDir(out)
    if any(Path(d).resolve() == rd.root.resolve() for d, _, _ in runs):
        raise UserError("--out must be a new folder, not one of the shards")
    rd.prepare()
    with rd.lock():
        rd.clean_stale_temps()
        rd.begin(cid, lambda old: [] if _identity(old) == _identity(ref) else ["config"])
        seeds: list[int] = []
        seen: set[int] = set()
        for d, run, _ in runs:
            src = RunDir(d)
            for s in run.get("seeds", []):
                if not isinstance(s, int) or s in seen or not src.done(s, cid):
                    continue
                for sub in ("images", "parts", "variants", "records"):
                    _link(src.path(sub, s), rd.path(sub, s))
                seen.add(s)
                seeds.append(s)
        rd.write_run({**ref, "seeds": seeds, "merged_from": [str(d) for d, _, _ in runs],
                      "command": ["instseg", "merge", *[str(d) for d, _, _ in runs], "--out", str(out)]})
        cats = [c["name"] for c in sorted(ref_ann.get("categories", []), key=lambda c: c["id"])]
        licences = ref_ann.get("licenses") or []
        info = {k: v for k, v in (ref_ann.get("info") or {}).items() if k not in ("date_created", "version", "description")}
        info["merged_from"] = [str(d) for d, _, _ in runs]
        desc = (ref_ann.get("info") or {}).get("description", "instseg dataset")
        return rd.assemble(seeds, cats, desc, licences[0] if licences else None, info)


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
