"""Localisation scores against ground-truth masks: pointing game and step-wise average precision."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from eea_repro.workflow.io import save_map_shard
from eea_repro.localisation.scores import average_precision, localisation_scores, pointing_game, two_object_scores
from eea_repro.localisation.tables import localisation_table


def _disc_masks(batch=4, size=24, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    masks = []
    for _ in range(batch):
        cy, cx, radius = rng.uniform(6, size - 6), rng.uniform(6, size - 6), rng.uniform(3, 6)
        masks.append((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2)
    return torch.from_numpy(np.stack(masks))


def _brute_ap(scores: np.ndarray, positive: np.ndarray) -> float:
    """Step-wise AP straight from its definition: one threshold per distinct score, highest first."""
    ap, previous_recall = 0.0, 0.0
    for threshold in np.unique(scores)[::-1]:
        predicted = scores >= threshold
        true_positives = np.sum(predicted & positive)
        recall = true_positives / positive.sum()
        ap += (recall - previous_recall) * true_positives / predicted.sum()
        previous_recall = recall
    return ap


def test_map_equal_to_mask_scores_one():
    masks = _disc_masks()
    assert pointing_game(masks.float(), masks).tolist() == [1.0] * 4
    assert average_precision(masks.float(), masks).tolist() == pytest.approx([1.0] * 4)


def test_inverted_mask_points_outside_and_has_chance_ap():
    """Pointing game 0; AP is the area fraction, not 0: with two tied levels the object enters only with the last
    threshold, where precision = area fraction (AP's chance level)."""
    masks = _disc_masks()
    inverted = 1.0 - masks.float()
    assert pointing_game(inverted, masks).tolist() == [0.0] * 4
    area = masks.flatten(1).float().mean(dim=1)
    assert average_precision(inverted, masks).numpy() == pytest.approx(area.numpy(), rel=1e-5)


def test_strictly_inverted_ranking_has_the_minimum_ap():
    """Object pixels ranked strictly last: AP = (1/P) sum_k k / (N - P + k), below the area fraction."""
    masks = _disc_masks()
    generator = torch.Generator().manual_seed(1)
    ranking = 1.0 - masks.float() + 0.5 * torch.rand(masks.shape, generator=generator)
    n_pixels = masks[0].numel()
    for ap, mask in zip(average_precision(ranking, masks), masks):
        positives = int(mask.sum())
        k = np.arange(1, positives + 1)
        assert float(ap) == pytest.approx(np.mean(k / (n_pixels - positives + k)), rel=1e-5)
        assert float(ap) < positives / n_pixels


def test_random_maps_score_near_the_area_fraction():
    masks = _disc_masks(batch=400, seed=2)
    generator = torch.Generator().manual_seed(3)
    maps = torch.rand(masks.shape, generator=generator)
    area = masks.flatten(1).float().mean(dim=1)
    assert float(pointing_game(maps, masks).mean()) == pytest.approx(float(area.mean()), abs=0.04)
    assert float(average_precision(maps, masks).mean()) == pytest.approx(float(area.mean()), abs=0.02)


def test_ap_matches_brute_force_with_ties():
    masks = _disc_masks(batch=6, seed=4)
    generator = torch.Generator().manual_seed(5)
    maps = torch.randint(0, 5, masks.shape, generator=generator).float() + 2.0 * masks.float() * (
        torch.rand(masks.shape, generator=generator) > 0.5)  # few distinct values: many ties, partly informative
    got = average_precision(maps, masks).numpy()
    expected = [_brute_ap(m.flatten().numpy(), k.flatten().numpy()) for m, k in zip(maps, masks)]
    assert got == pytest.approx(expected, rel=1e-5)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assert got == pytest.approx(
        [sklearn_metrics.average_precision_score(k.flatten().numpy(), m.flatten().numpy()) for m, k in zip(maps, masks)],
        rel=1e-5)


def test_pointing_ties_count_the_fraction_of_maxima_inside():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True
    plateau = torch.zeros(1, 4, 4)
    plateau[0, 0, :] = 1.0  # four tied maxima, two inside the object
    assert pointing_game(plateau, mask).tolist() == [0.5]
    assert pointing_game(torch.ones(1, 4, 4), mask).tolist() == [pytest.approx(2 / 16)]


def test_empty_mask_and_nan_map_are_undefined():
    masks = _disc_masks(batch=2)
    masks[0] = False
    maps = masks.float().clone()
    maps[1, 0, 0] = float("nan")
    assert torch.isnan(pointing_game(maps, masks)).all()
    assert torch.isnan(average_precision(maps, masks)).all()


def _write_mask(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(path)


def test_stage_scores_native_maps_upsampled_to_the_mask_size(tmp_path):
    """A native 4 x 4 map whose hot cell covers the object's quadrant hits it; upsampling happens before scoring."""
    size = 16
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:8, :8] = True  # top-left quadrant
    _write_mask(tmp_path / "masks/img0.png", mask)
    _write_mask(tmp_path / "masks/img1.png", mask)
    hot_top_left = np.zeros((4, 4), np.float32)
    hot_top_left[:2, :2] = 1.0
    maps = np.stack([hot_top_left, hot_top_left[::-1, ::-1]])
    save_map_shard(tmp_path / "good.npz", maps, ["img0", "img1"], [0, 0], [0, 0], "good")
    out = tmp_path / "scores.csv"
    localisation_scores({"target": [tmp_path / "good.npz"]}, tmp_path / "masks", size, {"target": out})
    frame = pd.read_csv(out)
    assert frame["pointing"].tolist() == [1.0, 0.0]
    assert frame["area"].tolist() == [0.25, 0.25]
    assert frame["ap"].iloc[0] == pytest.approx(1.0)


def test_one_call_writes_each_variants_scores_as_if_scored_alone(tmp_path):
    """The per-model job scores every variant: each CSV holds its own variant's shards, as a call for it alone."""
    size = 16
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:8, :8] = True
    for image_id in ("img0", "img1"):
        _write_mask(tmp_path / f"masks/{image_id}.png", mask)
    hot = np.zeros((4, 4), np.float32)
    hot[:2, :2] = 1.0
    shards = {"target": np.stack([hot, hot]), "predicted": np.stack([hot, hot[::-1, ::-1]])}
    for variant, maps in shards.items():
        save_map_shard(tmp_path / f"{variant}.npz", maps, ["img0", "img1"], [0, 0], [0, 1], "gradcam")
    together = {variant: tmp_path / f"{variant}_together.csv" for variant in shards}
    localisation_scores({variant: [tmp_path / f"{variant}.npz"] for variant in shards}, tmp_path / "masks", size,
                        together)
    for variant in shards:
        alone = tmp_path / f"{variant}_alone.csv"
        localisation_scores({variant: [tmp_path / f"{variant}.npz"]}, tmp_path / "masks", size, {variant: alone})
        assert together[variant].read_bytes() == alone.read_bytes()
    assert pd.read_csv(together["target"])["pointing"].tolist() == [1.0, 1.0]
    assert pd.read_csv(together["predicted"])["pointing"].tolist() == [1.0, 0.0]


def test_two_object_pointing_uses_the_mask_of_the_explained_class(tmp_path):
    size = 8
    left = torch.zeros(size, size, dtype=torch.bool)
    left[:, :4] = True
    _write_mask(tmp_path / "masks/pair_a.png", left)  # class 3 on the left
    _write_mask(tmp_path / "masks/pair_b.png", ~left)  # class 5 on the right
    (tmp_path / "labels.txt").write_text("images/pair.png 3 5\n")
    right_hot = np.zeros((size, size), np.float32)
    right_hot[:, 6] = 1.0
    # slot 0 explains class 5 (right object) and points right: a hit; slot 1 explains class 3 and points right: a miss
    np.savez(tmp_path / "gradcam.npz", maps=np.stack([right_hot, right_hot])[None], classes=np.array([[5, 3]]),
             ids=np.array(["pair"]))
    out = tmp_path / "two.csv"
    two_object_scores([tmp_path / "gradcam.npz"], tmp_path / "masks", tmp_path / "labels.txt", size, out)
    frame = pd.read_csv(out)
    assert frame["class"].tolist() == [5, 3]
    assert frame["class_pointing"].tolist() == [1.0, 0.0]
    assert frame["other_pointing"].tolist() == [0.0, 1.0]


def test_table_reports_percent_means_with_intervals(tmp_path):
    per_image = tmp_path / "target.csv"
    pd.DataFrame({"method": ["gradcam"] * 4 + ["random"] * 4, "image_id": list("abcd") * 2,
                  "pointing": [1, 1, 1, 0, 0, 0, 1, 0], "ap": [0.9, 0.8, 0.7, 0.6, 0.2, 0.2, 0.2, 0.2],
                  "area": [0.2] * 8}).to_csv(per_image, index=False)
    localisation_table({"target": per_image}, None, "caption", {"bootstrap": 50, "confidence": 0.95}, 0,
                       {"gradcam": "Grad-CAM", "random": "Random"}, tmp_path / "t.csv", tmp_path / "t.html",
                       tmp_path / "t.json")
    table = pd.read_csv(tmp_path / "t.csv").set_index("method")
    assert table.loc["gradcam", "target_pointing_mean"] == pytest.approx(75.0)
    assert table.loc["random", "target_ap_mean"] == pytest.approx(20.0)
    assert table.loc["gradcam", "target_pointing_ci_low"] <= 75.0 <= table.loc["gradcam", "target_pointing_ci_high"]
    assert 'class="best">75.0' in (tmp_path / "t.html").read_text()
    assert table.loc["gradcam", "label"] == "Grad-CAM"
