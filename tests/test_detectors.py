from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED
from detectors import DetectorError, check_classes, load_detector, parse_spec

COCO_W = SHARED / "weights" / "yolov8n-coco.pt"


def test_spec_parsing():
    assert parse_spec("none") == ("none", None)
    assert parse_spec("yolo:a/b.pt") == ("yolo", "a/b.pt")
    assert parse_spec("frcnn") == ("frcnn", None)
    assert parse_spec("frcnn:/x.pth") == ("frcnn", "/x.pth")
    for bad in ("yolo", "detr:x", "none:x"):
        with pytest.raises(DetectorError):
            parse_spec(bad)


def test_unknown_class_names_the_nearest():
    with pytest.raises(DetectorError, match="nearest: .*horse"):
        check_classes(["hrose"], ["person", "horse", "house"])


def test_missing_yolo_weights_offline_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(DetectorError, match="not in the cache and YOLO_OFFLINE is set"):
        load_detector("yolo:yolov8x-not-here.pt", cache=tmp_path)
    with pytest.raises(DetectorError, match="no cache folder"):  # detectors/ has no cache of its own: it is given one
        load_detector("yolo:yolov8x-not-here.pt")


@pytest.mark.skipif(not COCO_W.exists(), reason="../shared/weights/yolov8n-coco.pt is absent (only on our machines)")
def test_yolo_adapter_finds_bus_and_people_on_bus_jpg():
    import ultralytics

    img = np.asarray(Image.open(Path(ultralytics.__file__).parent / "assets" / "bus.jpg").convert("RGB"))
    det = load_detector(f"yolo:{COCO_W}", conf=0.4)
    assert "horse" in det.class_names and len(det.class_names) == 80
    d = det([img])[0]
    assert d.boxes.shape == (len(d.labels), 4) and d.scores.shape == (len(d.labels),)
    assert "bus" in d.labels and d.labels.count("person") >= 3
    bus = d.boxes[d.labels.index("bus")]
    assert bus[2] - bus[0] > 0.5 * img.shape[1]  # the bus spans most of the width
    assert (d.boxes[:, 2] <= img.shape[1] + 1).all() and (d.boxes[:, 3] <= img.shape[0] + 1).all()


def test_faster_rcnn_adapter_with_random_weights():
    import torch
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from detectors.frcnn import FasterRCNNDetector, coco_categories

    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=128, max_size=128)
    det = FasterRCNNDetector(model, coco_categories(), conf=0.0, max_det=5)
    assert len(det.class_names) == 80 and "horse" in det.class_names and "N/A" not in det.class_names
    imgs = [np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8) for i in range(2)]
    out = det(imgs)
    assert len(out) == 2
    for d in out:
        assert d.boxes.dtype == np.float32 and d.boxes.shape[1] == 4 and len(d.boxes) <= 5
        assert len(d.labels) == len(d.scores) == len(d.boxes)
        assert all(l in det.class_names for l in d.labels)
    # label ids map through torchvision's COCO list: id 19 is 'horse'
    assert coco_categories()[19] == "horse"


@pytest.mark.skipif(not COCO_W.exists(), reason="../shared/weights/yolov8n-coco.pt is absent (only on our machines)")
def test_yolo_predict_leaves_torch_threads_alone():
    import torch

    before = torch.get_num_threads()
    load_detector(f"yolo:{COCO_W}")([np.zeros((64, 64, 3), np.uint8)])
    assert torch.get_num_threads() == before
