"""Seconds per pipeline stage (the only place that synchronises a GPU on purpose, and only when timing)."""
from __future__ import annotations

import time

import torch


class Stopwatch:
    """Adds wall time per stage to a dict; with no dict it does nothing (and never synchronises)."""

    def __init__(self, totals: dict[str, float] | None, device: torch.device):
        self.totals, self.device, self.t = totals, device, time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.totals is None:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.totals[stage] = self.totals.get(stage, 0.0) + now - self.t
        self.t = now
