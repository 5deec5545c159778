"""`instseg run`: drive the pipeline over seeds and write the dataset (the I/O edge)."""
from __future__ import annotations

import logging
import platform
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from detectors import Detector

from . import __version__
from .allocator import keep_freed_memory
from .checkpoints import load_generator
from .config import RunConfig
from .errors import UserError
from .generator import Generator
from .identity import config_id, differences
from .rundir import RunDir
from .pipeline import (SeedRecord, build_detector, check_generator, pick_device, prepare_generator,
                       process_chunk)
from .segment import Stopwatch
from .zoo import Progress, ResolvedGan, resolve_gan, sha256_file

log = logging.getLogger(__name__)
def _versions() -> dict[str, str]:
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
    if not lic.commercial:
        info["licence_note"] = ("Images made with a generator under a non-commercial licence: this dataset, and "
                                "models trained on it, carry that restriction; read the licence before any "
                                "commercial use.")
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
        workers: int = 1) -> Path:
    """Make (or resume) the dataset for cfg.seeds in `out`; returns the annotations path.

    `ray` ('local', 'auto' or a cluster address) runs the chunks on `workers` Ray actors; the
    dataset is the same as one process writes.

    One process writes a folder at a time (a lock), and every record carries the identity of
    its config, so a resume never mixes configs. `timings`, when given, accumulates seconds per
    stage (load, source, detect, generate (the variants), cluster, export; on a GPU export
    overlaps the next chunk). `detector` replaces the one cfg.detector names.
    """
    gan: ResolvedGan = resolve_gan(cfg.gan, cache, download_progress, validate=validate_checkpoint)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    clock = Stopwatch(timings, device)
    G = prepare_generator(load_checked(gan, device), cfg, device)
    check_generator(G, cfg)
    if ray is not None and detector is not None:
        raise UserError("--ray runs the detector that --detector names; an injected detector cannot travel")
    if ray is None and workers != 1:
        raise UserError(f"--workers {workers} needs --ray (local, auto or a cluster address)")
    if ray is not None:
        from .distributed import check_reachable

        check_reachable(ray)
    if detector is None:  # before run.json: a bad --classes must not leave a run behind
        detector, categories = build_detector(cfg, device)
    else:
        categories = list(cfg.classes) or detector.class_names
    clock.lap("load")  # generator and detector: once per run, not per image
    rd = RunDir(out)
    rd.prepare()
    with rd.lock():
        if rd.clean_stale_temps():
            log.info("removed temp files left by a killed run in %s", out)
        gan_sha = sha256_file(gan.path)
        cid = config_id(cfg.to_dict(), gan_sha)
        old = rd.read_run()
        if old and isinstance(old.get("config_id"), str) and not differences(old, cfg.to_dict(), gan_sha):
            cid = old["config_id"]  # the same config, begun by a version with fewer fields: resume its records
        old_seeds = rd.begin(cid, lambda old: differences(old, cfg.to_dict(), gan_sha))
        seen = set(old_seeds)
        seeds = old_seeds + [s for s in cfg.seeds if s not in seen]
        extra = len(set(old_seeds) - set(cfg.seeds))
        if extra:
            log.warning("%s already holds %d seed(s) beyond the %d asked for; annotations.json lists all %d",
                        out, extra, len(cfg.seeds), len(seeds))
        rd.write_run({
            "config": cfg.to_dict(), "config_id": cid, "seeds": seeds, "device": str(device),
            "versions": _versions(), "command": sys.argv,
            "generator": generator_record(gan, gan_sha, G),
        })
        what = "--detector none" if detector is None else f"--detector {cfg.detector}, classes {', '.join(categories)}"
        licence, info = dataset_provenance(gan, gan_sha)
        try:
            if ray is None:
                _run_seeds(G, cfg, device, rd, cid, detector, categories, on_seed, timings)
            else:
                from .distributed import run_on_ray

                out_hw = (gan.preset.height, gan.preset.width) if gan.preset else None
                run_on_ray(ray, workers, gan.path.read_bytes(), out_hw, cfg.to_dict(), categories,
                           chunks_to_do(rd, cfg, cid, on_seed), lambda res: write_results(rd, cid, res, on_seed))
        finally:  # after an interruption too: the dataset then holds every seed done so far
            rd.assemble(seeds, categories, f"instseg {cfg.gan}: style-mixing segmentation, {what}", licence, info)
    return rd.annotations


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


def write_results(rd: RunDir, cid: str, results: list[SeedRecord], on_seed: Callable[[int, bool], None] | None,
                  timings: dict[str, float] | None = None, device: torch.device = torch.device("cpu")) -> None:
    for r in results:
        clock = Stopwatch(timings, device)
        rd.write_seed(r.seed, r.image, r.cluster_map, r.preview, r.annotations, cid)
        if not rd.settings_recorded:
            rd.record_settings(r.settings)
        clock.lap("export")
        if on_seed:
            on_seed(r.seed, False)


def overlap_writes(device: torch.device) -> bool:
    """Whether files are written on a second thread while the next chunk is computed."""
    return device.type != "cpu"


def _run_seeds(G: Generator, cfg: RunConfig, device: torch.device, rd: RunDir, cid: str, detector: Detector | None,
               categories: list[str], on_seed: Callable[[int, bool], None] | None,
               timings: dict[str, float] | None) -> None:
    """Chunks in order. On a GPU a chunk's files are written on a second thread while the next one
    is computed (PNG encoding releases the GIL); at most one write is pending, and it is waited for
    before this returns or raises, so an interruption loses no finished seed. On a CPU torch's
    threads already use every core, so the files are written in line (a writer thread only
    contended with them: toy ratio 1.262 -> 1.246, means of six runs)."""
    overlap = overlap_writes(device)
    with ThreadPoolExecutor(1, thread_name_prefix="instseg-writer") as writer:
        pending: Future | None = None
        for chunk in chunks_to_do(rd, cfg, cid, on_seed):
            results = process_chunk(G, detector, cfg, device, chunk, categories, timings)
            if pending is not None:
                pending.result()  # re-raises a failed write here
            if overlap:
                pending = writer.submit(write_results, rd, cid, results, on_seed, timings, device)
            else:
                write_results(rd, cid, results, on_seed, timings, device)
        if pending is not None:
            pending.result()
