import pickle

import pytest
import torch

from instseg.checkpoints import detect_and_load, load_generator, save_native
from instseg.errors import CheckpointError
from instseg.generator import Generator
from instseg.sampling import z_from_seed
from conftest import randomise, tiny_config
from layouts import ada_pickle_bytes, rosinality_dict, tf_pickle_bytes


def _image(G):
    ws = G.mapping(torch.cat([z_from_seed(s, G.z_dim) for s in (0, 1)]), truncation_psi=0.7)
    return G.synthesis(ws, noise_mode="const")[0]


@pytest.fixture(params=[{}, {"conv_clamp": 0.5}, {"resolution": 32, "channel_base": 128, "channel_max": 8}],
                ids=["plain", "clamped", "32px"])
def G(request):
    torch.manual_seed(1)
    return randomise(Generator(tiny_config(**request.param)))


def _roundtrip_bytes(obj) -> bytes:
    import io
    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


@pytest.mark.parametrize("fmt", ["tf", "ada", "rosinality", "native"])
def test_official_layouts_generate_the_same_image(G, fmt, tmp_path):
    if fmt == "tf":
        if G.cfg.conv_clamp is not None:
            pytest.skip("TF config-f has no conv clamp")
        data = tf_pickle_bytes(G)
    elif fmt == "ada":
        data = ada_pickle_bytes(G)
    elif fmt == "rosinality":
        if G.cfg.conv_clamp is not None:
            pytest.skip("rosinality has no conv clamp")
        data = _roundtrip_bytes(rosinality_dict(G))
    else:
        save_native(G, tmp_path / "g.pt")
        data = (tmp_path / "g.pt").read_bytes()
    G2, found = detect_and_load(data)
    assert found == fmt
    assert G2.cfg == G.cfg
    torch.testing.assert_close(_image(G2), _image(G), rtol=0, atol=1e-5)


def test_tf_pickle_flips_the_upsampling_kernel(tiny_G):
    """A kernel that is not flip-symmetric must come back exactly, not mirrored."""
    G2, _ = detect_and_load(tf_pickle_bytes(tiny_G))
    torch.testing.assert_close(G2.blocks[1].conv0.weight, tiny_G.blocks[1].conv0.weight)
    assert not torch.equal(tiny_G.blocks[1].conv0.weight, tiny_G.blocks[1].conv0.weight.flip([2, 3]))


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("fmt", ["tf", "ada", "native"])
def test_truncated_checkpoint_gives_one_line(tiny_G, fmt, cut, tmp_path):
    if fmt == "tf":
        data = tf_pickle_bytes(tiny_G)
    elif fmt == "ada":
        data = ada_pickle_bytes(tiny_G)
    else:
        save_native(tiny_G, tmp_path / "g.pt")
        data = (tmp_path / "g.pt").read_bytes()
    with pytest.raises(CheckpointError) as e:
        detect_and_load(data[: int(len(data) * cut)])
    assert "\n" not in str(e.value) and "supported formats" in str(e.value)


def test_garbage_and_unknown_contents(tmp_path):
    for data in (b"", b"hello world", pickle.dumps({"foo": 1}), _roundtrip_bytes({"state": torch.zeros(2)})):
        with pytest.raises(CheckpointError, match="supported formats"):
            detect_and_load(data)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_generator(tmp_path / "missing.pkl")


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED_MARKER",))


def test_pickle_naming_an_unknown_class_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = pickle.dumps({"G_ema": _Evil()}, protocol=4)
    with pytest.raises(CheckpointError, match="posix.system|os.system|not allowed"):
        detect_and_load(data)
    assert not (tmp_path / "PWNED_MARKER").exists()
    # the same inside a torch zip file (weights-only loader refuses it)
    b = _roundtrip_bytes({"g_ema": _Evil()})
    with pytest.raises(CheckpointError, match="refused"):
        detect_and_load(b)
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_convert_cli_writes_native(tiny_G, tmp_path):
    from click.testing import CliRunner

    from instseg.cli import main

    (tmp_path / "g.pkl").write_bytes(tf_pickle_bytes(tiny_G))
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "g.pkl"), str(tmp_path / "g.pt")])
    assert r.exit_code == 0, r.output
    G2 = load_generator(tmp_path / "g.pt")
    torch.testing.assert_close(_image(G2), _image(tiny_G), rtol=0, atol=1e-5)
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "g.pt")[:-1] + "x", str(tmp_path / "h.pt")])
    assert r.exit_code == 2 and "neither a preset" in r.output


def test_non_square_preset_crop_on_load(tmp_path):
    torch.manual_seed(2)
    G = randomise(Generator(tiny_config(resolution=32, channel_base=128, channel_max=8)))
    save_native(G, tmp_path / "car.pt")
    G2 = load_generator(tmp_path / "car.pt", out_hw=(24, 32))
    assert _image(G2).shape[-2:] == (24, 32)
    torch.testing.assert_close(_image(G2), _image(G)[..., 4:28, :])
