import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from pycocotools.coco import COCO

from conftest import randomise, tiny_config
from instseg.checkpoints import load_generator, save_native
from instseg.cli import main
from instseg.generator import Generator
from instseg.sampling import source_ws
from instseg.toy.labels import label_masks


def _label_copies_red(path, **kw):
    """A generator whose one label channel is, by construction, its red channel: every ToRGB's
    label row copies the red row. Its label mask is therefore known: red > 0."""
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32, label_channels=1, **kw)))
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


def test_toy_labels_truncate_toward_the_centres_a_run_uses(tmp_path):
    from instseg.sampling import set_truncation_centres

    _label_copies_red(tmp_path / "g.pt", mapping_lr_mul=1.0)  # ws that spread, so their centres differ
    out = tmp_path / "gt.json"
    r = CliRunner().invoke(main, ["toy", "labels", "--gan", str(tmp_path / "g.pt"), "--seeds", "0-15",
                                  "--truncation-centres", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    c = COCO(str(out))
    classic, multi = load_generator(tmp_path / "g.pt"), set_truncation_centres(load_generator(tmp_path / "g.pt"), 4)
    differ = False
    for seed in range(16):
        with torch.no_grad():
            red = {n: G.synthesis(source_ws(G, seed, 0.7, torch.device("cpu")))[0][0, 0].numpy() > 0
                   for n, G in (("classic", classic), ("multi", multi))}
        union = np.zeros_like(red["multi"])
        for a in c.loadAnns(c.getAnnIds(imgIds=[seed + 1])):
            union |= c.annToMask(a).astype(bool)
        assert np.array_equal(union, red["multi"])
        differ |= not np.array_equal(red["multi"], red["classic"])
    assert differ  # the setting changed the images, so the match above says something


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
    p = subprocess.run([sys.executable, "-m", "bench.crossover", "--gan", str(tmp_path / "g.pt"), "--seeds", "0-2",
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


def _tiny(tmp_path, **kw):
    from instseg.toy.train_gan import TrainConfig

    return TrainConfig(**{"out": str(tmp_path / "t"), "resolution": 16, "channel_base": 128, "channel_max": 16,
                          "d_channel_base": 128, "z_dim": 16, "w_dim": 16, "batch": 4, "iters": 2,
                          "checkpoint_every": 2, "r1_every": 2, "workers": 1, **kw})


def _iter(folder) -> int:
    return json.loads((folder / "state" / "state.json").read_text())["iter"]


def test_train_gan_with_label_channels_writes_and_resumes(tmp_path):
    from instseg.checkpoints import native_meta
    from instseg.toy.train_gan import train

    cfg = _tiny(tmp_path)
    path = train(cfg)
    G = load_generator(path)
    assert G.cfg.label_channels == 3 and native_meta(path)["label_names"] == ["square", "triangle", "disc"]
    assert _iter(tmp_path / "t") == 2
    assert sorted(p.name for p in (tmp_path / "t" / "state").iterdir()) == [
        "D.pt", "D_joint.pt", "G.pt", "G_ema.pt", "opt.pt", "state.json"]
    train(replace(cfg, iters=4))
    assert _iter(tmp_path / "t") == 4


def test_train_gan_in_bf16_keeps_fp32_weights_and_moves_them(tmp_path):
    """bf16 autocast only changes the arithmetic of the loss passes: the saved nets are fp32, finite and trained."""
    from instseg.cli import main as cli
    from instseg.toy.train_gan import PRECISIONS, train

    opt = next(p for p in cli.commands["toy"].commands["train-gan"].params if p.name == "precision")
    assert tuple(opt.type.choices) == PRECISIONS  # the CLI spells them out so --help does not import torch
    with pytest.raises(ValueError, match="precision"):
        train(_tiny(tmp_path, precision="fp16"))
    cfg = _tiny(tmp_path, precision="bf16")
    path = train(cfg)
    G0 = load_generator(train(_tiny(tmp_path, out=str(tmp_path / "zero"), iters=1, checkpoint_every=1, lr=0.0)))
    G = load_generator(path)
    for (name, p), p0 in zip(G.named_parameters(), G0.parameters()):
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    assert any(not torch.equal(p, p0) for p, p0 in zip(G.parameters(), G0.parameters()))


def test_split_critics_keep_the_label_gradient_out_of_the_rgb(tmp_path):
    """With the split, G's RGB gets no gradient from the joint D; with one joint D it does."""
    from instseg.generator import Generator
    from instseg.toy.train_gan import Critics, make_generator_config

    for split in (True, False):
        cfg = _tiny(tmp_path, split_d=split)
        gcfg = make_generator_config(cfg)
        critics = Critics(cfg, gcfg, torch.device("cpu"))
        G = Generator(gcfg)
        img, f = G.synthesis(G.mapping(torch.randn(4, 16)), features=("labels",))
        img.retain_grad()
        scores = critics.scores(torch.cat([img, f["labels"]], 1), detach_image=True)
        scores[-1].sum().backward()  # the joint D's logits
        assert (img.grad is None or not img.grad.any()) == split


def test_train_gan_fresh_scenes_follow_the_iteration(tmp_path):
    """Fresh scenes: batch i holds seeds TRAIN_SEEDS + i * batch.., in the trainer or from worker processes."""
    from instseg.toy.trainkit import TRAIN_SEEDS, SceneStream, render_rows

    inline, pooled = SceneStream(4, 16, "flat", True, 3, 1), SceneStream(4, 16, "flat", True, 3, 2)
    try:
        for i in (3, 4, 5):
            want = torch.from_numpy(render_rows(TRAIN_SEEDS + 4 * i, 4, 16, "flat", True)).permute(0, 3, 1, 2)
            assert torch.equal(inline(), want) and torch.equal(pooled(), want)
    finally:
        pooled.close()


def test_mbstd_accepts_any_batch():
    from instseg.toy.trainkit import Discriminator, mbstd_group

    assert [mbstd_group(b) for b in (2, 3, 4, 6, 7, 8)] == [2, 3, 4, 3, 1, 4]
    from instseg.generator import GeneratorConfig

    D = Discriminator(GeneratorConfig(resolution=16, channel_base=128, channel_max=16), blur=True)
    assert D(torch.randn(6, 3, 16, 16)).shape == (6,)
    assert [mbstd_group(b, 32) for b in (32, 48, 6)] == [32, 24, 6]


def test_mbstd_group_reaches_both_discriminators_and_changes_what_they_see(tmp_path):
    """--mbstd-group (ADA's cifar: 32) is the group both Ds use: one odd sample moves every score in a whole-batch
    group, and only its own group's scores with groups of 4."""
    from instseg.generator import GeneratorConfig
    from instseg.toy.train_gan import Critics

    cfg = _tiny(tmp_path, batch=8, mbstd_group=8)
    gcfg = GeneratorConfig(resolution=16, channel_base=128, channel_max=16, label_channels=3)
    critics = Critics(cfg, gcfg, torch.device("cpu"))
    assert [d.mbstd for d in critics.nets.values()] == [8, 8]
    D = critics.nets["D"]
    x = torch.randn(8, 3, 16, 16)
    y = x.clone()
    y[0] += 3.0
    with torch.no_grad():
        moved = (D(x) != D(y))[1:]
        D.mbstd = 4
        moved4 = (D(x) != D(y))[1:]
    assert moved.all()
    assert moved4.tolist() == [False, True, False, True, False, True, False]  # groups of 4 stride: 0, 2, 4, 6


def test_r1_gamma_defaults_to_1_and_none_is_the_ada_heuristic(tmp_path):
    from click.testing import CliRunner

    from instseg.cli import main

    assert _tiny(tmp_path).gamma == 1.0
    assert _tiny(tmp_path, resolution=32, batch=32, r1_gamma=None).gamma == pytest.approx(0.0064)
    help_text = CliRunner().invoke(main, ["toy", "train-gan", "--help"]).output
    assert "default: 1.0" in help_text


def test_train_gan_time_budget_checkpoints_and_a_weights_only_state_resumes(tmp_path):
    """--minutes stops early with a checkpoint; a state without opt.pt (the committed, weights-only state)
    resumes with fresh Adam moments, from another folder through resume_from."""
    import shutil

    from instseg.toy.train_gan import train

    cfg = _tiny(tmp_path, iters=1000, checkpoint_every=1000, minutes=1e-6)
    train(cfg)
    it = _iter(tmp_path / "t")
    assert 1 <= it < 1000  # stopped by the budget, not by iters
    committed = tmp_path / "committed"
    shutil.copytree(tmp_path / "t" / "state", committed)
    (committed / "opt.pt").unlink()
    train(replace(cfg, out=str(tmp_path / "u"), minutes=0.0, iters=it + 2), resume_from=str(committed))
    assert _iter(tmp_path / "u") == it + 2
    history = json.loads((tmp_path / "u" / "state" / "state.json").read_text())["history"]
    assert [h.get("branched_from") for h in history] == [None, str(committed)]  # the branch point is on record
    assert history[-1]["from_iter"] == it
    with pytest.raises(ValueError, match="split_d"):
        train(replace(cfg, out=str(tmp_path / "v"), split_d=False, minutes=0.0, iters=it + 2),
              resume_from=str(committed))


def test_render_dataset_in_processes_matches_one_process():
    from instseg.toy.trainkit import render_dataset

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


def test_the_committed_training_state_resumes_with_the_default_recipe(tmp_path):
    """bench/toy-state (what bench/device.sh resumes on a GPU) matches TrainConfig's defaults, and each file
    stays under the 16 MB a device call brings back."""
    from pathlib import Path

    from instseg.toy.train_gan import NETS, train

    state = Path(__file__).resolve().parents[1] / "bench" / "toy-state"
    if not state.is_dir():
        pytest.skip("bench/toy-state is not in this checkout")
    assert all((state / f"{k}.pt").stat().st_size < 16 << 20 for k in NETS)
    it = json.loads((state / "state.json").read_text())["iter"]
    train(_tiny(tmp_path, **{k: v for k, v in _defaults().items()}, iters=it + 1, workers=1),
          resume_from=str(state))
    assert _iter(tmp_path / "t") == it + 1


def _defaults():
    from instseg.toy.train_gan import TrainConfig

    d = TrainConfig()
    return {k: getattr(d, k) for k in ("resolution", "channel_base", "channel_max", "d_channel_base", "z_dim", "w_dim",
                                       "batch", "checkpoint_every")}


def test_mismatched_pairs_keep_the_image_and_give_every_object_another_class():
    from instseg.toy.train_gan import mismatched

    real = torch.randn(64, 6, 4, 4)
    real[:, 3:] = torch.arange(3.0)[None, :, None, None]  # channel c holds c
    wrong = mismatched(real, 3)
    assert torch.equal(wrong[:, :3], real[:, :3])
    shift = wrong[:, 3:, 0, 0] - real[:, 3:, 0, 0]  # per sample: a cyclic shift of (0, 1, 2)
    assert all(sorted(row.tolist()) == [0.0, 1.0, 2.0] for row in wrong[:, 3:, 0, 0])
    assert (shift != 0).all()  # no class keeps its channel
    assert {tuple(r) for r in wrong[:, 3:, 0, 0].tolist()} == {(1.0, 2.0, 0.0), (2.0, 0.0, 1.0)}


def test_mismatch_trains_and_needs_labels(tmp_path):
    from instseg.toy.train_gan import train

    train(_tiny(tmp_path, mismatch=True))
    assert _iter(tmp_path / "t") == 2
    state = json.loads((tmp_path / "t" / "state" / "state.json").read_text())
    assert state["config"]["mismatch"] is True
    with pytest.raises(ValueError, match="needs --labels"):
        train(_tiny(tmp_path, out=str(tmp_path / "n"), mismatch=True, labels=False))


def test_the_mismatch_weight_reaches_the_joint_d_and_is_checked(tmp_path):
    from instseg.toy.train_gan import train

    joint = []
    for w in (0.2, 0.8):
        out = tmp_path / f"w{w}"
        train(_tiny(tmp_path, out=str(out), mismatch=True, mismatch_weight=w, iters=1))
        joint.append(torch.load(out / "state" / "D_joint.pt", weights_only=True))
    assert any(not torch.equal(joint[0][k], joint[1][k]) for k in joint[0])  # same seed, other weight
    with pytest.raises(ValueError, match="between 0 and 1"):
        train(_tiny(tmp_path, out=str(tmp_path / "x"), mismatch=True, mismatch_weight=1.0))


def test_the_joint_weight_pulls_on_the_shared_layers_but_not_on_the_label_head(tmp_path):
    """G's first Adam step is lr * sign(grad) per weight: scaling the joint D's term leaves the label rows of every
    ToRGB (which only that term reaches) where they were, and moves the layers the RGB shares with the labels."""
    from instseg.generator import Generator
    from instseg.toy.train_gan import make_generator_config, train

    torch.manual_seed(0)  # the trainer's seed: G is the first thing it builds
    start = Generator(make_generator_config(_tiny(tmp_path))).state_dict()
    G = []
    for w in (0.1, 1.0):
        out = tmp_path / f"w{w}"
        train(_tiny(tmp_path, out=str(out), joint_weight=w, iters=1, checkpoint_every=1))
        G.append(torch.load(out / "state" / "G.pt", weights_only=True))
    heads = [k for k in G[0] if k.endswith("torgb.weight") or k.endswith("torgb.bias")]
    assert heads
    for k in heads:  # up to Adam's eps, which weighs on a first step of a tiny gradient: 5% of the step lr 0.002
        torch.testing.assert_close(G[0][k][3:], G[1][k][3:], atol=1e-4, rtol=0)
    assert all(not torch.equal(G[0][k][3:], start[k][3:]) for k in heads)  # the step did reach them
    assert any(not torch.equal(G[0][k], G[1][k]) for k in G[0] if "mapping" in k or ".conv" in k)
    with pytest.raises(ValueError, match="joint_weight"):
        train(_tiny(tmp_path, out=str(tmp_path / "x"), joint_weight=0.0))


def test_same_recipe_takes_the_states_recipe_and_the_command_line_wins(tmp_path, monkeypatch):
    """--same-recipe continues a branch (say --mismatch --r1-gamma 0.1) without restating its options."""
    from click.testing import CliRunner

    import instseg.toy.train_gan as tg
    from instseg.cli import main

    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"iter": 5, "config": {
        "r1_gamma": 0.1, "mismatch": True, "resolution": 16, "batch": 8, "lr": 0.5}}))
    seen = []
    monkeypatch.setattr(tg, "train", lambda cfg, resume_from=None: seen.append(cfg) or tmp_path / "missing.pt")
    args = ["toy", "train-gan", "--out", str(tmp_path / "t"), "--resume-from", str(state), "--batch", "4"]
    CliRunner().invoke(main, [*args, "--same-recipe"])
    CliRunner().invoke(main, args)
    (cfg, plain) = seen
    assert (cfg.r1_gamma, cfg.mismatch, cfg.resolution, cfg.batch, cfg.lr) == (0.1, True, 16, 4, 0.5)
    assert plain.lr == 0.002
    assert (plain.r1_gamma, plain.mismatch, plain.resolution) == (1.0, True, 32)  # the shipped recipe's defaults
    res = CliRunner().invoke(main, ["toy", "train-gan", "--out", str(tmp_path / "u"), "--same-recipe"])
    assert res.exit_code != 0 and "needs a state" in res.output


def test_a_resumed_run_keeps_the_adam_moments_but_uses_its_own_learning_rate(tmp_path):
    """Loading opt.pt used to bring the old lr back with the moments, so --lr on a resume did nothing."""
    from instseg.toy.train_gan import train

    cfg = _tiny(tmp_path)
    train(cfg)
    train(replace(cfg, iters=4, lr=0.0005))
    st = torch.load(tmp_path / "t" / "state" / "opt.pt", weights_only=True)
    assert st["opt_G"]["param_groups"][0]["lr"] == pytest.approx(0.0005)
    assert st["opt_D"]["param_groups"][0]["lr"] == pytest.approx(0.0005 * 2 / 3)  # lazy R1 every 2 steps
    assert st["opt_G"]["state"]  # the moments came along


def test_the_committed_textured_state_resumes_with_its_own_recipe(tmp_path):
    """bench/toy-state-textured (what bench/device.sh and train-background.sh resume) continues with the recipe it
    was trained with, read from its state.json (--same-recipe's path), each file under 16 MB."""
    from pathlib import Path

    from instseg.toy.train_gan import NETS, recipe_of, train

    state = Path(__file__).resolve().parents[1] / "bench" / "toy-state-textured"
    if not state.is_dir():
        pytest.skip("bench/toy-state-textured is not in this checkout")
    assert all((state / f"{k}.pt").stat().st_size < 16 << 20 for k in NETS)
    recipe = recipe_of(state)
    assert recipe["world"] == "textured" and recipe["pool_first"] and recipe["r1_every"] == 16
    it = json.loads((state / "state.json").read_text())["iter"]
    train(_tiny(tmp_path, **{**{k: v for k, v in _defaults().items()}, **recipe}, iters=it + 1, workers=1),
          resume_from=str(state))
    assert _iter(tmp_path / "t") == it + 1
