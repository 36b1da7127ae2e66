"""Parameter-randomization sanity checks: similarity measures, which weights each level changes, and ρ = 1 without
randomization for every method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from skimage.feature import hog

from eea_repro.explainer.network import MaskExplainer
from eea_repro.methods import METHODS
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network
from eea_repro.sanity.runs import layer_kinds, parse_setting, run_label, run_levels, sanity_runs, setting_name
from eea_repro.sanity.parameter import level_inputs, make_sanity_maps, method_maps, sanity_image_rows, save_predictions
from eea_repro.sanity.randomization import cascading, independent, randomization_layers, untouched_parameters
from eea_repro.workflow.config import load_config
from eea_repro.sanity.similarity import MapStack, hog_similarity_per_image, spearman_per_image, ssim_per_image

NUM_CLASSES = 4
VIT = ModelSpec("vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
                {"patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2})
CNN = ModelSpec("resnet18", "cnn", 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                {"channels": (8, 16, 32, 64), "stem_width": 8})
SPECS = {"vit": VIT, "cnn": CNN}
LAYER_KINDS = [("vit", "attention"), ("vit", "block"), ("cnn", "stage"), ("cnn", "block")]


def _model(family: str, seed: int = 0) -> ExplainedModel:
    """A model whose every parameter moved away from its init (as training would), so any re-init shows."""
    torch.manual_seed(seed)
    model = ExplainedModel(create_network(SPECS[family], NUM_CLASSES), SPECS[family]).eval().requires_grad_(False)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def _images(family: str, count: int = 3, seed: int = 1) -> torch.Tensor:
    size = SPECS[family].input_size
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- similarity measures ------------------------------------------------------------------------------------------


def test_spearman_equals_scipy_per_image_with_ties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7, 7))
    b = a + rng.normal(scale=0.8, size=a.shape)
    a[0, :3] = 0.0  # ties: average ranks
    b[1] = np.round(b[1])
    ours = spearman_per_image(a, b)
    expected = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)
    expected_abs = [spearmanr(np.abs(x).ravel(), np.abs(y).ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(spearman_per_image(a, b, absolute=True), expected_abs, rtol=1e-10, atol=1e-12)


def test_spearman_compares_at_a_common_size():
    rng = np.random.default_rng(1)
    small, large = rng.random((2, 4, 4)), rng.random((2, 16, 16))
    up = torch.nn.functional.interpolate(torch.as_tensor(small, dtype=torch.float32)[:, None], size=(16, 16),
                                         mode="bilinear", align_corners=False)[:, 0].numpy()
    expected = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(up, large)]
    np.testing.assert_allclose(spearman_per_image(small, large), expected, rtol=1e-6)


def test_constant_maps_follow_the_documented_convention():
    rng = np.random.default_rng(2)
    constant, varied = np.ones((1, 6, 6)), rng.random((1, 6, 6))
    assert spearman_per_image(constant, constant * 3)[0] == 1.0
    assert spearman_per_image(constant, varied)[0] == 0.0
    assert np.isnan(spearman_per_image(np.full((1, 6, 6), np.nan), varied)[0])


def test_ssim_and_hog_of_identical_maps_are_one_and_of_unrelated_maps_lower():
    rng = np.random.default_rng(3)
    maps = rng.random((4, 12, 12))
    np.testing.assert_allclose(ssim_per_image(maps, maps * 5 + 2, size=48), 1.0, atol=1e-6)  # min-max invariant
    np.testing.assert_allclose(hog_similarity_per_image(maps, maps, size=48), 1.0, atol=1e-9)
    other = rng.random((4, 12, 12))
    assert (ssim_per_image(maps, other, size=48) < 0.9).all()
    assert (hog_similarity_per_image(maps, other, size=48) < 0.9).all()


def test_hog_similarity_is_pearson_of_skimage_hog():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 32, 32)), rng.random((2, 32, 32))
    a = (a - a.min(axis=(1, 2), keepdims=True)) / np.ptp(a, axis=(1, 2), keepdims=True)
    b = (b - b.min(axis=(1, 2), keepdims=True)) / np.ptp(b, axis=(1, 2), keepdims=True)
    features = [[hog(m, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2)) for m in s] for s in (a, b)]
    expected = [pearsonr(x, y).statistic for x, y in zip(*features)]
    np.testing.assert_allclose(hog_similarity_per_image(a, b), expected, rtol=1e-5)


def test_a_reference_prepared_once_gives_the_pairwise_values_exactly():
    """The sanity similarity prepares the original maps once and reuses them for every level; each value must equal
    the pairwise functions' (which prepare both stacks afresh) bit for bit, also for non-finite and constant maps,
    whichever side they are on, and for the reference compared with itself."""
    from eea_repro.sanity.parameter import similarity_frame

    rng = np.random.default_rng(4)
    reference, others = rng.random((5, 6, 6)), [rng.random((5, 6, 6)) for _ in range(3)]
    reference[1, 2, 2] = np.nan
    others[0][3] = 0.5
    others[1][4, 0, 0] = np.inf
    ids = [f"img{i}" for i in range(5)]
    shard = lambda maps: {"image_ids": ids, "method": "eea", "maps": maps}
    stack = MapStack.at_size(reference, 12)
    for other in [reference, *others]:
        prepared = similarity_frame(shard(reference), shard(other), 12, stack)
        pairwise = {"spearman": spearman_per_image(reference, other, 12),
                    "spearman_abs": spearman_per_image(reference, other, 12, absolute=True),
                    "ssim": ssim_per_image(reference, other, 12), "hog": hog_similarity_per_image(reference, other, 12)}
        for name, values in pairwise.items():
            np.testing.assert_array_equal(prepared[name].to_numpy(), values, err_msg=name)
    assert np.isnan(prepared.loc[1, "spearman"]) and np.isfinite(prepared.loc[0, "hog"])
    assert stack.__dict__.keys() >= {"ranks", "abs_ranks", "normalized", "hog"}  # kept for the next comparison


# --- image sample -------------------------------------------------------------------------------------------------


def test_sanity_rows_are_a_seeded_sorted_sample(tmp_path):
    split = tmp_path / "test.txt"
    split.write_text("".join(f"img{i}.png {i % 3}\n" for i in range(50)))
    rows = sanity_image_rows(split, 10, seed=5)
    assert rows == sorted(set(rows)) and len(rows) == 10 and all(0 <= r < 50 for r in rows)
    assert rows == sanity_image_rows(split, 10, seed=5)
    assert rows != sanity_image_rows(split, 10, seed=6)
    assert sanity_image_rows(split, 80, seed=5) == list(range(50))


# --- which parameters each level changes --------------------------------------------------------------------------


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def test_layers_are_the_expected_units():
    vit_layers = randomization_layers(_model("vit"), "vit", "attention")
    assert vit_layers[0] == ["net.blocks.0.attn.qkv.weight", "net.blocks.0.attn.qkv.bias",
                             "net.blocks.0.attn.proj.weight", "net.blocks.0.attn.proj.bias"]
    assert len(vit_layers) == 3
    stages = randomization_layers(_model("cnn"), "cnn", "stage")
    assert [layer[0].split(".")[1] for layer in stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert len(randomization_layers(_model("cnn"), "cnn", "block")) == 8  # resnet18: 2 blocks per stage


@pytest.mark.parametrize(("family", "which"), LAYER_KINDS)
@pytest.mark.parametrize("reinit", ["module", "normal"])
def test_cascading_step_k_changes_exactly_the_last_k_minus_1_layers(family, which, reinit):
    model = _model(family)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    layers = randomization_layers(model, family, which)
    for k in range(1, len(layers) + 2):
        randomized = cascading(model, k, layers, reinit=reinit, std=0.05, seed=3)
        expected = {name for layer in layers[len(layers) - (k - 1):] for name in layer}
        assert _changed(before, randomized.state_dict()) == expected
        assert not _changed(before, model.state_dict())  # the original is never modified


@pytest.mark.parametrize(("family", "which"), LAYER_KINDS)
@pytest.mark.parametrize("reinit", ["module", "normal"])
def test_last_cascading_level_randomizes_every_parameter(family, which, reinit):
    """x = L + 2: the layers and everything no layer holds (embeddings, CLS token, norms, head; stem, classifier)."""
    model = _model(family)
    with torch.no_grad():  # move every parameter off its init value, as training does, so any reset shows
        for parameter in model.parameters():
            parameter.add_(0.1 + 0.01 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(0)))
    before = {name: tensor.clone() for name, tensor in model.named_parameters()}
    layers = randomization_layers(model, family, which)
    full = dict(cascading(model, len(layers) + 2, layers, reinit=reinit, std=0.05, seed=3).named_parameters())
    assert _changed(before, full) == set(before)
    untouched = untouched_parameters(model, layers)
    assert untouched and not set(untouched) & {name for layer in layers for name in layer}
    if family == "vit":
        assert {"net.cls_token", "net.pos_embed", "net.head.weight"} <= set(untouched)
    last = dict(cascading(model, len(layers) + 1, layers, reinit=reinit, std=0.05, seed=3).named_parameters())
    assert not _changed({name: before[name] for name in untouched}, last)  # x = L + 1 leaves them alone
    with pytest.raises(ValueError, match="outside"):
        cascading(model, len(layers) + 3, layers)


@pytest.mark.parametrize(("family", "which"), LAYER_KINDS)
def test_independent_step_i_changes_only_layer_i_minus_1_from_the_top(family, which):
    model = _model(family)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    layers = randomization_layers(model, family, which)
    assert not _changed(before, independent(model, 1, layers, seed=3).state_dict())
    for i in range(2, len(layers) + 2):
        randomized = independent(model, i, layers, reinit="module", seed=3)
        assert _changed(before, randomized.state_dict()) == set(layers[len(layers) - (i - 1)])
    # x = 2 is one model in both modes (the top layer, the same new weights), so its maps are made once
    both = cascading(model, 2, layers, seed=3).state_dict(), independent(model, 2, layers, seed=3).state_dict()
    assert all(torch.equal(both[0][name], both[1][name]) for name in both[0])
    assert setting_name("cascading", 2) == setting_name("independent", 2) == "cascading-2"
    assert setting_name("independent", 3) == "independent-3" and setting_name("independent", 1) == "original"


def test_each_layer_granularity_runs_every_mode_under_its_own_names():
    """sanity.layers.vit: [attention, block] -> the plain runs on attention weights, '-block' runs on whole blocks;
    the settings parse back to the granularity whose layers they randomize, and x = 2 is shared within one only."""
    config = {"modes": ["cascading", "independent"], "layers": {"vit": ["attention", "block"], "cnn": "stage"}}
    assert layer_kinds(config, "vit") == ["attention", "block"] and layer_kinds(config, "cnn") == ["stage"]
    assert sanity_runs(config, "vit") == ["cascading", "independent", "cascading-block", "independent-block"]
    assert sanity_runs(config, "cnn") == ["cascading", "independent"]
    assert setting_name("independent-block", 2) == "cascading-block-2" != setting_name("independent", 2)
    assert setting_name("independent-block", 4) == "independent-block-4"
    assert setting_name("cascading-block", 1) == "original"
    assert parse_setting("independent-block-4") == ("independent", "block", 4)
    assert parse_setting("cascading-3") == ("cascading", None, 3)
    assert parse_setting("original") == (None, None, 1)
    assert run_label("cascading-block") == "cascading randomization of block layers"
    with pytest.raises(ValueError, match="sanity setting"):
        parse_setting("cascading-mlp-3")


def test_each_mode_has_its_levels_and_efficient_mprt_reads_bottom_up_s_fully_random_network():
    assert run_levels("cascading", 2) == run_levels("bottom_up-block", 2) == [1, 2, 3, 4]  # ... L + 2: every parameter
    assert run_levels("independent", 2) == [1, 2, 3]
    assert run_levels("efficient", 4) == [1, 6]
    assert setting_name("efficient", 6) == setting_name("bottom_up", 6) == "bottom_up-6"
    assert setting_name("efficient-block", 6) == "bottom_up-block-6" and setting_name("efficient", 1) == "original"
    assert run_label("efficient-block") == "efficient MPRT of block layers"
    # Smooth MPRT: bottom-up's levels, every one its own setting (its maps average noisy copies), the original's too
    assert run_levels("smooth", 2) == [1, 2, 3, 4]
    assert [setting_name("smooth-block", level) for level in (1, 4)] == ["smooth-block-1", "smooth-block-4"]
    assert parse_setting("smooth-1") == ("smooth", None, 1)


def test_reinit_is_seeded_and_normal_has_the_configured_scale():
    model = _model("vit")
    layers = randomization_layers(model, "vit", "block")
    name = layers[-1][0]
    first = cascading(model, 2, layers, reinit="normal", std=0.5, seed=1).state_dict()[name]
    assert torch.equal(first, cascading(model, 2, layers, reinit="normal", std=0.5, seed=1).state_dict()[name])
    assert not torch.equal(first, cascading(model, 2, layers, reinit="normal", std=0.5, seed=2).state_dict()[name])
    assert abs(float(first.std()) - 0.5) < 0.15


# --- ρ = 1 without randomization, for every method ----------------------------------------------------------------


# a large fine-tuning rate, so that the fine-tuned maps leave the pretrained (model-independent) one
EEA_SETTINGS = {"steps": 4, "lr": 1e-2, "lam": 10.0, "size_loss": "ltx", "early_stop_pos": None,
                "weight_decay": 0.01, "chunk_size": 4, "metric_batch_size": 64}


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_unrandomized_model_gives_rho_one_for_every_method_and_full_randomization_changes_eea(family):
    model = _model(family)
    images = _images(family, count=4)
    classes = torch.tensor([0, 1, 2, 3])
    layers = randomization_layers(model, family, "attention" if family == "vit" else "stage")
    copy = cascading(model, 1, layers, seed=3)
    explainer = MaskExplainer(SPECS[family], model.net.state_dict(), NUM_CLASSES)
    names = [name for name, method in METHODS.items() if family in method.families] + ["eea", "peea"]
    for name in names:
        kwargs = {"explainer": explainer, "eea_settings": EEA_SETTINGS, "seed": 7}
        original = method_maps(name, model, images, classes, **kwargs).numpy()
        again = method_maps(name, copy, images, classes, **kwargs).numpy()
        np.testing.assert_allclose(spearman_per_image(original, again, size=SPECS[family].input_size), 1.0,
                                   atol=1e-6, err_msg=name)
    randomized = cascading(model, len(layers) + 1, layers, seed=3)
    kwargs = {"explainer": explainer, "eea_settings": EEA_SETTINGS, "seed": 7}
    gradcam_like = "gae" if family == "vit" else "gradcam"
    for name in ("eea", gradcam_like):
        rho = spearman_per_image(method_maps(name, model, images, classes, **kwargs).numpy(),
                                 method_maps(name, randomized, images, classes, **kwargs).numpy())
        assert rho.mean() < 0.99, name


# --- similarity table, summary and figures from map files -------------------------------------------------------


def test_level_inputs_parse_the_level_from_the_input_names():
    named = {"level1": ["a.npz", "b.npz"], "level12": ["c.npz"], "predictions1": "p1.csv", "predictions12": "p12.csv",
             "classes": "classes.txt", "levelx": ["d.npz"]}
    assert level_inputs(named) == {1: ["a.npz", "b.npz"], 12: ["c.npz"]}
    assert level_inputs(named, "predictions") == {1: ["p1.csv"], 12: ["p12.csv"]}


def test_predictions_are_the_models_classes_in_batches(tmp_path):
    import pandas as pd

    model, images = _model("cnn"), _images("cnn", count=5)
    labels = torch.tensor([0, 1, 2, 3, 0])
    save_predictions(model, images, labels, [f"i{k}" for k in range(5)], tmp_path / "p.csv", batch_size=2)
    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame["image_id"].to_list() == [f"i{k}" for k in range(5)] and frame["label"].to_list() == labels.tolist()
    assert frame["predicted"].to_list() == model(images).argmax(dim=1).tolist()


def test_similarity_csv_summary_and_figures_from_map_files(tmp_path):
    import json

    import pandas as pd
    from scipy import stats

    from eea_repro.workflow.io import load_map_shard, save_map_shard
    from eea_repro.sanity.parameter import sanity_similarity
    from eea_repro.sanity.figures import level_summary, make_eea_curve, make_methods_curves, write_sanity_summary

    rng = np.random.default_rng(9)
    ids, labels = [f"img{i}" for i in range(6)], np.arange(6) % 3
    original = {m: rng.random((6, 4, 4)) for m in ("eea", "gradcam")}
    files = {}
    for level, noise in ((1, 0.0), (2, 0.3), (3, 3.0)):
        files[level] = []
        for method, maps in original.items():
            path = tmp_path / f"{level}_{method}.npz"
            save_map_shard(path, maps + noise * rng.random(maps.shape), ids, labels, labels, method)
            files[level].append(str(path))
    predictions = {}
    for level, predicted in ((1, labels), (2, np.r_[labels[:3], (labels[3:] + 1) % 3]), (3, (labels + 1) % 3)):
        predictions[level] = tmp_path / f"{level}_predictions.csv"
        pd.DataFrame({"image_id": ids, "label": labels, "predicted": predicted}).to_csv(predictions[level], index=False)
    csv = tmp_path / "cascading.similarity.csv"
    sanity_similarity(files, predictions, "cascading", 16, csv)
    frame = pd.read_csv(csv)
    correct = frame[frame["method"] == "gradcam"].set_index(["level", "image_id"])["model_correct"]
    assert correct[1].all() and not correct[3].any() and correct[2].to_list() == [True] * 3 + [False] * 3
    assert len(frame) == 3 * 2 * 6 and (frame.loc[frame["level"] == 1, ["spearman", "ssim", "hog"]] > 0.999).all().all()
    level3_maps = load_map_shard(files[3][0])["maps"]
    np.testing.assert_allclose(frame[(frame["method"] == "eea") & (frame["level"] == 3)]["map_range"],
                               np.ptp(level3_maps.reshape(6, -1), axis=1), rtol=1e-6)
    summary = level_summary(frame, 0.95)
    level3 = frame[(frame["method"] == "eea") & (frame["level"] == 3)]["spearman"].to_numpy()
    row = summary[(summary["method"] == "eea") & (summary["level"] == 3)].iloc[0]
    half = stats.t.ppf(0.975, 5) * level3.std(ddof=1) / np.sqrt(6)
    np.testing.assert_allclose([row["mean"], row["low"], row["high"]],
                               [level3.mean(), level3.mean() - half, level3.mean() + half])
    outputs = [tmp_path / "eea.png", tmp_path / "eea.pdf", tmp_path / "methods.png", tmp_path / "methods.pdf"]
    make_eea_curve(csv, "Tiny", 0.95, outputs[:2])
    make_methods_curves(csv, "Tiny", 0.95, {"eea": "EEA", "gradcam": "Grad-CAM"}, outputs[2:])
    assert all(path.stat().st_size > 1000 for path in outputs)
    out_json = tmp_path / "summary.json"
    write_sanity_summary({"vit/cascading": str(csv)}, {"vit/cascading": {"eea_curve": str(outputs[0])}},
                         {"vit": "Tiny"}, {"eea": "EEA", "gradcam": "Grad-CAM"}, {"vit/cascading": 2}, {"n_images": 6},
                         0.95, 3, out_json)
    summary_json = json.loads(out_json.read_text())
    entry = summary_json["entries"][0]
    assert summary_json["chance_accuracy"] == pytest.approx(1 / 3)
    assert entry["model_accuracy"] == [{"level": 1, "accuracy": 1.0}, {"level": 2, "accuracy": 0.5},
                                       {"level": 3, "accuracy": 0.0}]
    assert [(c["method"], c["label"]) for c in entry["curves"]] == [("eea", "EEA"), ("gradcam", "Grad-CAM")]
    assert entry["curves"][0]["levels"][2]["mean"] == pytest.approx(level3.mean(), abs=1e-4)
    eea_ranges = frame[frame["method"] == "eea"].groupby("level")["map_range"].mean()
    assert [r["level"] for r in entry["eea_range"]] == [1, 2, 3]
    assert [r["mean"] for r in entry["eea_range"]] == pytest.approx(eea_ranges.to_list(), abs=1e-4)


def test_an_efficient_run_adds_each_maps_entropy_and_the_last_levels_emprt(tmp_path):
    """entropy: numpy's 100-bin histogram of the map at the input size; eMPRT: its relative rise from level 1, 0 for
    the constant all-ones maps and for maps that do not change; the box plot and the summary's table read it."""
    import json

    import pandas as pd

    from eea_repro.sanity.figures import make_emprt_boxplot, write_sanity_summary
    from eea_repro.sanity.parameter import sanity_similarity
    from eea_repro.sanity.similarity import resize_maps
    from eea_repro.workflow.io import save_map_shard

    rng = np.random.default_rng(4)
    ids, labels = [f"img{i}" for i in range(5)], np.arange(5) % 2
    smooth = np.linspace(0, 1, 16).reshape(4, 4)[None].repeat(5, axis=0) + 0.1 * rng.random((5, 4, 4))
    maps = {1: {"eea": smooth, "all_ones": np.ones((5, 4, 4)), "edges": rng.random((5, 4, 4))}}
    maps[6] = {"eea": rng.random((5, 4, 4)), "all_ones": np.ones((5, 4, 4)), "edges": maps[1]["edges"]}
    files, predictions = {}, {}
    for level, by_method in maps.items():
        files[level] = []
        for method, values in by_method.items():
            save_map_shard(tmp_path / f"{level}_{method}.npz", values, ids, labels, labels, method)
            files[level].append(str(tmp_path / f"{level}_{method}.npz"))
        predictions[level] = tmp_path / f"{level}.csv"
        pd.DataFrame({"image_id": ids, "label": labels, "predicted": labels}).to_csv(predictions[level], index=False)
    csv = tmp_path / "efficient.similarity.csv"
    sanity_similarity(files, predictions, "efficient", 12, csv)
    frame = pd.read_csv(csv).set_index(["method", "level", "image_id"]).sort_index()

    def entropy(values):
        counts, _ = np.histogram(values, bins=100)
        share = counts[counts > 0] / counts.sum()
        return -(share * np.log(share)).sum()

    for level, by_method in maps.items():
        stored = by_method["eea"].astype(np.float16)  # map shards keep float16
        expected = [entropy(m) if np.ptp(m) else 0.0 for m in resize_maps(stored, 12)]
        np.testing.assert_allclose(frame.loc[("eea", level), "entropy"], expected, rtol=1e-12)
    rise = frame.loc[("eea", 6), "entropy"] / frame.loc[("eea", 1), "entropy"] - 1
    np.testing.assert_allclose(frame.loc[("eea", 6), "emprt"], rise, rtol=1e-12)
    assert (frame.loc[("all_ones", 6), "emprt"] == 0).all() and (frame.loc[("edges", 6), "emprt"] == 0).all()
    assert frame.loc[("eea", 1), "emprt"].isna().all()
    outputs = [tmp_path / "emprt.png", tmp_path / "emprt.pdf"]
    make_emprt_boxplot(csv, "Tiny", {"eea": "EEA", "all_ones": "All-ones", "edges": "Edges"}, outputs)
    assert all(path.stat().st_size > 1000 for path in outputs)
    write_sanity_summary({"vit/efficient": str(csv)}, {"vit/efficient": {"emprt_box": str(outputs[0])}},
                         {"vit": "Tiny"}, {"eea": "EEA", "all_ones": "All-ones", "edges": "Edges"},
                         {"vit/efficient": 4}, {"n_images": 5}, 0.95, 2, tmp_path / "summary.json")
    entry = json.loads((tmp_path / "summary.json").read_text())["entries"][0]
    assert [row["method"] for row in entry["emprt"]] == ["eea", "all_ones", "edges"]
    assert entry["emprt"][0]["mean"] == pytest.approx(rise.mean(), abs=1e-4) and entry["emprt"][1]["mean"] == 0


def test_the_edge_map_is_the_same_on_every_randomized_model_of_the_ci_run(tiny_run):
    """The no-information control never reads the model: its maps on the original and on every randomized model
    (every mode and granularity) are the same bits, and its eMPRT is exactly 0."""
    import pandas as pd

    from eea_repro.workflow.io import load_map_shard

    for model in ("vit", "resnet"):
        files = sorted((tiny_run / "results" / "sanity" / model).glob("*/edges.npz"))
        assert len(files) > 5
        reference = load_map_shard(files[0])["maps"]
        assert all(np.array_equal(load_map_shard(path)["maps"], reference) for path in files[1:])
        frame = pd.read_csv(tiny_run / "results" / "sanity" / model / "efficient.similarity.csv")
        last = frame[(frame["method"] == "edges") & (frame["level"] == frame["level"].max())]
        assert len(last) and (last["emprt"] == 0).all()


def test_tiny_run_reports_the_randomized_models_accuracy_per_level(tiny_run, repo):
    """The summary's accuracy per level is that of the predictions the maps jobs wrote, and the report shows it."""
    import json

    import pandas as pd

    config = load_config(repo / "config/ci.yaml")
    summary = json.loads((tiny_run / "results/sanity/summary.json").read_text())
    runs = {m: sanity_runs(config["sanity"], settings["family"]) for m, settings in config["models"].items()}
    assert [(e["model"], e["run"]) for e in summary["entries"]] == [(m, run) for m in runs for run in runs[m]]
    assert "cascading-block" in runs["vit"]  # the CI config runs both ViT granularities
    for entry in summary["entries"]:
        assert [a["level"] for a in entry["model_accuracy"]] == run_levels(entry["run"], entry["layers"])
        for level in entry["model_accuracy"]:
            setting = setting_name(entry["run"], level["level"])
            predictions = pd.read_csv(tiny_run / f"results/sanity/{entry['model']}/{setting}/predictions.csv")
            assert len(predictions) == entry["n_images"]
            assert level["accuracy"] == pytest.approx((predictions["predicted"] == predictions["label"]).mean(), abs=1e-4)
    report = (tiny_run / "results/report/index.html").read_text()
    assert report.count('class="note model-accuracy"') == len(summary["entries"])


def test_smooth_mprt_settings_average_each_images_seeded_noisy_copies(tiny_run, repo, tmp_path, monkeypatch):
    """A smooth-<x> setting's maps are the mean of the method's maps of the noisy copies and the clean image, each
    image's noise drawn from the seed and its place in the sample; smooth-1 explains the original model, smooth-<L + 2>
    bottom-up's fully randomized one."""
    from eea_repro.methods import compute_maps
    from eea_repro.models.network import for_inference, load_model
    from eea_repro.sanity.mprt import image_noise
    from eea_repro.sanity.parameter import load_sanity_images
    from eea_repro.sanity.randomization import settings_model
    from eea_repro.workflow.io import load_map_shard

    config = load_config(repo / "config/ci.yaml")
    config["sanity"] = {**config["sanity"], "smooth_samples": 3, "smooth_noise": 0.2}
    model_cfg, classes = config["models"]["vit"], tiny_run / "results/data/embedded/classes.txt"
    original = load_model(model_cfg, tiny_run / "results/checkpoints/vit.safetensors", classes, "cpu")
    layers = randomization_layers(original, "vit", "attention")
    settings = ["smooth-1", f"smooth-{len(layers) + 2}"]
    files = _sanity_job(tiny_run, repo, tmp_path / "job", settings, monkeypatch, sanity_cfg=config["sanity"])
    images, labels, _ = load_sanity_images(tiny_run / "results/data/embedded", tiny_run / "results/data/splits/test.txt",
                                           model_cfg, classes, config["sanity"]["n_images"], config["seed"], "cpu")
    noise = image_noise(config["seed"], range(len(images)), 2, images.shape[1:])
    spread = (images.flatten(1).max(1).values - images.flatten(1).min(1).values).view(-1, 1, 1, 1)
    stored = {}
    for setting in settings:
        model = for_inference(settings_model(original, setting, layers, config["sanity"], config["seed"]))
        by_hand = torch.stack([compute_maps("raw_attention", model, images + noise[s] * 0.2 * spread, labels)
                               for s in range(2)] + [compute_maps("raw_attention", model, images, labels)]).mean(0)
        stored[setting] = load_map_shard(files[setting][JOB_METHODS.index("raw_attention")])["maps"]
        np.testing.assert_allclose(stored[setting], by_hand.numpy().astype(np.float16), rtol=1e-3, atol=1e-6)
    assert not np.allclose(*stored.values(), rtol=0.02, atol=0)  # the fully random network attends otherwise


# --- several randomized models per job ----------------------------------------------------------------------------

JOB_SETTINGS = ["original", "cascading-2", "independent-3"]
JOB_METHODS = ["eea", "peea", "raw_attention", "random"]


def _sanity_job(tiny_run, repo, out_dir, settings, monkeypatch, sanity_cfg=None, **changes):
    """make_sanity_maps on the CI run's ViT for ``settings`` (cheap methods only), files under ``out_dir``; returns
    the output paths, setting -> [map files..., predictions file]."""
    config = load_config(repo / "config/ci.yaml")
    monkeypatch.chdir(tiny_run)
    out_maps = {s: {m: str(out_dir / s / f"{m}.npz") for m in JOB_METHODS} for s in settings}
    out_predictions = {s: str(out_dir / s / "predictions.csv") for s in settings}
    scoring = {"batch_size": config["metrics"]["batch_size"], "tie_break": config["metrics"]["tie_break"],
               "seed": config["seed"]}
    make_sanity_maps(settings, JOB_METHODS, config["models"]["vit"], sanity_cfg or config["sanity"],
                     config["explainer"], config["finetune"], scoring, "results/checkpoints/vit.safetensors",
                     "results/explainers/vit/target.safetensors", "results/data/embedded",
                     "results/data/splits/test.txt", "results/data/splits/explainer_train.txt",
                     "results/data/splits/explainer_val.txt", "results/data/embedded/classes.txt", out_maps,
                     out_predictions, {s: str(out_dir / f"{s}.resume") for s in settings},
                     **({"seed": config["seed"], "device": "cpu", "precision": "fp32", "batch_size": 32} | changes))
    return {s: [*out_maps[s].values(), out_predictions[s]] for s in settings}


def test_settings_sharing_a_job_get_the_bits_of_one_job_each(tiny_run, repo, tmp_path, monkeypatch):
    """No state leaks from one randomized model to the next: the original model, the RNG and the images are the
    same for every setting of a job; the finished job leaves no resume folder."""
    together = _sanity_job(tiny_run, repo, tmp_path / "together", JOB_SETTINGS, monkeypatch)
    for setting in JOB_SETTINGS:
        alone = _sanity_job(tiny_run, repo, tmp_path / "alone", [setting], monkeypatch)[setting]
        assert [open(f, "rb").read() for f in alone] == [open(f, "rb").read() for f in together[setting]], setting
    assert sorted(p.name for p in (tmp_path / "together").iterdir()) == sorted(JOB_SETTINGS)


def test_a_killed_sanity_job_resumes_from_the_settings_it_finished(tiny_run, repo, tmp_path, monkeypatch):
    import eea_repro.sanity.parameter as sanity

    reference = _sanity_job(tiny_run, repo, tmp_path / "reference", JOB_SETTINGS, monkeypatch)
    computed = []
    real = sanity._setting_maps

    def dies_at_the_last(setting, *args, **kwargs):
        if setting == JOB_SETTINGS[-1]:
            raise KeyboardInterrupt("killed")
        computed.append(setting)
        return real(setting, *args, **kwargs)

    monkeypatch.setattr(sanity, "_setting_maps", dies_at_the_last)
    with pytest.raises(KeyboardInterrupt):
        _sanity_job(tiny_run, repo, tmp_path / "killed", JOB_SETTINGS, monkeypatch)
    assert computed == JOB_SETTINGS[:-1]
    assert all((tmp_path / "killed" / f"{s}.resume" / sanity.FINGERPRINT).is_file() for s in JOB_SETTINGS[:-1])

    def recorded(setting, *args, **kwargs):
        computed.append(setting)
        return real(setting, *args, **kwargs)

    computed.clear()
    monkeypatch.setattr(sanity, "_setting_maps", recorded)
    for setting in JOB_SETTINGS:  # Snakemake deletes the outputs of an interrupted job before running it again
        for path in reference[setting]:
            (tmp_path / "killed" / Path(path).relative_to(tmp_path / "reference")).unlink(missing_ok=True)
    resumed = _sanity_job(tiny_run, repo, tmp_path / "killed", JOB_SETTINGS, monkeypatch)
    assert computed == JOB_SETTINGS[-1:]
    for setting in JOB_SETTINGS:
        assert [open(f, "rb").read() for f in resumed[setting]] == [open(f, "rb").read() for f in reference[setting]]
    assert not list((tmp_path / "killed").glob("*.resume"))


def test_a_resume_folder_of_other_settings_is_not_reused(tiny_run, repo, tmp_path, monkeypatch):
    import eea_repro.sanity.parameter as sanity

    real = sanity._setting_maps
    computed = []

    def dies_after_the_first(setting, *args, **kwargs):
        if computed:
            raise KeyboardInterrupt("killed")
        computed.append(setting)
        return real(setting, *args, **kwargs)

    monkeypatch.setattr(sanity, "_setting_maps", dies_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        _sanity_job(tiny_run, repo, tmp_path, JOB_SETTINGS[:2], monkeypatch)
    computed.clear()
    monkeypatch.setattr(sanity, "_setting_maps", lambda setting, *a, **k: computed.append(setting) or real(setting, *a, **k))
    _sanity_job(tiny_run, repo, tmp_path, JOB_SETTINGS[:2], monkeypatch, batch_size=16)
    assert computed == JOB_SETTINGS[:2]


def test_the_original_models_maps_are_read_from_the_evaluated_ones_with_the_bytes_of_remaking_them(
        tiny_run, repo, tmp_path, monkeypatch):
    """The original setting explains the sanity images' labels with the evaluated model and explainer: the same
    computation as the 'target' map jobs, so its maps are read from them; only the seeded random control (its maps
    depend on their place in a job's batches) is made again."""
    import eea_repro.sanity.parameter as sanity

    made = _sanity_job(tiny_run, repo, tmp_path / "made", ["original"], monkeypatch)["original"]
    reference = {method: sorted(str(path) for path in (tiny_run / "results/maps/vit/target" / method).glob("*.npz"))
                 for method in JOB_METHODS if method != "random"}
    computed, real = [], sanity.method_maps
    monkeypatch.setattr(sanity, "method_maps", lambda method, *a, **k: computed.append(method) or real(method, *a, **k))
    read = _sanity_job(tiny_run, repo, tmp_path / "read", ["original"], monkeypatch, reference_maps=reference)
    assert computed == ["random"]
    assert [open(f, "rb").read() for f in read["original"]] == [open(f, "rb").read() for f in made]
