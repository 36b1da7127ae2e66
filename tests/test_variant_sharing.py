"""Metric jobs score each (method, image, class) once: sharing between variants changes no byte of the results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from eea_repro.methods import compute_maps
from eea_repro.metrics.engine import MAP_STEPS, METRICS, per_image_frame, prepare_shard, score_maps, score_variants
from eea_repro.models.memory import input_footprint
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network
from eea_repro.metrics.pixel_order import TieBreak
from eea_repro.methods.stage import unique_explanations
from eea_repro.metrics.tables import summarize, write_table

SPECS = {
    "vit": ModelSpec("vit_tiny_patch16_224", "vit", 48, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 6, "depth": 2, "embed_dim": 64, "num_heads": 2}),
    "cnn": ModelSpec("resnet18", "cnn", 48, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                     {"channels": [8, 16, 32, 64], "stem_width": 8, "output_stride": 16}),
}
METHOD = {"vit": "gae", "cnn": "gradcam"}


class CountingModel(torch.nn.Module):
    """Counts the model inputs of every forward."""

    def __init__(self, model):
        super().__init__()
        self.model, self.inputs = model, 0

    def forward(self, images01):
        self.inputs += len(images01)
        return self.model(images01)


def _setup(family: str, count: int = 12):
    torch.manual_seed(0)
    model = ExplainedModel(create_network(SPECS[family], num_classes=5), SPECS[family]).eval()
    images = torch.rand(count, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        predicted = model(images).argmax(1)
    labels = predicted.clone()
    labels[[1, 4, 7]] = (predicted[[1, 4, 7]] + 1) % 5  # three misclassified images, the rest correct
    ids = [f"im{i}" for i in range(count)]
    return model, images, labels, predicted, ids


def _baseline_maps(family, model, images, labels, predicted):
    """As the baseline map job stores them: one map per distinct (image, class), shared where the classes agree."""
    classes = torch.stack([labels, predicted])
    rows, pair_classes, index = unique_explanations(classes, class_specific=True)
    maps = compute_maps(METHOD[family], model, images[rows], pair_classes)
    return {"target": maps[index[0]], "predicted": maps[index[1]]}


def _csv_bytes(frame: pd.DataFrame, tmp_path, name: str) -> bytes:
    frame.to_csv(tmp_path / name, index=False)
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_sharing_gives_the_bytes_of_scoring_both_variants(family, tmp_path):
    model, images, labels, predicted, ids = _setup(family)
    maps = _baseline_maps(family, model, images, labels, predicted)
    assert torch.equal(maps["target"][0], maps["predicted"][0])  # a correct image: one map serves both variants
    assert not torch.equal(maps["target"][1], maps["predicted"][1])  # a misclassified one: a map per class
    shard = prepare_shard(model, images, labels, ties=TieBreak("random", 0).permutations(ids, 48 * 48), batch_size=32)
    shared = score_variants(model, shard, maps, batch_size=32)
    for variant in ("target", "predicted"):
        alone = score_maps(model, shard, maps[variant], shard.classes(variant), batch_size=32)
        frames = [per_image_frame(ids, shard, shard.classes(variant), result).assign(method=METHOD[family])
                  for result in (shared[variant], alone)]
        assert _csv_bytes(frames[0], tmp_path, "shared.csv") == _csv_bytes(frames[1], tmp_path, "alone.csv")
        tables = []
        for name, frame in zip(("shared", "alone"), frames):
            write_table(summarize(frame, n_boot=50), tmp_path / f"{name}.tbl.csv", tmp_path / f"{name}.tex",
                        tmp_path / f"{name}.html", caption=variant, method_labels={METHOD[family]: "M"})
            tables.append((tmp_path / f"{name}.tbl.csv").read_bytes())
        assert tables[0] == tables[1]
    # the misclassified images got their own maps and their own scores per variant
    for name in ("ADP", "POS", "DEL"):
        assert not np.array_equal(shared["target"][name][[1, 4, 7]], shared["predicted"][name][[1, 4, 7]])


def test_forwards_per_image_and_method(tmp_path):
    """One clean forward per image, one black image per shard and 19 inputs per map; a shared map costs nothing."""
    model, images, labels, predicted, ids = _setup("cnn", count=10)
    counting = CountingModel(model)
    input_footprint(counting, images.shape[-1], images.device)  # the one blank image that sizes the engine's chunks
    counting.inputs = 0
    maps = _baseline_maps("cnn", model, images, labels, predicted)
    shard = prepare_shard(counting, images, labels, batch_size=64)
    assert counting.inputs == len(images) + 1
    counting.inputs = 0
    score_variants(counting, shard, maps, batch_size=64)
    assert MAP_STEPS == 19
    assert counting.inputs == MAP_STEPS * (len(images) + 3)  # target, plus the 3 misclassified images' own maps
    counting.inputs = 0
    score_variants(counting, shard, {"target": maps["target"], "predicted": maps["target"]}, batch_size=64)
    assert counting.inputs == MAP_STEPS * (len(images) + 3)  # same maps, but 3 other scored classes
    counting.inputs = 0
    score_variants(counting, shard, {"target": maps["target"], "predicted": maps["target"]}, ltx_code=True,
                   batch_size=64)
    assert counting.inputs == MAP_STEPS * len(images)  # ltx_code scores the label in both variants: all shared


def test_sharing_copies_flags_and_values_of_invalid_and_constant_maps():
    model, images, labels, predicted, ids = _setup("cnn", count=8)
    maps = torch.rand(8, 3, 3, generator=torch.Generator().manual_seed(2))
    maps[0] = float("nan")
    maps[2] = 1.0
    shard = prepare_shard(model, images, labels)
    shared = score_variants(model, shard, {"target": maps, "predicted": maps.clone()})
    alone = score_maps(model, shard, maps, shard.classes("predicted"))
    for name in [*METRICS, "valid", "constant", "correct"]:
        np.testing.assert_array_equal(shared["predicted"][name], alone[name])
    assert shared["predicted"]["valid"].tolist() == [False] + [True] * 7
    assert shared["predicted"]["constant"].tolist() == [False, False, True] + [False] * 5


def test_variants_share_the_maps_of_equal_image_class_pairs():
    classes = torch.tensor([[3, 1, 4, 1], [3, 2, 4, 0]])  # target / predicted: images 0 and 2 agree
    rows, pair_classes, index = unique_explanations(classes, class_specific=True)
    assert len(rows) == 6
    for variant in range(2):  # every variant's (image, class) is found at its index
        assert torch.equal(rows[index[variant]], torch.arange(4))
        assert torch.equal(pair_classes[index[variant]], classes[variant])
    rows, _, index = unique_explanations(classes, class_specific=False)
    assert torch.equal(rows, torch.arange(4)) and torch.equal(index[0], index[1])
