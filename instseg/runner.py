"""`instseg run`: drive the pipeline over seeds and write the dataset (the I/O edge)."""
from __future__ import annotations

import logging
import platform
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from detectors import Detector

from . import __version__
from .allocator import keep_freed_memory
from .checkpoints import load_generator
from .config import RunConfig, format_seeds
from .encode import Writer, default_encoders
from .errors import UserError
from .generator import Generator
from .identity import config_id, differences
from .pipeline import Pipeline, pick_device
from .rundir import RunDir
from .timing import Stopwatch
from .zoo import Progress, ResolvedGan, resolve_gan, sha256_file

log = logging.getLogger(__name__)


def versions() -> dict[str, str]:
    import PIL

    return {"instseg": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__}


def generator_record(gan: ResolvedGan, gan_sha: str, G: Generator) -> dict:
    """run.json's account of the generator."""
    return {"source": gan.source, "path": str(gan.path), "sha256": gan_sha, "config": G.cfg.to_dict(),
            "licence": gan.licence.name}


def dataset_provenance(gan: ResolvedGan, gan_sha: str) -> tuple[dict, dict]:
    """The COCO licence entry and the `info` fields that carry the generator's source and terms."""
    lic = gan.licence
    info = {"generator": gan.source, "generator_sha256": gan_sha,
            "generator_urls": list(gan.preset.urls) if gan.preset else [],
            "licence": lic.name, "licence_url": lic.url, "made_with": f"instseg {__version__}"}
    if lic.note("this dataset's images"):
        info["licence_note"] = lic.note("this dataset's images")
    return lic.coco(), info


def load_checked(gan: ResolvedGan, device: torch.device | str = "cpu") -> Generator:
    """Load the generator; a cached file that fails to load says which file to delete."""
    try:
        return load_generator(gan.path, device, (gan.preset.height, gan.preset.width) if gan.preset else None)
    except UserError as e:
        raise gan.load_error(e) from None


def validate_checkpoint(path: Path, out_hw: tuple[int, int] | None = None) -> None:
    """Download check: the file must load as a generator (a cut-short transfer does not), of the
    preset's output size when given."""
    load_generator(path, "cpu", out_hw)


def run(cfg: RunConfig, out: Path, on_seed: Callable[[int, bool], None] | None = None,
        download_progress: Progress | None = None, cache: Path | None = None,
        timings: dict[str, float] | None = None, detector: Detector | None = None, ray: str | None = None,
        workers: int = 1, shard: tuple[int, int] | None = None, shard_of: tuple[int, ...] | None = None,
        per_class: int | None = None) -> Path:
    """Make (or resume) the dataset for cfg.seeds in `out`; returns the annotations path.

    `shard` (i, n) records that cfg.seeds are positions i, i + n, ... of the list `shard_of`, so that a
    merge of all n shards numbers annotations as one process would, and knows which shards are missing.
    `per_class`: the seeds were asked for as that many images per class (refused for a generator without classes).

    `ray` ('local', 'auto' or a cluster address) runs the chunks on `workers` Ray actors; the
    dataset is the same as one process writes.

    One process writes a folder at a time (a lock), and every record carries the identity of
    its config, so a resume never mixes configs. `timings`, when given, accumulates seconds per
    stage (load, source, detect, generate (the variants), cluster, export: the writer's time on the
    critical path; with encoder processes the encoding overlaps the compute). `detector` replaces the one cfg.detector names.
    """
    gan: ResolvedGan = resolve_gan(cfg.gan, cache, download_progress, validate=validate_checkpoint)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    clock = Stopwatch(timings, device)
    if ray is not None and detector is not None:
        raise UserError("--ray runs the detector that --detector names; an injected detector cannot travel")
    if ray is None and workers != 1:
        raise UserError(f"--workers {workers} needs --ray (local, auto or a cluster address)")
    if ray is not None:
        from .distributed import check_reachable

        check_reachable(ray)
    # built before run.json: a bad --classes or --features must not leave a run behind
    pipeline = Pipeline(cfg, load_checked(gan, device), device, detector, timings=timings)
    G, detector, categories = pipeline.G, pipeline.detector, pipeline.categories
    if per_class is not None and pipeline.cond is None:
        raise UserError("--per-class is for class-conditional generators; this one draws no class (use --num-images)")
    if per_class is not None and per_class * len(pipeline.cond.chosen) != len(shard_of or cfg.seeds):
        raise UserError(f"--per-class {per_class}: the run makes {len(pipeline.cond.chosen)} classes, not "
                        f"{len(shard_of or cfg.seeds) // per_class}")
    clock.lap("load")  # generator and detector: once per run, not per image
    gan_sha = sha256_file(gan.path)
    with opened_run(out, cfg.to_dict(), gan_sha) as (rd, cid, old_seeds):
        seen = set(old_seeds)
        seeds = old_seeds + [s for s in cfg.seeds if s not in seen]
        extra = len(set(old_seeds) - set(cfg.seeds))
        if extra:
            log.warning("%s already holds %d seed(s) beyond the %d asked for; annotations.json lists all %d",
                        out, extra, len(cfg.seeds), len(seeds))
        rd.write_run({
            "config": cfg.to_dict(), "config_id": cid, "seeds": seeds, "device": str(device),
            "versions": versions(), "command": sys.argv,
            "generator": generator_record(gan, gan_sha, G),
            **({"conditional": pipeline.cond.record()} if pipeline.cond else {}),
            **({"shard": list(shard)} if shard else {}),
            **({"shard_of": format_seeds(shard_of)} if shard and shard_of else {}),
        })
        what = "--detector none" if detector is None else f"--detector {cfg.detector}, classes {', '.join(categories)}"
        if pipeline.cond:
            what += f", class-conditional: {', '.join(categories)}"
        licence, info = dataset_provenance(gan, gan_sha)
        try:
            encoders = cfg.encoders if cfg.encoders >= 0 else default_encoders(device.type)
            if ray is None:
                with Writer(rd, cid, encoders, on_seed, timings) as writer:
                    for chunk in chunks_to_do(rd, cfg, cid, on_seed):
                        writer.submit(pipeline(chunk))
            else:
                from .distributed import run_on_ray

                out_hw = (gan.preset.height, gan.preset.width) if gan.preset else None
                with Writer(rd, cid, 0, on_seed, timings) as writer:  # actors return encoded bytes: the driver only writes
                    run_on_ray(ray, workers, gan.path.read_bytes(), out_hw, cfg.to_dict(), categories, cid,
                               chunks_to_do(rd, cfg, cid, on_seed), writer.write)
        finally:  # after an interruption too: the dataset then holds every seed done so far
            rd.assemble(seeds, categories, f"instseg {cfg.gan}: style-mixing segmentation, {what}", licence, info)
    return rd.annotations


@contextmanager
def opened_run(out: Path, full: dict, gan_sha: str,
               name: Callable[[str], str] = lambda k: k) -> Iterator[tuple[RunDir, str, list[int]]]:
    """The lifecycle `run` and `label` share: the folder prepared and locked, a killed run's temp files removed,
    the config identity (an existing folder's own id where its config differs only by fields added since, so
    its records resume), and `begin` (a folder of another config refused, its differences named by `name`).
    Yields (the folder, the config id, the seeds it holds already); the caller writes run.json, the records,
    and assembles annotations.json in a `finally`."""
    rd = RunDir(out)
    rd.prepare()
    with rd.lock():
        if rd.clean_stale_temps():
            log.info("removed temp files left by a killed run in %s", out)
        cid = config_id(full, gan_sha)
        old = rd.read_run()
        if old and isinstance(old.get("config_id"), str) and not differences(old, full, gan_sha):
            cid = old["config_id"]  # the same config, begun by a version with fewer fields: resume its records
        yield rd, cid, rd.begin(cid, lambda old: [name(k) for k in differences(old, full, gan_sha)])


def chunks_to_do(rd: RunDir, cfg: RunConfig, cid: str, on_seed: Callable[[int, bool], None] | None,
                 size: int | None = None) -> list[list[int]]:
    """The seeds not done yet, in chunks of `size` (default: the generator batch; the same chunks whoever runs them)."""
    size = size or cfg.batch
    todo = []
    for seed in cfg.seeds:
        if rd.done(seed, cid):
            if on_seed:
                on_seed(seed, True)
        else:
            todo.append(seed)
    return [todo[i:i + size] for i in range(0, len(todo), size)]
