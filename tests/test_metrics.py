"""The metric engine against an independent, loop-based computation of the pinned definitions."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.metrics.names import (
    FRACTIONS_DEL_INS,
    FRACTIONS_POS_NEG,
    REMOVED_COUNT_TEXT,
    REVEALED_COUNT_TEXT,
    TIE_RULE_TEXT,
    conventions,
)
from eea_repro.metrics.engine import (
    METRICS,
    PER_IMAGE_COLUMNS,
    classes_for_variant,
    evaluate_batch,
    normalize_maps,
    per_image_frame,
    pos_auc_per_image,
    prepare_shard,
    score_maps,
    removed_pixel_count,
    revealed_pixel_count,
)
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network
from eea_repro.metrics.pixel_order import TIE_RULES, TieBreak, image_tie_permutation, pixel_ranks


class PixelLinearModel(nn.Module):
    """logits = sum over pixels of weight * pixel + bias: every logit depends on known pixels."""

    def __init__(self, size: int, num_classes: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(num_classes, 3, size, size, generator=generator) * 0.8)
        self.bias = nn.Parameter(torch.randn(num_classes, generator=generator))

    def forward(self, images01):
        return torch.einsum("bchw,kchw->bk", images01, self.weight) + self.bias


class ObjectOnlyModel(nn.Module):
    """Class 0 wins while the object region is bright: logit_0 = 20 * mean(object pixels), logit_1 = 5."""

    def __init__(self, rows: slice, cols: slice):
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, images01):
        object_mean = images01[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([20.0 * object_mean, torch.full_like(object_mean, 5.0)], dim=1)


class TinyConvNet(nn.Module):
    def __init__(self, num_classes: int = 5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(24, num_classes)

    def forward(self, images01):
        return self.head(self.features(images01).flatten(1)) * 4.0


def reference_metrics(model, image, map_at_input_size, explained_class, label, ltx_code=False, tie_permutation=None):
    """The appendix's definitions and the documented conventions, one image, one input per forward, plain loops.

    The map is already at the input size; ties follow ``tie_permutation`` (pixel indices, first taken first) or raster
    order. Normalisation is done in float32, as stored maps are, so equal and distinct values stay so.
    """
    size = image.shape[-1]
    num_pixels = size * size
    values = np.asarray(map_at_input_size, dtype=np.float32).reshape(-1)
    low, high = values.min(), values.max()
    constant = bool(high <= low)
    normalized = np.ones_like(values) if constant else np.clip((values - low) / (high - low), 0, 1)
    tie_position = {int(p): t for t, p in enumerate(range(num_pixels) if tie_permutation is None else tie_permutation)}
    order = sorted(range(num_pixels), key=lambda p: (-float(normalized[p]), tie_position[p]))
    scored = label if ltx_code else explained_class

    def removed_count(step):  # k(f) = floor(N f), f = step / 10
        return num_pixels * step // 10

    def with_pixels_set(pixels, base):
        copy = base.clone()
        for pixel in pixels:
            copy[:, pixel // size, pixel % size] = image[:, pixel // size, pixel % size]
        return copy

    def without_pixels(pixels):
        copy = image.clone()
        for pixel in pixels:
            copy[:, pixel // size, pixel % size] = 0.0
        return copy

    def prob_and_hit(x):
        with torch.no_grad():
            logits = model(x[None])[0]
        return torch.softmax(logits, 0)[scored].item(), float(int(logits.argmax()) == scored)

    def auc(ys):
        return 100.0 * sum(0.1 * (a + b) / 2 for a, b in zip(ys, ys[1:]))

    clean, _ = prob_and_hit(image)
    masked = clean if constant else prob_and_hit(image * torch.from_numpy(normalized).view(size, size))[0]
    pos = [prob_and_hit(without_pixels(order[: removed_count(j)])) for j in range(10)]
    neg = [prob_and_hit(without_pixels(order[num_pixels - removed_count(j):])) for j in range(10)]
    result = {
        "ADP": 100.0 * max(0.0, clean - masked) / clean,
        "PIC": 100.0 * (clean < masked),
        "POS": auc([hit for _, hit in pos]),
        "NEG": auc([hit for _, hit in neg]),
    }
    if ltx_code:
        result["DEL"] = auc([p for p, _ in pos])
        result["INS"] = auc([p for p, _ in neg])
    else:
        deletion = [prob_and_hit(without_pixels(order[: removed_count(j)]))[0] for j in range(11)]
        black = torch.zeros_like(image)
        insertion = [prob_and_hit(with_pixels_set(order[: num_pixels - removed_count(10 - j)], black))[0]
                     for j in range(11)]
        result["DEL"], result["INS"] = auc(deletion), auc(insertion)
    return result


def assert_matches_reference(result, index, expected, atol=1e-4):
    for name in METRICS:
        assert result[name][index] == pytest.approx(expected[name], rel=1e-4, abs=atol), name


def test_fraction_grids():
    np.testing.assert_allclose(FRACTIONS_POS_NEG, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(FRACTIONS_DEL_INS, np.r_[FRACTIONS_POS_NEG, 1.0])


def test_normalize_maps_bilinear_by_hand():
    # align_corners=False, 2 -> 4: source x = (i + 0.5) / 2 - 0.5 = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    maps = torch.tensor([[[0.0, 2.0], [0.0, 2.0]], [[3.0, 3.0], [3.0, 3.0]]])
    normalized, valid, constant = normalize_maps(maps, 4)
    np.testing.assert_allclose(normalized[0].numpy(), np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    assert torch.equal(normalized[1], torch.ones(4, 4))
    assert valid.tolist() == [True, True]
    assert constant.tolist() == [False, True]


@pytest.mark.parametrize("seed", [0, 1])
def test_all_ones_map_gives_zero_adp_and_pic(seed):
    size = 8
    model = PixelLinearModel(size, 4, seed)
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(seed))
    labels = torch.tensor([0, 1, 2])
    result = evaluate_batch(model, images, torch.ones(3, 2, 2), labels, labels)
    np.testing.assert_array_equal(result["ADP"], 0.0)
    np.testing.assert_array_equal(result["PIC"], 0.0)
    assert result["constant"].all()


def _maps_of_kind(kind: str, count: int, size: int, generator) -> torch.Tensor:
    """Maps at the input size with the tie structure of real ones."""
    if kind == "random":
        return torch.rand(count, size, size, generator=generator)
    if kind == "coarse":  # Grad-CAM-like: ReLU zeros on a 3x3 grid, upsampled (plateaus and smooth ramps)
        coarse = torch.randn(count, 1, 3, 3, generator=generator).clamp(min=0)
        return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    if kind == "levels":  # 4-level maps: large plateaus
        return torch.randint(0, 4, (count, size, size), generator=generator).float()
    if kind == "constant":
        return torch.full((count, size, size), 7.0)
    raise ValueError(kind)


@pytest.mark.parametrize("ltx_code", [False, True])
@pytest.mark.parametrize("tie_rule", TIE_RULES)
@pytest.mark.parametrize("kind", ["random", "coarse", "levels", "constant"])
def test_engine_equals_one_image_reference(kind, tie_rule, ltx_code):
    size, count = 10, 4
    model = PixelLinearModel(size, 3, seed=3)
    generator = torch.Generator().manual_seed(5)
    images = torch.rand(count, 3, size, size, generator=generator)
    maps = _maps_of_kind(kind, count, size, generator)
    labels = torch.tensor([0, 1, 2, 1])
    classes = torch.tensor([2, 1, 0, 0])
    ids = [f"img{i}" for i in range(count)]
    tie_break = TieBreak(tie_rule, seed=13)
    ties = tie_break.permutations(ids, size * size)
    result = evaluate_batch(model, images, maps, labels, classes, ltx_code=ltx_code, batch_size=7, ties=ties)
    for index in range(count):
        permutation = None if tie_rule == "raster" else image_tie_permutation(13, ids[index], size * size)
        expected = reference_metrics(model, images[index], maps[index], int(classes[index]), int(labels[index]),
                                     ltx_code, permutation)
        assert_matches_reference(result, index, expected)
    assert result["constant"].tolist() == [kind == "constant"] * count
    with torch.no_grad():
        assert result["correct"].tolist() == (model(images).argmax(1) == labels).tolist()


def test_tie_rule_moves_neg_and_ins_only_on_plateaus():
    """A map whose plateau covers the top rows: raster removes those rows first, the random rule does not."""
    size = 10
    model = PixelLinearModel(size, 3, seed=4)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    plateau = torch.zeros(2, size, size)
    plateau[:, 6:, :] = torch.linspace(0.1, 1.0, 4 * size).view(4, size)
    labels = torch.tensor([0, 1])
    ties = TieBreak("random", seed=0).permutations(["a", "b"], size * size)
    raster = evaluate_batch(model, images, plateau, labels, labels)
    shuffled = evaluate_batch(model, images, plateau, labels, labels, ties=ties)
    for name in ("ADP", "PIC"):
        np.testing.assert_array_equal(raster[name], shuffled[name])
    assert not np.array_equal(raster["INS"], shuffled["INS"])
    distinct = torch.rand(2, size, size, generator=torch.Generator().manual_seed(2))
    a, b = evaluate_batch(model, images, distinct, labels, labels), evaluate_batch(model, images, distinct, labels,
                                                                                 labels, ties=ties)
    for name in METRICS:  # without ties the rule cannot matter
        np.testing.assert_array_equal(a[name], b[name])


def test_pixel_ranks_one_total_order():
    maps = torch.tensor([[[0.5, 0.9], [0.5, 0.5]]])
    assert pixel_ranks(maps).tolist() == [[1, 0, 2, 3]]
    assert pixel_ranks(maps, torch.tensor([[3, 2, 1, 0]])).tolist() == [[3, 0, 2, 1]]
    with pytest.raises(ValueError, match="tie permutations"):
        pixel_ranks(maps, torch.tensor([[0, 1, 2]]))


def test_tie_permutation_depends_on_seed_and_image_only():
    first = TieBreak("random", seed=3).permutations(["x", "y", "x"], 64)
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])
    assert sorted(first[1].tolist()) == list(range(64))
    assert torch.equal(TieBreak("random", seed=3).permutations(["y"], 64)[0], first[1])
    assert not torch.equal(TieBreak("random", seed=4).permutations(["x"], 64)[0], first[0])
    assert TieBreak("raster").permutations(["x"], 64) is None
    with pytest.raises(ValueError, match="tie rule"):
        TieBreak("lexicographic")


def test_every_method_sees_the_same_permutation():
    """Two methods' constant maps of the same images score identically; the same maps on other images do not."""
    size, count = 8, 6
    model = PixelLinearModel(size, 4, seed=2)
    images = torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    tie_break = TieBreak("random", seed=0)

    def scores(maps, ids):
        shard = prepare_shard(model, images, labels, ties=tie_break.permutations(ids, size * size))
        return score_maps(model, shard, maps, labels)

    ids = [f"im{i}" for i in range(count)]
    ones, sevens = scores(torch.ones(count, 2, 2), ids), scores(torch.full((count, 4, 4), 7.0), ids)
    renamed = scores(torch.ones(count, 2, 2), [f"other{i}" for i in range(count)])
    for name in METRICS:
        np.testing.assert_array_equal(ones[name], sevens[name])
    assert not np.array_equal(ones["NEG"], renamed["NEG"]) or not np.array_equal(ones["INS"], renamed["INS"])


def test_pixel_counts_match_the_printed_conventions():
    for num_pixels in (1, 7, 100, 224 * 224, 96 * 96):
        for step in range(11):
            assert removed_pixel_count(num_pixels, step) == math.floor(num_pixels * Fraction(step, 10))
            assert revealed_pixel_count(num_pixels, step) == num_pixels - math.floor(
                num_pixels * (1 - Fraction(step, 10)))
    text = " ".join(definition for _, definition in conventions(False, "random"))
    assert REMOVED_COUNT_TEXT in text and REVEALED_COUNT_TEXT in text
    assert TIE_RULE_TEXT["random"] in text and TIE_RULE_TEXT["raster"] not in text
    assert TIE_RULE_TEXT["raster"] in " ".join(definition for _, definition in conventions(True, "raster"))


def test_metrics_are_float64_as_computed():
    size = 8
    model = PixelLinearModel(size, 3, seed=6)
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 2])
    result = evaluate_batch(model, images, torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(7)), labels,
                            labels)
    for name in ("POS", "NEG"):  # accuracy AUCs are sums of tenths: exact in float64 up to its rounding
        assert result[name].dtype == np.float64
        np.testing.assert_allclose(result[name] * 20, np.round(result[name] * 20), rtol=0, atol=1e-9)


def test_ltx_code_scores_labels_on_ten_points():
    size = 4
    model = PixelLinearModel(size, 3, seed=11)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    native_map = torch.arange(16.0).view(1, 4, 4).flip(-1)
    label, explained = 1, 2
    result = evaluate_batch(model, image, native_map, [label], [explained], ltx_code=True)
    normalized = native_map.flatten() / 15.0
    most_first = sorted(range(16), key=lambda p: -float(normalized[p]))
    least_first = list(reversed(most_first))

    def label_prob(removed_pixels):
        copy = image[0].clone().view(3, -1)
        copy[:, removed_pixels] = 0.0
        with torch.no_grad():
            return torch.softmax(model(copy.view(1, 3, size, size))[0], 0)[label].item()

    delete_curve = [label_prob(most_first[: int(16 * f)]) for f in FRACTIONS_POS_NEG]
    insert_curve = [label_prob(least_first[: int(16 * f)]) for f in FRACTIONS_POS_NEG]
    assert result["DEL"][0] == pytest.approx(100 * np.trapezoid(delete_curve, dx=0.1), abs=1e-4)
    assert result["INS"][0] == pytest.approx(100 * np.trapezoid(insert_curve, dx=0.1), abs=1e-4)
    default = evaluate_batch(model, image, native_map, [label], [explained])
    assert default["DEL"][0] != pytest.approx(result["DEL"][0], abs=1e-3)


def test_object_mask_beats_random_map():
    size, count = 16, 6
    rows = cols = slice(4, 12)
    model = ObjectOnlyModel(rows, cols)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(count, 3, size, size, generator=generator)
    images[:, :, rows, cols] = 0.8 + 0.2 * torch.rand(count, 3, 8, 8, generator=generator)
    object_map = torch.zeros(count, 8, 8)
    object_map[:, 2:6, 2:6] = 1.0
    random_map = torch.rand(count, 8, 8, generator=generator)
    labels = torch.zeros(count, dtype=torch.long)
    classes = classes_for_variant(model, images, labels, "predicted")
    assert classes.tolist() == [0] * count
    good = evaluate_batch(model, images, object_map, labels, classes)
    bad = evaluate_batch(model, images, random_map, labels, classes)
    # the object map removes the 64 object pixels first: still class 0 at 10 % removed, gone at 20 %
    np.testing.assert_allclose(good["POS"], 15.0)
    assert good["POS"].mean() < bad["POS"].mean() - 20
    assert good["DEL"].mean() < bad["DEL"].mean() - 10
    assert good["NEG"].mean() > bad["NEG"].mean() + 20
    assert good["INS"].mean() > bad["INS"].mean() + 10


def test_invalid_map_is_reported_not_dropped():
    size = 8
    model = TinyConvNet()
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(4, 3, size, size, generator=generator)
    maps = torch.rand(4, 4, 4, generator=generator)
    maps[1, 2, 3] = float("nan")
    maps[2, 0, 0] = float("inf")
    labels = torch.tensor([0, 1, 2, 3])
    result = evaluate_batch(model, images, maps, labels, labels)
    assert result["valid"].tolist() == [True, False, False, True]
    for name in METRICS:
        assert np.isnan(result[name][[1, 2]]).all()
        assert np.isfinite(result[name][[0, 3]]).all()
    alone = evaluate_batch(model, images[[0, 3]], maps[[0, 3]], labels[[0, 3]], labels[[0, 3]])
    for name in METRICS:
        np.testing.assert_allclose(result[name][[0, 3]], alone[name], atol=1e-4)
    with torch.no_grad():
        assert result["correct"].tolist() == (model(images).argmax(1) == labels).tolist()
    normalized, valid, _ = normalize_maps(maps, size)
    assert torch.isnan(normalized[1]).all() and not valid[1]


def test_batch_equals_single_images_and_chunking_is_irrelevant():
    size, count = 16, 5
    model = TinyConvNet(seed=1)
    generator = torch.Generator().manual_seed(9)
    images = torch.rand(count, 3, size, size, generator=generator)
    maps = torch.rand(count, 4, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 4])
    classes = classes_for_variant(model, images, labels, "predicted")
    reference = evaluate_batch(model, images, maps, labels, classes, batch_size=256)
    for batch_size in (1, 7, 23):
        chunked = evaluate_batch(model, images, maps, labels, classes, batch_size=batch_size)
        for name in METRICS:
            np.testing.assert_allclose(chunked[name], reference[name], atol=1e-4, err_msg=name)
    for index in range(count):
        single = evaluate_batch(model, images[index:index + 1], maps[index:index + 1], labels[index:index + 1],
                                classes[index:index + 1])
        for name in METRICS:
            assert single[name][0] == pytest.approx(reference[name][index], abs=1e-4), name


def test_pos_auc_per_image_matches_engine_and_ignores_monotone_rescaling():
    size = 8
    model = PixelLinearModel(size, 3, seed=8)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, size, size, generator=generator)
    maps = torch.rand(3, 4, 4, generator=generator)
    classes = classes_for_variant(model, images, torch.zeros(3), "predicted")
    normalized, _, _ = normalize_maps(maps, size)
    engine = evaluate_batch(model, images, maps, classes, classes)
    direct = pos_auc_per_image(model, images, normalized, classes, batch_size=4)
    rescaled = pos_auc_per_image(model, images, torch.sigmoid(3 * normalized - 1), classes)
    np.testing.assert_allclose(direct.numpy(), engine["POS"], atol=1e-4)
    np.testing.assert_allclose(rescaled.numpy(), engine["POS"], atol=1e-4)
    normalized[1, 0, 0] = float("nan")
    assert torch.isnan(pos_auc_per_image(model, images, normalized, classes)).tolist() == [False, True, False]


def test_classes_for_variant():
    size = 8
    model = PixelLinearModel(size, 4, seed=2)
    images = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(3))
    labels = np.array([3, 2, 1, 0, 1, 2])
    assert classes_for_variant(model, images, labels, "target").tolist() == labels.tolist()
    with torch.no_grad():
        expected = model(images).argmax(1).tolist()
    assert classes_for_variant(model, images, labels, "predicted", batch_size=4).tolist() == expected
    with pytest.raises(ValueError):
        classes_for_variant(model, images, labels, "top")


def test_shard_scores_on_explained_vit_and_bf16():
    spec = ModelSpec("vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2})
    torch.manual_seed(0)
    model = ExplainedModel(create_network(spec, num_classes=4), spec).eval()
    generator = torch.Generator().manual_seed(6)
    images = torch.rand(5, 3, 32, 32, generator=generator)
    maps = torch.rand(5, 4, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 0])
    shard = prepare_shard(model, images, labels, batch_size=2)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    assert shard.classes("predicted").tolist() == predicted.tolist()
    assert shard.classes("target").tolist() == labels.tolist()
    frame = per_image_frame(list("abcde"), shard, predicted, score_maps(model, shard, maps, predicted, batch_size=16))
    assert frame.columns.tolist() == PER_IMAGE_COLUMNS and frame["image_id"].tolist() == list("abcde")
    whole = evaluate_batch(model, images, maps, labels, predicted)
    for name in METRICS:
        np.testing.assert_allclose(frame[name].to_numpy(), whole[name], atol=1e-4)
    low_precision = evaluate_batch(model, images, maps, labels, predicted, precision="bf16")
    for name in ("DEL", "INS"):
        np.testing.assert_allclose(low_precision[name], whole[name], atol=3.0)
    with pytest.raises(ValueError):
        evaluate_batch(model, images, maps, labels, predicted, precision="fp16")
    with pytest.raises(ValueError, match="variant"):
        shard.classes("top")


def test_a_tight_memory_budget_splits_the_perturbed_images_not_the_scores(monkeypatch):
    from eea_repro.models import memory

    size, count = 16, 3
    model = ExplainedModel(create_network(ModelSpec("resnet18", "cnn", size, (0.5,) * 3, (0.5,) * 3,
                                                    {"channels": (8, 8, 8, 8), "stem_width": 8}), 5),
                           ModelSpec("resnet18", "cnn", size, (0.5,) * 3, (0.5,) * 3)).eval()
    generator = torch.Generator().manual_seed(3)
    images, maps = torch.rand(count, 3, size, size, generator=generator), torch.rand(count, 4, 4, generator=generator)
    labels = torch.tensor([0, 1, 2])
    roomy = evaluate_batch(model, images, maps, labels, labels, batch_size=256)
    footprint = memory.input_footprint(model, size, torch.device("cpu"))
    monkeypatch.setattr(memory, "CPU_BUDGET_BYTES", 7 * memory.inference_bytes(footprint))
    sizes = []
    probe = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    tight = evaluate_batch(model, images, maps, labels, labels, batch_size=256)
    probe.remove()
    assert max(sizes) == 7
    for name in METRICS:
        np.testing.assert_allclose(tight[name], roomy[name], atol=1e-4, err_msg=name)
