"""The shipped toy world: weights load from the installed package and the instance path runs end to end."""
import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from pycocotools.coco import COCO

from detectors import load_detector
import instseg
from instseg.checkpoints import load_generator
from instseg.cli import main
from instseg.sampling import z_from_seed
from instseg.zoo import presets, resolve_gan


def test_shipped_weights_load_and_generate():
    path = resolve_gan("toy-flat").path
    shipped = Path(instseg.__file__).resolve().parent / "toy" / "weights" / "toy-flat.pt"
    assert path.resolve() == shipped and shipped.is_file()  # inside the installed package, not a cache or the cwd
    G = load_generator(path)
    img = G(z_from_seed(0, G.z_dim), truncation_psi=0.7)
    assert img.shape == (1, 3, 32, 32) and torch.isfinite(img).all()
    det = load_detector(presets()["toy-flat"].detector)
    assert det.class_names == list(presets()["toy-flat"].classes)
    assert "toy-shapes" not in presets()  # one toy world: the retired one's weights are gone too


def test_instances_end_to_end_for_one_class(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", "--classes", "disc", "--num-images", "16",
                                  "--out", str(out), "--format", "yolo"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    c = COCO(str(out / "annotations.json"))
    assert [cat["name"] for cat in c.dataset["categories"]] == ["disc"]
    assert len(c.dataset["images"]) == 16  # negatives are listed too
    assert len(c.dataset["annotations"]) > 0
    for img_id in c.getImgIds():
        masks = [c.annToMask(a).astype(bool) for a in c.loadAnns(c.getAnnIds(imgIds=[img_id]))]
        if masks:
            assert np.stack(masks).sum(0).max() <= 1  # no pixel shared by two instances
    for a in c.dataset["annotations"]:
        m = c.annToMask(a).astype(bool)
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(m)
        assert xs.min() >= x and ys.min() >= y and xs.max() < x + w and ys.max() < y + h
        assert 0 < a["score"] <= 1 and 0 < a["det_score"] <= 1 and a["iscrowd"] == 0
    assert (out / "yolo" / "data.yaml").exists()
    assert json.loads((out / "run.json").read_text())["config"]["classes"] == ["disc"]


def test_toy_flat_ships_a_generator_that_draws_its_labels_and_a_detector_at_its_training_size():
    from instseg.checkpoints import native_meta
    from instseg.toy.render import render_seed

    p = presets()["toy-flat"]
    path = resolve_gan("toy-flat").path
    assert path.stat().st_size <= 5 * 2**20  # the shipped generator stays <= 5 MB
    meta = native_meta(path)
    assert meta["world"] == "flat" and meta["label_names"] == list(p.classes)
    G = load_generator(path)
    assert G.cfg.label_channels == 3 and G.num_ws == p.num_ws and G.out_hw == (p.height, p.width)
    det = load_detector(p.detector, conf=0.5)
    assert det.class_names == list(p.classes) and det.train_imgsz == 64
    # renderer scenes are 32 px; the detector was trained at 64 and must see them upscaled to find them
    found = 0
    for seed in range(3_000_000, 3_000_010):
        img, _, classes = render_seed(seed, 32, "flat")
        d = det([img])[0]
        found += bool(len(d.scores)) and {p.classes[c] for c in classes} >= set(d.labels)
    assert found >= 9


def test_toy_flat_samples_as_run_does_are_found_by_the_renderer_only_detector():
    """The generator draws the renderer's world: the detector trained on renderer scenes alone (the preset's,
    and the judge of realism) finds an object at conf 0.5 in nearly every sample drawn as `instseg run` draws
    them (psi 0.7 toward the nearest of the preset's W centres)."""
    from instseg.config import build_config
    from instseg.generator import to_uint8
    from instseg.sampling import set_truncation_centres, source_images

    p = presets()["toy-flat"]
    cfg = build_config("toy-flat", {})
    assert p.detector == "yolo:toy-flat" and cfg.truncation_centres > 1
    G = set_truncation_centres(load_generator(resolve_gan("toy-flat").path), cfg.truncation_centres)
    images = list(to_uint8(source_images(G, list(range(20)), cfg.truncation_psi, torch.device("cpu"), 20)))
    assert sum(len(x.scores) > 0 for x in load_detector(p.detector, conf=0.5)(images)) >= 19


def test_toy_flat_makes_the_same_dataset_as_before_the_refactors(tmp_path):
    """The reference of issue 51 (behaviour unchanged): seeds 0-7 of toy-flat as the code before it made them."""
    from instseg.coco import decode_rle

    ref = json.loads((Path(__file__).parent / "data" / "toy-flat-seeds-0-7.json").read_text())
    r = CliRunner().invoke(main, ["run", "--gan", "toy-flat", "--seeds", "0-7", "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "r" / "annotations.json").read_text())
    assert [(im["id"], im["seed"]) for im in got["images"]] == [(im["id"], im["seed"]) for im in ref["images"]]
    assert len(got["annotations"]) == len(ref["annotations"])
    for a, b in zip(got["annotations"], ref["annotations"]):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        m, n = decode_rle(a["segmentation"]), decode_rle(b["segmentation"])
        assert (m & n).sum() / max((m | n).sum(), 1) >= 0.99 and abs(a["score"] - b["score"]) < 1e-3


def test_toy_textured_ships_runs_labels_and_detects(tmp_path):
    """The second embedded world, offline: its generator and detector ship in the package, `run` makes a dataset,
    `toy labels` gives the samples' exact labels, the card names the textures' licence, and the renderer-only
    detector finds the objects of the textured world's scenes."""
    from instseg.checkpoints import native_meta
    from instseg.toy.render import render_seed

    p = presets()["toy-textured"]
    path = resolve_gan("toy-textured").path
    assert path.resolve().parent == Path(instseg.__file__).resolve().parent / "toy" / "weights"
    assert native_meta(path)["world"] == "textured" and native_meta(path)["label_names"] == list(p.classes)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", "--gan", "toy-textured", "--num-images", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "CC0" in (out / "README.md").read_text()  # the textures' licence
    r = CliRunner().invoke(main, ["toy", "labels", "--gan", "toy-textured", "--seeds", "0-3", "--out",
                                  str(tmp_path / "gt.json")])
    assert r.exit_code == 0, r.output
    gt = json.loads((tmp_path / "gt.json").read_text())
    assert len(gt["images"]) == 4 and gt["annotations"] and {c["name"] for c in gt["categories"]} == set(p.classes)
    det = load_detector(p.detector, conf=0.5)
    found = sum(bool(len(det([render_seed(s, 32, "textured")[0]])[0].scores)) for s in range(3_000_000, 3_000_020))
    assert found >= 18
