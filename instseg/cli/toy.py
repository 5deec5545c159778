"""The toy world: `toy render`, `toy labels`, and its trainers."""
from __future__ import annotations

import logging

from pathlib import Path
from typing import Any

import click

from .. import config as C
from ..config import WORLDS
from ..toy.recipe import DETECTOR_RECIPE, TrainConfig
from ..errors import UserError
from .base import FiniteFloat, OutPath, SeedList, export_yolo_layout, main, progress


@main.group()
def toy() -> None:
    """The toy world: render scenes, retrain the toy GAN and detector."""


@toy.command("render")
@click.option("--out", required=True, type=OutPath(file_okay=False), metavar="DIR", help="Output folder.")
@click.option("--seeds", type=SeedList(), default="0-99", show_default=True, metavar="LIST",
              help="Scene seeds, e.g. 0-999.")
@click.option("--size", type=click.IntRange(16, 1024), default=32, show_default=True, metavar="PX",
              help="Image size.")
@click.option("--world", type=click.Choice(WORLDS), default="flat", show_default=True,
              help="Renderer world: flat (upright, anti-aliased, flat colours: toy-flat's), textured (flat's layouts, "
                   "photographed textures in one palette per scene: toy-textured's) or classic (rotated, striped shapes; "
                   "no shipped model).")
@click.option("--format", "formats", type=click.Choice(["coco", "yolo"]), multiple=True, default=("coco",),
              show_default=True, help="Also write the Ultralytics YOLO-seg layout to DIR/yolo with 'yolo' (as `run`).")
@click.option("--yolo", is_flag=True, hidden=True, help="Old spelling of --format yolo.")
def toy_render(out: str, seeds: tuple[int, ...], size: int, world: str, formats: tuple[str, ...], yolo: bool) -> None:
    """Render scenes with exact instance masks as a COCO dataset."""
    from ..toy.dataset import write_scenes

    if yolo:
        click.echo("Warning: --yolo is now --format yolo; the old flag goes in the next release", err=True)
    with progress(len(seeds), "toy render", unit="scene") as bar:
        path = write_scenes(seeds, Path(out), size, on_seed=lambda _: bar.update(), world=world)
    click.echo(f"wrote {path}")
    if yolo or "yolo" in formats:
        click.echo(f"wrote {export_yolo_layout(Path(out), Path(out) / 'yolo')}")


@toy.command("labels")
@click.option("--gan", default=C.field_default("gan"), show_default=True, metavar="NAME|PATH",
              help="A generator with label channels (native format records their names).")
@click.option("--seeds", type=SeedList(), required=True, metavar="LIST", help="Sample seeds, as for `instseg run`.")
@click.option("--truncation-psi", type=FiniteFloat(-2, 2), default=C.field_default("truncation_psi"), show_default=True, metavar="PSI",
              help="Truncation; use the run's so the images match.")
@click.option("--truncation-centres", type=click.IntRange(1, 4096), default=None, metavar="K",
              help="Truncate toward the nearest of K W-space centres; use the run's.  [default: the preset's, else 1]")
@click.option("--min-area", type=click.IntRange(1, 1 << 24), default=1, show_default=True, metavar="PX",
              help="Drop label components smaller than this.")
@click.option("--out", required=True, type=OutPath(dir_okay=False), metavar="GT.json", help="Output COCO file.")
def toy_labels(gan: str, seeds: tuple[int, ...], truncation_psi: float, truncation_centres: int | None, min_area: int,
               out: str) -> None:
    """Write the generator's own label channels for SEEDS as COCO instances (a reference for `instseg eval`)."""
    import pickle

    from tqdm import tqdm

    from ..checkpoints import native_meta
    from ..io import atomic_write_json
    from ..runner import load_checked
    from ..sampling import set_truncation_centres
    from ..toy.labels import sample_labels
    from ..zoo import resolve_gan

    resolved = resolve_gan(gan)
    if truncation_centres is None:
        truncation_centres = C.build_config(gan, {}).truncation_centres
    G = set_truncation_centres(load_checked(resolved), truncation_centres)
    try:
        names = native_meta(resolved.path).get("label_names")
    except (RuntimeError, ValueError, AttributeError, pickle.UnpicklingError):  # not a native file: no names
        names = None
    with tqdm(total=len(seeds), unit="img", desc="labels") as bar:
        data = sample_labels(G, seeds, names, truncation_psi, min_area=min_area, on_seed=lambda _: bar.update())
    atomic_write_json(out, data)
    click.echo(f"wrote {out} ({len(data['annotations'])} instances)")


def _check_device(device: str) -> str:
    from ..pipeline import pick_device

    return str(pick_device(device))


RECIPE_DEFAULTS = TrainConfig()  # the shipped recipe: every train-gan default reads it


@toy.command("train-gan")
@click.option("--out", default=RECIPE_DEFAULTS.out, show_default=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Training folder; an existing DIR/state there is resumed.")
@click.option("--iters", type=click.IntRange(1, 10_000_000), default=RECIPE_DEFAULTS.iters, show_default=True, metavar="N",
              help="Total iterations.")
@click.option("--world", type=click.Choice(WORLDS), default=RECIPE_DEFAULTS.world, show_default=True,
              help="Renderer world to learn.")
@click.option("--labels/--no-labels", default=RECIPE_DEFAULTS.labels, show_default=True,
              help="Also draw one label channel per class (exact labels for every sample).")
@click.option("--resolution", type=click.Choice(["16", "32", "64", "128", "256"]),
              default=str(RECIPE_DEFAULTS.resolution), show_default=True,
              help="Image size.")
@click.option("--channel-base", type=click.IntRange(16, 1 << 20), default=RECIPE_DEFAULTS.channel_base, show_default=True, metavar="C",
              help="Channels at resolution r: min(C // r, 128).")
@click.option("--batch", type=click.IntRange(2, 1024), default=RECIPE_DEFAULTS.batch, show_default=True, metavar="B", help="Batch size.")
@click.option("--lr", type=FiniteFloat(1e-6, 1), default=RECIPE_DEFAULTS.lr, show_default=True, metavar="LR",
              help="Adam learning rate of G and both Ds (D's scaled for lazy R1, as in StyleGAN2).")
@click.option("--r1-gamma", type=FiniteFloat(0, 1000), default=RECIPE_DEFAULTS.r1_gamma, show_default=True, metavar="G",
              help="R1 weight (StyleGAN2-ADA's heuristic, 0.0002 * resolution^2 / batch = 0.0064 at 32 px, "
                   "collapsed on the toy world without ADA's augmentation: `python -m bench.toy_ab`; its table is in git "
                   "history).")
@click.option("--r1-gamma-joint", type=FiniteFloat(0, 1000), default=None, metavar="G",
              help="The joint (image, labels) D's R1 weight  [default: the same as --r1-gamma]")
@click.option("--d-channel-base", type=click.IntRange(16, 1 << 20), default=RECIPE_DEFAULTS.d_channel_base, show_default=True, metavar="C",
              help="The discriminators' channel base (as wide as G by default).")
@click.option("--split-d/--one-d", default=RECIPE_DEFAULTS.split_d, show_default=True,
              help="An image-only D plus a joint (image, labels) D that cannot push the RGB; or one joint D.")
@click.option("--mismatch/--no-mismatch", default=RECIPE_DEFAULTS.mismatch, show_default=True,
              help="Matching-aware joint D: real images with class-shifted labels also count as fake, so the labels "
                   "must name what the RGB draws.")
@click.option("--mismatch-weight", type=FiniteFloat(0.01, 0.99), default=RECIPE_DEFAULTS.mismatch_weight, show_default=True, metavar="W",
              help="With --mismatch: the share of the joint D's fake term taken by the mismatched real pairs "
                   "(the rest by generated pairs).")
@click.option("--joint-weight", type=FiniteFloat(0.001, 100), default=RECIPE_DEFAULTS.joint_weight, show_default=True, metavar="W",
              help="The joint D's weight in G's loss (the image D's is 1): how hard the labels' critic pulls on "
                   "the layers the RGB shares with them.")
@click.option("--mbstd-group", type=click.IntRange(1, 1024), default=RECIPE_DEFAULTS.mbstd_group, show_default=True, metavar="N",
              help="D's minibatch-stddev group: the largest divisor of the batch up to N (StyleGAN2-ADA's cifar "
                   "setting: 32).")
@click.option("--blur-d/--box-d", default=RECIPE_DEFAULTS.blur_d, show_default=True,
              help="Binomial-filtered downsampling in D, or 2x2 box.")
@click.option("--pool-first/--conv-first", default=RECIPE_DEFAULTS.pool_first, show_default=True,
              help="D's second conv of each block after its downsampling (a quarter of its cost; BENCHMARKS.md, "
                   "train-cost), or before it.")
@click.option("--r1-every", type=click.IntRange(1, 1000), default=RECIPE_DEFAULTS.r1_every, show_default=True, metavar="N",
              help="Lazy R1: the penalty every N iterations, scaled by N (StyleGAN2: 16).")
@click.option("--reuse-fake/--fresh-fake", default=RECIPE_DEFAULTS.reuse_fake, show_default=True,
              help="D's step judges G's step's batch (detached) instead of drawing a second one.")
@click.option("--channels-last/--contiguous", default=RECIPE_DEFAULTS.channels_last, show_default=True,
              help="Networks and batches in channels-last memory format.")
@click.option("--dataset-size", type=click.IntRange(0, 10_000_000), default=RECIPE_DEFAULTS.dataset_size, show_default=True, metavar="N",
              help="0: fresh renderer scenes for every batch; N: a fixed set of N scenes.")
@click.option("--ema-kimg", type=FiniteFloat(0.001, 1e6), default=RECIPE_DEFAULTS.ema_kimg, show_default=True, metavar="K",
              help="Half-life of the exported (EMA) generator's weights, in thousands of images (batch * 10 / 32 "
                   "is StyleGAN2-ADA's rule).")
@click.option("--snapshot-every", type=click.IntRange(0, 10_000_000), default=RECIPE_DEFAULTS.snapshot_every, show_default=True, metavar="N",
              help="Also keep DIR/snapshots/generator-<iter>.pt every N iterations (0: none).")
@click.option("--resume-from", type=click.Path(exists=True, file_okay=False), default=None, metavar="STATE",
              help="A state folder (such as bench/toy-state) to start from when DIR/state does not exist yet.")
@click.option("--same-recipe", is_flag=True,
              help="Take the recipe options (world, sizes, D layout, R1, --mismatch, EMA...) from the state being "
                   "resumed (DIR/state, else --resume-from); options given here still win.")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=RECIPE_DEFAULTS.precision, show_default=True,
              help="bf16: the loss passes under bf16 autocast (R1, Adam and the weights stay fp32).")
@click.option("--threads", type=click.IntRange(0, 1024), default=RECIPE_DEFAULTS.threads, show_default=True, metavar="T",
              help="CPU threads (0: torch's).")
@click.option("--workers", type=click.IntRange(0, 1024), default=RECIPE_DEFAULTS.workers, show_default=True, metavar="W",
              help="Processes rendering scenes (0: one per CPU core; 1: in the trainer).")
@click.option("--minutes", type=FiniteFloat(0, 1e6), default=RECIPE_DEFAULTS.minutes, show_default=True, metavar="M",
              help="Stop with a checkpoint after M minutes of training (0: no limit); run again to resume.")
def toy_train_gan(resolution: str, device: str, resume_from: str | None, same_recipe: bool, **kw: Any) -> None:
    """Train (or resume) the toy StyleGAN2; writes DIR/generator.pt in the native format and DIR/state."""
    from ..toy.train_gan import recipe_of, resumed_state, train

    logging.getLogger("instseg").setLevel(logging.INFO)
    try:
        if same_recipe:
            src = resumed_state(kw["out"], resume_from)
            if src is None:
                raise ValueError("--same-recipe needs a state to resume: DIR/state or --resume-from")
            ctx = click.get_current_context()
            for key, value in recipe_of(src).items():
                if ctx.get_parameter_source(key) is click.core.ParameterSource.DEFAULT:
                    if key == "resolution":
                        resolution = str(value)
                    else:
                        kw[key] = value
        path = train(TrainConfig(resolution=int(resolution), device=_check_device(device), **kw), resume_from)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not path.exists():
        raise UserError(f"training ended without writing {path}")
    click.echo(f"wrote {path}")


@toy.command("train-labels")
@click.option("--gan", required=True, type=click.Path(exists=True, dir_okay=False), metavar="PATH",
              help="The trained RGB generator (native format) whose images stay as they are.")
@click.option("--out", default="toy-train/labels", show_default=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Training folder; an existing label-state.pt there is resumed.")
@click.option("--iters", type=click.IntRange(1, 10_000_000), default=5000, show_default=True, metavar="N",
              help="Total iterations.")
@click.option("--world", type=click.Choice(WORLDS), default="flat", show_default=True, help="Renderer world.")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or cuda[:N].")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True, metavar="T",
              help="CPU threads (0: torch's).")
@click.option("--minutes", type=FiniteFloat(0, 1e6), default=0.0, show_default=True, metavar="M",
              help="Stop with a checkpoint after M minutes of training (0: no limit); run again to resume.")
def toy_train_labels(gan: str, out: str, iters: int, world: str, device: str, threads: int, minutes: float) -> None:
    """Train label heads (one channel per class) on a frozen RGB generator; writes DIR/generator.pt."""
    from ..toy.train_labels import LabelTrainConfig, train_labels

    logging.getLogger("instseg").setLevel(logging.INFO)
    path = train_labels(LabelTrainConfig(gan=gan, out=out, iters=iters, world=world,
                                         device=_check_device(device), threads=threads, minutes=minutes))
    click.echo(f"wrote {path}")


@toy.command("train-detector")
@click.option("--out", default="toy-train/detector", show_default=True, type=OutPath(file_okay=False),
              metavar="DIR", help="Training folder.")
@click.option("--scenes", type=click.IntRange(2, 1_000_000), default=DETECTOR_RECIPE["scenes"], show_default=True, metavar="N",
              help="Rendered training scenes.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=DETECTOR_RECIPE["epochs"], show_default=True, metavar="E", help="Epochs.")
@click.option("--imgsz", type=click.IntRange(32, 2048), default=DETECTOR_RECIPE["imgsz"], show_default=True, metavar="PX",
              help="Training image size (a multiple of 32).")
@click.option("--world", type=click.Choice(WORLDS), default="flat", show_default=True,
              help="Renderer world of the training scenes.")
@click.option("--size", type=click.IntRange(16, 1024), default=DETECTOR_RECIPE["size"], show_default=True, metavar="PX",
              help="Rendered scene size (smaller scenes are upscaled to --imgsz in training).")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu, cuda or cuda:N.")
@click.option("--gan", default=None, metavar="NAME|PATH",
              help="A generator with label channels named as the world's classes: its samples, with their exact "
                   "labels, join the scenes (a detector for that generator's images).")
@click.option("--gan-samples", type=click.IntRange(0, 1_000_000), default=4000, show_default=True, metavar="N",
              help="With --gan: how many of its samples (seeds 6000000 on, used by nothing else).")
def toy_train_detector(out: str, scenes: int, epochs: int, imgsz: int, world: str, size: int, device: str,
                       gan: str | None, gan_samples: int) -> None:
    """Train the toy YOLOv8n-seg from its yaml on rendered scenes; writes DIR/toy-WORLD-yolo.pt."""
    from ..toy.train_detector import train

    if imgsz % 32:
        raise UserError(f"--imgsz must be a multiple of 32, got {imgsz}")
    device = _check_device(device)  # cpu, cuda or cuda:N, as every command takes it; Ultralytics wants 'cpu' or 'N'
    device = "cpu" if device == "cpu" else device.partition(":")[2] or "0"
    path = train(Path(out), scenes, epochs, imgsz, size=size, device=device, world=world, gan=gan,
                 gan_samples=gan_samples)
    click.echo(f"wrote {path}")
