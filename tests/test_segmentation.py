import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from instseg import coco
from instseg.cluster import kmeans, majority_vote
from instseg.features import pixel_features
from instseg.foreground import border_rule, center_rule
from instseg.segment import cluster_regions, cluster_stacks, joined_features


def test_donut_mask_round_trips_through_rle_json_and_pycocotools(tmp_path):
    yy, xx = np.mgrid[:40, :50]
    r2 = (yy - 20) ** 2 + (xx - 24) ** 2
    donut = (r2 <= 15**2) & (r2 >= 7**2)
    ds = coco.dataset([coco.image_entry(1, "a.png", 40, 50)], [coco.annotation(donut, 1, 1, 0.9)], ["foreground"])
    (tmp_path / "a.json").write_text(json.dumps(ds))
    c = COCO(str(tmp_path / "a.json"))
    ann = c.loadAnns(c.getAnnIds(imgIds=[1]))[0]
    back = c.annToMask(ann).astype(bool)
    assert np.array_equal(back, donut)
    assert ann["area"] == donut.sum() and ann["iscrowd"] == 0 and ann["score"] == pytest.approx(0.9)
    assert ann["bbox"] == [9.0, 5.0, 31.0, 31.0]


def _two_region_stack(n=16, h=12, w=12, seed=0):
    """Left half and right half change colour independently across variants; tiny pixel noise."""
    g = torch.Generator().manual_seed(seed)
    left = torch.rand(n, 3, 1, 1, generator=g)
    right = torch.rand(n, 3, 1, 1, generator=g)
    stack = torch.where(torch.arange(w)[None, None, None] < w // 2, left, right).expand(n, 3, h, w).clone()
    return stack + 0.01 * torch.randn(stack.shape, generator=g)


@pytest.mark.parametrize("normalize", ["raw", "standardize", "l2"])
def test_hand_built_stack_splits_exactly_along_the_regions(normalize):
    stack = _two_region_stack()
    labels, conf = cluster_stacks([stack], 2, normalize=normalize, seed=0)
    truth = (torch.arange(12)[None] >= 6).expand(12, 12)
    assert torch.equal(labels == labels[0, 0], ~truth)
    assert conf.min() > 0.5


def test_joined_source_activations_decide_when_the_stack_carries_no_split():
    """A stack with one colour everywhere plus joined activations with a top/bottom split: the
    clusters follow the joined part. Each part is scaled to the same spread, so neither dominates."""
    g = torch.Generator().manual_seed(0)
    stack = torch.rand(8, 3, 1, 1, generator=g).expand(8, 3, 12, 12) + 0.01 * torch.randn(8, 3, 12, 12, generator=g)
    act = torch.where(torch.arange(12)[:, None] < 4, torch.randn(16, 1, 1, generator=g), torch.randn(16, 1, 1, generator=g))
    act = (act + 0.01 * torch.randn(16, 12, 12, generator=g))[None]
    feats = joined_features(stack, "raw", act)
    assert feats.shape == (144, 8 * 3 + 16)
    for part in (feats[:, :24], feats[:, 24:]):  # mean squared distance from the mean: 1 for both
        assert abs(float((part - part.mean(0)).square().sum(1).mean()) - 1) < 1e-4
    (labels, _), = cluster_regions([[stack]], 2, 100, 1e-4, "raw", [(0, 0)], joined=[act])
    top = torch.arange(12)[:, None].expand(12, 12) < 4
    assert torch.equal(labels == labels[0, 0], top)
    assert torch.equal(joined_features(stack, "raw", None), pixel_features(stack, "raw"))


def test_join_weight_scales_the_joined_part_of_the_squared_distances():
    g = torch.Generator().manual_seed(1)
    stack, act = torch.randn(4, 3, 6, 6, generator=g), torch.randn(1, 5, 6, 6, generator=g)
    for w in (0.25, 1.0, 8.0):
        feats = joined_features(stack, "standardize", act, w)
        spread = [float((p - p.mean(0)).square().sum(1).mean()) for p in (feats[:, :12], feats[:, 12:])]
        assert abs(spread[0] - 1) < 1e-4 and abs(spread[1] - w) < 1e-3 * w


def test_torch_kmeans_agrees_with_sklearn_up_to_permutation():
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs
    from sklearn.metrics import adjusted_rand_score

    x, _ = make_blobs(n_samples=600, centers=4, n_features=6, cluster_std=0.6, random_state=3)
    ours, _ = kmeans(torch.tensor(x), 4, seed=1)
    theirs = KMeans(4, n_init=5, random_state=0).fit_predict(x)
    assert adjusted_rand_score(theirs, ours.numpy()) == 1.0


def test_majority_vote_aligns_permuted_repeats():
    base = torch.tensor([0, 0, 1, 1, 2, 2])
    perm = torch.tensor([2, 0, 1])[base]  # same partition, other names
    noisy = base.clone()
    noisy[0] = 1
    assert torch.equal(majority_vote(torch.stack([base, perm, noisy]), 3), base)


def test_foreground_rules_pick_the_central_object():
    labels = torch.zeros(20, 20, dtype=torch.long)
    labels[::2] = 1  # background split into two striped clusters, both touching the border
    labels[6:14, 7:13] = 2  # the object
    for rule in (border_rule, center_rule):
        assert rule(labels[None], 3).tolist() == [[False, False, True]]
        both = rule(torch.stack([labels, labels.flip(0).flip(1)]), 3)  # a chunk: one row per map
        assert both.tolist() == [[False, False, True]] * 2


def test_pixel_features_shapes_and_normalisation():
    x = pixel_features(torch.randn(5, 3, 4, 6), "standardize")
    assert x.shape == (24, 15)
    torch.testing.assert_close(x.mean(1), torch.zeros(24), atol=1e-5, rtol=0)
    x = pixel_features(torch.randn(5, 3, 4, 6), "l2")
    torch.testing.assert_close(x.norm(dim=1), torch.ones(24), atol=1e-4, rtol=0)


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os
    import stat

    from instseg.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "x.json").st_mode) == 0o644  # not mkstemp's 0600
    assert not list(tmp_path.glob("*.tmp"))


def test_registries_match_the_config_choices():
    from instseg import config, foreground, instances, segment

    assert set(segment.METHODS) == set(config.METHODS)
    assert set(instances.RULES) == set(config.INSTANCE_RULES)
    assert set(foreground.RULES) == set(config.FOREGROUND_RULES)


def test_padded_kmeans_gives_each_set_what_its_own_loop_gives():
    """The padded, batched path (GPUs) against the per-set CPU loop, on sets of different sizes."""
    from instseg.cluster import kmeans_batch

    rng = np.random.default_rng(0)
    xs = [torch.tensor(np.concatenate([rng.normal(c, sd, (n, 6)) for c in (0, 3, 6)]), dtype=torch.float32)
          for n, sd in ((40, 0.3), (90, 0.3), (17, 0.3), (300, 2.0))]  # the last takes many steps
    seeds = [3, 4, 5, 6]
    for (lp, cp), (lo, co) in zip(kmeans_batch(xs, 3, seeds=seeds, padded=True),
                                  kmeans_batch(xs, 3, seeds=seeds, padded=False)):
        assert torch.equal(lp, lo)
        assert torch.allclose(cp, co, atol=1e-5)


def test_margin_inside_scales_the_confidence_by_the_share_inside_the_box():
    from instseg.segment import Boxes, box_masks

    lab = torch.zeros(10, 10, dtype=torch.long)
    lab[2:8, 2:10] = 1  # cluster 1: columns 2-9, the box covers columns 2-5 only
    conf = torch.full((10, 10), 0.5)
    bx = Boxes(np.array([[2, 2, 6, 8]], np.float32), np.ones(1, np.float32), ["x"], np.zeros(1, np.int64),
               [(0, 0, 10, 10)])
    (m_plain,), (c_plain,) = box_masks([lab], [conf], bx, (10, 10), 2, "center", "margin")
    (m_in,), (c_in,) = box_masks([lab], [conf], bx, (10, 10), 2, "center", "margin_inside")
    assert torch.equal(m_plain, m_in) and torch.equal(m_in, lab.bool())
    assert float(c_plain) == pytest.approx(0.5) and float(c_in) == pytest.approx(0.5 * 24 / 48)
