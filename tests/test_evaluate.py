import json

import numpy as np
import pytest
from click.testing import CliRunner

from instseg import coco
from instseg.cli import main
from instseg.evaluate import evaluate, trimap_band


def _ds(masks_per_image, names=("thing",)):
    images = [coco.image_entry(i + 1, f"{i}.png", 40, 40) for i in range(len(masks_per_image))]
    anns = [coco.annotation(m, i + 1, 1, 0.9) for i, ms in enumerate(masks_per_image) for m in ms]
    return coco.dataset(images, anns, list(names))


def _square(x, y, s=10):
    m = np.zeros((40, 40), bool)
    m[y:y + s, x:x + s] = True
    return m


def test_file_against_itself_scores_exactly_one():
    d = _ds([[_square(5, 5), _square(20, 22)], [_square(10, 10, 15)]])
    r = evaluate(d, d)
    for k in ("iou_fg", "iou_bg", "miou", "trimap_miou", "ap", "ap50"):
        assert r[k] == 1.0, k
    assert r["per_class"]["thing"] == {"iou": 1.0, "ap": 1.0}


def test_offset_squares_give_the_known_iou():
    gt = _ds([[_square(10, 10)]])
    pred = _ds([[_square(15, 10)]])  # shifted by half its width: 50 px shared, 150 px in the union
    r = evaluate(pred, gt)
    assert r["iou_fg"] == pytest.approx(50 / 150)
    assert r["iou_bg"] == pytest.approx((1600 - 150) / (1600 - 50))
    assert r["ap50"] == 0.0  # IoU 1/3 is below every COCO threshold


def test_trimap_band_width():
    band = trimap_band(_square(10, 10, 20), 3)
    assert band[20, 10] and band[20, 12] and not band[20, 13]  # inside: 3 px from the edge
    assert band[20, 7] and not band[20, 6]  # outside: 3 px
    assert not band[20, 20]


def test_cli_json_and_mismatched_images(tmp_path):
    a = _ds([[_square(5, 5)]])
    b = _ds([[_square(5, 5)], [_square(1, 1)]])
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    r = CliRunner().invoke(main, ["eval", "--pred", str(tmp_path / "a.json"), "--gt", str(tmp_path / "a.json"), "--json"])
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert {"iou_fg", "iou_bg", "miou", "trimap_miou", "ap", "ap50", "per_class"} <= set(out)
    r = CliRunner().invoke(main, ["eval", "--pred", str(tmp_path / "a.json"), "--gt", str(tmp_path / "b.json")])
    assert r.exit_code == 2 and "different images" in r.output
