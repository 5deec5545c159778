"""The `instseg` command line."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from .errors import UserError

log = logging.getLogger("instseg")


class _Group(click.Group):
    """Reports UserError as one line with exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted; run the same command again to resume.", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Instance-segmentation datasets from pretrained GANs, without training or labels."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _tqdm_download() -> Any:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int | None) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="B", unit_scale=True, desc="download", leave=False)
        bar["bar"].update(done - bar["bar"].n)

    return update


@main.command()
def models() -> None:
    """List the named generators: name, resolution, cache state and source."""
    from .zoo import PRESETS, default_cache, preset_path

    cache = default_cache()
    click.echo(f"{'name':12} {'resolution':>10} {'cached':7} {'classes':16} source")
    for p in PRESETS.values():
        cached = "packaged" if p.url is None else ("yes" if preset_path(p, cache).exists() else "no")
        click.echo(f"{p.name:12} {f'{p.width}x{p.height}':>10} {cached:7} {','.join(p.classes) or '-':16} "
                   f"{p.url or 'shipped with instseg'}")
    click.echo(f"cache: {cache} (set INSTSEG_CACHE to move it)")


@main.command()
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST", type=click.Path(dir_okay=False))
@click.option("--half", is_flag=True, help="Store float16 weights (half the file size).")
def convert(src: str, dst: str, half: bool) -> None:
    """Convert a checkpoint (preset, path or URL; any supported format) to the native format."""
    from .checkpoints import detect_and_load, native_meta as torch_meta, save_native
    from .zoo import resolve_gan

    path = resolve_gan(src, progress=_tqdm_download()).path
    G, fmt = detect_and_load(path.read_bytes(), str(path))
    meta = {"converted_from": src, "source_format": fmt}
    if fmt == "native":  # keep e.g. the training record of a native file
        meta = {**torch_meta(path), **meta}
    try:
        save_native(G, dst, meta=meta, half=half)
    except OSError as e:
        raise UserError(f"cannot write {dst}: {e.strerror or e}") from None
    click.echo(f"{src} ({fmt}, {G.cfg.resolution}px, {G.num_ws} ws) -> {dst}")


@main.command()
@click.option("--gan", default="toy-shapes", show_default=True, metavar="NAME|PATH|URL",
              help="Generator: a preset (see `instseg models`), a checkpoint path or a URL.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Output folder; re-running the same command there resumes.")
@click.option("--num-images", type=click.IntRange(min=1), default=None, metavar="N",
              help="Make N images from seeds 0..N-1 (default: the config's seeds).")
@click.option("--seeds", default=None, metavar="LIST", help="Seeds such as 0-99,120 (instead of --num-images).")
@click.option("--method", type=click.Choice(["variants", "grabcut", "kmeans-rgb", "activations"]), default=None,
              help="variants: ours. The others are single-image baselines on the same boxes.  [default: variants]")
@click.option("--variants", type=int, default=None, metavar="N", help="Style-mixed variants per image.  [default: 32]")
@click.option("--mix-from", default=None, metavar="C[,C..]",
              help="Crossover(s) c: ws[:c] kept, ws[c:] redrawn; one drawn per variant.")
@click.option("--k", type=int, default=None, metavar="K", help="k-means clusters.  [default: 3]")
@click.option("--features", default=None, metavar="rgb|LAYER",
              help="Clustered features: 'rgb' or a synthesis layer such as b32.conv1.  [default: rgb]")
@click.option("--normalize", type=click.Choice(["raw", "standardize", "l2"]), default=None,
              help="Per-pixel normalisation of the N*C values.  [default: raw]")
@click.option("--repeats", type=int, default=None, metavar="R",
              help="k-means repeats with fresh variants, merged by majority vote.  [default: 1]")
@click.option("--foreground", type=click.Choice(["border", "center"]), default=None,
              help="Whole-image foreground rule.  [default: border]")
@click.option("--work-res", type=int, default=None, metavar="PX", help="Longest side at which pixels are clustered.")
@click.option("--truncation-psi", type=float, default=None, metavar="PSI", help="Truncation of source and variants.")
@click.option("--detector", default=None, metavar="SPEC",
              help="Box detector: none (whole image), yolo:PATH|NAME or frcnn[:PATH].  [default: the preset's]")
@click.option("--classes", default=None, metavar="A,B",
              help="Detector classes to keep; they become the COCO categories.  [default: the preset's]")
@click.option("--conf", type=float, default=None, metavar="P", help="Detector score threshold.  [default: 0.25]")
@click.option("--max-det", type=int, default=None, metavar="N", help="Detections per image.  [default: 20]")
@click.option("--instance-rule", type=click.Choice(["combined", "inside", "border", "center"]), default=None,
              help="Which clusters of a box crop form the instance.  [default: inside]")
@click.option("--box-margin", type=float, default=None, metavar="F",
              help="Crop around a box, as a fraction of its size per side.  [default: 0.15]")
@click.option("--format", "formats", type=click.Choice(["coco", "yolo"]), multiple=True, default=("coco",),
              show_default=True, help="Also write the Ultralytics YOLO-seg layout to DIR/yolo with 'yolo'.")
@click.option("--device", default=None, metavar="auto|cpu|cuda:N", help="Where to compute.  [default: auto]")
@click.option("--batch", type=int, default=None, metavar="B", help="Generator batch size.  [default: 8]")
def run(gan: str, out: str, num_images: int | None, seeds: str | None, mix_from: str | None,
        formats: tuple[str, ...], **flags: Any) -> None:
    """Make a COCO segmentation dataset from a generator."""
    from tqdm import tqdm

    from .config import build_config, parse_ints, parse_seeds
    from .runner import run as run_pipeline

    if num_images is not None and seeds is not None:
        raise UserError("give --num-images or --seeds, not both")
    overrides = dict(flags)
    if num_images is not None:
        overrides["seeds"] = tuple(range(num_images))
    if seeds is not None:
        overrides["seeds"] = parse_seeds(seeds)
    if mix_from is not None:
        overrides["mix_from"] = parse_ints(mix_from)
    cfg = build_config(gan, overrides)
    bars: list[Any] = []  # opened at the first image, after the generator is resolved

    def on_seed(seed: int, skipped: bool) -> None:
        if not bars:
            bars.append(tqdm(total=len(cfg.seeds), unit="img", desc="instseg run"))
        bars[0].set_postfix_str(f"seed {seed}{' (done before)' if skipped else ''}")
        bars[0].update()

    try:
        path = run_pipeline(cfg, Path(out), on_seed, _tqdm_download())
    finally:
        for b in bars:
            b.close()
    click.echo(f"wrote {path}")
    if "yolo" in formats:
        click.echo(f"wrote {_export_yolo(Path(out), Path(out) / 'yolo')}")


def _export_yolo(run_dir: Path, out: Path) -> Path:
    import json

    from .yolo_export import export_yolo

    try:
        data = json.loads((run_dir / "annotations.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {run_dir / 'annotations.json'}: {e}") from None
    return export_yolo(data, run_dir, out)


@main.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["yolo"]), default="yolo", show_default=True,
              help="Layout to write.")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False), metavar="DIR2",
              help="Where to write it.  [default: DIR/yolo]")
def export(run_dir: str, fmt: str, out: str | None) -> None:
    """Convert a run's COCO dataset to the Ultralytics YOLO-seg layout (polygons + data.yaml)."""
    click.echo(f"wrote {_export_yolo(Path(run_dir), Path(out) if out else Path(run_dir) / 'yolo')}")


@main.command()
@click.argument("run_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), metavar="PNG",
              help="Where to write the overlay grid.")
@click.option("--max-images", type=click.IntRange(min=1), default=8, show_default=True, metavar="N",
              help="Rows (images) in the grid.")
def show(run_dir: str, out: str, max_images: int) -> None:
    """Write an overlay grid of a run: image | variants | cluster map | masks."""
    from .io import atomic_save_png
    from .visualize import grid, run_rows

    if not (Path(run_dir) / "annotations.json").exists():
        raise UserError(f"{run_dir} has no annotations.json; is it an instseg run dir?")
    rows = run_rows(Path(run_dir), max_images)
    if not rows:
        raise UserError(f"{run_dir} has no images yet")
    try:
        atomic_save_png(out, grid([r for _, r in rows]))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    click.echo(f"wrote {out} ({len(rows)} images)")


@main.command("eval")
@click.option("--pred", required=True, type=click.Path(exists=True, dir_okay=False), metavar="A.json",
              help="Predicted COCO file (annotations carry score).")
@click.option("--gt", required=True, type=click.Path(exists=True, dir_okay=False), metavar="B.json",
              help="Reference COCO file over the same images.")
@click.option("--trimap-width", type=click.IntRange(min=1), default=3, show_default=True, metavar="PX",
              help="Band around the reference boundary for trimap IoU.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def eval_cmd(pred: str, gt: str, trimap_width: int, as_json: bool) -> None:
    """Score predicted masks against reference masks: IoU, trimap IoU, mask AP."""
    import json

    from .evaluate import evaluate

    def load(p: str) -> dict:
        try:
            d = json.loads(Path(p).read_text())
            assert all(k in d for k in ("images", "annotations", "categories"))
            return d
        except (OSError, ValueError, AssertionError):
            raise UserError(f"{p} is not a COCO annotations file") from None

    res = evaluate(load(pred), load(gt), trimap_width)
    if as_json:
        click.echo(json.dumps(res))
        return
    for k in ("iou_fg", "iou_bg", "miou", "trimap_miou", "ap", "ap50"):
        click.echo(f"{k:12} {res[k]:.4f}")
    for name, v in res["per_class"].items():
        click.echo(f"  {name:20} " + "  ".join(f"{m} {x:.4f}" for m, x in v.items()))


@main.command("pseudo-gt")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="An instseg run dir.")
@click.option("--segmenter", default=None, metavar="yolo:PATH",
              help="Supervised segmenter (YOLO -seg weights).  [default: the preset's, e.g. toy-shapes]")
@click.option("--conf", type=float, default=0.25, show_default=True, metavar="P", help="Segmenter threshold.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="GT.json", help="Output file.")
def pseudo_gt_cmd(run_dir: str, segmenter: str | None, conf: float, out: str) -> None:
    """Reference masks for a run's images from a supervised segmenter."""
    import json

    from tqdm import tqdm

    from detectors import DetectorError, parse_spec
    from detectors.yolo import YoloDetector

    from .io import atomic_write_json
    from .pseudo_gt import pseudo_gt
    from .zoo import PRESETS

    if segmenter is None:
        gan = json.loads((Path(run_dir) / "run.json").read_text())["config"]["gan"]
        if gan not in PRESETS or not PRESETS[gan].detector.startswith("yolo:"):
            raise UserError("no default segmenter for this run; pass --segmenter yolo:PATH to a -seg model")
        segmenter = PRESETS[gan].detector
    try:
        kind, arg = parse_spec(segmenter)
        if kind != "yolo":
            raise DetectorError("--segmenter must be yolo:PATH to a -seg model")
        seg = YoloDetector(arg, conf=conf, max_det=50, agnostic_nms=True)
        n = len(json.loads((Path(run_dir) / "annotations.json").read_text())["images"])
        with tqdm(total=n, unit="img", desc="pseudo-gt") as bar:
            data = pseudo_gt(Path(run_dir), seg, on_image=lambda _: bar.update())
    except DetectorError as e:
        raise UserError(str(e)) from None
    atomic_write_json(out, data)
    click.echo(f"wrote {out} ({len(data['annotations'])} masks)")


@main.group()
def toy() -> None:
    """The toy world: render scenes, retrain the toy GAN and detector."""


@toy.command("render")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR", help="Output folder.")
@click.option("--seeds", default="0-99", show_default=True, metavar="LIST", help="Scene seeds, e.g. 0-999.")
@click.option("--size", type=click.IntRange(min=16), default=64, show_default=True, metavar="PX", help="Image size.")
@click.option("--yolo", is_flag=True, help="Also write the YOLO-seg layout to DIR/yolo.")
def toy_render(out: str, seeds: str, size: int, yolo: bool) -> None:
    """Render scenes with exact instance masks as a COCO dataset."""
    from tqdm import tqdm

    from .config import parse_seeds
    from .toy.dataset import write_scenes

    seed_list = parse_seeds(seeds)
    with tqdm(total=len(seed_list), unit="scene", desc="render") as bar:
        path = write_scenes(seed_list, Path(out), size, on_seed=lambda _: bar.update())
    click.echo(f"wrote {path}")
    if yolo:
        click.echo(f"wrote {_export_yolo(Path(out), Path(out) / 'yolo')}")


@toy.command("train-gan")
@click.option("--out", default="toy-train", show_default=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Training folder; an existing train-state.pt there is resumed.")
@click.option("--iters", type=int, default=20000, show_default=True, metavar="N", help="Total iterations.")
@click.option("--resolution", type=int, default=64, show_default=True, metavar="PX", help="Image size.")
@click.option("--channel-base", type=int, default=1024, show_default=True, metavar="C",
              help="Channels at resolution r: min(C // r, 128).")
@click.option("--batch", type=int, default=16, show_default=True, metavar="B", help="Batch size.")
@click.option("--r1-gamma", type=float, default=0.3, show_default=True, metavar="G", help="R1 weight.")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or cuda[:N].")
@click.option("--threads", type=int, default=0, show_default=True, metavar="T", help="CPU threads (0: torch's).")
def toy_train_gan(**kw: Any) -> None:
    """Train (or resume) the toy StyleGAN2; writes DIR/generator.pt in the native format."""
    from .toy.train_gan import TrainConfig, train

    logging.getLogger("instseg").setLevel(logging.INFO)
    click.echo(f"wrote {train(TrainConfig(**kw))}")


@toy.command("train-detector")
@click.option("--out", default="toy-train/detector", show_default=True, type=click.Path(file_okay=False),
              metavar="DIR", help="Training folder.")
@click.option("--scenes", type=int, default=4000, show_default=True, metavar="N", help="Rendered training scenes.")
@click.option("--epochs", type=int, default=30, show_default=True, metavar="E", help="Epochs.")
@click.option("--imgsz", type=int, default=64, show_default=True, metavar="PX", help="Training image size.")
@click.option("--device", default="cpu", show_default=True, metavar="DEV", help="cpu or a CUDA index.")
def toy_train_detector(out: str, scenes: int, epochs: int, imgsz: int, device: str) -> None:
    """Train the toy YOLOv8n-seg from its yaml on rendered scenes; writes DIR/toy-shapes-yolo.pt."""
    from .toy.train_detector import train

    click.echo(f"wrote {train(Path(out), scenes, epochs, imgsz, device=device)}")


if __name__ == "__main__":
    main()
