"""Train the toy StyleGAN2 on rendered scenes (CPU or CUDA), with checkpoints and resume.

Recipe (StyleGAN2-ADA's, scaled down): non-saturating logistic loss, lazy R1 on D with ADA's
gamma heuristic, style-mixing regularisation, equalised learning rate, an EMA generator whose
half-life ramps up with images shown, and fresh renderer scenes for every batch.

With `labels`, the generator also draws one label channel per class. As in SemanticGAN, an
image-only discriminator judges the RGB, and a joint discriminator judges (image, labels) with
the image detached on its way in, so the label gradient reaches only the labels and cannot
pull the RGB towards edges. Real labels are anti-aliased coverage maps, not hard {-1, 1} masks.

The training state is a folder of one file per network (G, G_ema, D, D_joint: weights only,
small enough to commit) plus opt.pt (Adam's moments, optional on resume) and state.json.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checkpoints import save_native
from ..generator import Generator, GeneratorConfig
from ..io import atomic_torch_save, atomic_write_json
from .render import CLASSES
from .recipe import LEGACY, PRECISIONS, RECIPE, TrainConfig
from .trainkit import Discriminator, SceneStream, begin_training, mixed_ws, optimisers, r1_penalty, render_dataset

log = logging.getLogger(__name__)

NETS = ("G", "G_ema", "D", "D_joint")
def resumed_state(out: str | Path, resume_from: str | None) -> Path | None:
    """The state a run in `out` resumes: out/state when it has one, else `resume_from` (None: a fresh start)."""
    state = Path(out) / "state"
    return state if (state / "state.json").exists() else Path(resume_from) if resume_from else None


def read_state(state: Path) -> dict:
    """A state folder's state.json, checked: an iteration count and a config whose recipe values have the
    types TrainConfig gives them (ValueError, one line, otherwise)."""
    path = Path(state) / "state.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not readable JSON ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or \
            not isinstance(meta.get("iter"), int) or isinstance(meta["iter"], bool) or meta["iter"] < 0:
        raise ValueError(f"{path} lacks an iteration count and a config; it is not a training state")
    defaults = TrainConfig()
    for k in RECIPE:
        if k in meta["config"] and not _fits(meta["config"][k], getattr(defaults, k), k):
            raise ValueError(f"{path}: config {k} is {meta['config'][k]!r}, not a valid value")
    if not isinstance(meta.get("history", []), list):
        raise ValueError(f"{path}: history is not a list")
    return meta


def _fits(value: object, default: object, key: str) -> bool:
    if value is None:
        return key in ("r1_gamma", "r1_gamma_joint")
    if isinstance(default, bool) or key in ("labels", "split_d", "blur_d", "pool_first", "mismatch", "reuse_fake", "channels_last"):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if isinstance(default, float) or key in ("r1_gamma", "r1_gamma_joint"):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)


def recipe_of(state: Path) -> dict:
    """The recipe options a state folder was trained with, from its state.json (keys it predates: what it was
    trained with then, LEGACY; others are left out)."""
    config = read_state(state)["config"]
    return {k: config[k] if k in config else LEGACY[k] for k in RECIPE if k in config or k in LEGACY}


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


def mismatched(real: Tensor, img_channels: int) -> Tensor:
    """Real images with wrong labels: each sample's label channels shifted cyclically by 1 .. L-1 classes, so every
    object keeps its outline but carries another class (GAN-CLS's mismatched pairs, for the joint D)."""
    L = real.shape[1] - img_channels
    shift = torch.randint(1, L, (real.shape[0], 1), device=real.device)
    idx = (torch.arange(L, device=real.device)[None] + shift) % L  # [B, L]
    labels = torch.gather(real[:, img_channels:], 1, idx[:, :, None, None].expand(-1, -1, *real.shape[2:]))
    return torch.cat([real[:, :img_channels], labels], 1)


def _label_noise(x: Tensor, std: float, img_channels: int) -> Tensor:
    if std <= 0 or x.shape[1] == img_channels:
        return x
    noise = torch.randn_like(x[:, img_channels:]) * std
    return torch.cat([x[:, :img_channels], x[:, img_channels:] + noise], 1)


class Critics:
    """The discriminators of a recipe and how each sees a batch of image (+ label) channels."""

    def __init__(self, cfg: TrainConfig, gcfg: GeneratorConfig, device: torch.device):
        dcfg = replace(gcfg, channel_base=cfg.d_channel_base)
        self.ic, self.split = gcfg.img_channels, cfg.split_d and gcfg.label_channels > 0
        self.nets = {"D": Discriminator(dcfg, in_channels=gcfg.img_channels if self.split else None,
                                        blur=cfg.blur_d, mbstd=cfg.mbstd_group, pool_first=cfg.pool_first).to(device)}
        if self.split:
            self.nets["D_joint"] = Discriminator(dcfg, blur=cfg.blur_d, mbstd=cfg.mbstd_group,
                                                 pool_first=cfg.pool_first).to(device)

    def parameters(self) -> list:
        return [p for d in self.nets.values() for p in d.parameters()]

    def requires_grad_(self, flag: bool) -> None:
        for d in self.nets.values():
            d.requires_grad_(flag)

    def scores(self, x: Tensor, detach_image: bool) -> list[Tensor]:
        """One logit vector per D; with the split, the joint D's image is detached when `detach_image`."""
        if not self.split:
            return [self.nets["D"](x)]
        img = x[:, :self.ic]
        return [self.nets["D"](img), self.nets["D_joint"](torch.cat([img.detach() if detach_image else img,
                                                                      x[:, self.ic:]], 1))]

    def mismatch_score(self, real: Tensor) -> Tensor:
        """The joint D's logits on real images with class-shifted labels (`mismatched`)."""
        return self.nets["D_joint" if self.split else "D"](mismatched(real, self.ic))

    def r1(self, real: Tensor, gamma: float, gamma_joint: float) -> Tensor:
        if not self.split:
            return r1_penalty(self.nets["D"], real, gamma)
        return (r1_penalty(self.nets["D"], real[:, :self.ic], gamma)
                + r1_penalty(self.nets["D_joint"], real, gamma_joint))


def _load_state(folder: Path, modules: dict, opts: dict, cfg: TrainConfig, device: torch.device) -> int:
    """Load a state folder into `modules` (and the optimisers where opt.pt is there); returns the iteration."""
    meta = read_state(folder)
    if bool(meta["config"].get("split_d")) != cfg.split_d or meta["config"].get("labels") != cfg.labels:
        raise ValueError(f"{folder} was trained with split_d={meta['config'].get('split_d')}, "
                         f"labels={meta['config'].get('labels')}; this run asks for {cfg.split_d}, {cfg.labels}")
    for k, m in modules.items():
        m.load_state_dict(torch.load(folder / f"{k}.pt", map_location=device, weights_only=True))
    if (folder / "opt.pt").exists():
        st = torch.load(folder / "opt.pt", map_location=device, weights_only=True)
        for k, o in opts.items():
            lrs = [g["lr"] for g in o.param_groups]
            o.load_state_dict(st[k])
            for g, lr in zip(o.param_groups, lrs):  # the moments carry over; the learning rate is this run's
                g["lr"] = lr
        if "rng" in st:
            torch.set_rng_state(st["rng"].cpu())
    return int(meta["iter"])


def _save_state(folder: Path, modules: dict, opts: dict, cfg: TrainConfig, it: int, history: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, m in modules.items():
        atomic_torch_save({n: t.detach().cpu() for n, t in m.state_dict().items()}, folder / f"{k}.pt")
    atomic_torch_save({**{k: o.state_dict() for k, o in opts.items()}, "rng": torch.get_rng_state()},
                      folder / "opt.pt")
    atomic_write_json(folder / "state.json", {"iter": it, "images_shown": it * cfg.batch, "config": asdict(cfg),
                                              "history": history})


def train(cfg: TrainConfig, resume_from: str | None = None) -> Path:
    """Run (or resume) training; returns the exported generator path.

    The state lives in OUT/state; `resume_from` names another state folder to start from when OUT has none.
    """
    if cfg.iters < 1 or cfg.batch < 2 or cfg.resolution < 8 or cfg.resolution & (cfg.resolution - 1):
        raise ValueError("iters >= 1, batch >= 2 and a power-of-two resolution >= 8 are required")
    if not 0 < cfg.mismatch_weight < 1:
        raise ValueError(f"mismatch_weight must be between 0 and 1, got {cfg.mismatch_weight}")
    if not 0 < cfg.joint_weight <= 100:
        raise ValueError(f"joint_weight must be in (0, 100], got {cfg.joint_weight}")
    if cfg.mismatch and not cfg.labels:
        raise ValueError("--mismatch pairs images with wrong labels: it needs --labels")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown training precision {cfg.precision!r}; choose from {', '.join(PRECISIONS)}")
    device, out = begin_training(cfg.threads, cfg.device, cfg.out, cfg.seed)
    amp = lambda: torch.autocast(device.type, torch.bfloat16, enabled=cfg.precision == "bf16")  # noqa: E731
    gcfg = make_generator_config(cfg)
    G = Generator(gcfg).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    critics = Critics(cfg, gcfg, device)
    opt_G, opt_D = optimisers(G.parameters(), critics.parameters(), cfg.lr, cfg.r1_every)
    modules, opts = {"G": G, "G_ema": G_ema, **critics.nets}, {"opt_G": opt_G, "opt_D": opt_D}
    if cfg.channels_last:
        for m in modules.values():
            m.to(memory_format=torch.channels_last)
    state = out / "state"
    history: list = []
    src = resumed_state(out, resume_from)
    it = _load_state(src, modules, opts, cfg, device) if src else 0
    if src:
        history = read_state(src).get("history", [])
        log.info("resumed from %s at iteration %d", src, it)
    if cfg.dataset_size:
        data = render_dataset(cfg.dataset_size, cfg.resolution, world=cfg.world, labels=cfg.labels,
                              workers=cfg.workers)
        next_real = lambda: data[torch.randint(len(data), (cfg.batch,))]  # noqa: E731
        stream = None
    else:
        stream = SceneStream(cfg.batch, cfg.resolution, cfg.world, cfg.labels, it,
                             cfg.workers or os.cpu_count() or 1)
        next_real = stream
    ic, gamma = gcfg.img_channels, cfg.gamma
    gamma_joint = gamma if cfg.r1_gamma_joint is None else cfg.r1_gamma_joint
    log.info("training from iteration %d: R1 gamma %.4g, %s", it, gamma,
             "image D + joint D" if critics.split else "one D")
    stretch = {"device": str(device), "from_iter": it, "precision": cfg.precision, "r1_gamma": gamma,
               "mbstd_group": cfg.mbstd_group,
               **({"threads": torch.get_num_threads()} if device.type == "cpu" else {}),
               **({"branched_from": str(src)} if src and src != state else {})}
    t0, start = time.time(), it
    deadline = t0 + cfg.minutes * 60 if cfg.minutes > 0 else math.inf
    try:
        while it < cfg.iters:
            real = next_real().to(device).float() / 127.5 - 1
            if cfg.channels_last:
                real = real.contiguous(memory_format=torch.channels_last)
            real = torch.where(torch.rand(cfg.batch, 1, 1, 1, device=device) < 0.5, real.flip(3), real)
            real = _label_noise(real, cfg.label_noise, ic)

            G.requires_grad_(True), critics.requires_grad_(False)
            with amp():
                fake = _label_noise(_generate(G, mixed_ws(G, cfg.batch, cfg.mix_prob, device)), cfg.label_noise, ic)
                scores = critics.scores(fake, detach_image=True)
            g_terms = [F.softplus(-s.float()).mean() for s in scores]
            if critics.split:  # Adam normalises each weight's step, so the label head learns as fast at any weight:
                g_terms[-1] = cfg.joint_weight * g_terms[-1]  # what the weight sets is the pull on shared layers
            loss_G = sum(g_terms)
            opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            opt_G.step()
            with torch.no_grad():  # track w_avg for truncation
                w = G.mapping(torch.randn(cfg.batch, G.z_dim, device=device))[:, 0]
                G.mapping_net.w_avg.lerp_(w.mean(0), 0.005)

            G.requires_grad_(False), critics.requires_grad_(True)
            if cfg.reuse_fake:
                fake = fake.detach()
            else:
                with torch.no_grad(), amp():
                    fake = _label_noise(_generate(G, mixed_ws(G, cfg.batch, cfg.mix_prob, device)), cfg.label_noise,
                                        ic)
            with amp():
                scores_fake = critics.scores(fake, detach_image=False)
                scores_real = critics.scores(real, detach_image=False)
            fake_terms = [F.softplus(s.float()).mean() for s in scores_fake]
            if cfg.mismatch:  # the joint D's fake half: generated pairs and real images with wrong labels
                with amp():
                    wrong = critics.mismatch_score(real)
                mw = cfg.mismatch_weight
                fake_terms[-1] = (1 - mw) * fake_terms[-1] + mw * F.softplus(wrong.float()).mean()
            loss_D = sum(fake_terms)
            loss_D = loss_D + sum(F.softplus(-s.float()).mean() for s in scores_real)
            if it % cfg.r1_every == 0:
                loss_D = loss_D + critics.r1(real, gamma, gamma_joint) * cfg.r1_every
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()

            nimg = (it + 1) * cfg.batch
            beta = 0.5 ** (cfg.batch / max(min(cfg.ema_kimg * 1000, nimg * cfg.ema_rampup), 1e-8))
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.lerp_(p, 1 - beta)
                for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)
            it += 1
            if it % 50 == 0:
                cover = ""
                if gcfg.label_channels:  # share of pixels labelled, fake vs real: catches 'the label is a dot'
                    cover = (f"  labelled fake {(fake[:, ic:] > 0).float().mean():.3f} "
                             f"real {(real[:, ic:] > 0).float().mean():.3f}")
                log.info("iter %d  loss_G %.3f  loss_D %.3f  %.2f s/iter%s", it, loss_G.item(), loss_D.item(),
                         (time.time() - t0) / (it - start), cover)
            out_of_time = time.time() > deadline
            if it % cfg.checkpoint_every == 0 or it == cfg.iters or out_of_time:
                seen = [*history, {**stretch, "to_iter": it, "seconds": round(time.time() - t0, 1)}]
                _save_state(state, modules, opts, cfg, it, seen)
                meta = {"iterations": it, "images_shown": nimg, "world": cfg.world}
                if gcfg.label_channels:
                    meta["label_names"] = list(CLASSES)
                save_native(G_ema, out / "generator.pt", meta=meta)
                log.info("checkpoint at iteration %d -> %s", it, out)
            if cfg.snapshot_every and it % cfg.snapshot_every == 0:
                (out / "snapshots").mkdir(exist_ok=True)
                save_native(G_ema, out / "snapshots" / f"generator-{it:07d}.pt",
                            meta={"iterations": it, "images_shown": nimg, "world": cfg.world,
                                  **({"label_names": list(CLASSES)} if gcfg.label_channels else {})})
            if out_of_time:
                log.info("time budget of %.1f minutes spent at iteration %d", cfg.minutes, it)
                break
    finally:
        if stream is not None:
            stream.close()
    if not (out / "generator.pt").exists():  # resumed at or past cfg.iters
        save_native(G_ema, out / "generator.pt", meta={"iterations": it, "world": cfg.world})
    return out / "generator.pt"
