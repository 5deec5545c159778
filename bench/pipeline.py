"""End-to-end images/s of `instseg run`, split into source / detect / generate / cluster / export.

    python -m bench.pipeline toy [--images 16] [--device cpu]     # toy-flat + its YOLOv8n-seg
    python -m bench.pipeline f256 [--images 4] [--device cpu]     # config-f 256, random weights, fixed boxes
    python -m bench.pipeline sg3t256 [--images 4] [--device cuda]  # StyleGAN3-T 256, random weights, fixed boxes

'source' makes the source images for the detector, 'generate' the N variants of each; 'variants
only' times that generation alone, in a separate pass (with the same shared early blocks). Our
overhead beyond making the variants is end-to-end / generate, timed within the same run (this VM's
speed drifts by 20-30% between passes, which the separate pass suffers from). `--json` prints one JSON line with the ratio and images/s.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import write_section
from detectors import Detections
from instseg.checkpoints import load_generator, save_native
from instseg.config import build_config
from instseg.features import variant_stacks, work_size
from instseg.generator import Generator, GeneratorConfig
from instseg.sampling import source_latents, synthesis_rows, variant_latents
from instseg.stylegan3 import SG3Generator, design, design_filters
from instseg.pipeline import prepare_generator
from instseg.runner import run
from instseg.segment import METHODS
from instseg.zoo import resolve_gan


class FixedBoxes:
    """A stand-in detector: the same two overlapping boxes on every image (fractions of the size)."""

    class_names = ["object"]

    def __call__(self, images):
        h, w = images[0].shape[:2]
        b = np.array([[0.15, 0.2, 0.6, 0.8], [0.45, 0.3, 0.9, 0.9]], np.float32) * [w, h, w, h]
        return [Detections(b.astype(np.float32), np.array([0.9, 0.8], np.float32), ["object", "object"]) for _ in images]


def variants_only(gan: Path, cfg, device: torch.device) -> float:
    """The variants alone, made as the pipeline makes them: each chunk's seeds through synthesis together."""
    G = prepare_generator(load_generator(gan, device), cfg, device)
    rows = synthesis_rows(G, device)
    hw = work_size(G.out_hw, cfg.work_res)
    seeds = list(cfg.seeds)
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(seeds), cfg.batch):
            chunk = seeds[i:i + cfg.batch]
            ws = variant_latents(G, chunk, source_latents(G, chunk, cfg.truncation_psi, device), cfg.variants,
                                 cfg.mix_from, cfg.repeats, cfg.truncation_psi)
            variant_stacks(G, ws, cfg.features, [[(None, hw)]] * (len(chunk) * cfg.repeats), rows,
                           shared_ws=min(cfg.mix_from))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t


def profile(cfg, out: Path, detector, device: torch.device) -> None:
    """One run under torch.profiler: the operators that take the most time, printed."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        run(cfg, out, detector=detector)
    keys = ["self_device_time_total", "self_cuda_time_total"] if device.type == "cuda" else ["self_cpu_time_total"]
    for key in keys:  # torch renamed the CUDA column to "device" in 2.4
        try:
            print(prof.key_averages().table(sort_by=key, row_limit=25), file=sys.stderr)
            return
        except (AttributeError, KeyError, ValueError):
            continue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("world", choices=["toy", "f256", "sg3t256"])
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", default="variants", choices=list(METHODS))
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of writing BENCHMARKS.md")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each measurement; medians are reported")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="generator arithmetic")
    ap.add_argument("--encoders", type=int, default=-1, help="encoding processes (-1: the run's default)")
    ap.add_argument("--batch", type=int, default=None, help="seeds per chunk (default: the config's)")
    ap.add_argument("--profile", action="store_true", help="also print the top operators of one run (torch.profiler)")
    args = ap.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.world == "toy":
            n = args.images or 16
            cfg = build_config("toy-flat", {"seeds": tuple(range(10_000, 10_000 + n)), "device": args.device,
                                              "method": args.method, "precision": args.precision,
                                              "encoders": args.encoders, **({"batch": args.batch} if args.batch else {})})
            gan, detector, what = resolve_gan("toy-flat").path, None, "toy-flat 32x32 with its YOLOv8n-seg"
        else:
            n = args.images or 4
            torch.manual_seed(0)
            gan = Path(tmp) / f"{args.world}.pt"
            if args.world == "f256":
                save_native(Generator(GeneratorConfig(resolution=256)), gan)
                mix, what = (6, 7, 8, 9), "config-f 256x256"
            else:  # the -T layout of NVIDIA's 256 px models, filters by the paper's recipe
                G3 = SG3Generator(design(256))
                design_filters(G3)
                save_native(G3, gan)
                mix, what = (7, 8, 9, 10), "StyleGAN3-T 256x256"
            cfg = build_config(str(gan), {"seeds": tuple(range(n)), "mix_from": mix, "variants": 32,
                                          "method": args.method, "precision": args.precision,
                                          "device": args.device, "detector": "fixed", "classes": ("object",),
                                          "encoders": args.encoders, **({"batch": args.batch} if args.batch else {})})
            detector, what = FixedBoxes(), f"{what}, random weights, 2 fixed overlapping boxes"
        # warm-up on a throwaway seed so one-off start-up costs stay out of the figures
        run(build_config(cfg.gan, {**cfg.to_dict(), "seeds": (999_999,)}), Path(tmp) / "warm", detector=detector)
        # end-to-end and variants-only alternate, `--repeats` times each; the medians are compared
        totals, alone, runs = [], [], []
        for r in range(args.repeats):
            timings_r: dict[str, float] = {}
            t = time.perf_counter()
            run(cfg, Path(tmp) / f"run{r}", timings=timings_r, detector=detector)
            totals.append(time.perf_counter() - t)
            runs.append(timings_r)
            if cfg.method == "variants":
                alone.append(variants_only(gan, cfg, device))
        mid = sorted(range(len(totals)), key=totals.__getitem__)[len(totals) // 2]
        total, timings = totals[mid], runs[mid]
        gen_alone = sorted(alone)[len(alone) // 2] if alone else None
        rows_per_call = synthesis_rows(load_generator(gan, "cpu"), device)
        vs_fp32 = None
        if cfg.precision != "fp32":  # the masks against full precision, same seeds (not timed)
            from bench.compare import compare

            run(build_config(cfg.gan, {**cfg.to_dict(), "precision": "fp32"}), Path(tmp) / "fp32", detector=detector)
            vs_fp32 = compare(Path(tmp) / "fp32", Path(tmp) / "run0")
        if args.profile:
            profile(cfg, Path(tmp) / "profiled", detector, device)
    load = timings.pop("load", 0.0)  # loading the generator and detector: once per run, not per image
    steady = total - load
    if args.json:
        print(json.dumps({"world": args.world, "method": cfg.method, "precision": cfg.precision, "images": n,
                          "batch": cfg.batch, "encoders": cfg.encoders,
                          "images_per_s": n / steady,
                          "ratio_end_to_end_over_variants": None if gen_alone is None else steady / gen_alone,
                          "ratio_with_loading": None if gen_alone is None else total / gen_alone, "load_s": load,
                          "ratio_end_to_end_over_generate_stage": steady / timings["generate"] if "generate" in timings
                          else None,
                          "s_per_image": {k: v / n for k, v in timings.items()}, "device": str(device),
                          "vs_fp32": vs_fp32, "rows_per_call": rows_per_call}))
        return
    rows = ["| stage | s / image | share |", "|---|---:|---:|"]
    rows += [f"| {k} | {v / n:.3f} | {v / steady:.0%} |"
             for k, v in timings.items()]
    rows.append(f"| **end to end, after loading** | **{steady / n:.3f}** | **{n / steady:.2f} images/s** |")
    rows.append(f"| loading (generator, detector; once per run) | {load:.2f} s per run | |")
    if "generate" in timings:
        rows.append(f"| variants (generate stage) inside the run | {timings['generate'] / n:.3f} | **ratio end-to-end / "
                    f"generate = {steady / timings['generate']:.2f}** |")
    if gen_alone is not None:
        rows.append(f"| variants only, separate pass (N={cfg.variants}) | {gen_alone / n:.3f} | ratio end-to-end / "
                    f"variants = {steady / gen_alone:.2f} ({total / gen_alone:.2f} with loading) |")
    body = (f"{what}; --method {cfg.method}, N={cfg.variants} variants, k={cfg.k}, work_res {cfg.work_res}, batch {cfg.batch}, "
            f"{n} images after a one-image warm-up; medians of {args.repeats} alternating repeats.\n\n" + "\n".join(rows))
    write_section(f"pipeline-{args.world}-{args.method}-{device.type}",
                  f"instseg run, per stage: {args.world}, --method {args.method} ({device.type})", body, device)


if __name__ == "__main__":
    main()
