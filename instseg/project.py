"""Project images into a generator's W+: the latent whose synthesis reconstructs each image (pure tensors)."""
from __future__ import annotations

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
    loss: Tensor  # [B] the final loss


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


def project(G: Generator, targets: Tensor, steps: int = 300, lr: float = 0.05, loss: str = "pixel",
            space: str = "w+") -> Projection:
    """Fit latents to target images [B, C, H, W] in [-1, 1] (the generator's size), all in one batch.

    `space` w+ fits every w of every image; w fits one w per image, shared by all layers (StyleGAN2's own
    projector), which stays nearer the latents the generator draws. Starts from w_avg with noise fixed.
    Each image's loss reaches only its own latent and Adam's moments are per element, so a batch changes
    an image's result only through float summation order.
    """
    if loss not in LOSSES or space not in SPACES:
        raise ValueError(f"loss must be one of {LOSSES} and space one of {SPACES}, got {loss!r}, {space!r}")
    B = targets.shape[0]
    w_avg = G.mapping_net.w_avg.detach().float()
    w = w_avg[None, None].repeat(B, G.num_ws if space == "w+" else 1, 1).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    G.requires_grad_(False)
    targets = targets.float()
    for i in range(steps):
        for g in opt.param_groups:  # cosine decay over the last quarter
            t = max(0.0, (i / max(steps - 1, 1) - 0.75) / 0.25)
            g["lr"] = lr * 0.5 * (1 + torch.cos(torch.tensor(t * torch.pi)).item())
        img = G.synthesis(w.expand(B, G.num_ws, -1), noise_mode="const")[0]
        per_image = image_loss(img, targets, loss)
        opt.zero_grad(set_to_none=True)
        per_image.sum().backward()
        opt.step()
    with torch.no_grad():
        ws = w.detach().expand(B, G.num_ws, -1).contiguous()  # [B, num_ws, w_dim]
        img = G.synthesis(ws, noise_mode="const")[0]
        return Projection(ws, psnr(img, targets), image_loss(img, targets, loss))
