"""Run chunks of seeds on Ray actors (`instseg run --ray local|auto|ADDRESS --workers N`).

One actor per worker loads the generator and the detector once and takes a GPU when the
cluster has GPUs (else one CPU). The driver hands out the same seed chunks a single process
would run, and writes every result itself: outputs land where the driver runs, so a cluster
needs no shared file system, and the run folder keeps one writer (its lock). A worker that
dies has its chunk redone by Ray (actor restarts and task retries); nothing is written twice
because only the driver writes, once per seed.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

from .errors import UserError

log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError('--ray needs Ray: pip install "instseg[ray]"') from None
    return ray


class _Worker:
    """Holds a Pipeline built as a local run builds it; turns chunks of seeds into encoded files
    (the driver only writes them)."""

    def __init__(self, ckpt: bytes, out_hw: tuple[int, int] | None, cfg: dict, categories: list[str], cid: str):
        import torch

        from .allocator import keep_freed_memory
        from .checkpoints import generator_from_bytes
        from .config import RunConfig
        from .pipeline import Pipeline, build_detector, pick_device

        config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        device = pick_device("cuda" if _ray().get_gpu_ids() else "cpu")
        if device.type == "cpu":
            torch.set_num_threads(1)  # one CPU slot per actor
            keep_freed_memory()
        detector, _ = build_detector(config, device)
        self.pipeline = Pipeline(config, generator_from_bytes(ckpt, "generator", device, out_hw), device, detector,
                                 categories)
        self.cid = cid

    def pid(self) -> int:
        return os.getpid()

    def process(self, chunk: list[int]) -> list:
        from .encode import encode_chunk

        return encode_chunk(self.pipeline(chunk), self.cid)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A bounded TCP connect to a cluster ADDRESS (host:port or ray://host:port) before Ray is started:
    ray.init waits minutes on an address where nothing listens, deaf to SIGINT."""
    import socket

    if address in ("local", "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray {address!r}: use local, auto or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"--ray {address}: nothing answers there ({e.strerror or type(e).__name__}); "
                        "start the cluster with `ray start --head` or check the address") from None


def run_on_ray(address: str, workers: int, ckpt: bytes, out_hw: tuple[int, int] | None, cfg_dict: dict,
               categories: list[str], cid: str, chunks: list[list[int]], write: Callable[[list], None],
               max_in_flight: int = 2) -> None:
    """Process `chunks` on `workers` Ray actors; `write` gets each chunk's encoded seeds on the driver."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--ray {address}: cannot reach a Ray cluster ({str(e).splitlines()[0][:160]})") from None
        started = True
    try:
        gpu = ray.cluster_resources().get("GPU", 0) >= 1
        Actor = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1, max_restarts=-1,
                           max_task_retries=-1)(_Worker)
        ckpt_ref = ray.put(ckpt)
        actors = [Actor.remote(ckpt_ref, out_hw, cfg_dict, categories, cid) for _ in range(workers)]
        queue = list(chunks)
        pending: dict[Any, Any] = {}
        for a in actors:
            for _ in range(max_in_flight):
                if queue:
                    pending[a.process.remote(queue.pop(0))] = a
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ref)
            try:
                results = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise UserError(f"a Ray worker failed for good: {str(e).splitlines()[0][:200]}") from None
            write(results)
            if queue:
                pending[actor.process.remote(queue.pop(0))] = actor
    finally:
        if started:
            ray.shutdown()
