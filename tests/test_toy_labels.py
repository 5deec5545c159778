import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pycocotools.coco import COCO

from conftest import randomise, tiny_config
from instseg.checkpoints import load_generator, save_native
from instseg.cli import main
from instseg.generator import Generator
from instseg.segment import source_ws
from instseg.toy.labels import label_masks


def _label_copies_red(path):
    """A generator whose one label channel is, by construction, its red channel: every ToRGB's
    label row copies the red row. Its label mask is therefore known: red > 0."""
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32, label_channels=1)))
    with torch.no_grad():
        for blk in G.blocks:
            blk.torgb.weight[3] = blk.torgb.weight[0]
            blk.torgb.bias[3] = blk.torgb.bias[0]
    save_native(G, path, meta={"label_names": ["blob"]})
    return G


def test_label_masks_split_components_per_class():
    lab = -np.ones((2, 8, 8), np.float32)
    lab[0, 1:3, 1:3] = 1
    lab[0, 5:7, 5:7] = 1
    lab[1, 0, :] = 1
    got = label_masks(lab)
    assert [c for c, _ in got] == [0, 0, 1] and [int(m.sum()) for _, m in got] == [4, 4, 8]


def test_toy_labels_writes_the_known_masks_as_coco_that_eval_reads(tmp_path):
    G = _label_copies_red(tmp_path / "g.pt")
    out = tmp_path / "gt.json"
    r = CliRunner().invoke(main, ["toy", "labels", "--gan", str(tmp_path / "g.pt"), "--seeds", "3,7", "--out", str(out)])
    assert r.exit_code == 0, r.output
    c = COCO(str(out))
    assert [x["name"] for x in c.dataset["categories"]] == ["blob"]
    assert sorted(im["id"] for im in c.dataset["images"]) == [4, 8]  # image id = seed + 1, as in a run
    G = load_generator(tmp_path / "g.pt")
    for seed in (3, 7):
        with torch.no_grad():
            red = G.synthesis(source_ws(G, seed, 0.7, torch.device("cpu")))[0][0, 0].numpy()
        union = np.zeros_like(red, bool)
        for a in c.loadAnns(c.getAnnIds(imgIds=[seed + 1])):
            union |= c.annToMask(a).astype(bool)
        assert np.array_equal(union, red > 0)
    r = CliRunner().invoke(main, ["eval", "--pred", str(out), "--gt", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["miou"] == 1.0


def test_toy_labels_refuses_a_generator_without_label_channels(tiny_ckpt, tmp_path):
    r = CliRunner().invoke(main, ["toy", "labels", "--gan", str(tiny_ckpt), "--seeds", "0", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no label channels" in r.output


def test_crossover_table_runs_on_a_label_generator(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _label_copies_red(tmp_path / "g.pt")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "INSTSEG_BENCH_MD": str(tmp_path / "B.md")}
    p = subprocess.run([sys.executable, "bench/crossover.py", "--gan", str(tmp_path / "g.pt"), "--seeds", "0-2",
                        "--variants", "3"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-1500:]
    rows = [l for l in (tmp_path / "B.md").read_text().splitlines() if l.startswith("| ") and l[2].isdigit()]
    assert len(rows) == 7  # crossovers 1..num_ws-1 of a 32 px generator (8 ws)
    for r in rows:
        iou, change = (float(v) for v in r.strip("|").split("|")[1:3])
        assert 0 <= iou <= 1 and 0 <= change <= 1


def test_label_heads_train_without_touching_the_image_and_resume(tmp_path):
    from instseg.checkpoints import native_meta
    from instseg.toy.train_labels import LabelTrainConfig, train_labels

    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32)))
    save_native(G, tmp_path / "rgb.pt")
    cfg = LabelTrainConfig(gan=str(tmp_path / "rgb.pt"), out=str(tmp_path / "lab"), dataset_size=16, batch=4,
                           iters=3, checkpoint_every=2)
    path = train_labels(cfg)
    L = load_generator(path)
    assert L.cfg.label_channels == 3 and native_meta(path)["label_names"] == ["square", "triangle", "disc"]
    ws = G.mapping(torch.randn(2, 8))
    with torch.no_grad():
        img, f = L.synthesis(ws, features=("labels",))
        assert torch.allclose(img, G.synthesis(ws)[0], atol=1e-6)  # the image is frozen
        assert f["labels"].shape == (2, 3, 32, 32)
    before = f["labels"].clone()
    train_labels(LabelTrainConfig(**{**cfg.__dict__, "iters": 5}))  # resumes at 3, runs 2 more
    L2 = load_generator(path)
    with torch.no_grad():
        img2, f2 = L2.synthesis(ws, features=("labels",))
    assert torch.allclose(img2, img, atol=1e-6) and not torch.equal(f2["labels"], before)


def test_train_gan_with_label_channels_writes_and_resumes(tmp_path):
    from instseg.checkpoints import native_meta
    from instseg.toy.train_gan import TrainConfig, train

    cfg = TrainConfig(out=str(tmp_path / "t"), resolution=16, channel_base=128, channel_max=16, d_channel_base=128,
                      z_dim=16, w_dim=16, dataset_size=8, batch=4, iters=2, checkpoint_every=2, r1_every=2)
    path = train(cfg)
    G = load_generator(path)
    assert G.cfg.label_channels == 3 and native_meta(path)["label_names"] == ["square", "triangle", "disc"]
    assert torch.load(tmp_path / "t" / "train-state.pt", weights_only=True)["iter"] == 2
    train(TrainConfig(**{**cfg.__dict__, "iters": 4}))
    assert torch.load(tmp_path / "t" / "train-state.pt", weights_only=True)["iter"] == 4


def test_train_gan_time_budget_checkpoints_and_a_slim_state_resumes(tmp_path):
    """--minutes stops early with a checkpoint; a state without optimisers or RNG (what a GPU lease
    brings back) resumes with fresh Adam moments."""
    from instseg.toy.train_gan import TrainConfig, train

    cfg = TrainConfig(out=str(tmp_path / "t"), resolution=16, channel_base=128, channel_max=16, d_channel_base=128,
                      z_dim=16, w_dim=16, dataset_size=8, batch=4, iters=1000, checkpoint_every=1000, r1_every=2,
                      minutes=1e-6, workers=1)
    train(cfg)
    state = tmp_path / "t" / "train-state.pt"
    st = torch.load(state, weights_only=True)
    assert 1 <= st["iter"] < 1000  # stopped by the budget, not by iters
    torch.save({k: st[k] for k in ("G", "D", "G_ema", "iter", "config")}, state)
    train(TrainConfig(**{**cfg.__dict__, "minutes": 0.0, "iters": st["iter"] + 2}))
    assert torch.load(state, weights_only=True)["iter"] == st["iter"] + 2


def test_render_dataset_in_processes_matches_one_process():
    from instseg.toy.train_gan import render_dataset

    a = render_dataset(512, 16, world="flat", labels=True, workers=2)
    assert torch.equal(a, render_dataset(512, 16, world="flat", labels=True, workers=1))


def test_gan_samples_for_the_detector_are_the_run_images_with_their_exact_labels(tmp_path):
    from PIL import Image

    from instseg.coco import decode_rle
    from instseg.toy.dataset import interleave, write_gan_samples

    G = _label_copies_red(tmp_path / "g.pt")
    data = write_gan_samples(G, [3, 7], tmp_path / "gan", ["blob"], min_area=1)
    for seed in (3, 7):
        with torch.no_grad():
            img = G.synthesis(source_ws(G, seed, 0.7, torch.device("cpu")))[0][0]
        written = np.asarray(Image.open(tmp_path / "gan" / "images" / f"{seed}.png")).astype(int)
        expect = ((img.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255)
        assert np.abs(written - expect).max() <= 1.0  # the image `instseg run` would make, to rounding
        union = np.zeros(img.shape[1:], bool)
        for a in data["annotations"]:
            if a["image_id"] == seed + 1:
                union |= decode_rle(a["segmentation"]).astype(bool)
        assert np.array_equal(union, img[0].numpy() > 0)  # its exact label: red > 0
    scenes = {"images": [{"id": i} for i in (10, 11, 12)], "annotations": [{"image_id": 10}],
              "categories": [{"id": 1, "name": "blob"}]}
    both = interleave(scenes, data, "both")
    assert [im["id"] for im in both["images"]] == [10, 4, 11, 8, 12]  # alternating: a split by order holds both
    assert [a["id"] for a in both["annotations"]] == list(range(1, len(both["annotations"]) + 1))
    with pytest.raises(ValueError):
        interleave(scenes, {**data, "categories": [{"id": 1, "name": "other"}]}, "x")


def test_train_detector_refuses_a_generator_whose_labels_are_not_the_world_classes(tmp_path):
    _label_copies_red(tmp_path / "g.pt")
    r = CliRunner().invoke(main, ["toy", "train-detector", "--out", str(tmp_path / "d"), "--world", "flat", "--size", "32",
                                  "--scenes", "2", "--epochs", "1", "--gan", str(tmp_path / "g.pt")])
    assert r.exit_code == 2 and "label channels named square, triangle, disc" in r.output
    assert not (tmp_path / "d").exists()  # refused before anything is rendered
