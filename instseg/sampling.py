"""Sampling, in one place: z from a seed, source ws, style-mixed variant ws, and rows per synthesis call.

A seed's source ws are mapped alone and each image's variants in their own call, so neither depends
on the other seeds of its chunk."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from .cluster import kmeans
from .generator import Generator, one_hot

CENTRE_SAMPLES = 20_000  # ws that multi-modal truncation's k-means clusters
CENTRE_SEED = 0x7C3A
CPU_CALL_BYTES = 16 << 20  # a CPU synthesis call holds at most this much of the last block's activation
CPU_MAX_ROWS = 64
GPU_BUDGET_SHARE = 0.25  # a GPU synthesis call may use this share of the device's memory


def z_from_seed(seed: int, z_dim: int) -> Tensor:
    """The latent of an integer seed, as NVIDIA's generate scripts draw it: [1, z_dim]."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


def source_ws(G: Generator, seed: int, truncation_psi: float, device: torch.device, cls: int | None = None) -> Tensor:
    """One seed's ws: [1, num_ws, w_dim] (`cls`: its class index, for a class-conditional generator)."""
    z = z_from_seed(seed, G.z_dim).to(device, G.mapping_net.w_avg.dtype)
    return G.mapping(z, truncation_psi, c=_classes(G, [cls], device))


def source_latents(G: Generator, seeds: list[int], truncation_psi: float, device: torch.device,
                   classes: list[int] | None = None) -> Tensor:
    """The source ws of several seeds, each mapped alone: [B, num_ws, w_dim]."""
    classes = classes or [None] * len(seeds)
    return torch.cat([source_ws(G, s, truncation_psi, device, c) for s, c in zip(seeds, classes)])


def _classes(G: Generator, classes: list[int | None], device: torch.device | str) -> Tensor | None:
    """One-hot rows for a conditional generator (None for an unconditional one); a missing class is refused."""
    if not G.c_dim:
        return None
    if any(c is None for c in classes):
        raise ValueError(f"this generator is class-conditional (c_dim={G.c_dim}): every row needs a class")
    return one_hot(classes, G.c_dim, device)  # type: ignore[arg-type]


@torch.no_grad()
def truncation_centres(G: Generator, k: int, samples: int = CENTRE_SAMPLES, seed: int = CENTRE_SEED) -> Tensor:
    """k centres of G's W space: k-means of the ws of `samples` fixed z's, computed on the CPU in fp32
    whatever G's device, so a run's sampling does not depend on it: [k, w_dim]."""
    mapping = copy.deepcopy(G.mapping_net).cpu().float()
    mapping.w_centres = None
    rng = np.random.RandomState(seed)
    z = torch.from_numpy(rng.randn(samples, G.z_dim)).float()
    cls = list(rng.randint(0, max(G.c_dim, 1), samples))  # a conditional G: every class alike
    step = max(1, (1 << 22) // max(G.c_dim, 1))  # one-hot rows per call: at most 4M entries, whatever c_dim
    w = torch.cat([mapping(z[a:a + step], c=_classes(G, cls[a:a + step], "cpu"))[:, 0]
                   for a in range(0, samples, step)])
    return kmeans(w, k, iters=100, seed=seed)[1]


def set_truncation_centres(G: Generator, k: int) -> Generator:
    """Truncate toward the nearest of k W-space centres (multi-modal truncation, Mokady et al. 2022,
    with k-means in W), not toward the global mean w_avg; k = 1 restores the classic trick. A
    generator whose data has several modes (scenes of different classes) maps w_avg to one of them,
    and classic truncation pulls every sample toward it."""
    w_avg = G.mapping_net.w_avg
    G.mapping_net.w_centres = None if k == 1 else truncation_centres(G, k).to(w_avg.device, w_avg.dtype)
    return G


def variant_rng(image_seed: int, repeat: int = 0) -> np.random.RandomState:
    """The random stream of one image's variants; distinct per (seed, repeat), the same every run."""
    return np.random.RandomState(np.random.SeedSequence([image_seed, repeat, 0x5EED]).generate_state(1)[0])


@torch.no_grad()
def mix_ws(G: Generator, ws_src: Tensor, n: int, mix_from: tuple[int, ...], rng: np.random.RandomState,
           truncation_psi: float = 0.7, cls: int | None = None) -> Tensor:
    """ws_src [1, num_ws, w_dim] -> [n, num_ws, w_dim]: variant i keeps ws_src[:, :c_i], c_i drawn from mix_from.
    The fresh ws of a class-conditional generator are of the source's class `cls`."""
    if max(mix_from) >= G.num_ws:
        raise ValueError(f"crossover {max(mix_from)} must be below num_ws={G.num_ws}")
    z = torch.from_numpy(rng.randn(n, G.z_dim)).to(ws_src.device, ws_src.dtype)
    c = torch.as_tensor(rng.choice(mix_from, size=n)).to(ws_src.device)
    ws_new = G.mapping(z, truncation_psi, c=_classes(G, [cls] * n, ws_src.device))  # [n, num_ws, w_dim]
    keep = torch.arange(G.num_ws, device=ws_src.device)[None] < c[:, None]  # [n, num_ws]
    return torch.where(keep[..., None], ws_src.expand_as(ws_new), ws_new)


def variant_latents(G: Generator, keys: list[int], ws_src: Tensor, n: int, mix_from: tuple[int, ...],
                    repeats: int, truncation_psi: float, classes: list[int] | None = None) -> Tensor:
    """Every image's variants for every repeat, in (image, repeat, variant) order: [B * repeats * n, ...]."""
    classes = classes or [None] * len(keys)
    return torch.cat([mix_ws(G, ws_src[b:b + 1], n, mix_from, variant_rng(key, r), truncation_psi, classes[b])
                      for b, key in enumerate(keys) for r in range(repeats)])


def synthesis_rows(G: Generator, device: torch.device | str, memory: int | None = None) -> int:
    """Rows per synthesis call, whatever the chunk: a memory budget over the last block's activation
    per row. On a CPU 16 MiB (a 64 px toy generator: 32 rows, 30-34 ms per image of variants against 45-55 at
    8 rows and 44-54 at 64; config-f 256: one row, 1.5x faster per image than eight: the elementwise
    passes of a big call miss the cache), at most 64. On a GPU a quarter of the device's memory (or
    of `memory` bytes) over ~8 live activations of that size."""
    dev = torch.device(device)
    row = G.row_bytes
    if dev.type != "cuda":
        return max(1, min(CPU_MAX_ROWS, CPU_CALL_BYTES // row))
    total = memory if memory is not None else torch.cuda.get_device_properties(dev).total_memory
    return max(1, min(4096, int(total * GPU_BUDGET_SHARE) // (8 * row)))


@torch.no_grad()
def synthesize(G: Generator, ws: Tensor, rows: int) -> Tensor:
    """Images of ws [B, num_ws, w_dim], `rows` per call: [B, C, H, W]."""
    return torch.cat([G.synthesis(part, noise_mode="const")[0] for part in ws.split(rows)])


@torch.no_grad()
def source_images(G: Generator, seeds: list[int], truncation_psi: float, device: torch.device,
                  batch: int | None = None) -> Tensor:
    """The source images of several seeds: [B, C, H, W] (`batch`: rows per call; default by memory)."""
    return synthesize(G, source_latents(G, seeds, truncation_psi, device), batch or synthesis_rows(G, device))
