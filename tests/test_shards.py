import json

import pytest

from conftest import invoke, run_args
from instseg.merge import parse_shard, shard_seeds
from instseg.errors import UserError




def _dataset(d):
    data = json.loads((d / "annotations.json").read_text())
    images = sorted((im["id"], im["file_name"]) for im in data["images"])
    anns = sorted((a["image_id"], a["category_id"], a["segmentation"]["counts"]) for a in data["annotations"])
    pixels = {im[1]: (d / "images" / im[1]).read_bytes() for im in images}
    return images, anns, pixels, data["licenses"]


def test_shards_are_disjoint_and_cover_the_seeds():
    seeds = tuple(range(3, 20))
    parts = [shard_seeds(seeds, i, 4) for i in range(4)]
    assert sorted(s for p in parts for s in p) == list(seeds)
    assert parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "1/0", "x", "-1/2"):
        with pytest.raises(UserError):
            parse_shard(bad)


def test_two_shards_merged_equal_one_process(tiny_ckpt, tmp_path):
    assert invoke(run_args(tiny_ckpt, tmp_path / "one", "--seeds", "0-9")).exit_code == 0
    for i in (0, 1):
        r = invoke(run_args(tiny_ckpt, tmp_path / f"s{i}", "--seeds", "0-9") + ["--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "s0" / "annotations.json").read_text())["images"]) == 5
    r = invoke(["merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged"])
    assert r.exit_code == 0, r.output
    one, merged = _dataset(tmp_path / "one"), _dataset(tmp_path / "merged")
    assert one[0] == merged[0] and one[1] == merged[1] and one[2] == merged[2] and one[3] == merged[3]
    # the shards in either order: annotations numbered as one process numbers them
    r = invoke(["merge", tmp_path / "s1", tmp_path / "s0", "--out", tmp_path / "reversed"])
    assert r.exit_code == 0, r.output
    ids = [[(a["id"], a["image_id"], a["segmentation"]["counts"]) for a in
            json.loads((d / "annotations.json").read_text())["annotations"]] for d in (tmp_path / "one", tmp_path / "merged",
                                                                                    tmp_path / "reversed")]
    assert ids[0] == ids[1] == ids[2] and ids[0]
    assert "shard" not in json.loads((tmp_path / "merged" / "run.json").read_text())


def test_merge_refuses_shards_of_different_configs(tiny_ckpt, tmp_path):
    assert invoke(run_args(tiny_ckpt, tmp_path / "a", "--seeds", "0-9") + ["--shard", "0/2"]).exit_code == 0
    assert invoke(run_args(tiny_ckpt, tmp_path / "b", "--seeds", "0-9") + ["--shard", "1/2", "--k", "4"]).exit_code == 0
    r = invoke(["merge", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "m"])
    assert r.exit_code == 2 and "different config" in r.output and "(k)" in r.output
    assert not (tmp_path / "m" / "annotations.json").exists()
