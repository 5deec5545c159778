"""Looking at datasets: `export`, `show`, `report`, `eval`, `pseudo-gt`."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .base import FiniteFloat, OutPath, main, progress


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
    from ..rundir import RunDir
    from ..export import export_coco, parse_split, split_counts
    from ..yolo_export import export_yolo

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
    from ..rundir import RunDir
    from ..io import atomic_save_png
    from ..visualize import labelled_grid

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
    from ..report import write

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

    from ..coco import read_coco
    from ..evaluate import evaluate, json_safe

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
@click.argument("run_dir", metavar="DIR", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--run", "run_opt", hidden=True, type=click.Path(exists=True, file_okay=False), default=None,
              help="Old spelling of DIR.")
@click.option("--segmenter", default=None, metavar="yolo:PATH",
              help="Supervised segmenter (YOLO -seg weights).  [default: the preset's, e.g. yolo:toy-flat]")
@click.option("--conf", type=FiniteFloat(0, 1), default=0.25, show_default=True, metavar="P",
              help="Segmenter threshold.")
@click.option("--out", required=True, type=OutPath(dir_okay=False), metavar="GT.json", help="Output file.")
def pseudo_gt_cmd(run_dir: str | None, run_opt: str | None, segmenter: str | None, conf: float, out: str) -> None:
    """Reference masks for a run's images (DIR) from a supervised segmenter."""
    if run_opt is not None:
        click.echo("Warning: --run DIR is now plain DIR, as for report and show; the old flag goes in the next "
                   "release", err=True)
    run_dir = run_dir or run_opt
    if run_dir is None:
        raise UserError("give the run folder: instseg pseudo-gt DIR --out GT.json")
    from tqdm import tqdm

    from detectors import DetectorError, parse_spec
    from detectors.yolo import YoloDetector

    from ..io import atomic_write_json
    from ..pseudo_gt import pseudo_gt
    from ..rundir import RunDir
    from ..zoo import default_cache, presets

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
        seg = YoloDetector(arg, conf=conf, max_det=50, agnostic_nms=True, cache=default_cache())
        with tqdm(total=len(data["images"]), unit="img", desc="pseudo-gt") as bar:
            result = pseudo_gt(Path(run_dir), seg, on_image=lambda _: bar.update(), data=data)
    except DetectorError as e:
        raise UserError(str(e)) from None
    atomic_write_json(out, result)
    click.echo(f"wrote {out} ({len(result['annotations'])} masks)")
