"""Style mixing: N variants that keep a source image's coarse ws (shape) and redraw the rest (colour)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .generator import Generator


def variant_rng(image_seed: int, repeat: int = 0) -> np.random.RandomState:
    """The random stream of one image's variants; distinct per (seed, repeat), the same every run."""
    return np.random.RandomState(np.random.SeedSequence([image_seed, repeat, 0x5EED]).generate_state(1)[0])


@torch.no_grad()
def mix_ws(G: Generator, ws_src: Tensor, n: int, mix_from: tuple[int, ...], rng: np.random.RandomState,
           truncation_psi: float = 0.7) -> Tensor:
    """ws_src [1, num_ws, w_dim] -> [n, num_ws, w_dim]: variant i keeps ws_src[:, :c_i], c_i drawn from mix_from."""
    if max(mix_from) >= G.num_ws:
        raise ValueError(f"crossover {max(mix_from)} must be below num_ws={G.num_ws}")
    z = torch.from_numpy(rng.randn(n, G.z_dim)).to(ws_src.device, ws_src.dtype)
    c = torch.as_tensor(rng.choice(mix_from, size=n)).to(ws_src.device)
    ws_new = G.mapping(z, truncation_psi)  # [n, num_ws, w_dim]
    keep = torch.arange(G.num_ws, device=ws_src.device)[None] < c[:, None]  # [n, num_ws]
    return torch.where(keep[..., None], ws_src.expand_as(ws_new), ws_new)
