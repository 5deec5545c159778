import numpy as np
import pytest
import torch

from instseg.sampling import synthesis_rows, z_from_seed
from instseg.generator import Generator, GeneratorConfig, fir_kernel, modulated_conv2d, upsample2d
from conftest import tiny_config, randomise


def _conv_ref(x, w, pad):
    """Plain correlation by loops: x [I, H, W], w [O, I, k, k]."""
    I, H, W = x.shape
    O, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = xp.shape[1] - k + 1, xp.shape[2] - k + 1
    y = np.zeros((O, Ho, Wo))
    for o in range(O):
        for i in range(Ho):
            for j in range(Wo):
                y[o, i, j] = (xp[:, i:i + k, j:j + k] * w[o]).sum()
    return y


@pytest.mark.parametrize("fused", [False, True])
def test_modulated_demodulated_conv_matches_hand_computation(fused):
    rng = np.random.default_rng(0)
    x, w, s = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=(2, 3))
    got = modulated_conv2d(torch.tensor(x).float(), torch.tensor(w).float(), torch.tensor(s).float(), fused=fused)
    for b in range(2):  # each row with its own styles
        wm = w * s[b][None, :, None, None]  # modulate the input channels
        wm = wm / np.sqrt((wm**2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)  # demodulate per output
        np.testing.assert_allclose(got[b].numpy(), _conv_ref(x[b], wm, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused", [False, True])
def test_upsampling_conv_matches_transposed_conv_plus_fir(fused):
    rng = np.random.default_rng(1)
    x, w, s = rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(2, 2))
    got = modulated_conv2d(torch.tensor(x).float(), torch.tensor(w).float(), torch.tensor(s).float(),
                           up=True, f=fir_kernel(), fused=fused)
    assert got.shape == (2, 3, 8, 8)
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0 * 4  # FIR with gain up**2
    for b in range(2):
        wm = w * s[b][None, :, None, None]
        wm = wm / np.sqrt((wm**2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        # transposed conv, stride 2, by its definition: each input pixel scatters a kernel copy
        t = np.zeros((3, 9, 9))
        for c in range(2):
            for i in range(4):
                for j in range(4):
                    t[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += x[b, c, i, j] * wm[:, c]
        ref = np.stack([_conv_ref(t[o:o + 1], f[::-1, ::-1][None, None], 1)[0] for o in range(3)])
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("noise_mode", ["const", "none"])
def test_inference_path_matches_the_training_path(noise_mode):
    """Without autograd the layers fuse modulation into the weights (one row) and work in place: same outputs."""
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32, conv_clamp=0.5)))
    names = ("b8.conv1", "b16.conv0", "b32.conv1", "rgb")
    for rows in (3, 1):  # one row: per-row modulated weights (fused) on a CPU too
        ws = G.mapping(torch.randn(rows, 8)).detach()
        with torch.no_grad():
            img_a, fa = G.synthesis(ws, noise_mode, names)
        img_b, fb = G.synthesis(ws, noise_mode, names)  # grad enabled: the training path
        assert img_b.requires_grad and not img_a.requires_grad
        torch.testing.assert_close(img_a, img_b.detach(), atol=1e-5, rtol=1e-4)
        for n in names:
            torch.testing.assert_close(fa[n], fb[n].detach(), atol=1e-5, rtol=1e-4)
        assert (fa["b32.conv1"].abs() == 0.5).any()  # the clamp was exercised


def test_cpu_synthesis_rows_shrink_only_for_big_generators():
    big = Generator(GeneratorConfig(resolution=256))
    small = Generator(tiny_config(resolution=32))
    assert synthesis_rows(big, "cpu") == 1  # 128 channels x 256^2 x 4 B = 32 MiB per row
    assert synthesis_rows(big, "cuda", memory=80 << 30) == 80  # a quarter of 80 GiB over 8 rows of 32 MiB
    assert synthesis_rows(big, "cuda", memory=1 << 30) == 1
    assert synthesis_rows(small, "cpu") == 64  # the CPU cap


def test_upsample2d_preserves_constant_images():
    x = torch.ones(1, 3, 4, 4)
    y = upsample2d(x, fir_kernel())
    assert y.shape == (1, 3, 8, 8)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.ones(1, 3, 4, 4))


def test_shapes_features_truncation_and_seeds():
    G = randomise(Generator(tiny_config()))
    assert G.num_ws == 2 * 4 - 2
    z = torch.cat([z_from_seed(3, 8), z_from_seed(4, 8)])
    torch.testing.assert_close(z_from_seed(3, 8), z[:1])
    ws = G.mapping(z)
    assert ws.shape == (2, G.num_ws, 8)
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), G.mapping_net.w_avg.expand_as(ws))
    ws_t = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(ws_t[:, 2:], ws[:, 2:])
    img, feats = G.synthesis(ws, features=("b8.conv1", "rgb"))
    assert img.shape == (2, 3, 16, 16)
    assert feats["b8.conv1"].shape == (2, 8, 8, 8)
    torch.testing.assert_close(feats["rgb"], img)
    img2, none = G.synthesis(ws)
    torch.testing.assert_close(img, img2)  # const noise: deterministic
    assert none == {}
    with pytest.raises(ValueError, match="unknown feature"):
        G.synthesis(ws, features=("b99.conv1",))


def test_non_square_output_is_centre_crop():
    G = randomise(Generator(tiny_config(out_height=12)))
    img, feats = G.synthesis(G.mapping(z_from_seed(0, 8)), features=("b16.conv1",))
    assert img.shape[-2:] == (12, 16) and feats["b16.conv1"].shape[-2:] == (12, 16)
    full = randomise(Generator(tiny_config()))
    torch.testing.assert_close(full.synthesis(full.mapping(z_from_seed(0, 8)))[0][..., 2:14, :], img)


@pytest.mark.parametrize("shared", [0, 1, 2, 3, 4, 5, 6])
def test_shared_early_blocks_give_the_same_images_and_features(shared):
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32)))
    src = G.mapping(torch.randn(1, 8))
    ws = G.mapping(torch.randn(5, 8))
    ws[:, :shared] = src[:, :shared]  # style variants: the first `shared` ws are the source's
    names = ("b8.conv1", "b16.conv0", "b16.rgb", "rgb")
    img_a, fa = G.synthesis(ws, features=names)
    img_b, fb = G.synthesis(ws, features=names, shared_ws=shared)
    assert torch.allclose(img_a, img_b, atol=1e-5, rtol=0)
    for n in names:
        assert fb[n].shape == fa[n].shape and torch.allclose(fa[n], fb[n], atol=1e-5, rtol=0), n


@pytest.mark.parametrize("name", ["b8.conv1", "b16.conv0", "b16.rgb", "b32.conv1", "rgb"])
def test_features_stop_early_with_the_same_activations(name):
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32)))
    ws = G.mapping(torch.randn(3, 8))
    full = G.synthesis(ws, features=(name,))[1][name]
    assert torch.equal(G.features(ws, (name,))[name], full)


def test_the_last_partial_rgb_is_the_image():
    torch.manual_seed(0)
    G = randomise(Generator(tiny_config(resolution=32)))
    img, f = G.synthesis(G.mapping(torch.randn(2, 8)), features=("b32.rgb",))
    assert torch.equal(img, f["b32.rgb"])


def test_multimodal_truncation_pulls_each_w_toward_its_nearest_centre():
    from instseg.sampling import set_truncation_centres, truncation_centres

    G = randomise(Generator(tiny_config(mapping_lr_mul=1.0)))  # ws that spread: distinct centres
    z = torch.cat([z_from_seed(s, 8) for s in range(20)])
    classic = G.mapping(z, truncation_psi=0.5)
    w = G.mapping(z)[:, 0]
    set_truncation_centres(G, 4)
    c = G.mapping_net.w_centres
    assert c.shape == (4, 8) and torch.equal(c, truncation_centres(G, 4))  # deterministic
    assert torch.pdist(c).min() > 0.1 * torch.pdist(w).mean()
    near = c[torch.cdist(w, c).argmin(1)]
    assert len(torch.unique(near, dim=0)) > 1  # the samples go to different centres
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0)[:, 3], near)
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.5)[:, 0], near + 0.5 * (w - near))
    torch.testing.assert_close(G.mapping(z), G.mapping(z, truncation_psi=1.0))
    assert not torch.allclose(G.mapping(z, truncation_psi=0.5), classic)
    assert "mapping_net.w_centres" not in G.state_dict()  # a sampling setting, not part of the checkpoint
    set_truncation_centres(G, 1)
    assert torch.equal(G.mapping(z, truncation_psi=0.5), classic)
