"""Shared helpers for the benchmarks: machine description and BENCHMARKS.md sections."""
from __future__ import annotations

import datetime
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH_MD = Path(os.environ.get("INSTSEG_BENCH_MD") or ROOT / "BENCHMARKS.md")  # tests point it elsewhere


def method_overrides(overrides: dict) -> dict:
    """A run's overrides, with the fields that only ours reads (the join, the normalisation) at RunConfig's
    defaults for a single-image baseline unless set: a preset tunes them for ours, not for the baselines."""
    from instseg.config import field_default

    if overrides.get("method", "variants") == "variants":
        return overrides
    return {"join_features": "none", "normalize": field_default("normalize"), **overrides}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def timeit(fn: Callable[[], object], device: torch.device, repeat: int = 3, warmup: int = 1) -> float:
    """Best-of-`repeat` wall time of fn() in seconds (synchronising CUDA)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return best


def shown_arg(arg: str) -> str:
    """A command-line argument as BENCHMARKS.md shows it: a path outside the repository by its name alone
    (a work folder or weights file of one machine means nothing on another)."""
    path = Path(arg)
    if path.is_absolute() and ROOT not in path.resolve().parents:
        return path.name
    return arg


def write_section(name: str, title: str, body: str, device: torch.device) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md with a dated, reproducible table."""
    script = os.path.relpath(sys.argv[0], ROOT)
    if script.startswith("bench" + os.sep) and script.endswith(".py"):  # benches run as modules: python -m bench.x
        script = "-m bench." + Path(script).stem
    cmd = "python " + " ".join([script] + [shown_arg(a) for a in sys.argv[1:]])
    stamp = datetime.date.today().isoformat()
    block = (f"<!-- bench:{name} -->\n## {title}\n\nCommand: `{cmd}`  \nMachine: {machine(device)}  \n"
             f"Date: {stamp}\n\n{body.strip()}\n<!-- /bench:{name} -->")
    text = BENCH_MD.read_text() if BENCH_MD.exists() else "# Benchmarks\n\nEach section is written by the command it names.\n"
    pat = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCH_MD.write_text(text)
    print(block)
