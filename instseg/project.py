"""Project images into a generator's W+: the latent whose synthesis reconstructs each image (pure tensors).

Two spaces: W+ (a w per layer, from w_avg) and W (one w for every layer, StyleGAN2's own projector). A P_N
prior, a pivot space, several starts, a random-CNN loss and pivotal tuning were measured on both toy worlds'
photos and removed: none moved masks beyond noise (BENCHMARKS.md, `real-images-*-tuning`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import PROJECTION_LOSSES as LOSSES, PROJECTION_SPACES as SPACES
from .generator import Generator


@dataclass
class Projection:
    ws: Tensor  # [B, num_ws, w_dim] the fitted W+ latents
    psnr: Tensor  # [B] reconstruction PSNR in dB (images in [-1, 1], peak-to-peak 2)
    loss: Tensor  # [B] the final reconstruction loss
    images: Tensor  # [B, C, H, W] the reconstructions G(ws)


def image_loss(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """Per-image loss [B] between images [B, C, H, W]: pixel MSE, plus L1 at 1/2 and 1/4 scale for 'multiscale'."""
    loss = (x - y).square().mean(dim=(1, 2, 3))
    if kind == "multiscale":
        for f in (2, 4):
            if min(x.shape[-2:]) >= 2 * f:
                loss = loss + (F.avg_pool2d(x, f) - F.avg_pool2d(y, f)).abs().mean(dim=(1, 2, 3))
    return loss


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR [B] of images in [-1, 1]."""
    mse = (x.clamp(-1, 1) - y).square().mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def _lr(i: int, steps: int, lr: float) -> float:
    """Cosine decay over the last quarter."""
    t = max(0.0, (i / max(steps - 1, 1) - 0.75) / 0.25)
    return lr * 0.5 * (1 + math.cos(t * math.pi))


def _fit(G: Generator, targets: Tensor, steps: int, lr: float, loss: str, space: str) -> Tensor:
    """Adam from w_avg; returns ws [B, num_ws, w_dim] (W: one w repeated over the layers)."""
    B, L = targets.shape[0], G.num_ws
    w_avg = G.mapping_net.w_avg.detach().float()[None].expand(B, -1)
    w = (w_avg[:, None].repeat(1, L, 1) if space == "w+" else w_avg.clone()).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    for i in range(steps):
        opt.param_groups[0]["lr"] = _lr(i, steps, lr)
        opt.zero_grad(set_to_none=True)
        ws = w if space == "w+" else w[:, None].expand(B, L, -1)
        image_loss(G.synthesis(ws, noise_mode="const")[0], targets, loss).sum().backward()
        opt.step()
    return (w if space == "w+" else w[:, None].expand(B, L, -1)).detach().contiguous()


def project(G: Generator, targets: Tensor, steps: int = 300, lr: float = 0.05, loss: str = "pixel",
            space: str = "w+") -> Projection:
    """Fit latents to target images [B, C, H, W] in [-1, 1] (the generator's size), all in one batch, from
    w_avg. Noise stays fixed. Each image's loss reaches only its own latent, so a batch changes an image's
    result only through float summation order."""
    if loss not in LOSSES or space not in SPACES:
        raise ValueError(f"loss must be one of {LOSSES} and space one of {SPACES}, got {loss!r}, {space!r}")
    G.requires_grad_(False)
    targets = targets.float()
    ws = _fit(G, targets, steps, lr, loss, space)
    with torch.no_grad():
        img = G.synthesis(ws, noise_mode="const")[0]
        return Projection(ws, psnr(img, targets), image_loss(img, targets, loss), img)
