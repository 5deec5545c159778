"""StyleGAN3 (-T, -R) and class-conditional StyleGAN2: the pieces against known answers, the official snapshot
layouts (our own writers) loaded, converted and refused, and runs end to end."""
import io
import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from instseg.checkpoints import detect_and_load, load_generator
from instseg.cli import main
from instseg.errors import CheckpointError
from instseg.generator import Generator, one_hot
from instseg.sampling import mix_ws, source_ws, variant_rng
from instseg.stylegan3 import (SG3Generator, design, design_filters, filtered_lrelu, fourier_grid, input_transform,
                               lowpass, upfirdn)
from conftest import randomise, tiny_config
from layouts import ada_pickle_bytes, sg3_pickle_bytes


def _sg3(res: int, radial: bool, seed: int = 0) -> SG3Generator:
    torch.manual_seed(seed)
    cfg = design(res, radial=radial, z_dim=16, w_dim=16, channel_base=512 if not radial else 1024,
                 channel_max=32 if not radial else 64, num_layers=6, margin=4)
    G = SG3Generator(cfg)
    design_filters(G)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial values everywhere a loader could drop or misplace one
        for t in G.parameters():
            t.add_(torch.randn(t.shape, generator=g) * 0.1)
        for layer in G.layers:
            layer.magnitude_ema.fill_(float(torch.rand((), generator=g)) + 0.5)
        G.mapping_net.w_avg.copy_(torch.randn(16, generator=g))
        G.input.transform.copy_(input_transform(torch.tensor([[0.9, 0.2, 0.1, -0.05]]), torch.eye(3))[0])
    return G.eval()


def _images(G, c=None):
    z = torch.cat([torch.from_numpy(np.random.RandomState(s).randn(1, G.z_dim)).float() for s in (0, 1)])
    with torch.no_grad():
        return G.synthesis(G.mapping(z, 0.7, c=c))[0]


# ---------------------------------------------------------------------------------------
# The pieces, against known answers


def _np_upfirdn(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """A direct, one-dimensional-at-a-time reference: zero insertion, padding, full convolution, subsampling."""
    def along(a: np.ndarray, axis: int) -> np.ndarray:
        a = np.moveaxis(a, axis, -1)
        u = np.zeros(a.shape[:-1] + (a.shape[-1] * up,))
        u[..., ::up] = a
        u = np.concatenate([np.zeros(a.shape[:-1] + (max(pad[0], 0),)), u, np.zeros(a.shape[:-1] + (max(pad[1], 0),))], -1)
        u = u[..., max(-pad[0], 0):u.shape[-1] - max(-pad[1], 0)]  # negative padding crops
        out = np.apply_along_axis(lambda r: np.convolve(r, f * up, mode="valid"), -1, u)
        return np.moveaxis(out[..., ::down], -1, axis)
    return along(along(x, 0), 1)


def test_filtered_lrelu_matches_a_direct_upsample_activate_downsample():
    rng = np.random.RandomState(0)
    x = rng.randn(9, 9)
    b = 0.3
    fu = lowpass(12, 4.0, 4.0, 32.0).numpy().astype(np.float64)
    fd = lowpass(12, 4.0, 4.0, 32.0).numpy().astype(np.float64)
    pad = (6, 5)
    up = _np_upfirdn(x + b, fu, 2, 1, pad)
    act = np.clip(np.where(up >= 0, up, 0.2 * up) * math.sqrt(2), -1.5, 1.5)
    want = _np_upfirdn(act, fd, 1, 2, (0, 0))
    got = filtered_lrelu(torch.tensor(x)[None, None].float(), torch.tensor([b]), torch.tensor(fu).float(),
                         torch.tensor(fd).float(), 2, 2, (*pad, *pad), math.sqrt(2), 0.2, 1.5)[0, 0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


@pytest.mark.parametrize("up, down, pad", [(1, 1, (2, 3)), (2, 1, (6, 5)), (4, 1, (13, 10)), (1, 2, (0, 0)),
                                            (2, 1, (-3, 4)), (1, 4, (5, -2)), (3, 1, (0, 0))])
def test_upfirdn_matches_a_direct_zero_insertion_reference(up, down, pad):
    """The phase-split upsampling and strided downsampling equal zero insertion, full filtering and subsampling."""
    x = np.random.RandomState(up * 7 + down).randn(24, 27)
    f = np.random.RandomState(3).rand(4 * max(up, down) - 1)  # odd length, not symmetric, not a multiple of up
    want = _np_upfirdn(x, f, up, down, pad)
    got = upfirdn(torch.tensor(x)[None, None], torch.tensor(f), up=up, down=down, padding=(*pad, *pad), gain=up ** 2)
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=1e-10)


def test_filtered_lrelu_with_hold_and_average_filters_is_the_plain_activation():
    """Nearest-neighbour up (taps [.5, .5] at gain 4) and a 2-tap average down give back lrelu(x + b) * gain."""
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 3.0], [1.0, -1.0, 2.0, -3.0, 0.25]])[None, None]
    half = torch.tensor([0.5, 0.5])
    got = filtered_lrelu(x, torch.tensor([0.25]), half, half, 2, 2, (1, 0, 1, 0), math.sqrt(2), 0.2, None)
    want = F.leaky_relu(x + 0.25, 0.2) * math.sqrt(2)
    torch.testing.assert_close(got, want)


def test_upfirdn_keeps_a_constant_and_crops_with_negative_padding():
    x = torch.ones(1, 2, 6, 6)
    f = lowpass(6, 3.0, 2.0, 16.0)
    assert abs(float(f.sum()) - 1) < 1e-6
    y = upfirdn(x, f, up=2, padding=(-2, -2, -2, -2), gain=4)
    assert y.shape[-1] == 12 - 4 - 5
    torch.testing.assert_close(y[..., 3:-3, 3:-3], torch.ones_like(y[..., 3:-3, 3:-3]))  # away from the zero border
    radial = lowpass(12, 3.0, 2.0, 16.0, radial=True)
    assert radial.shape == (12, 12) and torch.allclose(radial, radial.t()) and abs(float(radial.sum()) - 1) < 1e-5


def test_fourier_input_frequencies_phases_and_transform():
    G = _sg3(32, False)
    inp = G.input
    C = inp.weight.shape[0]
    with torch.no_grad():
        inp.weight.copy_(torch.eye(C) * math.sqrt(C))  # the mixing matrix is then the identity
        inp.freqs.zero_()
        inp.freqs[0] = torch.tensor([0.5, 0.0])  # half a cycle per unit along x
        inp.freqs[1] = torch.tensor([0.0, 1.0])  # one cycle per unit along y
        inp.phases.zero_()
        inp.phases[1] = 0.25
        inp.transform.copy_(torch.eye(3))
        inp.affine.weight.zero_()
    g = fourier_grid(inp.size, inp.rate).double()
    assert abs(float(g[0] + g[-1])) < 1e-6 and abs(float(g[1] - g[0]) - 1 / inp.rate) < 1e-6

    def run(t):
        with torch.no_grad():
            inp.affine.bias.copy_(torch.tensor(t))
            return inp(torch.zeros(1, 16))[0].double()

    out = run([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(out[0], torch.sin(2 * math.pi * 0.5 * g)[None].expand(len(g), -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.sin(2 * math.pi * (g + 0.25))[:, None].expand(-1, len(g)), atol=1e-5, rtol=0)
    # a quarter turn (t = (cos, sin) = (0, 2): normalised) moves frequency (0.5, 0) to (0, -0.5)
    out = run([0.0, 2.0, 0.0, 0.0])
    torch.testing.assert_close(out[0], torch.sin(2 * math.pi * -0.5 * g)[:, None].expand(-1, len(g)), atol=1e-5, rtol=0)
    # a shift by (tx, ty) = (0.2, 0.1) takes f . t off the phase
    out = run([1.0, 0.0, 0.2, 0.1])
    torch.testing.assert_close(out[1], torch.sin(2 * math.pi * (g + 0.25 - 0.1))[:, None].expand(-1, len(g)),
                               atol=1e-5, rtol=0)
    T = input_transform(torch.tensor([[0.0, 1.0, 0.2, 0.1]]), torch.eye(3))[0]  # turn after the shift
    torch.testing.assert_close(T, torch.tensor([[0.0, -1.0, 0.1], [1.0, 0.0, -0.2], [0.0, 0.0, 1.0]]))
    T = input_transform(torch.tensor([[0.0, 2.0, 0.2, 0.1]]), torch.eye(3))[0]  # all of t is scaled by |t[:2]|
    torch.testing.assert_close(T[:2, 2], torch.tensor([0.05, -0.1]))
    # frequencies at the band limit fade out: amplitude 0 at half the sampling rate
    with torch.no_grad():
        inp.freqs[0] = torch.tensor([inp.rate / 2, 0.0])
    assert float(run([1.0, 0.0, 0.0, 0.0])[0].abs().max()) < 1e-6


def test_design_reproduces_the_official_layer_names():
    """The schedule of the paper for a 256 px -T and -R generator gives the layer names NVIDIA's snapshots carry."""
    with torch.device("meta"):
        t, r = SG3Generator(design(256)), SG3Generator(design(256, radial=True))
    assert t.layer_names == ["L0_36_512", "L1_36_512", "L2_36_512", "L3_52_512", "L4_52_512", "L5_84_512",
                             "L6_84_512", "L7_148_512", "L8_148_512", "L9_148_362", "L10_276_256", "L11_276_181",
                             "L12_276_128", "L13_256_128", "L14_256_3"]
    assert r.layer_names[0] == "L0_36_1024" and r.cfg.input_channels == 1024 and t.num_ws == r.num_ws == 16
    assert all(s.kernel == 1 for s in r.cfg.layers) and [s.down_radial for s in r.cfg.layers].count(True) == 12


# ---------------------------------------------------------------------------------------
# Snapshots: load, convert, refuse


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("radial", [False, True], ids=["T", "R"])
def test_stylegan3_snapshot_loads_converts_and_gives_the_same_images(res, radial, tmp_path):
    G = _sg3(res, radial)
    path = tmp_path / "sg3.pkl"
    path.write_bytes(sg3_pickle_bytes(G))
    G2, fmt = detect_and_load(path.read_bytes())
    assert fmt == "stylegan3" and G2.cfg == G.cfg
    want = _images(G)
    assert want.shape == (2, 3, res, res) and float(want.std()) > 1e-3
    torch.testing.assert_close(_images(G2), want, rtol=0, atol=1e-6)
    r = CliRunner().invoke(main, ["convert", str(path), str(tmp_path / "n.pt")])
    assert r.exit_code == 0, r.output
    G3 = load_generator(tmp_path / "n.pt")
    assert G3.cfg == G.cfg
    torch.testing.assert_close(_images(G3), want, rtol=0, atol=1e-6)


def test_stylegan3_shared_layers_and_features_match_a_plain_run():
    G = _sg3(32, False)
    ws_src = source_ws(G, 3, 0.7, torch.device("cpu"))
    ws = torch.cat([mix_ws(G, ws_src, 5, (3,), variant_rng(3)), mix_ws(G, ws_src, 3, (3,), variant_rng(4))])
    ws[5:, :3] = ws[5:6, :3]
    with torch.no_grad():
        plain, f1 = G.synthesis(ws, features=G.feature_names)
        shared, f2 = G.synthesis(ws, features=G.feature_names, shared_ws=3, groups=[5, 3])
        early = G.features(ws, [G.layer_names[1]], shared_ws=3, groups=[5, 3])
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)
    for n in G.feature_names:
        torch.testing.assert_close(f2[n], f1[n], atol=1e-5, rtol=0)
    torch.testing.assert_close(early[G.layer_names[1]], f1[G.layer_names[1]], atol=1e-5, rtol=0)
    assert f1[G.layer_names[0]].shape[-1] == int(G.cfg.layers[0].out_rate)  # margins cropped off


def _hostile(G, change) -> bytes:
    """A snapshot of G with one thing changed in its unpickled object tree, pickled again with the stand-ins."""
    data = sg3_pickle_bytes(G)
    obj = _Reader(io.BytesIO(data)).load()
    change(obj["G_ema"])
    return pickle.dumps(obj, protocol=4)


class _Stand:
    """Keeps a persistent object's meta so it can be pickled back the same way."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        import layouts

        return (layouts._fake_persistence(), (self.meta,))


class _Reader(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "_reconstruct_persistent_obj":
            return _Stand
        return super().find_class(module, name)


def _layer(G_ema, i):
    syn = G_ema.meta["state"]["_modules"]["synthesis"].meta["state"]
    return syn["_modules"][syn["layer_names"][i]].meta["state"]


@pytest.mark.parametrize("case", ["padding", "chain", "size", "filter", "missing", "names", "type"])
def test_hostile_stylegan3_snapshots_are_refused_with_one_line(case):
    G = _sg3(32, False)

    def change(g):
        if case == "padding":
            _layer(g, 2)["padding"] = [0, 0, 0, 0]
        elif case == "chain":
            _layer(g, 3)["in_size"] = np.array([41, 41])
        elif case == "size":
            _layer(g, 1)["out_size"] = np.array([1 << 30, 1 << 30])
        elif case == "filter":
            _layer(g, 1)["_buffers"]["up_filter"] = torch.zeros(5)
        elif case == "missing":
            syn = g.meta["state"]["_modules"]["synthesis"].meta["state"]
            del syn["_modules"][syn["layer_names"][4]]
        elif case == "names":
            g.meta["state"]["_modules"]["synthesis"].meta["state"]["layer_names"] = "L0; import os"
        else:
            _layer(g, 0)["up_factor"] = "2"

    with pytest.raises(CheckpointError) as e:
        detect_and_load(_hostile(G, change))
    assert "\n" not in str(e.value)


def test_stylegan3_snapshot_runs_none_of_its_stored_code(tmp_path, monkeypatch):
    """Our writer stores `os.system('echo pwned')` as every module's source and NVIDIA's reconstructor raises
    if called; the loader must do neither."""
    monkeypatch.chdir(tmp_path)
    data = sg3_pickle_bytes(_sg3(32, True))
    assert b"pwned" in data
    G, _ = detect_and_load(data)
    assert isinstance(G, SG3Generator) and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------
# Class-conditional StyleGAN2 (ADA's layout)


@pytest.fixture
def cond_G():
    torch.manual_seed(0)
    return randomise(Generator(tiny_config(c_dim=4)))


def test_conditional_snapshot_loads_and_converts(cond_G, tmp_path):
    path = tmp_path / "cond.pkl"
    path.write_bytes(ada_pickle_bytes(cond_G))
    G2, fmt = detect_and_load(path.read_bytes())
    assert fmt == "ada" and G2.cfg == cond_G.cfg and G2.c_dim == 4
    c = one_hot([1, 3], 4)
    want = _images(cond_G, c)
    torch.testing.assert_close(_images(G2, c), want, rtol=0, atol=1e-6)
    assert not torch.allclose(_images(G2, one_hot([0, 2], 4)), want)  # the class changes the image
    r = CliRunner().invoke(main, ["convert", str(path), str(tmp_path / "n.pt")])
    assert r.exit_code == 0, r.output
    torch.testing.assert_close(_images(load_generator(tmp_path / "n.pt"), c), want, rtol=0, atol=1e-6)


def test_conditional_mapping_refuses_a_missing_or_needless_class(cond_G, tiny_G):
    z = torch.randn(2, 8)
    with pytest.raises(ValueError, match="class-conditional"):
        cond_G.mapping(z)
    with pytest.raises(ValueError, match="one-hot"):
        cond_G.mapping(z, c=one_hot([1], 4))
    with pytest.raises(ValueError, match="not class-conditional"):
        tiny_G.mapping(z, c=one_hot([1, 2], 4))


def test_variants_of_a_conditional_sample_keep_its_class(cond_G):
    ws = source_ws(cond_G, 5, 0.7, torch.device("cpu"), 2)
    var = mix_ws(cond_G, ws, 4, (3,), variant_rng(5), 0.7, cls=2)
    z = torch.from_numpy(variant_rng(5).randn(4, 8)).float()
    own = cond_G.mapping(z, 0.7, c=one_hot([2] * 4, 4))
    other = cond_G.mapping(z, 0.7, c=one_hot([0] * 4, 4))
    torch.testing.assert_close(var[:, 3:], own[:, 3:])
    assert not torch.allclose(var[:, 3:], other[:, 3:])
    torch.testing.assert_close(var[:, :3], ws[:, :3].expand(4, -1, -1))


def test_run_on_a_conditional_generator_makes_exactly_the_chosen_classes(cond_G, tmp_path):
    path = tmp_path / "cond.pkl"
    path.write_bytes(ada_pickle_bytes(cond_G))
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", "--gan", str(path), "--class-names", "a,b,c,d", "--classes", "b,d",
                                  "--detector", "none", "--num-images", "8", "--out", str(out), "--mix-from", "3"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in d["categories"]] == ["b", "d"]
    cls = {im["id"]: im["class"] for im in d["images"]}
    assert [im["class"] for im in d["images"]] == ["b", "d"] * 4 and [im["seed"] for im in d["images"]] == list(range(8))
    names = {c["id"]: c["name"] for c in d["categories"]}
    assert d["annotations"] and all(names[a["category_id"]] == cls[a["image_id"]] for a in d["annotations"])
    run = json.loads((out / "run.json").read_text())
    assert run["conditional"]["classes"] == ["b", "d"] and run["conditional"]["class_names"] == ["a", "b", "c", "d"]
    assert "class-conditional" in (out / "README.md").read_text()
    r = CliRunner().invoke(main, ["eval", "--pred", str(out / "annotations.json"), "--gt", str(out / "annotations.json"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["miou"] == pytest.approx(1.0)
    r = CliRunner().invoke(main, ["run", "--gan", str(path), "--class-names", "a,b,c,d", "--classes", "a,c",
                                  "--per-class", "3", "--detector", "none", "--out", str(tmp_path / "pc"),
                                  "--mix-from", "3"])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "pc" / "annotations.json").read_text())
    assert sorted(im["class"] for im in d["images"]) == ["a"] * 3 + ["c"] * 3


@pytest.mark.parametrize("args, match", [
    (["--class-names", "a,b"], "4 classes"),
    (["--class-names", "a,b,c,d", "--classes", "e"], "not a class"),
    (["--class-names", "a,a,c,d"], "distinct"),
])
def test_conditional_run_refuses_bad_class_options(cond_G, tmp_path, args, match):
    path = tmp_path / "cond.pkl"
    path.write_bytes(ada_pickle_bytes(cond_G))
    r = CliRunner().invoke(main, ["run", "--gan", str(path), "--detector", "none", "--num-images", "2",
                                  "--out", str(tmp_path / "o"), *args])
    assert r.exit_code != 0 and match in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_class_names_on_an_unconditional_generator_and_label_on_a_conditional_one_are_refused(cond_G, tiny_ckpt,
                                                                                              tmp_path):
    r = CliRunner().invoke(main, ["run", "--gan", str(tiny_ckpt), "--class-names", "a", "--detector", "none",
                                  "--num-images", "1", "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "takes no class" in r.output
    path = tmp_path / "cond.pkl"
    path.write_bytes(ada_pickle_bytes(cond_G))
    (tmp_path / "photos").mkdir()
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "photos" / "a.png")
    r = CliRunner().invoke(main, ["label", str(tmp_path / "photos"), "--gan", str(path), "--detector", "none",
                                  "--out", str(tmp_path / "l")])
    assert r.exit_code != 0 and "class-conditional" in r.output and not (tmp_path / "l").exists()


# ---------------------------------------------------------------------------------------
# StyleGAN3 end to end


@pytest.mark.slow
def test_run_label_and_crossover_bench_on_a_stylegan3_snapshot(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "sg3.pkl"
    path.write_bytes(sg3_pickle_bytes(_sg3(32, False)))
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", "--gan", str(path), "--detector", "none", "--num-images", "3",
                                  "--mix-from", "4", "--variants", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "annotations.json").read_text())
    assert len(d["images"]) == 3 and json.loads((out / "run.json").read_text())["generator"]["config"]["family"] == "stylegan3"
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for i in range(2):
        Image.fromarray((np.random.RandomState(i).rand(40, 48, 3) * 255).astype(np.uint8)).save(
            tmp_path / "photos" / f"p{i}.png")
    r = CliRunner().invoke(main, ["label", str(tmp_path / "photos"), "--gan", str(path), "--detector", "none",
                                  "--steps", "5", "--variants", "4", "--mix-from", "4", "--out", str(tmp_path / "lab")])
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "lab" / "annotations.json").read_text())["images"]) == 2
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "INSTSEG_BENCH_MD": str(tmp_path / "B.md")}
    p = subprocess.run([sys.executable, "-m", "bench.crossover", "--gan", str(path), "--seeds", "0-1", "--variants", "2"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    md = (tmp_path / "B.md").read_text()
    assert "<!-- bench:crossover-sg3 -->" in md and "colour segments" in md and str(tmp_path) not in md
    assert sum(line.startswith("| ") and line[2].isdigit() for line in md.splitlines()) == 7  # crossovers 1..num_ws-1


def test_conditional_run_with_a_detector_keeps_boxes_of_each_image_own_class(cond_G, tmp_path):
    from detectors import Detections

    from instseg.config import build_config
    from instseg.runner import run

    class ThreeBoxes:  # one box per class a, b, c on every image
        class_names = ["a", "b", "c", "d"]

        def __call__(self, images):
            b = np.array([[1, 1, 8, 8], [6, 6, 15, 15], [2, 8, 9, 15]], np.float32)
            return [Detections(b, np.array([0.9, 0.8, 0.7], np.float32), ["a", "b", "c"]) for _ in images]

    path = tmp_path / "cond.pkl"
    path.write_bytes(ada_pickle_bytes(cond_G))
    cfg = build_config(str(path), {"class_names": ("a", "b", "c", "d"), "classes": ("b", "d"), "seeds": tuple(range(4)),
                                   "mix_from": (3,), "variants": 4, "min_area": 1, "device": "cpu"})
    run(cfg, tmp_path / "out", detector=ThreeBoxes())
    d = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["name"] for c in d["categories"]] == ["b", "d"]
    cls = {im["id"]: im["class"] for im in d["images"]}
    assert {cls[a["image_id"]] for a in d["annotations"]} == {"b"}  # d images: no d box, so nothing
    assert all(a["category_id"] == 1 and a["det_box"] == [6, 6, 15, 15] for a in d["annotations"])


def test_the_class_of_a_seed_does_not_depend_on_its_shard_or_chunk():
    from instseg.config import RunConfig
    from instseg.pipeline import conditioning

    cond = conditioning(RunConfig(class_names=("a", "b", "c", "d"), classes=("d", "b")), 4)
    assert cond.chosen == ("b", "d")  # index order, whatever order --classes gives
    assert [cond.name(s) for s in (0, 1, 2, 7, 10)] == ["b", "d", "b", "d", "b"]
    assert [cond.index(s) for s in (0, 1)] == [1, 3]
    assert conditioning(RunConfig(), 0) is None and conditioning(RunConfig(), 3).chosen == ("class0", "class1", "class2")


def test_stylegan3_mixed_precision_follows_the_snapshot_flags():
    with torch.device("meta"):
        cfg = design(256)
    assert [s.fp16 for s in cfg.layers] == [False] * 3 + [True] * 12  # sampling rate x 2^4 above the resolution
    G = _sg3(64, False)
    want = _images(G)
    G.mixed_precision(torch.float16)
    assert all(layer.weight.dtype == torch.float16 for layer, s in zip(G.layers, G.cfg.layers) if s.fp16)
    got = _images(G)
    assert got.dtype == torch.float32 and float((got - want).abs().max()) < 0.02
