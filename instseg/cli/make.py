"""Making datasets: `run`, `merge`, and the generators they read (`models`, `convert`)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from .. import config as C
from ..errors import UserError
from .base import OutPath, SeedList, _run_option, _tqdm_download, export_yolo_layout, knob, main, progress, summary


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def models(as_json: bool) -> None:
    """List the named generators: resolution, what they segment, licence, cache state and source."""
    import json

    from ..zoo import default_cache, preset_table

    cache = default_cache()
    rows = preset_table(cache)
    if as_json:
        click.echo(json.dumps({"cache": str(cache), "presets": rows}, indent=1))
        return
    table = [("name", "size", "segments", "licence", "cached", "source")]
    for r in rows:
        what = (f"{len(r['class_names'])} classes (conditional)" if r.get("class_names") else
                f"{','.join(r['classes'])} (detector)" if r["classes"] else f"{r['category']} (whole image)")
        table.append((r["name"], f"{r['resolution'][1]}x{r['resolution'][0]}", what,
                      "MIT" if r["licence"]["commercial"] else "non-commercial",
                      "packaged" if not r["urls"] else ("yes" if r["cached"] else "no"),
                      r["urls"][0] if r["urls"] else "shipped with instseg"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:  # every column as wide as its widest cell; the source last, unpadded
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    click.echo(f"cache: {cache} (set INSTSEG_CACHE to move it). Non-commercial: datasets made with these "
               "generators may only be used for non-commercial research.")


@main.command()
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST", type=OutPath(dir_okay=False))
@click.option("--half", is_flag=True, help="Store float16 weights (half the file size).")
def convert(src: str, dst: str, half: bool) -> None:
    """Convert a checkpoint SRC (preset, path or URL; any supported format) to the native format DST."""
    from ..checkpoints import detect_and_load, native_meta as torch_meta, save_native
    from ..runner import validate_checkpoint
    from ..zoo import resolve_gan

    gan = resolve_gan(src, progress=_tqdm_download(), validate=validate_checkpoint, flag="SRC")
    try:
        G, fmt = detect_and_load(gan.path.read_bytes(), str(gan.path))
    except UserError as e:
        raise gan.load_error(e) from None
    lic = gan.licence
    meta = {"converted_from": src, "source_format": fmt, "licence": lic.name, "licence_url": lic.url,
            **({"licence_commercial": lic.commercial} if lic.commercial is not None else {})}
    if fmt == "native":  # keep e.g. the training record of a native file
        meta = {**torch_meta(gan.path), **meta}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_native(G, dst, meta=meta, half=half)
    click.echo(f"{src} ({fmt}, {G.cfg.resolution}px, {G.num_ws} ws) -> {dst}")


@main.command()
@click.option("--gan", default=C.field_default("gan"), show_default=True, metavar="NAME|PATH|URL",
              help="Generator: a preset (see `instseg models`), a checkpoint path or a URL.")
@click.option("--out", "out", required=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Output folder; re-running the same command there resumes.")
@click.option("--num-images", type=click.IntRange(1, C.MAX_SEEDS), default=None, metavar="N",
              help="Make N images from seeds 0..N-1 (default: the config's seeds).")
@click.option("--seeds", type=SeedList(), default=None, metavar="LIST",
              help="Seeds such as 0-99,120 (instead of --num-images).")
@click.option("--shard", default=None, metavar="I/N",
              help="Run shard I of N (0-based): every N-th seed from position I. Merge shards with `instseg merge`.")
@click.option("--ray", "ray_address", default=None, metavar="local|auto|ADDRESS",
              help='Run on Ray workers: a local cluster, the running one, or ADDRESS (pip install "instseg[ray]").')
@click.option("--workers", type=click.IntRange(1, 4096), default=1, show_default=True, metavar="N",
              help="Ray workers (actors); each takes one GPU when the cluster has GPUs, else one CPU.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="YAML mapping of RunConfig fields (e.g. nms_iou, min_area, kmeans_iters) over the preset's.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set any RunConfig field, e.g. --set nms_iou=0.6 --set mix_from=[6,7]; repeatable.")
@_run_option("--method", "variants: ours. The others are single-image baselines on the same boxes.",
             type=click.Choice(C.METHODS))
@_run_option("--variants", "Style-mixed variants per image.", metavar="N")
@_run_option("--mix-from", "Crossover(s) c: ws[:c] kept, ws[c:] redrawn; one drawn per variant.", preset=True,
             metavar="C[,C..]")
@knob("--k", "k-means clusters.", metavar="K")
@knob("--box-k", "k-means clusters inside a detector box's crop (0: the same as --k).", preset=True,
             metavar="K")
@knob("--features", "Clustered features: 'rgb' or a synthesis layer such as b32.conv1.",
             metavar="rgb|LAYER")
@knob("--join-features", "Box crops also cluster on the source image's activations of this layer, or on its own pixels (image) "
             "(standardised; see --join-weight); none: the variant stack alone.", preset=True,
             metavar="none|image|LAYER")
@knob("--join-weight", "Weight of the joined features in the k-means distances; the variant stack's is 1.",
             preset=True, metavar="W")
@knob("--normalize", "Per-pixel normalisation of the N*C values (the baselines: of their single image's C values).", type=click.Choice(C.NORMALIZATIONS))
@knob("--repeats", "k-means repeats with fresh variants, merged by majority vote.", metavar="R")
@knob("--foreground", "Whole-image foreground rule.", preset=True, type=click.Choice(C.FOREGROUND_RULES))
@knob("--work-res", "Longest side at which pixels are clustered.", preset=True, metavar="PX")
@_run_option("--truncation-psi", "Truncation of source and variants.", metavar="PSI")
@knob("--truncation-centres", "Truncate toward the nearest of K k-means centres of W (multi-modal truncation: "
             "keeps a many-class world's modes); 1: toward the mean w, as StyleGAN does.", preset=True, metavar="K")
@_run_option("--detector", "Box detector: none (whole image), yolo:PATH|NAME or frcnn[:PATH].", preset=True,
             metavar="SPEC")
@_run_option("--classes", "Detector classes to keep, or a class-conditional generator's classes to make (seed s draws "
             "class s mod the count); they become the COCO categories.", preset=True, metavar="A,B")
@_run_option("--class-names", "A class-conditional generator's class names, one per index (default: class0, class1, "
             "...).", preset=True, metavar="A,B,..")
@click.option("--per-class", type=click.IntRange(1, C.MAX_SEEDS), default=None, metavar="N",
              help="A class-conditional generator: N images of each chosen class (seeds 0..N*classes-1).")
@_run_option("--conf", "Detector score threshold.", metavar="P")
@knob("--max-det", "Detections per image.", metavar="N")
@knob("--instance-rule", "Which clusters of a box crop form the instance.", type=click.Choice(C.INSTANCE_RULES))
@knob("--mask-score", "An instance's mask confidence: the mean k-means margin over its pixels, or that times "
             "the share of its pixels inside the box.", type=click.Choice(C.MASK_SCORES))
@knob("--box-margin", "Crop around a box, as a fraction of its size per side.", metavar="F")
@knob("--clip-margin", "Cut each instance mask to its box grown by this fraction of its size per side "
             "(at --box-margin or more: no cut).", preset=True, metavar="F")
@click.option("--format", "formats", type=click.Choice(["coco", "yolo"]), multiple=True, default=("coco",),
              show_default=True, help="Also write the Ultralytics YOLO-seg layout to DIR/yolo with 'yolo'.")
@_run_option("--device", "Where to compute: auto, cpu, cuda or cuda:N.", metavar="DEV")
@_run_option("--batch", "Seeds per chunk, processed together on the device (rows per generator call follow a "
             "memory budget).", metavar="B")
@_run_option("--precision", "Generator arithmetic (fp16 on CUDA only); clustering stays fp32.",
             type=click.Choice(C.PRECISIONS))
@click.option("--compile", "compile_", is_flag=True, default=None, hidden=True,
              callback=lambda ctx, p, v: v and click.echo("Warning: --compile is now --set compile=true; the flag "
                                                          "goes in the next release", err=True) or v,
              help="torch.compile the synthesis layers (same results; for long GPU runs).")
@knob("--encoders", "Processes that encode PNGs and masks beside the compute (-1: 0 on a CPU, more on a GPU "
             "machine).", metavar="N")
def run(gan: str, out: str, num_images: int | None, seeds: tuple[int, ...] | None, mix_from: str | None,
        per_class: int | None, shard: str | None, ray_address: str | None, workers: int, config_file: str | None, sets: tuple[str, ...],
        formats: tuple[str, ...], compile_: bool | None, **flags: Any) -> None:
    """Make a COCO segmentation dataset from a generator."""
    import dataclasses


    from ..merge import parse_shard, shard_seeds
    from ..runner import run as run_pipeline

    if sum(v is not None for v in (num_images, seeds, per_class)) > 1:
        raise UserError("give one of --num-images, --seeds and --per-class")
    overrides = dict(flags, compile=compile_ or None)
    if num_images is not None:
        overrides["seeds"] = tuple(range(num_images))
    if seeds is not None:
        overrides["seeds"] = seeds
    if mix_from is not None:
        overrides["mix_from"] = C.parse_ints(mix_from)
    cfg = C.build_config(gan, overrides, C.load_config_file(config_file) if config_file else None, C.parse_set(sets))
    if per_class is not None:  # the chosen classes' count is known once the generator is: checked again there
        n = len(cfg.classes or cfg.class_names)
        if not n:
            raise UserError("--per-class needs the classes: give --classes (or --class-names for all of them)")
        if per_class * n > C.MAX_SEEDS:
            raise UserError(f"--per-class {per_class} x {n} classes is more than {C.MAX_SEEDS:,} images")
        cfg = dataclasses.replace(cfg, seeds=tuple(range(per_class * n)))
    shard_at, shard_of = None, None
    if shard is not None:
        shard_at, shard_of = parse_shard(shard), cfg.seeds
        part = shard_seeds(cfg.seeds, *shard_at)
        if not part:
            raise UserError(f"--shard {shard} holds no seeds of the {len(cfg.seeds)} asked for")
        cfg = dataclasses.replace(cfg, seeds=part)
    started = time.perf_counter()
    bar = progress(len(cfg.seeds), "instseg run", f"loading {gan}")

    def on_seed(seed: int, skipped: bool) -> None:
        if skipped:  # done in an earlier run: counted, but not in the rate
            bar.initial += 1
            bar.n += 1
            bar.set_postfix_str(f"seed {seed} (done before)")
            return
        bar.set_postfix_str(f"seed {seed}", refresh=False)
        bar.update()

    try:
        path = run_pipeline(cfg, Path(out), on_seed, _tqdm_download(), ray=ray_address, workers=workers,
                            shard=shard_at, shard_of=shard_of, per_class=per_class)
    finally:
        bar.close()
    click.echo(summary(path, time.perf_counter() - started))
    if "yolo" in formats:
        click.echo(f"wrote {export_yolo_layout(Path(out), Path(out) / 'yolo')}")



@main.command()
@click.argument("dirs", metavar="DIR...", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=OutPath(file_okay=False), metavar="OUT",
              help="A new folder for the merged dataset (or one that holds this run already).")
@click.option("--allow-partial", is_flag=True,
              help="Merge what the shards finished and list the seeds left out, instead of refusing.")
def merge(dirs: tuple[str, ...], out: str, allow_partial: bool) -> None:
    """Merge shard folders of one run (same config and generator) into one dataset."""
    from ..merge import describe_missing, merge as merge_dirs

    started = time.perf_counter()
    with progress(None, "instseg merge", f"reading {len(dirs)} folders", unit="seed") as bar:
        def on_total(n: int) -> None:
            bar.total = n
            bar.set_postfix_str("linking images, writing records")

        path, missing = merge_dirs([Path(d) for d in dirs], Path(out), allow_partial, on_total, bar.update)
    if missing:
        click.echo(f"Warning: left out {sum(map(len, missing.values()))} unfinished seed(s): "
                   f"{describe_missing(missing)}", err=True)
    click.echo(summary(path, time.perf_counter() - started))
