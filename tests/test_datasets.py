"""The datasets open in the tools people use, with no glue code: pycocotools, torchvision, the yolo CLI,
a browser (the report page); plus the split exports, the dataset card and runs of the older layout."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import invoke

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "run"
    r = invoke(["run", "--gan", "toy-flat", "--num-images", "10", "--out", out, "--variants", "8"])
    assert r.exit_code == 0, r.output
    return out


def _torchvision_items(images: Path, annotations: Path) -> int:
    from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

    ds = wrap_dataset_for_transforms_v2(CocoDetection(str(images), str(annotations)),
                                        target_keys=("image_id", "boxes", "labels", "masks"))
    for image, target in ds:  # every item: images open, masks decode at the image's size
        assert target["masks"].shape[-2:] == (image.height, image.width)
        assert len(target["boxes"]) == len(target["labels"]) == len(target["masks"])
    return len(ds)


def test_torchvision_reads_a_run_as_is(run):
    assert _torchvision_items(run / "images", run / "annotations.json") == 10


def test_pycocotools_scores_a_run_against_itself_at_ap_1(run):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(run / "annotations.json"))
        dt = gt.loadRes([{k: v for k, v in a.items() if k != "id"} for a in gt.dataset["annotations"]])
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert len(gt.dataset["annotations"]) > 0 and ev.stats[0] == pytest.approx(1.0)


def test_coco_split_export_is_the_standard_tree_and_torchvision_reads_each_split(run, tmp_path):
    out = tmp_path / "coco"
    r = invoke(["export", run, "--format", "coco", "--split", "train=0.6,val=0.2,test=0.2", "--out", out])
    assert r.exit_code == 0, r.output
    seen = []
    for split in ("train", "val", "test"):
        ann = out / "annotations" / f"instances_{split}.json"
        data = json.loads(ann.read_text())
        assert data["images"], split  # each split keeps an image
        assert sorted(p.name for p in (out / "images" / split).iterdir()) == sorted(im["file_name"] for im in data["images"])
        assert _torchvision_items(out / "images" / split, ann) == len(data["images"])
        seen += [im["id"] for im in data["images"]]
    assert sorted(seen) == sorted(im["id"] for im in json.loads((run / "annotations.json").read_text())["images"])


def test_splits_have_exact_shares_in_a_fixed_order(caplog):
    from instseg.export import assign_splits

    shares = {"train": 0.8, "val": 0.1, "test": 0.1}
    for n, want in ((20, (16, 2, 2)), (64, (51, 7, 6)), (5000, (4000, 500, 500))):
        images = [{"id": s + 1, "seed": s} for s in range(n)]
        got = assign_splits(images, shares)
        assert tuple(len(got[k]) for k in ("train", "val", "test")) == want
        again = assign_splits(images[::-1], shares)  # the file order does not move a seed
        assert {k: {im["seed"] for im in v} for k, v in got.items()} == {k: {im["seed"] for im in v}
                                                                         for k, v in again.items()}
    tiny = assign_splits([{"id": s + 1, "seed": s} for s in range(3)], shares)
    assert all(len(v) == 1 for v in tiny.values())  # each split non-empty where it can be
    one = assign_splits([{"id": 1, "seed": 0}], shares)  # one image cannot fill three splits: said, not hidden
    assert [im["id"] for im in one["train"]] == [1] and not one["val"] and not one["test"]
    assert any("cannot fill 3 splits" in m for m in caplog.messages)


def test_bad_split_specs_give_one_line(run):
    for bad in ("train=0.5", "val=1.0", "train=0.8,foo=0.2", "train=x", "train=0.8,train=0.2"):
        r = invoke(["export", run, "--split", bad])
        assert r.exit_code == 2 and r.output.startswith("Error: --split"), r.output


@pytest.mark.slow
def test_the_stock_yolo_cli_validates_on_a_split_export(run, tmp_path):
    from detectors.yolo import packaged_weights

    r = invoke(["export", run, "--format", "yolo", "--split", "train=0.7,val=0.3", "--out", tmp_path / "y"])
    assert r.exit_code == 0, r.output
    yolo = Path(sys.executable).with_name("yolo")
    if not yolo.exists():
        pytest.skip("the yolo command is not installed beside this Python")
    out = subprocess.run([str(yolo), "segment", "val", f"model={packaged_weights('toy-flat')}",
                          f"data={tmp_path / 'y' / 'data.yaml'}", "imgsz=64", "device=cpu", "plots=False",
                          f"project={tmp_path / 'val'}"], capture_output=True, text=True,
                         env={**os.environ, "YOLO_OFFLINE": "1"}, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert re.search(r"^\s+all\s+\d+\s+\d+", text, re.M), text[-2000:]
    assert "no labels found" not in text


def test_every_run_folder_has_a_dataset_card_with_its_counts(run):
    card = (run / "README.md").read_text()
    data = json.loads((run / "annotations.json").read_text())
    for c in data["categories"]:
        n = sum(a["category_id"] == c["id"] for a in data["annotations"])
        assert re.search(rf"^\| {c['name']} \| {n} \|", card, re.M), (c["name"], n)
    assert "Licence" in card and "pycocotools" in card and "fiftyone" in card and "yolo" in card


def test_a_non_commercial_card_says_so_first(tmp_path):
    from instseg.card import card

    text = card(None, {"generator": "ffhq", "licence_note": "Non-commercial only."}, {"name": "NVIDIA NC"},
                ["face"], 1, {"face": (1, 1)}, "0")
    assert text.splitlines()[2].startswith("> **Non-commercial.**")


def test_a_run_of_the_older_layout_resumes_and_merges(tiny_ckpt, tmp_path):
    base = ["run", "--gan", tiny_ckpt, "--variants", "4", "--mix-from", "3"]
    for d in ("a", "b"):
        assert invoke(base + ["--out", tmp_path / d, "--seeds", "0-1" if d == "a" else "2-3"]).exit_code == 0
        for f in (tmp_path / d / "records").glob("*.json"):  # as the version before wrote them
            rec = json.loads(f.read_text())
            rec["image"]["file_name"] = "images/" + rec["image"]["file_name"]
            f.write_text(json.dumps(rec))
    assert invoke(base + ["--out", tmp_path / "a", "--seeds", "0-2"]).exit_code == 0
    names = [im["file_name"] for im in json.loads((tmp_path / "a" / "annotations.json").read_text())["images"]]
    assert names == ["0.png", "1.png", "2.png"]
    r = invoke(["merge", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "m"])
    assert r.exit_code == 0, r.output
    assert _torchvision_items(tmp_path / "m" / "images", tmp_path / "m" / "annotations.json") == 4


def _chromium(args, timeout=120):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")
def test_the_report_loads_in_a_real_browser_with_the_files_counts(run, tmp_path):
    import numpy as np
    from PIL import Image

    page = tmp_path / "report.html"
    assert invoke(["report", run, "--out", page]).exit_code == 0
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = _chromium(profile + ["--dump-dom", page.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not errors, errors
    data = json.loads((run / "annotations.json").read_text())
    shown = {k: int(re.search(rf'id="n-{k}">(\d+)<', dom.stdout).group(1)) for k in ("images", "instances")}
    assert shown == {"images": len(data["images"]), "instances": len(data["annotations"])}
    for c in data["categories"]:
        n = int(re.search(rf'data-class-count="{c["name"]}">(\d+)<', dom.stdout).group(1))
        assert n == sum(a["category_id"] == c["id"] for a in data["annotations"])
    # the script ran and parsed the embedded JSON block (a script element's content is raw text, not HTML)
    assert f'data-instances="{len(data["annotations"])}"' in dom.stdout
    assert ('id="pager"><button' in dom.stdout) == (len(data["annotations"]) > 60)  # a pager only for 2+ pages
    shot = tmp_path / "shot.png"
    r = _chromium(profile + ["--window-size=1200,900", f"--screenshot={shot}", page.as_uri()])
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not a blank page
