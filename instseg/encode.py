"""Encoding a seed's files off the critical path: PNGs, RLE masks and the record JSON as bytes, made in
a pool of worker processes, written by the one process that holds the run folder."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import coco
from .errors import Crash
from .io import png_bytes

from .rundir import PREVIEW_LEVEL, Encoded, RunDir, image_file, image_id, record_bytes

if TYPE_CHECKING:
    from .pipeline import SeedRecord


def encode(rec: SeedRecord, cid: str) -> Encoded:
    """A SeedRecord as files: the image at the usual level, previews fast, masks as COCO RLE."""
    iid = image_id(rec.seed)
    h, w = rec.image.shape[:2]
    anns = [coco.annotation(o.mask, iid, o.category_id, o.score, **o.extra) for o in rec.objects]
    entry = coco.image_entry(iid, image_file(rec.seed), h, w, seed=rec.seed, **rec.image_extra)
    return Encoded(rec.seed, png_bytes(rec.image), png_bytes(rec.cluster_map.astype(np.uint8), PREVIEW_LEVEL),
                   png_bytes(rec.preview, PREVIEW_LEVEL), record_bytes(entry, anns, cid), rec.settings)


def encode_chunk(records: list[SeedRecord], cid: str) -> list[Encoded]:
    return [encode(r, cid) for r in records]


def default_encoders(device_type: str) -> int:
    """Encoding processes when the config leaves it to us: none on a CPU (torch's threads already use
    every core; measured with `python -m bench.pipeline --encoders N`), else one per two spare cores, at most 8."""
    if device_type == "cpu":
        return 0
    return max(1, min(8, ((os.cpu_count() or 2) - 2) // 2))


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _ignore_sigint() -> None:  # Ctrl-C reaches the whole process group: workers finish what they hold
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Writer:
    """Encodes chunks of SeedRecords (or takes them encoded, from Ray actors) and writes them to the run
    folder in order. With `encoders` > 0 a process pool encodes, with at most 2 x encoders chunks
    pending; `close` (also on an interruption) waits for every pending chunk and writes it, so no
    finished seed is lost."""

    def __init__(self, rd: RunDir, cid: str, encoders: int = 0,
                 on_seed: Callable[[int, bool], None] | None = None, timings: dict[str, float] | None = None):
        self.rd, self.cid, self.on_seed, self.timings = rd, cid, on_seed, timings
        self.pool = (ProcessPoolExecutor(encoders, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_ignore_sigint) if encoders > 0 else None)
        self.max_pending = 2 * encoders
        self.pending: deque[Future] = deque()
        self.procs: dict[int, multiprocessing.Process] = {}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, records: list[SeedRecord]) -> None:
        t = time.perf_counter()
        if self.pool is None:
            self.write(encode_chunk(records, self.cid), t)
            return
        try:
            self.pending.append(self.pool.submit(encode_chunk, records, self.cid))
            self.procs.update(getattr(self.pool, "_processes", None) or {})  # to name one that dies
            while len(self.pending) > self.max_pending:
                self.write(self.pending.popleft().result(), t)
        except BrokenProcessPool:
            raise self._died() from None

    def _died(self) -> Crash:
        """Which encoder process ended, as one line."""
        deadline = time.monotonic() + 1.0  # a killed one has ended; the pool's own thread may be reaping it
        while time.monotonic() < deadline and not any(p.exitcode is not None for p in self.procs.values()):
            time.sleep(0.01)
        ended = [p for p in self.procs.values() if p.exitcode is not None]
        first = [p for p in ended if p.exitcode != -signal.SIGTERM] or ended  # the pool ends the rest with SIGTERM
        ended = [f"pid {p.pid} ({_exit(p.exitcode)})" for p in first]
        who = ", ".join(ended) or "one of them"
        return Crash(f"an encoder process died: {who}; the seeds finished before are written, and running the same "
                     "command again resumes")

    def write(self, encoded: list[Encoded], since: float | None = None) -> None:
        """Write encoded seeds; the time since `since` (or this call) counts as export."""
        t = time.perf_counter() if since is None else since
        for e in encoded:
            self.rd.write_encoded(e)
            if not self.rd.settings_recorded:
                self.rd.record_settings(e.settings)
            if self.on_seed:
                self.on_seed(e.seed, False)
        if self.timings is not None:
            self.timings["export"] = self.timings.get("export", 0.0) + time.perf_counter() - t

    def close(self) -> None:
        broken = False
        try:
            while self.pending:  # after a worker died, what finished before is still written
                t = time.perf_counter()
                future = self.pending.popleft()
                try:
                    self.write(future.result(), t)
                except BrokenProcessPool:
                    broken = True
            if broken:
                raise self._died()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
                self.pool = None
