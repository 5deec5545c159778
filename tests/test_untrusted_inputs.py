"""Files, records and flags that choose memory, time or numbers: each refused in one line, nothing left in --out.

The fifth hostile pass: weights that are views of one stored float, arrays built from a bare shape, StyleGAN3
geometry that allocates gigabytes, non-finite weights and settings, strings where numbers belong, precisions a
family does not run, shard records with absurd counts, and class flags that repeat or leave slots empty.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import invoke, one_line_error, randomise, tiny_config
from test_stylegan3 import _sg3
from instseg.checkpoints import NATIVE_FORMAT, detect_and_load, save_native
from instseg.errors import CheckpointError
from instseg.generator import Generator


def _native(G, path, change=None, sd_change=None):
    """G in the native format with its config (`change`) or weights (`sd_change`) edited first."""
    conf = G.cfg.to_dict()
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    if change:
        change(conf)
    if sd_change:
        sd_change(sd)
    torch.save({"format": NATIVE_FORMAT, "version": 1, "config": conf, "state_dict": sd, "meta": {}}, path)
    return path


def _refused_run(ckpt, tmp_path, *extra, needle=""):
    out = tmp_path / "out"
    r = invoke(["run", "--gan", ckpt, "--out", out, "--num-images", "2", "--variants", "4", "--mix-from", "3",
                "--detector", "none", *extra])
    one_line_error(r, needle)
    assert not out.exists(), "a refused run left a folder behind"


@pytest.fixture(scope="module")
def G2():
    torch.manual_seed(0)
    return randomise(Generator(tiny_config(resolution=32)))


@pytest.fixture(scope="module")
def G3():
    return _sg3(32, False)


# --- memory that a small file chooses -----------------------------------------------------------


def test_weights_that_are_views_of_one_stored_float_are_refused(G2, tmp_path):
    def views(sd):
        for k, v in sd.items():
            if v.numel() > 1:
                sd[k] = torch.full((1,), 0.1).expand(v.shape)

    path = _native(G2, tmp_path / "views.pt", sd_change=views)
    assert path.stat().st_size < 64_000
    with pytest.raises(CheckpointError, match="not backed by its own stored values"):
        detect_and_load(path.read_bytes())
    _refused_run(path, tmp_path, needle="not backed")


def test_overlapping_views_of_one_storage_are_refused(G2, tmp_path):
    base = torch.randn(64)

    def overlap(sd):  # every weight a window of the same 64 floats: each fits, together they claim far more
        for k, v in sd.items():
            if 1 < v.numel() <= 64 and v.dim() == 1:
                sd[k] = base[: v.numel()]

    with pytest.raises(CheckpointError, match="claim .* bytes but store"):
        detect_and_load(_native(G2, tmp_path / "overlap.pt", sd_change=overlap).read_bytes())


def test_a_bare_array_shape_in_a_pickle_allocates_nothing(tmp_path):
    data = b"\x80\x02cnumpy\nndarray\n(J\x00\x00\x00`tR."  # numpy.ndarray((1610612736,)): 12 GB of float64
    assert len(data) < 40
    with pytest.raises(CheckpointError, match="built from its shape"):
        detect_and_load(data)
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    _refused_run(path, tmp_path, needle="built from its shape")


def test_a_stylegan3_input_far_larger_than_the_image_is_refused(G3, tmp_path):
    def huge_input(conf):
        conf["input_size"] = 4096
        L = conf["layers"][0]
        L["in_size"] = 4096  # with the padding that crops it back to the layer's output: a consistent file
        from instseg.stylegan3 import padding_for
        L["padding"] = list(padding_for(4096, L["out_size"], L["kernel"], L["up"], L["down"], L["up_taps"],
                                        L["down_taps"]))

    path = _native(G3, tmp_path / "wide.pt", change=huge_input)
    with pytest.raises(CheckpointError, match="implausible"):
        detect_and_load(path.read_bytes())
    _refused_run(path, tmp_path, needle="implausible")


def test_stylegan3_row_budget_counts_the_input_and_upsampled_layers(G3):
    c = G3.cfg
    assert G3.row_bytes >= c.input_channels * c.input_size ** 2 * 4
    assert G3.row_bytes >= max(L.out_channels * ((L.in_size + L.kernel - 1) * L.up) ** 2 for L in c.layers) * 4


def test_truncation_centres_of_a_many_class_generator_stay_small():
    code = (
        "import resource, torch\n"
        "from conftest import randomise, tiny_config\n"
        "from instseg.generator import Generator\n"
        "from instseg.sampling import truncation_centres\n"
        "G = randomise(Generator(tiny_config(c_dim=8000)))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "truncation_centres(G, 4)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=str(__import__("pathlib").Path(__file__).parent))
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) < 400, f"{r.stdout.split()[-1]} MB more peak memory"


def test_a_shard_record_with_an_absurd_count_is_refused_in_one_line(tiny_ckpt, tmp_path):
    out = tmp_path / "shard"
    r = invoke(["run", "--gan", tiny_ckpt, "--out", out, "--seeds", "0-3", "--shard", "0/2", "--variants", "4",
                "--mix-from", "3", "--detector", "none"])
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    run["shard"] = [0, 100_000_000_000]
    (out / "run.json").write_text(json.dumps(run))
    r = invoke(["merge", out, "--out", tmp_path / "merged"])
    one_line_error(r, "shard")
    assert not (tmp_path / "merged").exists()


# --- numbers that are not numbers ---------------------------------------------------------------


def _sd_fill(name, value):
    def change(sd):
        key = next(k for k in sd if k.endswith(name))
        sd[key] = torch.full_like(sd[key], value)
    return change


@pytest.mark.parametrize("case", ["magnitude_ema", "freqs", "w_avg"])
def test_non_finite_weights_and_buffers_are_refused(G3, tmp_path, case):
    value = {"magnitude_ema": float("nan"), "freqs": float("inf"), "w_avg": float("nan")}[case]
    path = _native(G3, tmp_path / f"{case}.pt", sd_change=_sd_fill(case, value))
    _refused_run(path, tmp_path, needle="NaN or infinite")


@pytest.mark.parametrize("field,value", [("input_rate", 0), ("input_rate", "16"), ("output_scale", "x"),
                                         ("clamp", float("nan")), ("clamp", "256")])
def test_stylegan3_settings_that_are_not_finite_numbers_are_refused(G3, tmp_path, field, value):
    def change(conf):
        if field == "clamp":
            conf["layers"][1]["clamp"] = value
        else:
            conf[field] = value

    _refused_run(_native(G3, tmp_path / "bad.pt", change=change), tmp_path, needle="number")


def test_a_generator_that_draws_nan_is_refused_before_anything_is_written(G2, tmp_path):
    def overflow(sd):  # finite weights whose activations overflow to inf, then NaN
        for k in sd:
            if k.endswith("conv1.weight"):
                sd[k] = torch.full_like(sd[k], 3e38)

    path = _native(G2, tmp_path / "overflow.pt", sd_change=overflow)
    _refused_run(path, tmp_path, needle="NaN or infinite pixels")
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "labelled"
    one_line_error(invoke(["label", photo, "--gan", path, "--out", out, "--steps", "2", "--detector", "none"]),
                   "NaN or infinite")
    assert not out.exists()


def test_no_non_finite_number_is_ever_written_into_a_dataset_file(tmp_path):
    from instseg.errors import UserError
    from instseg.io import atomic_write_json
    from instseg.rundir import record_bytes

    with pytest.raises(UserError, match="NaN or infinite"):
        record_bytes({"id": 1}, [{"score": float("nan")}], "cid")
    with pytest.raises(UserError, match="NaN or infinite"):
        atomic_write_json(tmp_path / "x.json", {"score": float("inf")})
    assert not (tmp_path / "x.json").exists()


# --- precisions a family does not run -------------------------------------------------------------


def _photo(path):
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_bf16_is_refused_for_stylegan3_and_for_label(G3, tiny_ckpt, tmp_path):
    _refused_run(_native(G3, tmp_path / "sg3.pt"), tmp_path, "--precision", "bf16", needle="bf16")
    out = tmp_path / "labelled"
    one_line_error(invoke(["label", _photo(tmp_path / "p.png"), "--gan", tiny_ckpt, "--out", out, "--set",
                           "precision=bf16"]), "fp32")
    assert not out.exists()


# --- class flags ----------------------------------------------------------------------------------


def test_per_class_needs_a_generator_with_classes(tiny_ckpt, tmp_path):
    out = tmp_path / "pc"
    for names in (["--classes", "a,b"], ["--class-names", "a,b"]):  # a category name; the generator's classes
        r = invoke(["run", "--gan", tiny_ckpt, "--out", out, "--per-class", "2", *names, "--variants", "4",
                    "--mix-from", "3", "--detector", "none"])
        one_line_error(r, "class-conditional")
        assert not out.exists()


@pytest.fixture(scope="module")
def cond_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cond") / "cond.pt"
    save_native(randomise(Generator(tiny_config(resolution=32, c_dim=4))), path)
    return path


@pytest.mark.parametrize("flags,needle", [
    (["--classes", "a,a", "--class-names", "a,b,c,d", "--per-class", "2"], "distinct"),
    (["--class-names", "a,,b,c,d", "--per-class", "1"], "distinct, non-empty"),
    (["--class-names", "a,b,c,d,e", "--per-class", "1"], "5 name(s)"),
])
def test_class_flags_that_repeat_or_leave_slots_are_refused(cond_ckpt, tmp_path, flags, needle):
    out = tmp_path / "cls"
    r = invoke(["run", "--gan", cond_ckpt, "--out", out, "--variants", "4", "--mix-from", "3", "--detector", "none",
                *flags])
    one_line_error(r, needle)
    assert not out.exists()
