import numpy as np
import torch

from instseg.config import RunConfig
from instseg.features import crop_region
from instseg.instances import box_crop, merge_instances
from instseg.segment import box_mask, cluster_stacks


def _scene_stack(n=24, H=40, W=48, seed=0):
    """Background, object A and object B each change colour independently across n variants."""
    g = torch.Generator().manual_seed(seed)
    regions = torch.zeros(H, W, dtype=torch.long)
    regions[8:28, 6:24] = 1  # A
    regions[14:34, 20:42] = 2  # B, overlapping A's box and covering part of A (B in front)
    colours = torch.rand(n, 3, 3, generator=g)  # [n, region, rgb]
    stack = colours[:, regions].permute(0, 3, 1, 2)  # [n, 3, H, W]
    return stack + 0.02 * torch.randn(stack.shape, generator=g), regions


def test_two_overlapping_boxes_give_two_disjoint_correct_masks():
    stack, regions = _scene_stack()
    H, W = regions.shape
    cfg = RunConfig(k=3)
    boxes = np.array([[6, 8, 24, 28], [20, 14, 42, 34]], np.float32)  # xyxy of A (full extent) and B
    segs = []
    for i, b in enumerate(boxes):
        crop = box_crop(b, cfg.box_margin, (H, W))
        region = (crop[0] / W, crop[1] / H, crop[2] / W, crop[3] / H)
        lab, conf = cluster_stacks([crop_region(stack, region)], cfg.k, seed=i)
        segs.append(box_mask(lab, conf, b, crop, (H, W), cfg.k, cfg.instance_rule)[0])
    masks = torch.stack(segs)
    kept, merged = merge_instances(masks, torch.tensor([0.9, 0.8]))
    assert kept == [0, 1]
    assert not (merged[0] & merged[1]).any()
    assert torch.equal(merged[0], regions == 1)  # A's visible pixels
    assert torch.equal(merged[1], regions == 2)


def test_mask_nms_drops_duplicates_and_contested_pixels_go_to_the_higher_score():
    a = torch.zeros(10, 10, dtype=torch.bool)
    a[2:8, 2:8] = True
    b = a.clone()
    b[2, 2] = False  # near-duplicate of a
    c = torch.zeros_like(a)
    c[5:10, 5:10] = True  # overlaps a
    kept, merged = merge_instances(torch.stack([a, b, c]), torch.tensor([0.5, 0.9, 0.7]), min_area=4)
    assert kept == [1, 2]
    assert torch.equal(merged[0], b)
    assert torch.equal(merged[1], c & ~b)


def test_box_crop_is_clipped_and_grown():
    assert box_crop(np.array([10, 10, 30, 20]), 0.5, (32, 64)) == (0, 5, 40, 25)
    assert box_crop(np.array([0, 0, 64, 32]), 0.2, (32, 64)) == (0, 0, 64, 32)


def test_box_k_reclusters_only_the_boxes_and_is_recorded(tiny_ckpt):
    from dataclasses import replace

    import pytest

    from detectors import Detections
    from instseg.checkpoints import load_generator
    from instseg.errors import UserError
    from instseg.segment import segment_image

    G = load_generator(tiny_ckpt)
    det = Detections(np.array([[4, 4, 20, 22]], np.float32), np.array([0.9], np.float32), ["object"])
    cfg = RunConfig(gan=str(tiny_ckpt), k=3, variants=6, mix_from=(3,), work_res=32, min_area=0, classes=("object",))
    dev = torch.device("cpu")
    same = segment_image(G, 5, cfg, dev, detections=det)
    two = segment_image(G, 5, replace(cfg, box_k=2), dev, detections=det)
    assert torch.equal(same.labels, two.labels)  # the whole image keeps k=3 and its k-means seed
    assert int(same.labels.max()) == 2
    assert same.settings["box_k"] == 3 and two.settings["box_k"] == 2
    assert torch.equal(segment_image(G, 5, replace(cfg, box_k=3), dev, detections=det).instances[0].mask,
                       same.instances[0].mask)
    with pytest.raises(UserError, match="box-k"):
        RunConfig(box_k=1)


def test_single_image_baselines_honour_and_record_the_normalisation(tiny_ckpt):
    from dataclasses import replace

    from instseg.checkpoints import load_generator
    from instseg.segment import segment_image

    G = load_generator(tiny_ckpt)
    cfg = RunConfig(gan=str(tiny_ckpt), method="activations", k=3, work_res=32, min_area=0)
    raw = segment_image(G, 7, cfg, torch.device("cpu"))
    l2 = segment_image(G, 7, replace(cfg, normalize="l2"), torch.device("cpu"))
    assert raw.settings["normalize"] == "raw" and l2.settings["normalize"] == "l2"
    assert raw.settings["variants"] == 1
    assert not torch.equal(raw.confidence, l2.confidence)  # l2 clusters other features
