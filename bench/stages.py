"""Per-stage time of the whole-image path for one config-f 256x256 image (random weights).

    python -m bench.stages [--device cpu|cuda] [--variants 32]

Stages: variants (mapping + synthesis of N style-mixed images), features (per-pixel vectors),
clustering (k-means), foreground, export (mask upsampling, RLE, PNGs and JSON to a temp dir).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.common import write_section
from instseg import coco
from instseg.cluster import kmeans
from instseg.config import RunConfig
from instseg.features import pixel_features, variant_stack, work_size
from instseg.foreground import RULES
from instseg.generator import Generator, GeneratorConfig, to_uint8
from instseg.io import atomic_save_png, atomic_write_json
from instseg.sampling import mix_ws, variant_rng
from instseg.features import upsample_labels
from instseg.sampling import source_ws


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_image(G: Generator, cfg: RunConfig, seed: int, device: torch.device, out: Path) -> dict[str, float]:
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    ws = source_ws(G, seed, cfg.truncation_psi, device)
    image = G.synthesis(ws)[0][0]
    ws_var = mix_ws(G, ws, cfg.variants, cfg.mix_from, variant_rng(seed), cfg.truncation_psi)
    hw = work_size(tuple(image.shape[-2:]), cfg.work_res)
    stack = variant_stack(G, ws_var, cfg.features, hw, cfg.batch)
    sync(device)
    t["variants"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = pixel_features(stack, cfg.normalize)
    sync(device)
    t["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, _ = kmeans(x, cfg.k, cfg.kmeans_iters, cfg.kmeans_tol, seed=seed)
    labels = labels.reshape(hw)
    fg = RULES[cfg.foreground](labels, cfg.k)
    sync(device)
    t["clustering"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = upsample_labels(labels, cfg.k, tuple(image.shape[-2:]))
    mask = fg[full].cpu().numpy()
    ann = coco.annotation(mask, 1, 1, 1.0)
    atomic_save_png(out / f"{seed}.png", to_uint8(image[None])[0])
    atomic_save_png(out / f"{seed}-parts.png", full.cpu().numpy().astype("uint8"))
    atomic_write_json(out / f"{seed}.json", ann)
    t["export"] = time.perf_counter() - t0
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", type=int, default=32)
    ap.add_argument("--work-res", type=int, default=128)
    ap.add_argument("--images", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(resolution=256)).eval().requires_grad_(False).to(device)
    cfg = RunConfig(variants=args.variants, mix_from=(6, 7, 8, 9), work_res=args.work_res, batch=8)
    runs = []
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        one_image(G, cfg, 99, device, Path(tmp))  # warm-up
        for s in range(args.images):
            runs.append(one_image(G, cfg, s, device, Path(tmp)))
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    total = sum(mean.values())
    rows = ["| stage | s / image | share |", "|---|---:|---:|"]
    rows += [f"| {k} | {v:.3f} | {v / total:.0%} |" for k, v in mean.items()]
    rows.append(f"| **total** | **{total:.3f}** | end-to-end / variants = {total / mean['variants']:.2f} |")
    body = (f"One 256x256 image, config-f architecture with random weights, N={cfg.variants} variants, "
            f"RGB features clustered at {hw_text(cfg)}, k={cfg.k}, batch {cfg.batch}; mean of "
            f"{args.images} images after a warm-up.\n\n" + "\n".join(rows))
    write_section(f"stages-{device.type}", f"Whole-image path, per stage ({device.type})", body, device)


def hw_text(cfg: RunConfig) -> str:
    return f"{cfg.work_res}x{cfg.work_res}"


if __name__ == "__main__":
    main()
