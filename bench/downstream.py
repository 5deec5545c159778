"""Table 3 in miniature: train one fixed YOLOv8n-seg recipe on each label source, test every model on
the same held-out renderer scenes with exact masks.

    python -m bench.downstream [--m 2000] [--epochs 30] [--test 500] [--gan toy-flat]
    python -m bench.downstream --quick       # the same code on a handful of images and 1 epoch
    python -m bench.downstream --init yolov8n-seg.pt   # fine-tune COCO weights instead (own table)

Rows: `renderer` (M renderer scenes, exact masks: the ceiling), then M GAN samples labelled by
`instseg run --method variants|grabcut|kmeans-rgb|activations` and the activations standardised (all
with the preset's detector boxes, all through `instseg export --format yolo`), then `GAN labels` (the generator's own label
channels, when it has them). Training: `yolo segment train` settings, from the yaml, no
pretrained weights (or from `--init`'s weights); the same epochs, image size, seed and augmentation
for every row.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import method_overrides, write_section
from detectors.yolo import YoloDetector
from instseg import coco
from instseg.checkpoints import load_generator, native_meta
from instseg.config import build_config
from instseg.sampling import set_truncation_centres
from instseg.evaluate import evaluate, instance_scores
from instseg.io import atomic_write_json
from instseg.identity import config_id
from instseg.runner import run
from instseg.toy.dataset import write_scenes
from instseg.toy.labels import sample_labels
from instseg.visualize import load_image
from instseg.yolo_export import export_yolo
from instseg.segment import METHODS as SEGMENT_METHODS
from instseg.zoo import resolve_gan

TEST_SEEDS = 4_000_000  # renderer scenes used nowhere else
TRAIN_SCENES = 5_000_000  # the renderer row's training scenes
METHODS = tuple(SEGMENT_METHODS)  # the dispatch table's names


def train_recipe(data_yaml: Path, out: Path, epochs: int, imgsz: int, seed: int = 0,
                 init: str | None = None) -> tuple[Path, float]:
    """The one recipe every row gets; the same as `yolo segment train data=... model=yolov8n-seg.yaml
    epochs=E imgsz=S batch=32 seed=SEED deterministic=True pretrained=False` (model=`init` when given)."""
    from ultralytics import YOLO

    t = time.perf_counter()
    model = YOLO(init or "yolov8n-seg.yaml")
    model.train(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=32, seed=seed, deterministic=True,
                pretrained=init is not None, device="cpu", workers=0, amp=False, plots=False, val=False,
                project=str(out.resolve()), name="train", exist_ok=True, verbose=False)  # relative: under runs/
    return out / "train" / "weights" / "last.pt", time.perf_counter() - t


def predict(weights: Path, test_dir: Path, gt: dict) -> dict:
    """The model's masks on the test scenes as a COCO prediction file (categories by name)."""
    seg = YoloDetector(str(weights), conf=0.001, max_det=50)
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    anns = []
    for im in gt["images"]:
        det, masks = seg.segment([load_image(test_dir, im["file_name"])])[0]
        for label, score, m in zip(det.labels, det.scores, masks):
            if m.any() and label in names:
                anns.append(coco.annotation(m, im["id"], names.index(label) + 1, float(score)))
    return coco.dataset(gt["images"], anns, names, f"predictions of {weights}")


SEMANTIC_CONF = 0.25  # the masks a user would keep: IoU is scored on these; AP ranks all of them


def score(pred: dict, gt: dict) -> dict:
    kept = {**pred, "annotations": [a for a in pred["annotations"] if a["score"] >= SEMANTIC_CONF]}
    sem = evaluate(kept, gt, trimap_width=3)
    inst = instance_scores(pred, gt)
    box = instance_scores(pred, gt, iou_type="bbox")
    return {"ap": inst["ap"], "ap50": inst["ap50"], "box_ap": box["ap"], "iou_fg": sem["iou_fg"], "miou": sem["miou"],
            "trimap_miou": sem["trimap_miou"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--m", type=int, default=2000, help="training images per row")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--test", type=int, default=500, help="held-out renderer scenes")
    ap.add_argument("--gan", default="toy-flat")
    ap.add_argument("--quick", action="store_true", help="8 images, 1 epoch, 8 test scenes: checks the code path")
    ap.add_argument("--train-seeds", default="0",
                    help="comma-separated training seeds; each row trains once per seed and reports the mean and range")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep runs and finished rows here, so a rerun with the same arguments resumes (default: a temp dir)")
    ap.add_argument("--init", default=None,
                    help="weights every row starts from, e.g. yolov8n-seg.pt (a bare name downloads; a path stays "
                         "offline); the default trains from the yaml")
    args = ap.parse_args()
    if args.quick:
        args.m, args.epochs, args.test = 8, 1, 8
    train_seeds = [int(v) for v in args.train_seeds.split(",")]
    if args.init is None or Path(args.init).is_file():
        os.environ["YOLO_OFFLINE"] = "1"  # a bare --init name is left to Ultralytics' download
    init_tag = f"-init-{Path(args.init).stem}" if args.init else ""
    gan = resolve_gan(args.gan)
    shipped = build_config(args.gan, {})
    G = set_truncation_centres(load_generator(gan.path), shipped.truncation_centres)  # the runs' images, for GAN labels
    size = G.out_hw[0]
    meta = native_meta(gan.path) if gan.path.suffix == ".pt" else {}
    world = meta.get("world", "classic")  # test and renderer scenes come from the world the GAN learned
    imgsz = max(64, int(np.ceil(size / 32) * 32))  # the toy detectors' training size; 32 px scenes upscaled
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or Path(scratch)
        tmp = tmp / f"{args.gan}-m{args.m}-e{args.epochs}-t{args.test}" if args.work else tmp
        rows_dir = tmp / f"rows{init_tag}"  # label runs do not depend on --init; rows and trained models do
        rows_dir.mkdir(parents=True, exist_ok=True)
        gt_path = write_scenes(range(TEST_SEEDS, TEST_SEEDS + args.test), tmp / "test", size, world=world)
        gt = json.loads(gt_path.read_text())
        sources: list[tuple[str, str, Path, dict | None]] = []  # name, key of its cached rows, image folder, labels
        scenes = write_scenes(range(TRAIN_SCENES, TRAIN_SCENES + args.m), tmp / "renderer", size, world=world)
        sources.append(("renderer (exact masks)", "renderer", tmp / "renderer", json.loads(scenes.read_text())))
        runs = [(f"{m}{' (ours)' if m == 'variants' else ''}", {"method": m}) for m in METHODS]
        runs.append(("activations, normalize=standardize", {"method": "activations", "normalize": "standardize"}))
        if build_config(args.gan, {}).join_features != "none":
            runs.insert(1, ("variants, join_features=none (the variant stack alone)", {"join_features": "none"}))
        for name, ov in runs:
            cfg = build_config(args.gan, {"seeds": tuple(range(args.m)), "device": "cpu", **method_overrides(ov)})
            folder = tmp / f"{cfg.method}-{config_id(cfg.to_dict(), None)[:8]}"  # a changed config: a new run and rows
            run(cfg, folder)
            sources.append((name, folder.name, folder, None))
        if G.cfg.label_channels:
            data = sample_labels(G, range(args.m), meta.get("label_names"), shipped.truncation_psi)
            data["images"] = json.loads((sources[1][2] / "annotations.json").read_text())["images"]  # ours' images
            sources.append(("GAN labels", "GAN", sources[1][2], data))
            # each run's labels against the exact ones on its own training images: label quality apart from training
            quality = {key: evaluate(json.loads((folder / "annotations.json").read_text()), json.loads(json.dumps(data)))
                       for _, key, folder, d in sources if d is None}
        else:
            quality = {}
        rows = [[] for _ in sources]
        exported: dict[str, tuple[Path, int]] = {}
        for seed in train_seeds:  # seed-major: an interrupted table has every row for the seeds it finished
            for per_seed, (name, key, folder, data) in zip(rows, sources):
                done = rows_dir / (f"{key}.json" if seed == 0 else f"{key}-s{seed}.json")
                if done.exists():  # finished by an earlier, interrupted invocation
                    per_seed.append({**json.loads(done.read_text()), "name": name})
                    print(per_seed[-1], flush=True)
                    continue
                if key not in exported:  # one export per label source, whatever the number of seeds
                    data = data or json.loads((folder / "annotations.json").read_text())
                    exported[key] = (export_yolo(data, folder, tmp / "yolo" / key), len(data["annotations"]))
                yaml_path, n_instances = exported[key]
                weights, dt = train_recipe(yaml_path, tmp / f"train{init_tag}" / f"{key}-s{seed}", args.epochs, imgsz,
                                           seed, args.init)
                r = score(predict(weights, tmp / "test", gt), gt)
                r.update(name=name, instances=n_instances, train_s=dt, seed=seed)
                per_seed.append(r)
                atomic_write_json(done, r)
                print(r, flush=True)
    ceiling = float(np.mean([r["miou"] for r in rows[0]]))
    lines = ["| label source | mask AP | AP50 | box AP | IoU fg | mIoU | trimap mIoU (3 px) | mIoU / renderer | "
             "train instances | train labels vs exact: mask AP / mIoU | train time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(runs: list[dict], key: str) -> str:
        v = [r[key] for r in runs]
        return f"{np.mean(v):.3f}" + (f" ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 and key in ("ap", "miou") else "")

    for runs, (_, key, _, data) in zip(rows, sources):
        q = quality.get(key)
        labels = f"{q['ap']:.3f} / {q['miou']:.3f}" if q else "exact" if data is not None else "n/a"
        lines.append(f"| {runs[0]['name']} | " + " | ".join(cell(runs, k) for k in ("ap", "ap50", "box_ap", "iou_fg", "miou",
                                                                                    "trimap_miou"))
                     + f" | {np.mean([r['miou'] for r in runs]) / ceiling:.0%} | {runs[0]['instances']} | {labels} | "
                     f"{np.mean([r['train_s'] for r in runs]) / 60:.1f} min |")
    if not G.cfg.label_channels:
        lines.append("| GAN labels | n/a: this generator draws no label channels | | | | | | | | | |")
    start = f"fine-tuned from `{Path(args.init).name}`" if args.init else "from its yaml"
    body = (f"Generator `{args.gan}` ({size} px, {world} world); M = {args.m} training images per row, YOLOv8n-seg {start}, "
            f"{args.epochs} epochs at imgsz {imgsz}, batch 32, training seeds {args.train_seeds}"
            + (" (cells: mean, and for mask AP and mIoU the range over seeds)" if len(train_seeds) > 1 else "")
            + f"; test: {args.test} renderer scenes "
            f"(seeds {TEST_SEEDS}+) with exact masks. AP from all predictions (conf >= 0.001); IoU from those with "
            f"conf >= {SEMANTIC_CONF}. Training time, all rows and seeds: "
            f"{sum(r['train_s'] for runs in rows for r in runs) / 60:.0f} min; this invocation's wall time "
            f"{(time.perf_counter() - t0) / 60:.0f} min (rows finished earlier are read back from --work)."
            + (" **--quick: a code-path check, not a result.**" if args.quick else "") + "\n\n" + "\n".join(lines))
    own = "" if args.gan == "toy-flat" else f"-{args.gan}"  # one section per generator
    write_section("downstream" + ("-finetuned" if args.init else "") + own,
                  "Downstream: a segmenter " + ("fine-tuned" if args.init else "trained") + " on each label source, "
                  f"tested on renderer scenes{f' ({args.gan})' if own else ''}",
                  body, torch.device("cpu"))


if __name__ == "__main__":
    main()
