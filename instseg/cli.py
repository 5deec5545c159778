"""The `instseg` command line."""
from __future__ import annotations

import errno
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from . import config as C
from .errors import Crash, UserError
from .config import WORLDS

log = logging.getLogger("instseg")


def _close_bars() -> None:
    """Close open progress bars so an error starts on a line of its own."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler's stop, `kill`) unwinds like Ctrl-C, so writers finish or clean up."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _verbose_first(args: list[str]) -> list[str]:
    """-v/-vv/--verbose anywhere before a `--` moves in front of the subcommand, where the group reads it."""
    end = args.index("--") if "--" in args else len(args)
    verbose = [a for a in args[:end] if a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"})]
    return verbose + [a for a in args[:end] if a not in verbose] + args[end:]


class _Group(click.Group):
    """Reports bad input and environment as one line with exit code 2, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = _verbose_first(list(sys.argv[1:] if args is None else args))
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        _terminate_as_interrupt()
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as e:  # usage errors: one line, not click's usage block
            _close_bars()
            click.echo(f"Error: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            self._fail(ctx, str(e))
        except Crash as e:
            _close_bars()
            click.echo(f"Error: {' '.join(str(e).split())}", err=True)
            ctx.exit(1)
        except OSError as e:  # full disk, unwritable --out, a folder under a file ...
            if e.errno in (errno.EPIPE,):
                ctx.exit(1)
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            self._fail(ctx, f"{e.strerror or e}{where}")
        except MemoryError:
            advice = {"run": "; use fewer --variants, a smaller --batch or a lower --work-res"}
            self._fail(ctx, "out of memory" + advice.get(ctx.invoked_subcommand or "", ""))
        except KeyboardInterrupt:
            _close_bars()
            click.echo("Interrupted; run the same command again to resume.", err=True)
            ctx.exit(130)

    @staticmethod
    def _fail(ctx: click.Context, message: str) -> None:
        _close_bars()
        click.echo(f"Error: {' '.join(message.split())}", err=True)
        ctx.exit(2)


class FiniteFloat(click.ParamType):
    """A float that must be finite (nan and inf are refused), optionally within [lo, hi]."""

    name = "float"

    def __init__(self, lo: float | None = None, hi: float | None = None):
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            self.fail(f"{v} is not in {self.lo}..{self.hi}", param, ctx)
        return v


class OutPath(click.Path):
    """click.Path that refuses an empty string, and for a file output anything that exists and is not a
    regular file (a device, FIFO or socket would be replaced by the atomic rename), before any work."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not str(value).strip():
            self.fail("must not be empty", param, ctx)
        if not self.dir_okay:
            from .io import check_replaceable

            try:
                check_replaceable(Path(value))
            except UserError as e:
                self.fail(str(e), param, ctx)
        return super().convert(value, param, ctx)


class SeedList(click.ParamType):
    """Seeds such as 0-99,120, parsed once here (count and range checked before expanding)."""

    name = "seeds"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return C.parse_seeds(value)
        except UserError as e:
            self.fail(str(e), param, ctx)


def _bounded(field: str) -> click.ParamType:
    lo, hi = C.BOUNDS[field]
    if isinstance(C.field_default(field), float):
        return FiniteFloat(lo, hi)
    return click.IntRange(int(lo), int(hi))


def _run_option(name: str, help: str, preset: bool = False, **kw: Any) -> Callable:
    """A `run` option whose default, choices and bounds come from config.RunConfig."""
    field = name.lstrip("-").replace("-", "_")
    d = C.field_default(field)
    shown = (",".join(map(str, d)) if isinstance(d, tuple) else d) or "none"
    if "type" not in kw and field in C.BOUNDS:
        kw["type"] = _bounded(field)
    return click.option(name, default=None, help=f"{help}  [default: {shown}{', or the preset' if preset else ''}]",
                        **kw)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="instseg", prog_name="instseg", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Instance-segmentation datasets from pretrained GANs, without training or labels."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def progress(total: int | None, desc: str, status: str = "", unit: str = "img") -> Any:
    """A bar with its total from the first second (Ultralytics-style), its status (model loading) as postfix.
    smoothing 0: the rate is images made over time, not a burst as a chunk is written."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc, smoothing=0, dynamic_ncols=True)
    if status:
        bar.set_postfix_str(status)
    return bar


def summary(path: Path, seconds: float) -> str:
    """The end of a run: images, instances per class, images with none, time, where it is, what to run next."""
    import json

    data = json.loads(Path(path).read_text())
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    per_class = {n: 0 for n in names.values()}
    for a in data.get("annotations", []):
        per_class[names.get(a["category_id"], "?")] = per_class.get(names.get(a["category_id"], "?"), 0) + 1
    with_one = {a["image_id"] for a in data.get("annotations", [])}
    empty = sum(im["id"] not in with_one for im in data.get("images", []))
    folder = Path(path).parent
    classes = ", ".join(f"{n} {v}" for n, v in per_class.items())
    return "\n".join([
        f"done in {seconds:.1f} s: {len(data.get('images', []))} images, {len(data.get('annotations', []))} "
        f"instances ({classes or 'no classes'}), {empty} image(s) with none",
        f"dataset: {path} (images in {folder / 'images'}, card in {folder / 'README.md'})",
        f"next: instseg report {folder} --out {folder / 'report.html'}   |   "
        f"instseg export {folder} --format yolo"])


def _tqdm_download() -> Any:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in bar or (done < bar["bar"].n):  # a new URL starts from zero
            if "bar" in bar:
                bar["bar"].close()
            bar["bar"] = tqdm(total=total, unit="B", unit_scale=True, desc="download", leave=False)
        bar["bar"].update(done - bar["bar"].n)
        if total is not None and done >= total:
            bar["bar"].close()

    return update


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
def models(as_json: bool) -> None:
    """List the named generators: resolution, what they segment, licence, cache state and source."""
    import json

    from .zoo import default_cache, preset_table

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
    from .checkpoints import detect_and_load, native_meta as torch_meta, save_native
    from .runner import validate_checkpoint
    from .zoo import resolve_gan

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
@click.option("--gan", default="toy-flat", show_default=True, metavar="NAME|PATH|URL",
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
@_run_option("--k", "k-means clusters.", metavar="K")
@_run_option("--box-k", "k-means clusters inside a detector box's crop (0: the same as --k).", preset=True,
             metavar="K")
@_run_option("--features", "Clustered features: 'rgb' or a synthesis layer such as b32.conv1.",
             metavar="rgb|LAYER")
@_run_option("--join-features", "Box crops also cluster on the source image's activations of this layer, or on its own pixels (image) "
             "(standardised; see --join-weight); none: the variant stack alone.", preset=True,
             metavar="none|image|LAYER")
@_run_option("--join-weight", "Weight of the joined features in the k-means distances; the variant stack's is 1.",
             preset=True, metavar="W")
@_run_option("--normalize", "Per-pixel normalisation of the N*C values (the baselines: of their single image's C values).", type=click.Choice(C.NORMALIZATIONS))
@_run_option("--repeats", "k-means repeats with fresh variants, merged by majority vote.", metavar="R")
@_run_option("--foreground", "Whole-image foreground rule.", preset=True, type=click.Choice(C.FOREGROUND_RULES))
@_run_option("--work-res", "Longest side at which pixels are clustered.", preset=True, metavar="PX")
@_run_option("--truncation-psi", "Truncation of source and variants.", metavar="PSI")
@_run_option("--truncation-centres", "Truncate toward the nearest of K k-means centres of W (multi-modal truncation: "
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
@_run_option("--max-det", "Detections per image.", metavar="N")
@_run_option("--instance-rule", "Which clusters of a box crop form the instance.", type=click.Choice(C.INSTANCE_RULES))
@_run_option("--mask-score", "An instance's mask confidence: the mean k-means margin over its pixels, or that times "
             "the share of its pixels inside the box.", type=click.Choice(C.MASK_SCORES))
@_run_option("--box-margin", "Crop around a box, as a fraction of its size per side.", metavar="F")
@_run_option("--clip-margin", "Cut each instance mask to its box grown by this fraction of its size per side "
             "(at --box-margin or more: no cut).", preset=True, metavar="F")
@click.option("--format", "formats", type=click.Choice(["coco", "yolo"]), multiple=True, default=("coco",),
              show_default=True, help="Also write the Ultralytics YOLO-seg layout to DIR/yolo with 'yolo'.")
@_run_option("--device", "Where to compute: auto, cpu, cuda or cuda:N.", metavar="DEV")
@_run_option("--batch", "Seeds per chunk, processed together on the device (rows per generator call follow a "
             "memory budget).", metavar="B")
@_run_option("--precision", "Generator arithmetic (fp16 on CUDA only); clustering stays fp32.",
             type=click.Choice(C.PRECISIONS))
@click.option("--compile", "compile_", is_flag=True, default=None,
              help="torch.compile the synthesis layers (same results; for long GPU runs).")
@_run_option("--encoders", "Processes that encode PNGs and masks beside the compute (-1: 0 on a CPU, more on a GPU "
             "machine).", metavar="N")
def run(gan: str, out: str, num_images: int | None, seeds: tuple[int, ...] | None, mix_from: str | None,
        per_class: int | None, shard: str | None, ray_address: str | None, workers: int, config_file: str | None, sets: tuple[str, ...],
        formats: tuple[str, ...], compile_: bool | None, **flags: Any) -> None:
    """Make a COCO segmentation dataset from a generator."""
    import dataclasses


    from .merge import parse_shard, shard_seeds
    from .runner import run as run_pipeline

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
        click.echo(f"wrote {_export_yolo(Path(out), Path(out) / 'yolo')}")


def _export_yolo(run_dir: Path, out: Path) -> Path:
    from .rundir import RunDir
    from .yolo_export import export_yolo

    data = RunDir(run_dir).read_dataset()
    return export_yolo(data, run_dir, out)


@main.command()
@click.argument("images", metavar="IMAGES...", nargs=-1, required=True)
@click.option("--gan", default="toy-flat", show_default=True, metavar="NAME|PATH|URL",
              help="Generator to project the images into (a preset, a checkpoint path or a URL).")
@click.option("--out", "out", required=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Output folder; re-running the same command there resumes.")
@click.option("--fit", type=click.Choice(C.FITS), default=C.label_default("fit"), show_default=True,
              help="How an image enters the generator's square frame: centre crop, pad with its mean colour, or "
                   "stretch. Masks and boxes are mapped back to the image's own pixels.")
@click.option("--steps", type=click.IntRange(1, 100_000), default=C.label_default("steps"), show_default=True, metavar="N",
              help="Projection steps (Adam on W+ from w_avg, noise fixed).")
@click.option("--lr", type=FiniteFloat(1e-6, 10), default=C.label_default("lr"), show_default=True, metavar="LR",
              help="Projection learning rate.")
@click.option("--loss", type=click.Choice(C.PROJECTION_LOSSES), default=C.label_default("loss"), show_default=True,
              help="Projection loss: pixel MSE; or that plus L1 at 1/2 and 1/4 scale (multiscale); or plus the distance "
                   "of a fixed random CNN's features (random-cnn, a perceptual loss with no download).")
@click.option("--space", type=click.Choice(C.PROJECTION_SPACES), default=C.label_default("space"), show_default=True,
              help="Projection space: a w per layer (W+), one w shared by all layers (W), or a W pivot first, then "
                   "per-layer offsets from it under an L2 penalty.")
@click.option("--prior", type=FiniteFloat(0, 100), default=C.label_default("prior"), show_default=True, metavar="W",
              help="Weight of a prior that keeps the projected codes near those the generator draws (P_N space, "
                   "Zhu et al. 2020); 0: none.")
@click.option("--starts", type=click.IntRange(1, 64), default=C.label_default("starts"), show_default=True,
              metavar="S", help="Projections per image, from w_avg and the truncation centres that fit it best; "
                                "the best is kept (S times the projection's cost).")
@click.option("--min-psnr", type=FiniteFloat(0, 100), default=C.label_default("min_psnr"), show_default=True,
              metavar="DB",
              help="Images reconstructed below this PSNR are marked low_fidelity in their record and in COCO.")
@click.option("--project-batch", type=click.IntRange(1, 4096), default=C.label_default("batch"), show_default=True,
              metavar="B",
              help="Images projected together.")
@click.option("--cluster-at", type=click.Choice(C.CLUSTER_AT), default=C.label_default("cluster_at"),
              show_default=True,
              help="Cluster each box crop at the photo's own pixels (up to 4 times the generator's size and 1024 px; "
                   "the variants are upsampled to them), or in the generator's frame (masks mapped up to the photo).")
@click.option("--error-scale", type=FiniteFloat(0, 10), default=C.label_default("error_scale"), show_default=True,
              metavar="E",
              help="Where the projection misses the photo, its variants count less: their weight at a pixel is "
                   "exp(-(e/E)^2), e the reconstruction's RGB error there (images in [-1, 1]); 0: the same everywhere.")
@click.option("--tune-generator", "tune", type=click.IntRange(0, 10_000), default=C.label_default("tune"),
              show_default=True, metavar="STEPS",
              help="Pivotal tuning (PTI): tune a copy of the generator to each photo for STEPS steps and draw its "
                   "variants from that copy (slower; the card says so; the generator file is unchanged). 0: off.")
@click.option("--refine", type=click.Choice(C.label_choices("refine")), default=C.label_default("refine"),
              show_default=True,
              help="Move each mask to the photo's own edges, at its own size: GrabCut seeded from the mask (its core "
                   "object, outside its box background; a box GrabCut finds empty needs a sure detection), the "
                   "photo's colour clusters the mask mostly covers (vote), a guided filter with the photo as guide, "
                   "or none; auto: grabcut for a photo at least twice the generator's size, else none.")
@click.option("--copy", is_flag=True, help="Copy the images into DIR/images (default: hard links where possible).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="YAML mapping of RunConfig fields over the preset's.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Set any RunConfig field; repeatable.")
@_run_option("--detector", "Box detector, run on each fitted image: none, yolo:PATH|NAME or frcnn[:PATH].",
             preset=True, metavar="SPEC")
@_run_option("--classes", "Detector classes to keep.", preset=True, metavar="A,B")
@_run_option("--conf", "Detector score threshold.", metavar="P")
@_run_option("--variants", "Style-mixed variants per image.", metavar="N")
@_run_option("--mix-from", "Crossover(s): ws[c:] of the projected latent replaced per variant.", preset=True,
             metavar="C[,C..]")
@_run_option("--k", "k-means clusters.", metavar="K")
@_run_option("--box-k", "k-means clusters inside a box's crop (0: --k).", preset=True, metavar="K")
@_run_option("--box-margin", "Crop around a box, as a fraction of its size per side.", metavar="F")
@_run_option("--method", "variants: ours; or a single-image baseline.", type=click.Choice(C.METHODS))
@_run_option("--device", "Where to compute: auto, cpu, cuda or cuda:N.", metavar="DEV")
def label(images: tuple[str, ...], gan: str, out: str, fit: str, steps: int, lr: float, loss: str, space: str,
          prior: float, starts: int, min_psnr: float, cluster_at: str, error_scale: float, tune: int, refine: str,
          project_batch: int, copy: bool, config_file: str | None, sets: tuple[str, ...], mix_from: str | None,
          **flags: Any) -> None:
    """Label real IMAGES (files, folders or globs): project each into the generator's W+, then segment it by
    style mixing, as `run` does for samples. Writes a COCO dataset whose file_names are the images'."""

    from .labeler import label_images

    overrides = dict(flags)
    if mix_from is not None:
        overrides["mix_from"] = C.parse_ints(mix_from)
    cfg = C.build_config(gan, overrides, C.load_config_file(config_file) if config_file else None, C.parse_set(sets),
                         photos=True)
    lcfg = C.LabelConfig(fit=fit, steps=steps, lr=lr, loss=loss, space=space, min_psnr=min_psnr, batch=project_batch,
                         copy=copy, cluster_at=cluster_at, error_scale=error_scale, tune=tune, refine=refine, prior=prior,
                         starts=starts)
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


@main.command()
@click.argument("dirs", metavar="DIR...", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=OutPath(file_okay=False), metavar="OUT",
              help="A new folder for the merged dataset (or one that holds this run already).")
@click.option("--allow-partial", is_flag=True,
              help="Merge what the shards finished and list the seeds left out, instead of refusing.")
def merge(dirs: tuple[str, ...], out: str, allow_partial: bool) -> None:
    """Merge shard folders of one run (same config and generator) into one dataset."""
    from .merge import describe_missing, merge as merge_dirs

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


@main.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["yolo", "coco"]), default="yolo", show_default=True,
              help="yolo: Ultralytics YOLO-seg (images/, labels/, data.yaml); coco: the standard split tree "
                   "(annotations/instances_<split>.json, images/<split>/).")
@click.option("--split", "split", default=None, metavar="train=F,val=F[,test=F]",
              help="Shares of the splits: exact counts (largest remainder) over the images in a fixed order of "
                   "their seeds; each split with a share keeps an image where it can.  [default: yolo train=0.9,val=0.1; coco "
                   "train=0.8,val=0.1,test=0.1]")
@click.option("--out", "out", default=None, type=OutPath(file_okay=False), metavar="DIR2",
              help="Where to write it; an earlier export there is replaced whole.  [default: DIR/yolo or DIR/coco]")
def export(run_dir: str, fmt: str, split: str | None, out: str | None) -> None:
    """Export a run's COCO dataset as YOLO-seg or as the standard COCO split tree (hard links where possible)."""
    from .rundir import RunDir
    from .export import export_coco, parse_split, split_counts
    from .yolo_export import export_yolo

    shares = parse_split(split or ("train=0.9,val=0.1" if fmt == "yolo" else "train=0.8,val=0.1,test=0.1"))
    data = RunDir(run_dir).read_dataset()
    dest = Path(out) if out else Path(run_dir) / fmt
    with progress(len(data["images"]), f"export {fmt}") as bar:
        path = (export_yolo if fmt == "yolo" else export_coco)(data, Path(run_dir), dest, shares,
                                                               on_image=bar.update)
    counts = split_counts(len(data["images"]), shares)
    click.echo(f"wrote {path} ({', '.join(f'{k} {v}' for k, v in counts.items())} images)")


@main.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=OutPath(dir_okay=False), metavar="PNG",
              help="Where to write the overlay grid.")
@click.option("--max-images", type=click.IntRange(1, 1000), default=8, show_default=True, metavar="N",
              help="Rows (images) in the grid.")
def show(run_dir: str, out: str, max_images: int) -> None:
    """Write an overlay grid of a run: image | variants | cluster map | masks."""
    from .rundir import RunDir
    from .io import atomic_save_png
    from .visualize import labelled_grid

    RunDir(run_dir).check_own_file(out)
    picture = labelled_grid(Path(run_dir), max_images)
    atomic_save_png(out, picture)
    click.echo(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px)")


@main.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=OutPath(dir_okay=False), metavar="HTML",
              help="Where to write the page (one self-contained file; open it from disk).")
@click.option("--gt", type=click.Path(exists=True, dir_okay=False), default=None, metavar="FILE",
              help="Reference COCO masks of the same images (exact labels, `instseg toy labels`, your own): each "
                   "instance is marked matched, wrong class, poor mask or false, and missed objects are drawn.")
def report(run_dir: str, out: str, gt: str | None) -> None:
    """A page to look at a run: every image with its instances (worst first against --gt), a gallery of
    overlays (least confident first), counts, histograms, empty images, variant strips and provenance."""
    from .report import write

    click.echo(f"wrote {write(Path(run_dir), Path(out), Path(gt) if gt else None)}")


@main.command("eval")
@click.option("--pred", required=True, type=click.Path(exists=True, dir_okay=False), metavar="A.json",
              help="Predicted COCO file (annotations carry score).")
@click.option("--gt", required=True, type=click.Path(exists=True, dir_okay=False), metavar="B.json",
              help="Reference COCO file over the same images.")
@click.option("--trimap-width", type=click.IntRange(1, 256), default=3, show_default=True, metavar="PX",
              help="Band around the reference boundary for trimap IoU.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table (NaN as null).")
def eval_cmd(pred: str, gt: str, trimap_width: int, as_json: bool) -> None:
    """Score predicted masks against reference masks of the same images (matched by id, else by file name):
    whole-image IoU, per-instance IoU, mask AP, per class. E.g. a `label` folder against your own COCO:
    instseg eval --pred out/annotations.json --gt my_masks.json"""
    import json

    from .coco import read_coco
    from .evaluate import evaluate, json_safe

    p, g = read_coco(pred, "--pred"), read_coco(gt, "--gt")
    if as_json:  # machine output: no bar
        res = evaluate(p, g, trimap_width)
    else:
        with progress(len(g["images"]), "instseg eval", "matching images") as bar:
            res = evaluate(p, g, trimap_width, bar.update)
    if as_json:
        click.echo(json.dumps(json_safe(res), allow_nan=False))
        return
    click.echo(eval_table(res))


def eval_table(res: dict) -> str:
    """`instseg eval`'s table: each metric named as BENCHMARKS.md names it, grouped by what it measures."""
    def f(v: float) -> str:
        return "n/a" if v != v else f"{v:.3f}"

    how = "by id" if res["matched_by"] == "id" else f"by {res['matched_by']} (the files number them differently)"
    lines = [f"{res['images']} images, matched {how}",
             "whole image (foreground against background, classes ignored):",
             f"  mIoU {f(res['miou'])}   IoU fg {f(res['iou_fg'])}   IoU bg {f(res['iou_bg'])}   "
             f"trimap mIoU {f(res['trimap_miou'])}",
             f"per instance ({res['instances']} reference instances, each matched one to one to a prediction):",
             f"  instance mIoU {f(res['instance_miou'])}   matched (IoU >= 0.5) {res['matched']}   missed "
             f"{res['missed']}   false {res['false']}",
             f"  mask AP {f(res['ap'])}   AP50 {f(res['ap50'])}   (COCO, classes must agree)"]
    if res["per_class"]:
        lines.append("per class (IoU of the class's pixels: a class mix-up lowers it; mask AP):")
        lines += [f"  {name:20} IoU {f(v.get('iou', float('nan')))}   mask AP {f(v.get('ap', float('nan')))}"
                  for name, v in res["per_class"].items()]
    return "\n".join(lines)


@main.command("pseudo-gt")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="An instseg run dir.")
@click.option("--segmenter", default=None, metavar="yolo:PATH",
              help="Supervised segmenter (YOLO -seg weights).  [default: the preset's, e.g. yolo:toy-flat]")
@click.option("--conf", type=FiniteFloat(0, 1), default=0.25, show_default=True, metavar="P",
              help="Segmenter threshold.")
@click.option("--out", required=True, type=OutPath(dir_okay=False), metavar="GT.json", help="Output file.")
def pseudo_gt_cmd(run_dir: str, segmenter: str | None, conf: float, out: str) -> None:
    """Reference masks for a run's images from a supervised segmenter."""
    from tqdm import tqdm

    from detectors import DetectorError, parse_spec
    from detectors.yolo import YoloDetector

    from .io import atomic_write_json
    from .pseudo_gt import pseudo_gt
    from .rundir import RunDir
    from .zoo import presets

    RunDir(run_dir).check_own_file(out)
    data = RunDir(run_dir).read_dataset()
    if segmenter is None:
        old = RunDir(run_dir).read_run()
        if old is None:
            raise UserError(f"{run_dir} has no readable run.json; pass --segmenter yolo:PATH")
        p = presets().get(str(old["config"].get("gan")))
        if p is None or not p.detector.startswith("yolo:"):
            raise UserError("no default segmenter for this run; pass --segmenter yolo:PATH to a -seg model")
        segmenter = p.detector
    try:
        kind, arg = parse_spec(segmenter, "--segmenter")
        if kind != "yolo":
            raise DetectorError("--segmenter must be yolo:PATH to a -seg model")
        seg = YoloDetector(arg, conf=conf, max_det=50, agnostic_nms=True)
        with tqdm(total=len(data["images"]), unit="img", desc="pseudo-gt") as bar:
            result = pseudo_gt(Path(run_dir), seg, on_image=lambda _: bar.update(), data=data)
    except DetectorError as e:
        raise UserError(str(e)) from None
    atomic_write_json(out, result)
    click.echo(f"wrote {out} ({len(result['annotations'])} masks)")


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
@click.option("--yolo", is_flag=True, help="Also write the YOLO-seg layout to DIR/yolo.")
def toy_render(out: str, seeds: tuple[int, ...], size: int, world: str, yolo: bool) -> None:
    """Render scenes with exact instance masks as a COCO dataset."""
    from tqdm import tqdm

    from .toy.dataset import write_scenes

    with tqdm(total=len(seeds), unit="scene", desc="render") as bar:
        path = write_scenes(seeds, Path(out), size, on_seed=lambda _: bar.update(), world=world)
    click.echo(f"wrote {path}")
    if yolo:
        click.echo(f"wrote {_export_yolo(Path(out), Path(out) / 'yolo')}")


@toy.command("labels")
@click.option("--gan", default="toy-flat", show_default=True, metavar="NAME|PATH",
              help="A generator with label channels (native format records their names).")
@click.option("--seeds", type=SeedList(), required=True, metavar="LIST", help="Sample seeds, as for `instseg run`.")
@click.option("--truncation-psi", type=FiniteFloat(-2, 2), default=0.7, show_default=True, metavar="PSI",
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

    from .checkpoints import native_meta
    from .io import atomic_write_json
    from .runner import load_checked
    from .sampling import set_truncation_centres
    from .toy.labels import sample_labels
    from .zoo import resolve_gan

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
    from .pipeline import pick_device

    return str(pick_device(device))


@toy.command("train-gan")
@click.option("--out", default="toy-train", show_default=True, type=OutPath(file_okay=False), metavar="DIR",
              help="Training folder; an existing DIR/state there is resumed.")
@click.option("--iters", type=click.IntRange(1, 10_000_000), default=20000, show_default=True, metavar="N",
              help="Total iterations.")
@click.option("--world", type=click.Choice(WORLDS), default="flat", show_default=True,
              help="Renderer world to learn.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Also draw one label channel per class (exact labels for every sample).")
@click.option("--resolution", type=click.Choice(["16", "32", "64", "128", "256"]), default="32", show_default=True,
              help="Image size.")
@click.option("--channel-base", type=click.IntRange(16, 1 << 20), default=2048, show_default=True, metavar="C",
              help="Channels at resolution r: min(C // r, 128).")
@click.option("--batch", type=click.IntRange(2, 1024), default=32, show_default=True, metavar="B", help="Batch size.")
@click.option("--lr", type=FiniteFloat(1e-6, 1), default=0.002, show_default=True, metavar="LR",
              help="Adam learning rate of G and both Ds (D's scaled for lazy R1, as in StyleGAN2).")
@click.option("--r1-gamma", type=FiniteFloat(0, 1000), default=1.0, show_default=True, metavar="G",
              help="R1 weight (StyleGAN2-ADA's heuristic, 0.0002 * resolution^2 / batch = 0.0064 at 32 px, "
                   "collapsed on the toy world without ADA's augmentation: BENCHMARKS.md, toy-ab).")
@click.option("--r1-gamma-joint", type=FiniteFloat(0, 1000), default=None, metavar="G",
              help="The joint (image, labels) D's R1 weight  [default: the same as --r1-gamma]")
@click.option("--d-channel-base", type=click.IntRange(16, 1 << 20), default=2048, show_default=True, metavar="C",
              help="The discriminators' channel base (as wide as G by default).")
@click.option("--split-d/--one-d", default=True, show_default=True,
              help="An image-only D plus a joint (image, labels) D that cannot push the RGB; or one joint D.")
@click.option("--mismatch/--no-mismatch", default=False, show_default=True,
              help="Matching-aware joint D: real images with class-shifted labels also count as fake, so the labels "
                   "must name what the RGB draws.")
@click.option("--mismatch-weight", type=FiniteFloat(0.01, 0.99), default=0.5, show_default=True, metavar="W",
              help="With --mismatch: the share of the joint D's fake term taken by the mismatched real pairs "
                   "(the rest by generated pairs).")
@click.option("--joint-weight", type=FiniteFloat(0.001, 100), default=1.0, show_default=True, metavar="W",
              help="The joint D's weight in G's loss (the image D's is 1): how hard the labels' critic pulls on "
                   "the layers the RGB shares with them.")
@click.option("--mbstd-group", type=click.IntRange(1, 1024), default=4, show_default=True, metavar="N",
              help="D's minibatch-stddev group: the largest divisor of the batch up to N (StyleGAN2-ADA's cifar "
                   "setting: 32).")
@click.option("--blur-d/--box-d", default=False, show_default=True,
              help="Binomial-filtered downsampling in D, or 2x2 box.")
@click.option("--pool-first/--conv-first", default=False, show_default=True,
              help="D's second conv of each block after its downsampling (a quarter of its cost; BENCHMARKS.md, "
                   "train-cost), or before it.")
@click.option("--r1-every", type=click.IntRange(1, 1000), default=4, show_default=True, metavar="N",
              help="Lazy R1: the penalty every N iterations, scaled by N (StyleGAN2: 16).")
@click.option("--reuse-fake/--fresh-fake", default=False, show_default=True,
              help="D's step judges G's step's batch (detached) instead of drawing a second one.")
@click.option("--channels-last/--contiguous", default=False, show_default=True,
              help="Networks and batches in channels-last memory format.")
@click.option("--dataset-size", type=click.IntRange(0, 10_000_000), default=0, show_default=True, metavar="N",
              help="0: fresh renderer scenes for every batch; N: a fixed set of N scenes.")
@click.option("--ema-kimg", type=FiniteFloat(0.001, 1e6), default=10.0, show_default=True, metavar="K",
              help="Half-life of the exported (EMA) generator's weights, in thousands of images (batch * 10 / 32 "
                   "is StyleGAN2-ADA's rule).")
@click.option("--snapshot-every", type=click.IntRange(0, 10_000_000), default=0, show_default=True, metavar="N",
              help="Also keep DIR/snapshots/generator-<iter>.pt every N iterations (0: none).")
@click.option("--resume-from", type=click.Path(exists=True, file_okay=False), default=None, metavar="STATE",
              help="A state folder (such as bench/toy-state) to start from when DIR/state does not exist yet.")
@click.option("--same-recipe", is_flag=True,
              help="Take the recipe options (world, sizes, D layout, R1, --mismatch, EMA...) from the state being "
                   "resumed (DIR/state, else --resume-from); options given here still win.")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: the loss passes under bf16 autocast (R1, Adam and the weights stay fp32).")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True, metavar="T",
              help="CPU threads (0: torch's).")
@click.option("--workers", type=click.IntRange(0, 1024), default=0, show_default=True, metavar="W",
              help="Processes rendering scenes (0: one per CPU core; 1: in the trainer).")
@click.option("--minutes", type=FiniteFloat(0, 1e6), default=0.0, show_default=True, metavar="M",
              help="Stop with a checkpoint after M minutes of training (0: no limit); run again to resume.")
def toy_train_gan(resolution: str, device: str, resume_from: str | None, same_recipe: bool, **kw: Any) -> None:
    """Train (or resume) the toy StyleGAN2; writes DIR/generator.pt in the native format and DIR/state."""
    from .toy.train_gan import TrainConfig, recipe_of, resumed_state, train

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
    from .toy.train_labels import LabelTrainConfig, train_labels

    logging.getLogger("instseg").setLevel(logging.INFO)
    path = train_labels(LabelTrainConfig(gan=gan, out=out, iters=iters, world=world,
                                         device=_check_device(device), threads=threads, minutes=minutes))
    click.echo(f"wrote {path}")


@toy.command("train-detector")
@click.option("--out", default="toy-train/detector", show_default=True, type=OutPath(file_okay=False),
              metavar="DIR", help="Training folder.")
@click.option("--scenes", type=click.IntRange(2, 1_000_000), default=4000, show_default=True, metavar="N",
              help="Rendered training scenes.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=30, show_default=True, metavar="E", help="Epochs.")
@click.option("--imgsz", type=click.IntRange(32, 2048), default=64, show_default=True, metavar="PX",
              help="Training image size (a multiple of 32).")
@click.option("--world", type=click.Choice(WORLDS), default="flat", show_default=True,
              help="Renderer world of the training scenes.")
@click.option("--size", type=click.IntRange(16, 1024), default=32, show_default=True, metavar="PX",
              help="Rendered scene size (smaller scenes are upscaled to --imgsz in training).")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or a CUDA index.")
@click.option("--gan", default=None, metavar="NAME|PATH",
              help="A generator with label channels named as the world's classes: its samples, with their exact "
                   "labels, join the scenes (a detector for that generator's images).")
@click.option("--gan-samples", type=click.IntRange(0, 1_000_000), default=4000, show_default=True, metavar="N",
              help="With --gan: how many of its samples (seeds 6000000 on, used by nothing else).")
def toy_train_detector(out: str, scenes: int, epochs: int, imgsz: int, world: str, size: int, device: str,
                       gan: str | None, gan_samples: int) -> None:
    """Train the toy YOLOv8n-seg from its yaml on rendered scenes; writes DIR/toy-WORLD-yolo.pt."""
    from .toy.train_detector import train

    if imgsz % 32:
        raise UserError(f"--imgsz must be a multiple of 32, got {imgsz}")
    if device not in ("cpu",) and not device.isdigit():
        raise UserError(f"--device {device!r}: use cpu or a CUDA index such as 0")
    path = train(Path(out), scenes, epochs, imgsz, size=size, device=device, world=world, gan=gan,
                 gan_samples=gan_samples)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
