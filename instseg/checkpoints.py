"""Generator checkpoints: detect the format and read it into our `Generator`."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .generator import Generator, GeneratorConfig
from .io import atomic_torch_save

NATIVE_FORMAT = "instseg-native"


def save_native(G: Generator, path: str | os.PathLike, meta: dict | None = None) -> None:
    """Write the native format: architecture config + state dict (+ free-form meta)."""
    atomic_torch_save(
        {"format": NATIVE_FORMAT, "version": 1, "config": G.cfg.to_dict(),
         "state_dict": {k: v.detach().cpu() for k, v in G.state_dict().items()}, "meta": meta or {}},
        path,
    )


def load_native(obj: dict) -> Generator:
    G = Generator(GeneratorConfig(**obj["config"]))
    G.load_state_dict(obj["state_dict"])
    return G.eval()
