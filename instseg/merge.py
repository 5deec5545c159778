"""Shards: a deterministic share of a run's seeds, and the merge of shard folders into one dataset."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from .config import MAX_SEEDS, parse_seeds
from .errors import UserError
from .identity import config_id, differences
from .io import atomic_write_json
from .locks import held_by
from .rundir import RunDir

log = logging.getLogger(__name__)


MAX_SHARDS = 65_536  # shards of one run


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): the third of eight shards (0-based index)."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
    if not m or not 1 <= int(m.group(2)) <= MAX_SHARDS or int(m.group(1)) >= int(m.group(2)):
        raise UserError(f"--shard {text!r}: use i/n with 0 <= i < n <= {MAX_SHARDS}, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard_seeds(seeds: tuple[int, ...], index: int, count: int) -> tuple[int, ...]:
    """Every count-th seed from position `index`: the shards of a seed list are disjoint and cover it."""
    return tuple(seeds[index::count])


def _read(d: Path) -> tuple[dict, dict]:
    pid = held_by(d / ".lock")
    if pid is not None:
        raise UserError(f"{d} is still being written (pid {pid}); merge it once its run has finished")
    RunDir(d).check_no_links()
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


def _seeds(run: dict, ann: dict) -> list[int]:
    """The seeds a shard asked for: its run.json's, and any its annotations.json lists."""
    seeds = [s for s in run.get("seeds") or [] if isinstance(s, int) and not isinstance(s, bool)]
    listed = {im.get("seed") for im in ann.get("images") or [] if isinstance(im, dict)}
    return seeds + sorted(s for s in listed - set(seeds) if isinstance(s, int) and not isinstance(s, bool))


def merge(dirs: list[Path], out: Path, allow_partial: bool = False,
          on_total: Callable[[int], None] | None = None,
          on_seed: Callable[[], None] | None = None) -> tuple[Path, dict[str, list[int]]]:
    """Assemble shard folders made with one config and generator into `out`.

    Returns annotations.json and the seeds left out per shard. A seed a shard asked for but did not
    finish (a missing or broken file or record, an interrupted run) is refused unless `allow_partial`.
    A seed found in several shards is the same image (same config, deterministic), so it is taken
    once. PNGs are hard-linked where possible; records are rewritten with the merged config id. An
    `out` that already holds this run keeps its seeds. `on_total(n)` and `on_seed()` report progress."""
    if not dirs:
        raise UserError("give at least one shard folder to merge")
    runs = [(Path(d), *_read(Path(d))) for d in dirs]
    ref_dir, ref, ref_ann = runs[0]
    ref_cfg, sha = ref.get("config") or {}, (ref.get("generator") or {}).get("sha256")
    for d, run, ann in runs[1:]:
        diff = differences(run, ref_cfg, sha)
        if ann.get("licenses") != ref_ann.get("licenses"):
            diff.append("licence")
        if diff:
            raise UserError(f"{d} was made with a different config than {ref_dir} ({', '.join(diff)}); "
                            "only shards of one run can be merged")
    cid = config_id(ref_cfg, sha)
    rd = RunDir(out)
    if any(d.resolve() == rd.root.resolve() for d, _, _ in runs):
        raise UserError("--out must be a new folder, not one of the shards")
    plan: list[tuple[RunDir, int]] = []
    missing: dict[str, list[int]] = {}
    taken: set[int] = set()
    for d, run, ann in runs:
        src, scid = RunDir(d), run.get("config_id")
        for s in _seeds(run, ann):
            if s in taken:
                continue
            if src.done(s, scid):
                plan.append((src, s))
                taken.add(s)
            else:
                missing.setdefault(str(d), []).append(s)
    plan = _one_process_order(plan, runs)
    missing = {d: [s for s in v if s not in taken] for d, v in missing.items()}
    missing = {d: v for d, v in missing.items() if v}
    absent = _missing_shards(runs)
    held = rd.read_run() if absent else None
    if held is not None and not differences(held, ref_cfg, sha):
        there = {s for s in held.get("seeds") or [] if isinstance(s, int) and rd.done(s)}
        absent = {k: v for k, v in ((k, [s for s in v if s not in there]) for k, v in absent.items())
                  if v or not absent[k]}  # an --out that holds this run already has these seeds
    if absent and not allow_partial:
        names = [k.split()[1] for k in absent]
        which = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise UserError(f"the folders given lack shard {which} of this run; add them, or pass --allow-partial to "
                        "merge without them")
    if missing and not allow_partial:
        raise UserError(f"{sum(map(len, missing.values()))} seed(s) are not finished in their shards ({describe_missing(missing)}); "
                        "rerun those shards' commands, or pass --allow-partial to merge without them")
    missing.update({name: [s for s in seeds if s not in taken] for name, seeds in absent.items()})
    rd.prepare()
    with rd.lock():
        rd.clean_stale_temps()
        kept = [s for s in rd.begin(cid, lambda old: differences(old, ref_cfg, sha)) if rd.done(s)]
        had = set(kept)
        seeds = kept + [s for _, s in plan if s not in had]
        if on_total:
            on_total(len(plan))
        for src, s in plan:
            if on_seed:
                on_seed()
            if s in had:
                continue
            for sub in ("images", "parts", "variants"):
                _link(src.path(sub, s), rd.path(sub, s))
            atomic_write_json(rd.path("records", s), {**src.record(s), "config_id": cid})
        rd.write_run({**{k: v for k, v in ref.items() if k != "shard"}, "config_id": cid, "seeds": seeds, "merged_from": [str(d) for d, _, _ in runs],
                      "missing": missing,
                      "command": ["instseg", "merge", *[str(d) for d, _, _ in runs], "--out", str(out)]})
        cats = [c["name"] for c in sorted(ref_ann.get("categories", []), key=lambda c: c["id"])]
        licences = ref_ann.get("licenses") or []
        info = {k: v for k, v in (ref_ann.get("info") or {}).items() if k not in ("date_created", "version", "description")}
        info["merged_from"] = [str(d) for d, _, _ in runs]
        desc = (ref_ann.get("info") or {}).get("description", "instseg dataset")
        return rd.assemble(seeds, cats, desc, licences[0] if licences else None, info), missing


def _missing_shards(runs: list[tuple[Path, dict, dict]]) -> dict[str, list[int]]:
    """The shards (--shard i/n) of the folders' run that none of them is, with the seeds each was to make
    (known when the shards recorded their whole seed list); mixed shard counts are refused."""
    specs = [run.get("shard") for _, run, _ in runs]
    valid = [isinstance(sp, list) and len(sp) == 2 and all(type(v) is int for v in sp) and
             0 <= sp[0] < sp[1] <= MAX_SHARDS for sp in specs]
    for (d, _, _), sp, ok in zip(runs, specs, valid):
        if sp is not None and not ok:
            raise UserError(f"{d}/run.json: shard {short_text(sp)} is not [i, n] with 0 <= i < n <= {MAX_SHARDS}")
    if not any(valid):
        return {}
    counts = {sp[1] for sp, ok in zip(specs, valid) if ok}
    if not all(valid) or len(counts) > 1:
        named = ", ".join(f"{d}: {'/'.join(map(str, sp)) if ok else 'not a shard'}"
                          for (d, _, _), sp, ok in zip(runs, specs, valid))
        raise UserError(f"these folders are not shards of one --shard count ({named}); merge the n shards of one run")
    lists = {run.get("shard_of") for _, run, _ in runs}
    if len(lists) > 1:
        raise UserError("these shards were cut from different seed lists; merge the shards of one run")
    n = counts.pop()
    full = lists.pop()
    try:
        seeds = parse_seeds(full, limit=MAX_SEEDS) if isinstance(full, str) else None
    except UserError:
        seeds = None
    present = {sp[0] for sp in specs}
    return {f"shard {i}/{n} (not given)": list(shard_seeds(seeds, i, n)) if seeds else []
            for i in range(n) if i not in present}


def _one_process_order(plan: list[tuple[RunDir, int]], runs: list[tuple[Path, dict, dict]]) -> list[tuple[RunDir, int]]:
    """When the folders are the n shards (--shard i/n) of one seed list, the seeds in that list's order
    (shard i holds positions i, i + n, ...), so annotation ids come out as one process numbers them;
    otherwise the folders' order."""
    specs = [run.get("shard") for _, run, _ in runs]
    n = len(runs)
    if not all(isinstance(sp, list) and len(sp) == 2 and sp[1] == n for sp in specs) or \
            sorted(sp[0] for sp in specs) != list(range(n)):
        return plan
    position: dict[int, int] = {}
    for (_, run, _), (i, _) in zip(runs, specs):
        for k, seed in enumerate(run.get("seeds") or []):
            position.setdefault(seed, i + n * k)
    return sorted(plan, key=lambda p: position.get(p[1], len(position)))


def short_text(v: object, most: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= most else r[:most - 3] + "..."


def describe_missing(missing: dict[str, list[int]]) -> str:
    """The seeds a merge leaves out, per shard, on one line."""
    return "; ".join(f"{d}: seeds {', '.join(map(str, v[:8]))}{' ...' if len(v) > 8 else ''}" if v else
                     f"{d}: its seeds (its shards predate the record of the seed list)" for d, v in missing.items())


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
