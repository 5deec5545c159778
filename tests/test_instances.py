import numpy as np
import torch

from instseg.config import RunConfig
from instseg.features import crop_region
from instseg.instances import box_crop, clip_to_boxes, merge_instances
from instseg.segment import Boxes, box_masks, cluster_stacks


def boxes_of(xyxy, margin, hw, owner=None):
    """A chunk's boxes (one image unless `owner` says otherwise), scores 1."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    return Boxes(xyxy, np.ones(len(xyxy), np.float32), ["object"] * len(xyxy),
                 np.zeros(len(xyxy), np.int64) if owner is None else np.asarray(owner),
                 [box_crop(b, margin, hw) for b in xyxy])


def segment_one(G, seed, cfg, det=None):
    """One seed through a Pipeline, with `det` as every image's detections."""
    from instseg.pipeline import Pipeline
    from instseg.sampling import source_latents

    class Fixed:
        class_names = ["object"]

        def __call__(self, images):
            return [det for _ in images]

    dev = torch.device("cpu")
    pipe = Pipeline(cfg, G, dev, Fixed() if det is not None else None, ["object"] if det is not None else [cfg.category])
    return pipe.segment([seed], source_latents(G, [seed], cfg.truncation_psi, dev))[0]


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
    bx = boxes_of(boxes, cfg.box_margin, (H, W))
    labs, confs = [], []
    for i, crop in enumerate(bx.crops):
        region = (crop[0] / W, crop[1] / H, crop[2] / W, crop[3] / H)
        lab, conf = cluster_stacks([crop_region(stack, region)], cfg.k, seed=i)
        labs.append(lab)
        confs.append(conf)
    masks, _ = box_masks(labs, confs, bx, (H, W), cfg.k, cfg.instance_rule)
    merged, keep, rank = merge_instances(masks, torch.tensor([0.9, 0.8]), bx.owner, 1)
    assert keep.tolist() == [True, True] and rank.tolist() == [0, 1]
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
    merged, keep, rank = merge_instances(torch.stack([a, b, c]), torch.tensor([0.5, 0.9, 0.7]), np.zeros(3, np.int64),
                                         1, min_area=4)
    assert keep.tolist() == [False, True, True] and rank.tolist() == [2, 0, 1]
    assert torch.equal(merged[1], b)
    assert torch.equal(merged[2], c & ~b)


def test_merging_keeps_images_apart():
    """The same two masks in two images of a chunk: NMS and the disjoint merge never reach across images."""
    a = torch.zeros(10, 10, dtype=torch.bool)
    a[2:8, 2:8] = True
    b = a.clone()
    b[2, 2] = False
    masks = torch.stack([a, b, a, b])
    merged, keep, rank = merge_instances(masks, torch.tensor([0.5, 0.9, 0.9, 0.5]), np.array([0, 0, 1, 1]), 2,
                                         min_area=4)
    assert keep.tolist() == [False, True, True, False]
    assert rank.tolist() == [1, 0, 0, 1]
    assert torch.equal(merged[1], b) and torch.equal(merged[2], a)


def test_box_crop_is_clipped_and_grown():
    assert box_crop(np.array([10, 10, 30, 20]), 0.5, (32, 64)) == (0, 5, 40, 25)
    assert box_crop(np.array([0, 0, 64, 32]), 0.2, (32, 64)) == (0, 0, 64, 32)


def test_box_k_reclusters_only_the_boxes_and_is_recorded(tiny_ckpt):
    from dataclasses import replace

    import pytest

    from detectors import Detections
    from instseg.checkpoints import load_generator
    from instseg.errors import UserError
    G = load_generator(tiny_ckpt)
    det = Detections(np.array([[4, 4, 20, 22]], np.float32), np.array([0.9], np.float32), ["object"])
    cfg = RunConfig(gan=str(tiny_ckpt), k=3, variants=6, mix_from=(3,), work_res=32, min_area=0, classes=("object",))
    same = segment_one(G, 5, cfg, det)
    two = segment_one(G, 5, replace(cfg, box_k=2), det)
    assert np.array_equal(same.labels, two.labels)  # the whole image keeps k=3 and its k-means seed
    assert int(same.labels.max()) == 2
    assert same.settings["box_k"] == 3 and two.settings["box_k"] == 2
    assert np.array_equal(segment_one(G, 5, replace(cfg, box_k=3), det).instances[0].mask, same.instances[0].mask)
    with pytest.raises(UserError, match="box-k"):
        RunConfig(box_k=1)


def test_single_image_baselines_honour_and_record_the_normalisation(tiny_ckpt):
    from dataclasses import replace

    from instseg.checkpoints import load_generator

    G = load_generator(tiny_ckpt)
    cfg = RunConfig(gan=str(tiny_ckpt), method="activations", k=3, work_res=32, min_area=0)
    raw = segment_one(G, 7, cfg)
    l2 = segment_one(G, 7, replace(cfg, normalize="l2"))
    assert raw.settings["normalize"] == "raw" and l2.settings["normalize"] == "l2"
    assert raw.settings["variants"] == 1
    assert not np.array_equal(raw.confidence, l2.confidence)  # l2 clusters other features


def test_masks_are_cut_to_their_grown_boxes():
    """A mask that spills into a neighbour keeps only the pixels whose centres lie in its box grown by the margin."""
    masks = torch.ones(2, 10, 20, dtype=torch.bool)
    boxes = np.array([[2, 2, 6, 8], [10, 0, 20, 10]], np.float32)
    cut = clip_to_boxes(masks, boxes, 0.0)
    assert torch.equal(cut[0].nonzero().amin(0), torch.tensor([2, 2])) and torch.equal(cut[0].nonzero().amax(0), torch.tensor([7, 5]))
    assert cut[1].sum() == 100
    grown = clip_to_boxes(masks, boxes, 0.25)  # x 1..7 and y 0.5..9.5: pixel centres of columns 1-6, rows 0-9
    assert grown[0].sum() == 6 * 10 and grown[0, 0:1].sum() == 6 and not grown[0, :, 0].any()
    assert clip_to_boxes(masks[:0], boxes[:0], 0.1).shape == (0, 10, 20)
