"""The Pipeline on a chunk: host reads that do not grow with the images or boxes, synthesis calls that
follow images x N / rows, and results that do not depend on how seeds are chunked."""
import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from detectors import Detections
from instseg import cluster
from instseg.checkpoints import load_generator
from instseg.config import RunConfig
from instseg.generator import Generator
from instseg.pipeline import Pipeline
from instseg.sampling import source_latents

# Calls that make a GPU wait, or whose output shape depends on the data (which also reads it).
READS = {"item", "tolist", "cpu", "numpy", "__array__", "__bool__", "__int__", "__float__", "__index__", "equal",
         "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount"}


class HostReads(TorchFunctionMode):
    """Counts the host reads of tensors made while active, by kind."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in READS:
            self.counts[name] += 1
        elif name == "__getitem__" and _has_bool_index(args[1]):
            self.counts["bool-mask index"] += 1
        return func(*args, **kwargs)


def _has_bool_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class BoxesPerImage:
    """A stand-in detector: `n` boxes on every image, at fixed fractions of its size."""

    class_names = ["object"]

    def __init__(self, n: int):
        self.n = n

    def __call__(self, images):
        h, w = images[0].shape[:2]
        base = np.array([[0.1, 0.1, 0.6, 0.7], [0.4, 0.3, 0.95, 0.9], [0.2, 0.5, 0.7, 0.95]], np.float32)
        boxes = (base[: self.n] * [w, h, w, h]).astype(np.float32)
        return [Detections(boxes, np.linspace(0.9, 0.6, self.n).astype(np.float32), ["object"] * self.n)
                for _ in images]


@pytest.fixture
def G(tiny_ckpt) -> Generator:
    return load_generator(tiny_ckpt)


def _cfg(tiny_ckpt, **kw) -> RunConfig:
    base = dict(gan=str(tiny_ckpt), variants=6, mix_from=(3,), k=3, work_res=32, min_area=0, batch=4,
                classes=("object",))
    return RunConfig(**{**base, **kw})


def _reads(pipe: Pipeline, seeds: list[int]) -> Counter:
    ws = source_latents(pipe.G, seeds, pipe.cfg.truncation_psi, pipe.device)
    with HostReads() as mode:
        results = pipe.segment(seeds, ws)
    assert len(results) == len(seeds) and any(r.instances for r in results)
    return mode.counts


@pytest.mark.parametrize("join", ["none", "image"])
def test_host_reads_do_not_grow_with_images_or_boxes(G, tiny_ckpt, monkeypatch, join):
    """The tensor path (padded k-means) reads the same few tensors for one image with one box as for
    six images with three boxes each: the images and cluster maps, the masks and their flags."""
    monkeypatch.setattr(cluster, "CHECK_EVERY", 10**9)  # convergence reads: counted in the next test
    cfg = _cfg(tiny_ckpt, join_features=join)
    dev = torch.device("cpu")
    one = _reads(Pipeline(cfg, G, dev, BoxesPerImage(1), ["object"], padded=True), [7])
    many = _reads(Pipeline(cfg, G, dev, BoxesPerImage(3), ["object"], padded=True), [7, 8, 9, 10, 11, 12])
    assert one == many, (one, many)
    assert sum(one.values()) <= 24, one


def test_kmeans_reads_convergence_once_every_few_steps():
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 4, generator=g) for n in (50, 80, 120)]  # no structure: many Lloyd steps
    with HostReads() as mode:
        cluster.kmeans_batch(xs, 4, iters=64, tol=0.0, seeds=[1, 2, 3], padded=True)
    assert set(mode.counts) <= {"__bool__"}
    assert mode.counts["__bool__"] <= math.ceil(64 / cluster.CHECK_EVERY)


def test_synthesis_calls_follow_images_times_variants_over_rows(G, tiny_ckpt, monkeypatch):
    """One call for the chunk's source images, then ceil(images x N / rows) for the variants: not one
    set of calls per image."""
    calls = []
    real = Generator._run

    def counting(self, ws, *a, **k):
        calls.append(ws.shape[0])
        return real(self, ws, *a, **k)

    monkeypatch.setattr(Generator, "_run", counting)
    dev = torch.device("cpu")
    for images, rows in ((1, 4), (4, 4), (8, 8), (8, 64)):
        calls.clear()
        pipe = Pipeline(_cfg(tiny_ckpt), G, dev, BoxesPerImage(2), ["object"])
        assert calls == [1]  # built once: one image at the run's settings, checked before anything is written
        calls.clear()
        pipe.rows = rows
        seeds = list(range(100, 100 + images))
        pipe.segment(seeds, source_latents(G, seeds, 0.7, dev))
        assert calls[0] == images  # the sources, for the detector: one call
        assert len(calls) == 1 + math.ceil(images * 6 / pipe.rows), calls
        assert max(calls[1:]) <= pipe.rows and sum(calls[1:]) == images * 6


def test_chunking_does_not_change_the_results(G, tiny_ckpt):
    """The same seeds in chunks of 1, 3 and 7, with 1 to 64 rows per synthesis call (so calls cut
    across images differently), and on the padded k-means: the same images, cluster maps and masks."""
    dev = torch.device("cpu")
    seeds = list(range(200, 207))
    out = {}
    for batch, rows, padded in ((1, 64, False), (3, 5, False), (7, 4, False), (7, 1, False), (7, 64, True)):
        pipe = Pipeline(_cfg(tiny_ckpt, batch=batch), G, dev, BoxesPerImage(3), ["object"], padded=padded)
        pipe.rows = rows
        out[batch, rows, padded] = [r for i in range(0, len(seeds), batch) for r in pipe(seeds[i:i + batch])]
    ref = out[1, 64, False]
    for key, recs in out.items():
        for a, b in zip(ref, recs):
            assert np.array_equal(a.image, b.image), key
            assert np.array_equal(a.cluster_map, b.cluster_map), key
            assert [o.category_id for o in a.objects] == [o.category_id for o in b.objects], key
            for oa, ob in zip(a.objects, b.objects):
                assert np.array_equal(oa.mask, ob.mask), key
                assert oa.score == pytest.approx(ob.score, abs=1e-5), key


def test_repeats_and_a_smaller_box_k_run_in_one_chunk(G, tiny_ckpt):
    dev = torch.device("cpu")
    pipe = Pipeline(replace(_cfg(tiny_ckpt), repeats=2, box_k=2), G, dev, BoxesPerImage(2), ["object"])
    recs = pipe([300, 301, 302])
    assert [r.seed for r in recs] == [300, 301, 302]
    assert all(r.settings["box_k"] == 2 and r.settings["repeats"] == 2 for r in recs)
    assert all(r.preview.shape == (32, 4 * 32, 3) for r in recs)


def test_mixed_precision_keeps_the_mapping_and_image_in_fp32_and_stays_close(tiny_ckpt):
    """The fp16 recipe's structure, run here in bf16 (a CPU has no fp16 conv): high-resolution blocks
    in the low precision and clamped, the rest fp32, the same image up to rounding."""
    G = load_generator(tiny_ckpt)
    ws = source_latents(G, [1, 2, 3], 0.7, torch.device("cpu"))
    with torch.no_grad():
        ref = G.synthesis(ws)[0]
        M = load_generator(tiny_ckpt)
        M.mixed_precision(torch.bfloat16, blocks=2)
        out = M.synthesis(ws)[0]
    assert M.mapping_net.w_avg.dtype == torch.float32 and M.blocks[0].conv1.weight.dtype == torch.float32
    assert M.blocks[-1].conv1.weight.dtype == torch.bfloat16 and M.blocks[-1].conv1.conv_clamp == 256
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1


def test_fp16_weight_and_style_scaling_leaves_the_demodulated_conv_unchanged():
    from instseg.generator import modulated_conv2d

    g = torch.Generator().manual_seed(0)
    x, w, s = torch.randn(2, 8, 6, 6, generator=g), torch.randn(4, 8, 3, 3, generator=g), torch.randn(2, 8, generator=g)
    ref = modulated_conv2d(x, w, s * 30)
    scaled = modulated_conv2d(x, w * 7, s)  # demodulation divides out any per-output or per-row scale
    torch.testing.assert_close(ref, scaled, atol=1e-4, rtol=1e-4)
    big = s * 300  # styles whose squares overflow fp16 (300^2 x 8 > 65504) without the scaling
    half = modulated_conv2d(x.half(), w.half(), big.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), modulated_conv2d(x, w, big), atol=0.02, rtol=0.02)


def test_truncation_centres_reach_the_pipeline(G, tiny_ckpt):
    dev = torch.device("cpu")
    classic = Pipeline(_cfg(tiny_ckpt), G, dev, BoxesPerImage(1), ["object"])([400, 401])
    G2 = load_generator(tiny_ckpt)
    multi = Pipeline(_cfg(tiny_ckpt, truncation_centres=8), G2, dev, BoxesPerImage(1), ["object"])([400, 401])
    assert G2.mapping_net.w_centres.shape[0] == 8
    assert not np.array_equal(classic[0].image, multi[0].image)
    with pytest.raises(Exception, match="--truncation-centres must lie in 1..4096"):
        _cfg(tiny_ckpt, truncation_centres=0)


def test_instance_masks_stay_in_their_boxes_grown_by_the_clip_margin(G, tiny_ckpt):
    """With clip_margin 0 no kept pixel's centre lies outside its detector box; without a cut
    (clip_margin >= box_margin) the same run's masks spill out of them."""
    dev = torch.device("cpu")
    seeds = list(range(400, 406))

    def outside(clip: float) -> list[int]:
        pipe = Pipeline(_cfg(tiny_ckpt, box_margin=0.5, clip_margin=clip), G, dev, BoxesPerImage(3), ["object"])
        counts = []
        for rec in pipe(seeds):
            for o in rec.objects:
                x0, y0, x1, y1 = o.extra["det_box"]
                ys, xs = np.nonzero(o.mask)
                counts.append(int(((xs + 0.5 < x0) | (xs + 0.5 > x1) | (ys + 0.5 < y0) | (ys + 0.5 > y1)).sum()))
        assert counts
        return counts

    assert max(outside(0.0)) == 0
    assert sum(outside(2.0)) > 0
