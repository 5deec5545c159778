import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from instseg import coco
from conftest import invoke, one_line_error
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


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A `label` folder of 6 renderer scenes (seeds 100-105), and the renderer's exact COCO of them."""
    tmp = tmp_path_factory.mktemp("lab")
    assert invoke(["toy", "render", "--out", tmp / "scenes", "--seeds", "100-105"]).exit_code == 0
    r = invoke(["label", tmp / "scenes" / "images", "--out", tmp / "lab", "--steps", "5"])
    assert r.exit_code == 0, r.output
    return tmp / "lab", tmp / "scenes" / "annotations.json"


def test_eval_grades_a_label_folder_against_the_renderer_coco_by_file_name(labelled):
    lab, gt = labelled
    pred = json.loads((lab / "annotations.json").read_text())
    assert {im["id"] for im in pred["images"]} != {im["id"] for im in json.loads(gt.read_text())["images"]}
    r = invoke(["eval", "--pred", lab / "annotations.json", "--gt", gt])
    assert r.exit_code == 0, r.output
    assert "matched by file name" in r.output and "instance mIoU" in r.output and "mask AP" in r.output
    res = json.loads(invoke(["eval", "--pred", lab / "annotations.json", "--gt", gt, "--json"]).stdout)
    assert res["matched_by"] == "file name" and res["images"] == 6
    assert res["instances"] == len(json.loads(gt.read_text())["annotations"])
    assert res["matched"] + res["missed"] == res["instances"] and 0 < res["instance_miou"] <= 1
    assert set(res["per_class"]) <= {"square", "triangle", "disc"}  # only classes present


def test_eval_refuses_an_ambiguous_name_match(tmp_path):
    a = _ds([[_square(5, 5)], [_square(1, 1)]])
    b = json.loads(json.dumps(a))
    for im in b["images"]:
        im["id"] += 10
        im["file_name"] = "same.png"
    for ann in b["annotations"]:
        ann["image_id"] += 10
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    one_line_error(invoke(["eval", "--pred", tmp_path / "a.json", "--gt", tmp_path / "b.json"]), "both named")


def test_report_gt_counts_agree_with_eval(labelled, tmp_path):
    lab, gt = labelled
    r = invoke(["report", lab, "--out", tmp_path / "r.html", "--gt", gt])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    n = {k: int(re.search(rf'id="n-{k}">(\d+)<', page).group(1)) for k in ("ref", "matched", "poor", "missed", "false",
                                                                          "wrong-class")}
    res = json.loads(invoke(["eval", "--pred", lab / "annotations.json", "--gt", gt, "--json"]).stdout)
    assert n["ref"] == res["instances"] and n["matched"] == res["matched"] and n["false"] == res["false"]
    assert n["poor"] + n["missed"] == res["missed"] and n["wrong-class"] <= n["matched"]
    assert page.count('class="view"') == 6 and "worst first" in page and "Score</b> of an instance" in page
    plain = invoke(["report", lab, "--out", tmp_path / "p.html"])
    assert plain.exit_code == 0 and (tmp_path / "p.html").read_text().count('class="view"') == 6
