"""Labelling your own photos: `label`. Its projection options and their bounds come from config.LabelConfig."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click

from .. import config as C
from .base import FiniteFloat, OutPath, _run_option, main, progress, summary

# What each LabelConfig field means on the command line. Everyday ones are flags; the rest are tuning knobs set
# with --set label.KEY=VALUE (their old flags stay one release, hidden, and say so).
LABEL_HELP = {
    "fit": "How an image enters the generator's square frame: centre crop, pad with its mean colour, or stretch. "
           "Masks and boxes are mapped back to the image's own pixels.",
    "steps": "Projection steps (Adam on W+ from w_avg, noise fixed).",
    "refine": "Move each mask to the photo's own edges, at its own size: GrabCut seeded from the mask (its core "
              "object, outside its box background; a box GrabCut finds empty needs a sure detection), or none; auto: "
              "grabcut for a photo at least twice the generator's size, else none.",
    "min_psnr": "Images reconstructed below this PSNR are marked low_fidelity in their record and in COCO.",
    "lr": "Projection learning rate.",
    "loss": "Projection loss: pixel MSE, or that plus L1 at 1/2 and 1/4 scale (multiscale).",
    "space": "Projection space: a w per layer (W+) or one w shared by all layers (W).",
    "batch": "Images projected together.",
    "cluster_at": "Cluster each box crop at the photo's own pixels (up to 4 times the generator's size and 1024 px), "
                  "or in the generator's frame (masks mapped up to the photo).",
    "error_scale": "Where the projection misses the photo, its variants count less: weight exp(-(e/E)^2) at a pixel "
                   "of reconstruction error e; 0: the same everywhere.",
}
EVERYDAY = ("fit", "steps", "refine", "min_psnr")
OLD_FLAGS = {"batch": "--project-batch"}  # flags whose name was not the field's


def _label_option(field: str) -> Callable:
    """A `label` option for a LabelConfig field: its default, choices and bounds read from the config."""
    default = C.label_default(field)
    name = OLD_FLAGS.get(field, "--" + field.replace("_", "-"))
    kw: dict[str, Any] = {"default": None, "metavar": field.upper() if field not in C.LABEL_CHOICES else None}
    if field in C.LABEL_CHOICES:
        kw["type"] = click.Choice(C.LABEL_CHOICES[field])
    elif field in C.LABEL_BOUNDS:
        lo, hi = C.LABEL_BOUNDS[field]
        kw["type"] = click.IntRange(int(lo), int(hi)) if isinstance(default, int) else FiniteFloat(lo, hi)
    help = f"{LABEL_HELP[field]}  [default: {default}]"
    if field in EVERYDAY:
        return click.option(name, field, help=help, **kw)

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            click.echo(f"Warning: {name} is now --set label.{field}=VALUE; the flag goes in the next release", err=True)
        return value

    return click.option(name, field, hidden=True, callback=warn, help=help, **kw)


def _label_options(f: Callable) -> Callable:
    for field in reversed(list(LABEL_HELP)):
        f = _label_option(field)(f)
    return f


@main.command()
@click.argument("images", metavar="IMAGES...", nargs=-1, required=True)
@click.option("--gan", default=C.field_default("gan"), show_default=True, metavar="NAME|PATH|URL",
              help="Generator to project the images into (a preset, a checkpoint path or a URL).")
@click.option("--out", "out", required=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Output folder; re-running the same command there resumes.")
@_label_options
@click.option("--copy", is_flag=True, help="Copy the images into DIR/images (default: hard links where possible).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="YAML mapping of RunConfig fields over the preset's, and a `label:` mapping of projection "
                   "settings.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set any RunConfig field, or a projection setting as label.KEY (label.lr=0.1, label.space=w); "
                   "repeatable.")
@_run_option("--detector", "Box detector, run on each fitted image: none, yolo:PATH|NAME or frcnn[:PATH].",
             preset=True, metavar="SPEC")
@_run_option("--classes", "Detector classes to keep.", preset=True, metavar="A,B")
@_run_option("--conf", "Detector score threshold.", metavar="P")
@_run_option("--variants", "Style-mixed variants per image.", metavar="N")
@_run_option("--mix-from", "Crossover(s): ws[c:] of the projected latent replaced per variant.", preset=True,
             metavar="C[,C..]")
@_run_option("--method", "variants: ours; or a single-image baseline.", type=click.Choice(C.METHODS))
@_run_option("--device", "Where to compute: auto, cpu, cuda or cuda:N.", metavar="DEV")
def label(images: tuple[str, ...], gan: str, out: str, copy: bool, config_file: str | None, sets: tuple[str, ...],
          mix_from: str | None, **flags: Any) -> None:
    """Label real IMAGES (files, folders or globs): project each into the generator's W+, then segment it by
    style mixing, as `run` does for samples. Writes a COCO dataset whose file_names are the images'."""
    from ..labeler import label_images

    label_flags = {k: flags.pop(k) for k in list(flags) if k in LABEL_HELP}
    file_run, file_label = C.split_label_keys(C.load_config_file(config_file) if config_file else {})
    set_run, set_label = C.split_label_keys(C.parse_set(sets))
    overrides = dict(flags)
    if mix_from is not None:
        overrides["mix_from"] = C.parse_ints(mix_from)
    cfg = C.build_config(gan, overrides, file_run, set_run, photos=True)
    lcfg = C.label_config({**file_label, **set_label}, {**label_flags, "copy": copy or None}, gan)
    started = time.perf_counter()
    bar = progress(None, "instseg label", "finding the images")

    def on_image(key: int, skipped: bool) -> None:
        bar.update()

    def on_status(text: str, total: int | None) -> None:
        if total is not None:
            bar.total = total
        bar.set_postfix_str(text)

    try:
        path = label_images(list(images), cfg, lcfg, Path(out), on_image, on_status=on_status)
    finally:
        bar.close()
    click.echo(summary(path, time.perf_counter() - started))
