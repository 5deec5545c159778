import json
import pytest
import os

import numpy as np
import yaml

from instseg.toy.dataset import write_scenes
from instseg.yolo_export import export_yolo, mask_polygon


def test_polygon_of_a_square_covers_it():
    m = np.zeros((20, 20), bool)
    m[4:12, 5:15] = True
    p = mask_polygon(m)
    assert p[:, 0].min() == 5 and p[:, 0].max() == 14 and p[:, 1].min() == 4 and p[:, 1].max() == 11


@pytest.mark.slow
def test_export_labels_load_in_ultralytics_and_train_one_epoch(tmp_path):
    os.environ["YOLO_OFFLINE"] = "1"
    ann = write_scenes(range(3_900_000, 3_900_012), tmp_path / "scenes", size=64)
    data = json.loads(ann.read_text())
    data_yaml = export_yolo(data, tmp_path / "scenes", tmp_path / "yolo", {"train": 0.75, "val": 0.25})
    cfg = yaml.safe_load(data_yaml.read_text())
    assert cfg["names"] == {0: "square", 1: "triangle", 2: "disc"}
    n_labels = sum(len(p.read_text().splitlines()) for p in (tmp_path / "yolo" / "labels").rglob("*.txt"))
    assert n_labels == len(data["annotations"])

    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset

    info = check_det_dataset(str(data_yaml))
    assert info["nc"] == 3
    model = YOLO("yolov8n-seg.yaml")
    model.train(data=str(data_yaml), epochs=1, imgsz=64, batch=4, device="cpu", workers=0, amp=False,
                pretrained=False, plots=False, val=False, project=str(tmp_path / "train"), name="t", verbose=False)
    assert (tmp_path / "train" / "t" / "weights" / "last.pt").exists()


def test_the_stock_yolo_cli_trains_on_an_instseg_export(tmp_path):
    """The README's recipe, verbatim apart from size: `instseg run --format yolo`, then `yolo segment train`."""
    import subprocess
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    from instseg.cli import main

    r = CliRunner().invoke(main, ["run", "--num-images", "6", "--out", str(tmp_path / "run"), "--format", "yolo"])
    assert r.exit_code == 0, r.output
    yolo = Path(sys.executable).with_name("yolo")
    p = subprocess.run([str(yolo), "segment", "train", f"data={tmp_path / 'run' / 'yolo' / 'data.yaml'}",
                        "model=yolov8n-seg.yaml", "epochs=1", "imgsz=64", "batch=4", "workers=0", "pretrained=False",
                        "plots=False", "val=False", "device=cpu", f"project={tmp_path / 'train'}", "name=t"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "YOLO_OFFLINE": "1"})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (tmp_path / "train" / "t" / "weights" / "last.pt").exists()


def test_a_moved_export_still_loads_with_ultralytics_own_check(tmp_path):
    """data.yaml holds paths relative to itself: a copied or moved export loads, with the same counts."""
    import shutil

    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics.data.utils import check_det_dataset

    ann = write_scenes(range(3_910_000, 3_910_010), tmp_path / "scenes", size=64)
    data = json.loads(ann.read_text())
    export_yolo(data, tmp_path / "scenes", tmp_path / "yolo", {"train": 0.7, "val": 0.3})
    assert "path" not in yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())

    def counts(root):
        info = check_det_dataset(str(root / "data.yaml"))
        images = {s: len(os.listdir(info[s])) for s in ("train", "val")}
        labels = sum(len(p.read_text().splitlines()) for p in (root / "labels").rglob("*.txt"))
        return images, labels
    before = counts(tmp_path / "yolo")
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(tmp_path / "yolo"), str(moved))
    assert counts(moved) == before and sum(before[0].values()) == 10 and before[1] == len(data["annotations"])
