"""Label heads on a frozen RGB generator: the second stage of the toy world's exact labels.

Every ToRGB layer gets one extra output row per class (a 1x1 modulated conv on the block's
features, summed through the skip path like the image). Only those rows train; the image
cannot change. A pair discriminator sees (image, labels): real pairs are renderer scenes with
their anti-aliased class coverage, fakes are the generator's pairs, and real images with
another scene's labels are fakes too (a matching-aware discriminator), so the only way to fool
it is labels that fit the image they come with.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoints import load_generator, save_native
from ..generator import Generator
from ..io import atomic_torch_save
from .render import CLASSES
from .trainkit import Discriminator, begin_training, mixed_ws, optimisers, r1_penalty, render_dataset

log = logging.getLogger(__name__)


@dataclass
class LabelTrainConfig:
    gan: str = "toy-train/generator.pt"  # the frozen RGB generator (native format)
    out: str = "toy-train/labels"
    world: str = "flat"
    dataset_size: int = 20000
    batch: int = 32
    iters: int = 5000
    lr: float = 0.002
    r1_gamma: float = 1.0
    r1_every: int = 4
    mismatch: float = 0.5  # share of each real batch shown with another scene's labels, as fakes
    d_channel_base: int = 1024
    checkpoint_every: int = 250
    threads: int = 0
    device: str = "cpu"
    seed: int = 0
    minutes: float = 0.0  # stop (with a checkpoint) after this much wall clock; 0: no limit
    workers: int = 0  # processes rendering the training scenes; 0: one per CPU core


def with_label_heads(G: Generator, n: int) -> Generator:
    """A copy of an RGB generator with `n` label rows in every ToRGB: zero weights, bias -1 (background)."""
    L = Generator(replace(G.cfg, label_channels=n))
    sd = L.state_dict()
    for k, v in G.state_dict().items():
        if k.endswith("torgb.weight") or k.endswith("torgb.bias"):
            sd[k][: v.shape[0]] = v
            sd[k][v.shape[0]:] = 0
        else:
            sd[k] = v
    L.load_state_dict(sd)
    with torch.no_grad():
        L.blocks[0].torgb.bias[G.cfg.img_channels:] = -1.0
    return L


def _trainable_label_rows(G: Generator) -> list[torch.nn.Parameter]:
    """Freeze everything but the label rows of the ToRGB layers (gradients of the RGB rows are zeroed)."""
    G.requires_grad_(False)
    c = G.cfg.img_channels
    params = []
    for blk in G.blocks:
        for p in (blk.torgb.weight, blk.torgb.bias):
            p.requires_grad_(True)
            p.register_hook(lambda g, c=c: torch.cat([torch.zeros_like(g[:c]), g[c:]]))
            params.append(p)
    return params


def train_labels(cfg: LabelTrainConfig) -> Path:
    """Train (or resume) label heads; writes OUT/generator.pt with label channels and their names."""
    device, out = begin_training(cfg.threads, cfg.device, cfg.out, cfg.seed)
    G = with_label_heads(load_generator(cfg.gan), len(CLASSES)).to(device)
    params = _trainable_label_rows(G)
    D = Discriminator(replace(G.cfg, channel_base=cfg.d_channel_base)).to(device)
    opt_G, opt_D = optimisers(params, D.parameters(), cfg.lr, cfg.r1_every)
    state_path, it = out / "label-state.pt", 0
    if state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=True)
        G.load_state_dict(st["G"]), D.load_state_dict(st["D"])
        opt_G.load_state_dict(st["opt_G"]), opt_D.load_state_dict(st["opt_D"])
        it = st["iter"]
        log.info("resumed label heads at iteration %d", it)
    data = render_dataset(cfg.dataset_size, G.cfg.resolution, world=cfg.world, labels=True, workers=cfg.workers)
    ic, t0, start = G.cfg.img_channels, time.time(), it
    deadline = t0 + cfg.minutes * 60 if cfg.minutes > 0 else math.inf
    while it < cfg.iters:
        real = data[torch.randint(len(data), (cfg.batch,))].to(device).float() / 127.5 - 1
        G.eval()
        img, f = G.synthesis(mixed_ws(G, cfg.batch, 0.0, device), noise_mode="random", features=("labels",))
        loss_G = F.softplus(-D(torch.cat([img.detach(), f["labels"]], 1))).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()

        D.requires_grad_(True)
        fake = torch.cat([img.detach(), f["labels"].detach()], 1)
        n_mis = int(cfg.batch * cfg.mismatch)
        mismatched = torch.cat([real[:n_mis, :ic], real[:n_mis, ic:].roll(1, 0)], 1)
        loss_D = (F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
                  + (F.softplus(D(mismatched)).mean() if n_mis > 1 else 0))
        if it % cfg.r1_every == 0:
            loss_D = loss_D + r1_penalty(D, real, cfg.r1_gamma) * cfg.r1_every
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        it += 1
        if it % 50 == 0:
            share = (f["labels"] > 0).float().mean().item()
            log.info("labels iter %d  loss_G %.3f  loss_D %.3f  labelled %.3f (real %.3f)  %.2f s/iter", it,
                     loss_G.item(), float(loss_D), share, (real[:, ic:] > 0).float().mean().item(),
                     (time.time() - t0) / (it - start))
        out_of_time = time.time() > deadline
        if it % cfg.checkpoint_every == 0 or it == cfg.iters or out_of_time:
            atomic_torch_save({"G": G.state_dict(), "D": D.state_dict(), "opt_G": opt_G.state_dict(),
                               "opt_D": opt_D.state_dict(), "iter": it, "config": asdict(cfg)}, state_path)
            save_native(G, out / "generator.pt", meta={"label_names": list(CLASSES), "label_iterations": it,
                                                        "rgb_generator": str(cfg.gan), "world": cfg.world})
        if out_of_time:
            log.info("time budget of %.1f minutes spent at iteration %d", cfg.minutes, it)
            break
    if not (out / "generator.pt").exists():
        save_native(G, out / "generator.pt", meta={"label_names": list(CLASSES), "label_iterations": it})
    return out / "generator.pt"
