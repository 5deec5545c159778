"""Train the toy StyleGAN2 on rendered scenes (CPU or CUDA), with checkpoints and resume.

Recipe: non-saturating logistic loss, lazy R1 on D, style-mixing regularisation, equalised
learning rate in G and D, and an EMA generator whose half-life ramps up with images shown.

With `labels`, the generator also draws one label channel per class and the discriminator
judges image and labels together (joint p(image, labels), as in SemanticGAN). Real labels
are anti-aliased coverage maps, not hard {-1, 1} masks: hard edges that a generator cannot
draw hand the discriminator an easy tell, and that collapsed an earlier trial.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import save_native
from ..generator import Generator, GeneratorConfig, lrelu
from ..io import atomic_torch_save
from ..allocator import keep_freed_memory
from .render import CLASSES, class_coverage, render_antialiased, render_seed, sample_scene

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    out: str = "toy-train"  # folder for the training state, samples and the exported generator
    world: str = "flat"  # renderer world (render.WORLDS)
    labels: bool = True  # also draw one label channel per class
    label_noise: float = 0.05  # std of Gaussian noise added to real and fake label channels
    resolution: int = 32
    channel_base: int = 2048
    channel_max: int = 128
    d_channel_base: int = 1024  # the discriminator's channel_base (a lighter D than G is enough here)
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    dataset_size: int = 20000  # rendered scenes, seeds 1_000_000 + i (disjoint from test seeds)
    batch: int = 32
    iters: int = 20000
    lr: float = 0.002
    r1_gamma: float = 0.3
    r1_every: int = 4
    mix_prob: float = 0.9
    ema_kimg: float = 10.0  # EMA half-life in thousands of images (StyleGAN2: 10; ADA: batch * 10 / 32), ramped up by ema_rampup
    ema_rampup: float = 0.05
    checkpoint_every: int = 250
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    device: str = "cpu"
    seed: int = 0
    minutes: float = 0.0  # stop (with a checkpoint) after this much wall clock; 0: no limit
    workers: int = 0  # processes rendering the training scenes; 0: one per CPU core


# ---------------------------------------------------------------------------------------
# Discriminator (residual, equalised learning rate, minibatch stddev)


class EqConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1 / math.sqrt(cin * k * k)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.weight.shape[-1] // 2)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1 / math.sqrt(cin)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.gain, self.bias)


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0, self.conv1 = EqConv(cin, cin, 3), EqConv(cin, cout, 3)
        self.skip = EqConv(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.skip(F.avg_pool2d(x, 2))
        x = F.avg_pool2d(lrelu(self.conv1(lrelu(self.conv0(x)))), 2)
        return (x + y) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        res = cfg.block_resolutions[::-1]  # top -> 8
        self.fromrgb = EqConv(cfg.img_channels + cfg.label_channels, cfg.channels(res[0]), 1)
        self.blocks = nn.Sequential(*[DBlock(cfg.channels(r), cfg.channels(r // 2)) for r in res[:-1]])
        c = cfg.channels(4)
        self.conv = EqConv(c + 1, c, 3)
        self.fc = EqLinear(c * 16, c)
        self.out = EqLinear(c, 1)

    def forward(self, img: Tensor) -> Tensor:
        x = self.blocks(lrelu(self.fromrgb(img)))
        g = min(4, x.shape[0])
        s = x.reshape(g, -1, *x.shape[1:]).std(dim=0).mean(dim=[1, 2, 3])  # [B/g]
        s = s.repeat(g)[:, None, None, None].expand(-1, 1, 4, 4)
        x = lrelu(self.conv(torch.cat([x, s], 1)))
        return self.out(lrelu(self.fc(x.flatten(1)))).squeeze(1)


# ---------------------------------------------------------------------------------------


def _render_rows(first_seed: int, n: int, size: int, world: str, labels: bool) -> np.ndarray:
    rows = []
    for seed in range(first_seed, first_seed + n):
        if not labels:
            rows.append(render_seed(seed, size, world)[0])
            continue
        scene = sample_scene(seed, size, world=world)
        cov = (class_coverage(scene).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        rows.append(np.concatenate([render_antialiased(scene), cov], axis=2))
    return np.stack(rows)


def render_dataset(n: int, size: int, first_seed: int = 1_000_000, world: str = "classic", labels: bool = False,
                   workers: int = 1) -> Tensor:
    """Rendered scenes as uint8 [n, 3 (+ len(CLASSES) label coverages), size, size]; `workers` processes (0: all cores)."""
    workers = min(workers or os.cpu_count() or 1, max(1, n // 256))
    if workers <= 1:
        arr = _render_rows(first_seed, n, size, world, labels)
    else:
        step = -(-n // workers)
        starts = list(range(0, n, step))
        with ProcessPoolExecutor(workers) as ex:
            parts = ex.map(_render_rows, [first_seed + s for s in starts], [min(step, n - s) for s in starts],
                           [size] * len(starts), [world] * len(starts), [labels] * len(starts))
            arr = np.concatenate(list(parts))
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def begin_training(threads: int, device: str, out: str, seed: int) -> tuple[torch.device, Path]:
    """What every toy trainer does first: threads, device (TF32 on CUDA: GAN training does not need
    fp32's last bits), the output folder and the seed."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        keep_freed_memory()
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return dev, path


def optimisers(g_params, D: nn.Module, lr: float, r1_every: int) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for G and D; D's lr and beta2 are scaled for lazy R1 every `r1_every` steps."""
    c = r1_every / (r1_every + 1)
    return (torch.optim.Adam(g_params, lr=lr, betas=(0.0, 0.99)),
            torch.optim.Adam(D.parameters(), lr=lr * c, betas=(0.0, 0.99**c)))


def make_generator_config(cfg: TrainConfig) -> GeneratorConfig:
    return GeneratorConfig(
        resolution=cfg.resolution, z_dim=cfg.z_dim, w_dim=cfg.w_dim, channel_base=cfg.channel_base,
        channel_max=cfg.channel_max, mapping_layers=cfg.mapping_layers,
        label_channels=len(CLASSES) if cfg.labels else 0,
    )


def _generate(G: Generator, ws: Tensor) -> Tensor:
    """Image and label channels together: [B, img + label channels, H, W]."""
    if not G.cfg.label_channels:
        return G.synthesis(ws, noise_mode="random")[0]
    img, feats = G.synthesis(ws, noise_mode="random", features=("labels",))
    return torch.cat([img, feats["labels"]], 1)


def _label_noise(x: Tensor, std: float, img_channels: int) -> Tensor:
    if std <= 0 or x.shape[1] == img_channels:
        return x
    noise = torch.randn_like(x[:, img_channels:]) * std
    return torch.cat([x[:, :img_channels], x[:, img_channels:] + noise], 1)


def r1_penalty(D: nn.Module, real: Tensor, gamma: float) -> Tensor:
    """gamma/2 * E|grad_x D(x)|^2 on real data (applied lazily: the caller scales it by the interval)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2)


def _mixed_ws(G: Generator, batch: int, mix_prob: float, device: torch.device) -> Tensor:
    z = torch.randn(batch, G.z_dim, device=device)
    ws = G.mapping(z)
    if mix_prob > 0 and torch.rand(()) < mix_prob:
        cut = int(torch.randint(1, G.num_ws, ()))
        ws2 = G.mapping(torch.randn_like(z))
        ws = torch.cat([ws[:, :cut], ws2[:, cut:]], 1)
    return ws


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training; returns the exported generator path."""
    if cfg.iters < 1 or cfg.batch < 2 or cfg.resolution < 8 or cfg.resolution & (cfg.resolution - 1):
        raise ValueError("iters >= 1, batch >= 2 and a power-of-two resolution >= 8 are required")
    device, out = begin_training(cfg.threads, cfg.device, cfg.out, cfg.seed)
    gcfg = make_generator_config(cfg)
    G = Generator(gcfg).to(device)
    D = Discriminator(replace(gcfg, channel_base=cfg.d_channel_base)).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G, opt_D = optimisers(G.parameters(), D, cfg.lr, cfg.r1_every)
    state_path = out / "train-state.pt"
    it = 0
    if state_path.exists():
        st = torch.load(state_path, map_location=device, weights_only=True)
        for m, k in ((G, "G"), (D, "D"), (G_ema, "G_ema"), (opt_G, "opt_G"), (opt_D, "opt_D")):
            if k in st:  # a slim state (no optimisers) restarts Adam's moments
                m.load_state_dict(st[k])
        it = st["iter"]
        if "rng" in st:
            torch.set_rng_state(st["rng"].cpu())
        log.info("resumed from %s at iteration %d", state_path, it)
    log.info("rendering %d training scenes at %dpx", cfg.dataset_size, cfg.resolution)
    data = render_dataset(cfg.dataset_size, cfg.resolution, world=cfg.world, labels=cfg.labels, workers=cfg.workers)
    ic = gcfg.img_channels
    t0, seen = time.time(), 0
    deadline = t0 + cfg.minutes * 60 if cfg.minutes > 0 else math.inf
    while it < cfg.iters:
        idx = torch.randint(len(data), (cfg.batch,))
        real = data[idx].to(device).float() / 127.5 - 1
        real = torch.where(torch.rand(cfg.batch, 1, 1, 1, device=device) < 0.5, real.flip(3), real)
        real = _label_noise(real, cfg.label_noise, ic)

        # G step
        G.requires_grad_(True), D.requires_grad_(False)
        fake = _label_noise(_generate(G, _mixed_ws(G, cfg.batch, cfg.mix_prob, device)), cfg.label_noise, ic)
        loss_G = F.softplus(-D(fake)).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        with torch.no_grad():  # track w_avg for truncation
            w = G.mapping(torch.randn(cfg.batch, G.z_dim, device=device))[:, 0]
            G.mapping_net.w_avg.lerp_(w.mean(0), 0.005)

        # D step
        G.requires_grad_(False), D.requires_grad_(True)
        with torch.no_grad():
            fake = _label_noise(_generate(G, _mixed_ws(G, cfg.batch, cfg.mix_prob, device)), cfg.label_noise, ic)
        loss_D = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        if it % cfg.r1_every == 0:
            loss_D = loss_D + r1_penalty(D, real, cfg.r1_gamma) * cfg.r1_every
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()

        # EMA
        seen += cfg.batch
        nimg = (it + 1) * cfg.batch
        ema_nimg = min(cfg.ema_kimg * 1000, nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        it += 1
        if it % 50 == 0:
            dt = (time.time() - t0) / max(seen / cfg.batch, 1)
            cover = ""
            if gcfg.label_channels:  # share of pixels labelled, fake vs real: catches the 'label is a dot' failure
                cover = f"  labelled fake {(fake[:, ic:] > 0).float().mean():.3f} real {(real[:, ic:] > 0).float().mean():.3f}"
            log.info("iter %d  loss_G %.3f  loss_D %.3f  %.2f s/iter%s", it, loss_G.item(), loss_D.item(), dt, cover)
        out_of_time = time.time() > deadline
        if it % cfg.checkpoint_every == 0 or it == cfg.iters or out_of_time:
            state = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                     "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(), "iter": it,
                     "rng": torch.get_rng_state(), "config": asdict(cfg)}
            atomic_torch_save(state, state_path)
            meta = {"iterations": it, "images_shown": nimg, "world": cfg.world}
            if gcfg.label_channels:
                meta["label_names"] = list(CLASSES)
            save_native(G_ema, out / "generator.pt", meta=meta)
            log.info("checkpoint at iteration %d -> %s", it, out)
        if out_of_time:
            log.info("time budget of %.1f minutes spent at iteration %d", cfg.minutes, it)
            break
    if not (out / "generator.pt").exists():  # resumed at or past cfg.iters
        save_native(G_ema, out / "generator.pt", meta={"iterations": it, "world": cfg.world})
    return out / "generator.pt"


if __name__ == "__main__":
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ap = argparse.ArgumentParser(description="Train the toy StyleGAN2 (see README: instseg toy train-gan).")
    for k, v in asdict(TrainConfig()).items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    train(TrainConfig(**vars(ap.parse_args())))
