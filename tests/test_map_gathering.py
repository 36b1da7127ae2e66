"""Figures and similarities pick a few images out of map shards: the gathering must keep their order and method."""

import numpy as np
import pytest
import torch

from eea_repro.workflow.io import gather_maps, save_map_shard
from eea_repro.metrics.engine import normalize_maps
from eea_repro.figures.qualitative import figure_maps


@pytest.fixture
def shards(tmp_path):
    """Two shards of 'gae' (images a..c, d..e) and one of 'random' holding the same ids with other maps."""
    rng = np.random.default_rng(0)
    maps = rng.random((5, 4, 4)).astype(np.float16).astype(np.float32)
    ids = ["a", "b", "c", "d", "e"]
    classes = np.arange(5)
    labels = classes + 10
    files = [tmp_path / "gae-0.npz", tmp_path / "gae-1.npz", tmp_path / "random.npz"]
    save_map_shard(files[0], maps[:3], ids[:3], classes[:3], labels[:3], "gae")
    save_map_shard(files[1], maps[3:], ids[3:], classes[3:], labels[3:], "gae")
    save_map_shard(files[2], maps[::-1], ids, classes, labels, "random")
    return files, maps


def test_gathers_the_requested_images_in_order_across_shards(shards):
    files, maps = shards
    got = gather_maps(files[:2], ["e", "a", "c"])
    np.testing.assert_array_equal(got["maps"], maps[[4, 0, 2]])
    assert got["image_ids"] == ["e", "a", "c"]
    np.testing.assert_array_equal(got["classes"], [4, 0, 2])
    np.testing.assert_array_equal(got["labels"], [14, 10, 12])
    assert got["method"] == "gae"


def test_method_filter_skips_other_methods_shards(shards):
    files, maps = shards
    np.testing.assert_array_equal(gather_maps(files, ["b", "d"], method="gae")["maps"], maps[[1, 3]])
    np.testing.assert_array_equal(gather_maps(files, ["b"], method="random")["maps"], maps[[3]])


def test_a_missing_image_is_named_with_the_method_and_files(shards):
    files, _ = shards
    with pytest.raises(ValueError, match=r"no map of method 'gae' of image 'z' in .*gae-0\.npz"):
        gather_maps(files[:1], ["a", "z"], method="gae")


def test_figure_maps_are_the_gathered_maps_upsampled_and_normalised(shards):
    files, maps = shards
    expected = normalize_maps(torch.from_numpy(maps[[3, 1]]), 8)[0].numpy()
    got = figure_maps(files, ["d", "b"], 8, method="gae")
    assert got.shape == (2, 8, 8)
    np.testing.assert_allclose(got, expected)
