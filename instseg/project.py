"""Project images into a generator's W+: the latent whose synthesis reconstructs each image (pure tensors).

Three spaces: W+ (a w per layer, from w_avg), W (one w for every layer, StyleGAN2's own projector), and a
pivot (one w first, with noise added to it and ramped down as StyleGAN2's projector does, then W+ as the
pivot plus per-layer offsets under an L2 penalty, e4e's regulariser used inside the optimisation). A prior
in P_N space (Zhu et al. 2020: the mapping's last leaky ReLU undone, then whitened by a PCA of mapped z)
keeps the codes near the ones the generator draws; several starts keep each image's best."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import PROJECTION_LOSSES as LOSSES, PROJECTION_SPACES as SPACES
from .generator import Generator

PN_SAMPLES = 10_000  # mapped z's whose PCA whitens P_N space
PN_SEED = 7_000_003  # their stream, used by nothing else
NOISE_START, NOISE_RAMP = 0.05, 0.75  # StyleGAN2's projector: w noise of 0.05 x W's spread, ramped to 0 by 3/4
PTI_LR = 3e-4  # pivotal tuning (Roich et al. 2021): Adam on the synthesis weights at their learning rate
PTI_LOCALITY = 0.1  # their locality regulariser's weight ...
PTI_RADIUS = 1.0  # ... at latents this far from the pivot, in W's spread (sqrt(w_dim) x w_spread_of: a sample's distance)


@dataclass
class Projection:
    ws: Tensor  # [B, num_ws, w_dim] the fitted W+ latents
    psnr: Tensor  # [B] reconstruction PSNR in dB (images in [-1, 1], peak-to-peak 2)
    loss: Tensor  # [B] the final reconstruction loss
    images: Tensor  # [B, C, H, W] the reconstructions G(ws)


@dataclass(frozen=True)
class PNStats:
    """P_N space of a generator: v = the mapping's output with its last leaky ReLU undone; x = (v - mean) @ whiten."""

    mean: Tensor  # [w_dim]
    whiten: Tensor  # [w_dim, w_dim]

    def penalty(self, ws: Tensor) -> Tensor:
        """Mean squared whitened value per image [B] of ws [B, L, w_dim]."""
        return ((unleak(ws) - self.mean) @ self.whiten).square().mean(dim=(1, 2))


def unleak(w: Tensor) -> Tensor:
    """Undo the mapping's last activation, lrelu(x, 0.2) * sqrt(2): slope 5 below zero."""
    v = w / math.sqrt(2)
    return torch.where(v >= 0, v, v * 5)


@torch.no_grad()
def pn_stats(G: Generator, samples: int = PN_SAMPLES, seed: int = PN_SEED) -> PNStats:
    """The whitening of P_N space from `samples` fixed z's (deterministic; about a second for any StyleGAN2)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).float()
    mapping = G.mapping_net
    dev = mapping.w_avg.device
    x = z.to(dev) * torch.rsqrt(z.to(dev).square().mean(dim=1, keepdim=True) + 1e-8)
    for fc in mapping.fcs:
        x = fc(x)
    v = unleak(x.double())
    mean = v.mean(0)
    cov = (v - mean).T @ (v - mean) / (len(v) - 1)
    vals, vecs = torch.linalg.eigh(cov)
    return PNStats(mean.float(), (vecs / vals.clamp_min(1e-8).sqrt()).float())


RANDOM_CNN_SEED = 7_000_005  # the fixed random feature net's weights (Amir & Weiss 2021: random features
RANDOM_CNN_WIDTHS = (16, 32, 64)  # compare images about as well as pretrained perceptual ones); no download
_random_nets: dict = {}


def random_features(x: Tensor) -> list[Tensor]:
    """Features [B, c, h, w] of a fixed, randomly initialised CNN (3x3 convs, ReLU, 2x pooling between stages),
    each unit-normalised over channels per pixel as LPIPS does. The same weights on every machine."""
    key = (x.device, x.shape[1])
    if key not in _random_nets:
        gen = torch.Generator().manual_seed(RANDOM_CNN_SEED)
        widths, convs = (x.shape[1], *RANDOM_CNN_WIDTHS), []
        for cin, cout in zip(widths, widths[1:]):
            w = torch.randn(cout, cin, 3, 3, generator=gen) * math.sqrt(2 / (cin * 9))  # He init
            convs.append(w.to(x.device))
        _random_nets[key] = convs
    feats, h = [], x
    for i, w in enumerate(_random_nets[key]):
        if i:
            h = F.avg_pool2d(h, 2) if min(h.shape[-2:]) >= 2 else h
        h = F.relu(F.conv2d(h, w, padding=1))
        feats.append(h * torch.rsqrt(h.square().sum(1, keepdim=True) + 1e-10))
    return feats


def image_loss(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """Per-image loss [B] between images [B, C, H, W]: pixel MSE, plus L1 at 1/2 and 1/4 scale for 'multiscale',
    or plus the squared distance of a fixed random CNN's normalised features for 'random-cnn'."""
    loss = (x - y).square().mean(dim=(1, 2, 3))
    if kind == "multiscale":
        for f in (2, 4):
            if min(x.shape[-2:]) >= 2 * f:
                loss = loss + (F.avg_pool2d(x, f) - F.avg_pool2d(y, f)).abs().mean(dim=(1, 2, 3))
    elif kind == "random-cnn":
        for fx, fy in zip(random_features(x), random_features(y)):
            loss = loss + (fx - fy).square().sum(1).mean(dim=(1, 2))
    return loss


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR [B] of images in [-1, 1]."""
    mse = (x.clamp(-1, 1) - y).square().mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(4.0 / mse)


def _lr(i: int, steps: int, lr: float) -> float:
    """Cosine decay over the last quarter."""
    t = max(0.0, (i / max(steps - 1, 1) - 0.75) / 0.25)
    return lr * 0.5 * (1 + math.cos(t * math.pi))


def _fit(G: Generator, targets: Tensor, start: Tensor, steps: int, lr: float, loss: str, space: str,
         prior: PNStats | None, prior_weight: float, offset_weight: float, w_std: float) -> Tensor:
    """One optimisation from `start` [B, w_dim]; returns ws [B, num_ws, w_dim]."""
    B, L = targets.shape[0], G.num_ws
    gen = torch.Generator(device="cpu").manual_seed(0)

    def objective(ws: Tensor) -> Tensor:
        img = G.synthesis(ws, noise_mode="const")[0]
        per_image = image_loss(img, targets, loss)
        if prior is not None and prior_weight > 0:
            per_image = per_image + prior_weight * prior.penalty(ws)
        return per_image

    if space == "w+":
        w = start[:, None].repeat(1, L, 1).clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
        for i in range(steps):
            opt.param_groups[0]["lr"] = _lr(i, steps, lr)
            opt.zero_grad(set_to_none=True)
            objective(w).sum().backward()
            opt.step()
        return w.detach()
    pivot_steps = steps if space == "w" else steps // 2
    w = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
    for i in range(pivot_steps):
        opt.param_groups[0]["lr"] = _lr(i, pivot_steps, lr)
        ramp = max(0.0, 1 - i / max(NOISE_RAMP * pivot_steps, 1)) ** 2
        noise = torch.randn(w.shape, generator=gen).to(w.device) * (w_std * NOISE_START * ramp) if space == "pivot" else 0
        opt.zero_grad(set_to_none=True)
        objective((w + noise)[:, None].expand(B, L, -1)).sum().backward()
        opt.step()
    pivot = w.detach()[:, None].expand(B, L, -1)
    if space == "w":
        return pivot.contiguous()
    offsets = torch.zeros_like(pivot).requires_grad_(True)
    opt = torch.optim.Adam([offsets], lr=lr, betas=(0.9, 0.999))
    rest = steps - pivot_steps
    for i in range(rest):
        opt.param_groups[0]["lr"] = _lr(i, rest, lr)
        opt.zero_grad(set_to_none=True)
        reg = offset_weight * offsets.square().mean(dim=(1, 2)) / (w_std ** 2)
        (objective(pivot + offsets) + reg).sum().backward()
        opt.step()
    return (pivot + offsets).detach()


def project(G: Generator, targets: Tensor, steps: int = 300, lr: float = 0.05, loss: str = "pixel",
            space: str = "w+", prior_weight: float = 0.0, starts: int = 1, offset_weight: float = 1.0,
            prior: PNStats | None = None) -> Projection:
    """Fit latents to target images [B, C, H, W] in [-1, 1] (the generator's size), all in one batch.

    `space`: w+, w or pivot (module docstring). `prior_weight` weighs the P_N prior (`prior`, computed from G
    when not given); `offset_weight` the pivot's offsets (relative to W's spread). `starts` > 1 also starts
    from the truncation centres (or fixed samples of W) that reconstruct each image best, and keeps each
    image's best result. Noise stays fixed. Each image's loss reaches only its own latent, so a batch changes
    an image's result only through float summation order."""
    if loss not in LOSSES or space not in SPACES:
        raise ValueError(f"loss must be one of {LOSSES} and space one of {SPACES}, got {loss!r}, {space!r}")
    G.requires_grad_(False)
    targets = targets.float()
    if prior_weight > 0 and prior is None:
        prior = pn_stats(G)
    candidates = _starts(G, targets, starts, loss)  # [S, B, w_dim]
    w_std = float(w_spread_of(G))
    best_ws, best = None, None
    for start in candidates:
        ws = _fit(G, targets, start, steps, lr, loss, space, prior, prior_weight, offset_weight, w_std)
        with torch.no_grad():
            rec = image_loss(G.synthesis(ws, noise_mode="const")[0], targets, loss)
        if best is None:
            best_ws, best = ws, rec
        else:
            better = rec < best
            best_ws = torch.where(better[:, None, None], ws, best_ws)
            best = torch.minimum(rec, best)
    with torch.no_grad():
        img = G.synthesis(best_ws, noise_mode="const")[0]
        return Projection(best_ws.contiguous(), psnr(img, targets), image_loss(img, targets, loss), img)


def tune_generator(G: Generator, target: Tensor, ws: Tensor, steps: int, lr: float = PTI_LR,
                   locality: float = PTI_LOCALITY, seed: int = 0, spread: float | None = None) -> Generator:
    """Pivotal tuning (PTI): a copy of G whose synthesis weights are tuned for `steps` so that the copy's
    image of ws [1, num_ws, w_dim] reconstructs target [1, C, H, W] (pixel MSE). Each step, a latent at
    PTI_RADIUS from the pivot (towards a fresh sample of W, stream `seed`) must keep G's own image there
    (L2, weight `locality`), so the copy stays G away from this photo. G itself is never changed.
    `spread`: W's spread (`w_spread_of(G)`), computed here when not given (pass it when tuning many photos)."""
    tuned = copy.deepcopy(G).train(False)
    tuned.requires_grad_(False)
    params = [p for name, p in tuned.named_parameters() if not name.startswith("mapping_net.")]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    pivot = ws.detach().float().mean(1)  # [1, w_dim]
    radius = (float(w_spread_of(G)) if spread is None else spread) * math.sqrt(pivot.shape[1]) * PTI_RADIUS
    target = target.float()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = (tuned.synthesis(ws, noise_mode="const")[0] - target).square().mean()
        if locality > 0:
            z = torch.randn(1, G.z_dim, generator=gen).to(pivot.device)
            c = F.one_hot(torch.randint(G.c_dim, (1,), generator=gen), G.c_dim).float().to(z.device) if G.c_dim else None
            with torch.no_grad():
                w_z = G.mapping_net(z, c=c)[:, 0]
                step = w_z - pivot
                w_r = (pivot + radius * step / step.norm().clamp_min(1e-8))[:, None].expand(1, G.num_ws, -1)
                kept = G.synthesis(w_r, noise_mode="const")[0]
            loss = loss + locality * (tuned.synthesis(w_r, noise_mode="const")[0] - kept).square().mean()
        loss.backward()
        opt.step()
    tuned.requires_grad_(False)
    return tuned


@torch.no_grad()
def w_spread_of(G: Generator, samples: int = 2000) -> Tensor:
    """W's spread: the root mean squared distance of mapped z's from w_avg."""
    z = torch.from_numpy(np.random.RandomState(PN_SEED + 1).randn(samples, G.z_dim)).float()
    w = G.mapping_net(z.to(G.mapping_net.w_avg.device))[:, 0]
    return (w - G.mapping_net.w_avg).square().sum(1).mean().sqrt() / math.sqrt(w.shape[1])


@torch.no_grad()
def _starts(G: Generator, targets: Tensor, n: int, loss: str) -> list[Tensor]:
    """w_avg, then the n - 1 candidates that reconstruct each image best: the truncation centres when G has
    them, else 64 fixed samples of W. Returns n tensors [B, w_dim]."""
    B = targets.shape[0]
    w_avg = G.mapping_net.w_avg.detach().float()
    out = [w_avg[None].expand(B, -1).clone()]
    if n <= 1:
        return out
    pool = G.mapping_net.w_centres
    if pool is None:
        z = torch.from_numpy(np.random.RandomState(PN_SEED + 2).randn(64, G.z_dim)).float()
        pool = G.mapping_net(z.to(w_avg.device))[:, 0]
    pool = pool.float()
    errs = []
    for c in pool.split(16):
        img = G.synthesis(c[:, None].expand(-1, G.num_ws, -1), noise_mode="const")[0]  # [16, C, H, W]
        errs.append(torch.stack([image_loss(img, t[None].expand_as(img), loss) for t in targets]))  # [B, 16]
    order = torch.cat(errs, 1).argsort(1)  # [B, K]
    return out + [pool[order[:, j]] for j in range(min(n - 1, len(pool)))]
