"""Paper-style figures: label layout of the grids, mixed explainer/explained pairs (Fig. 9), two-class maps (Fig. 10)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from eea_repro.models.checkpoints import save_state_dict
from eea_repro.workflow.config import load_config
from eea_repro.data.files import read_label_file
from eea_repro.data.splits import make_embedded_split_lists
from eea_repro.data.synthetic import make_embedded_dataset
from eea_repro.explainer.finetuning import finetune_maps
from eea_repro.explainer.network import MaskExplainer, load_explainer
from eea_repro.figures.grids import DPI, MAX_COLUMNS, column_bands, qualitative_grid_figure
from eea_repro.methods import METHODS, compute_maps
from eea_repro.models.network import ModelSpec, create_network
from eea_repro.explainer.stage import make_eea_maps, pretrain_explainer
from eea_repro.methods import method_label
from eea_repro.metrics.stage import evaluate_shard
from eea_repro.models.network import load_model
from eea_repro.localisation.two_object import (explain_both_classes, is_class_specific, load_two_object_images,
                                  load_two_object_maps, save_two_object_maps)

VIT = {"family": "vit", "label": "ViT (tiny)", "timm_name": "vit_tiny_patch16_224", "input_size": 48,
       "timm_kwargs": {"patch_size": 6, "depth": 2, "embed_dim": 32, "num_heads": 2},
       "mean": [0.5] * 3, "std": [0.5] * 3, "checkpoint": {"source": "train"}}
RESNET = {"family": "cnn", "label": "ResNet (tiny)", "timm_name": "resnet18", "input_size": 48,
          "timm_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8, "output_stride": 16},
          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "checkpoint": {"source": "train"}}
EXPLAINER = {"lambda_size": 10, "size_loss": "ltx", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 8, "epochs": 1,
             "train_count": 8, "val_count": 4, "disjoint_from_eval": True}
FINETUNE = {"steps": 3, "lr": 1e-2, "early_stop_pos": None, "chunk_size": 8, "select_with": "label"}
N_CLASSES = 3
METRICS = load_config(Path(__file__).parents[1] / "config" / "ci.yaml")["metrics"]
SCORING = {"batch_size": 64, "tie_break": METRICS["tie_break"], "seed": 0}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A few embedded images (with two-object ones) and random-weight tiny models of both families."""
    root = tmp_path_factory.mktemp("paper_figures")
    settings = {"image_size": 48, "n_classes": N_CLASSES, "counts": {"train": 12, "val": 6, "test": 6},
                "n_two_object": 3}
    make_embedded_dataset(root / "embedded", settings, seed=0)
    make_embedded_split_lists(root / "embedded", root / "splits", EXPLAINER, seed=0)
    torch.manual_seed(0)
    checkpoints = {}
    for name, cfg in (("vit", VIT), ("resnet", RESNET)):
        state = create_network(ModelSpec.from_config(cfg), N_CLASSES).state_dict()
        if name == "resnet":  # non-default statistics, so that an explainer built from them is recognisable
            state["bn1.running_mean"] = torch.rand_like(state["bn1.running_mean"])
        checkpoints[name] = root / f"{name}.safetensors"
        save_state_dict(state, checkpoints[name])
    return {"root": root, "image_root": root / "embedded", "splits": root / "splits",
            "classes": root / "embedded" / "classes.txt", "checkpoints": checkpoints}


# --- Figs. 1 and 11-16: the grid layout -------------------------------------------------------------------------


def _text_boxes(fig):
    renderer = fig.canvas.get_renderer()
    return [(text.get_text(), text.get_window_extent(renderer)) for text in fig.texts if text.get_text()]


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_grid_labels_never_overlap_and_fit_the_report_width(family):
    methods = [name for name, method in METHODS.items() if family in method.families] + ["eea", "peea"]
    headers = [method_label(name) + ("" if is_class_specific(name) else " (agnostic)") for name in methods]
    rng = np.random.default_rng(0)
    images = rng.random((3, 3, 16, 16))
    maps = {header: rng.random((3, 16, 16)) for header in headers}
    titles = ["striped disc", "checkered square\n(explains dotted triangle)", "a rather long class name indeed"]
    fig = qualitative_grid_figure(images, maps, titles, title="ResNet (embedded), 'predicted' variant, a long title")

    boxes = _text_boxes(fig)
    assert len(boxes) == 1 + len(column_bands(len(headers))) * (1 + 3) + len(headers)  # title, image+rows, headers
    for (text_a, a), (text_b, b) in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), f"labels {text_a!r} and {text_b!r} overlap"
    width_px, height_px = fig.get_size_inches() * DPI
    for text, box in boxes:
        assert 0 <= box.x0 and box.x1 <= width_px and 0 <= box.y0 and box.y1 <= height_px, f"{text!r} is cut off"
    # no axes (image cell) is covered by a label either
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        cell = ax.get_window_extent(renderer)
        for text, box in boxes:
            assert not cell.overlaps(box), f"label {text!r} covers an image cell"
    # wrapped into bands, so the figure stays near the report's width (shown at ~1000 px the text stays legible)
    assert len(headers) + 1 > MAX_COLUMNS and width_px <= 1600
    assert len(fig.axes) == 3 * (len(headers) + len(column_bands(len(headers))))


def test_paper_names_of_the_methods():
    """The appendix names GC, T-Attr, GAE and EEA (Fig. 10); GC++ and pEEA follow the main text."""
    expected = {"gradcam": "GC", "gradcam_pp": "GC++", "transformer_attribution": "T-Attr", "gae": "GAE",
                "eea": "EEA", "peea": "pEEA"}
    assert {name: method_label(name) for name in expected} == expected


def test_column_bands_are_even_and_cover_every_map():
    for n_maps in range(1, 30):
        bands = column_bands(n_maps, max_columns=8)
        assert [i for band in bands for i in band] == list(range(n_maps))
        assert max(len(band) for band in bands) <= 7 and max(map(len, bands)) - min(map(len, bands)) <= 1


# --- Fig. 9: an explainer of one family explaining a model of the other -----------------------------------------


def test_mixed_pair_explainer_maps_on_its_own_grid_and_scores_on_the_explained_model(tiny_data, tmp_path):
    d = tiny_data
    splits = d["splits"]
    explainer_file = tmp_path / "mixed.safetensors"
    pretrain_explainer(VIT, EXPLAINER, SCORING, d["image_root"], splits / "explainer_train.txt",
                       splits / "explainer_val.txt", d["classes"], d["checkpoints"]["vit"], explainer_file, tmp_path / "mixed.json",
                       variant="target", resume_dir=tmp_path / "resume", seed=0, device="cpu",
                       explainer_model_cfg=RESNET, explainer_checkpoint=d["checkpoints"]["resnet"])
    # the explainer is a ResNet started from the ResNet checkpoint (BN statistics stay: the backbone runs in eval mode)
    saved = load_file(explainer_file)
    np.testing.assert_array_equal(saved["backbone.bn1.running_mean"],
                                  load_file(d["checkpoints"]["resnet"])["bn1.running_mean"])
    assert not any(key.startswith("backbone.blocks.") for key in saved)
    assert json.loads((tmp_path / "mixed.json").read_text())["history"]["best_epoch"] == 1

    maps_file, selection = tmp_path / "shard.npz", tmp_path / "shard.steps.csv"
    make_eea_maps(VIT, EXPLAINER, FINETUNE, SCORING, d["checkpoints"]["vit"], {"target": explainer_file},
                  d["image_root"], splits / "test.txt", d["classes"], {"eea": {"target": maps_file}},
                  {"target": selection}, shard_range=(0, 6), device="cpu", explainer_model_cfg=RESNET, stored_method="eea_by_resnet")
    with np.load(maps_file) as shard:
        resnet_grid = MaskExplainer(ModelSpec.from_config(RESNET), None, N_CLASSES)(torch.zeros(1, 3, 48, 48)).shape
        vit_grid = (48 // 6, 48 // 6)
        assert shard["maps"].shape == (6, *resnet_grid[1:]) and resnet_grid[1:] != vit_grid  # the explainer's grid
        assert str(shard["method"]) == "eea_by_resnet"
        labels = [row[1][0] for row in read_label_file(splits / "test.txt")]
        np.testing.assert_array_equal(shard["classes"], labels)  # 'target': the explained model's ground truth

    scores = tmp_path / "scores.csv"
    evaluate_shard(VIT, METRICS, d["checkpoints"]["vit"], [("target", maps_file)], d["image_root"],
                   splits / "test.txt", d["classes"], scores, shard_range=(0, 6), seed=0, device="cpu",
                   precision="fp32")
    frame = pd.read_csv(scores)
    assert len(frame) == 6 and set(frame["method"]) == {"eea_by_resnet"} and frame["valid"].all()
    assert set(frame["variant"]) == {"target"}


# --- Fig. 10: two classes per image ------------------------------------------------------------------------------


def test_two_object_maps_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    maps, classes, ids = rng.random((4, 2, 3, 5)), rng.integers(0, 8, (4, 2)), ["a", "b", "c", "d"]
    save_two_object_maps(tmp_path / "m.npz", maps, classes, ids)
    stored = load_two_object_maps(tmp_path / "m.npz")
    np.testing.assert_allclose(stored["maps"], maps, rtol=1e-6)
    np.testing.assert_array_equal(stored["classes"], classes)
    assert stored["ids"] == ids and stored["maps"].dtype == np.float32
    with np.load(tmp_path / "m.npz") as raw:
        assert sorted(raw.files) == ["classes", "ids", "maps"]
    with pytest.raises(ValueError, match=r"\(N, 2, h, w\)"):
        save_two_object_maps(tmp_path / "bad.npz", maps[:, :1], classes, ids)
    with pytest.raises(ValueError):
        save_two_object_maps(tmp_path / "bad.npz", maps, classes[:3], ids)


@pytest.mark.parametrize(("model_name", "cfg", "specific", "agnostic"),
                         [("vit", VIT, ["gae", "transformer_attribution"], ["rollout"]),
                          ("resnet", RESNET, ["gradcam", "gradcam_pp"], ["all_ones"])])
def test_class_specific_methods_explain_each_object_separately(tiny_data, model_name, cfg, specific, agnostic):
    d = tiny_data
    model = load_model(cfg, d["checkpoints"][model_name], d["classes"], "cpu")
    images, classes, ids, masks = load_two_object_images(d["image_root"], d["splits"] / "two_object.txt", 48,
                                                         N_CLASSES, mask_dir=d["image_root"] / "two_object" / "masks")
    expected = [labels for _, labels in read_label_file(d["splits"] / "two_object.txt")]
    np.testing.assert_array_equal(classes.numpy(), expected)
    assert masks.shape == (3, 2, 48, 48) and ((masks[:, 0] * masks[:, 1]).sum() == 0)  # two separate objects
    for method in specific + agnostic:
        maps = explain_both_classes(method, model, images, classes, seed=0)
        for k in range(2):  # each column is the method run on its own for that class
            np.testing.assert_allclose(maps[:, k], compute_maps(method, model, images, classes[:, k]), atol=1e-5)
        differs = (maps[:, 0] - maps[:, 1]).abs().flatten(1).amax(1) > 1e-6
        assert bool(differs.all()) == (method in specific), method


def test_eea_fine_tunes_towards_each_class(tiny_data):
    d = tiny_data
    model = load_model(VIT, d["checkpoints"]["vit"], d["classes"], "cpu")
    explainer = MaskExplainer(ModelSpec.from_config(VIT), load_file(d["checkpoints"]["vit"]), N_CLASSES)
    images, classes, _, _ = load_two_object_images(d["image_root"], d["splits"] / "two_object.txt", 48, N_CLASSES)
    maps = explain_both_classes("eea", model, images, classes, explainer=explainer, explainer_cfg=EXPLAINER,
                                finetune_cfg=FINETUNE, scoring=SCORING)
    for k in range(2):
        alone, _ = finetune_maps(explainer, model, images, classes[:, k], steps=3, lr=1e-2, lam=10, size_loss="ltx",
                                 early_stop_pos=None, weight_decay=0.01, keep="last")
        np.testing.assert_allclose(maps[:, k], alone, atol=1e-5)
    peea = explain_both_classes("peea", model, images, classes, explainer=explainer)
    torch.testing.assert_close(peea[:, 0], peea[:, 1])
    assert is_class_specific("eea") and not is_class_specific("peea")


def test_load_explainer_reads_a_mixed_explainer(tiny_data, tmp_path):
    """A saved explainer of the other family loads with that family's spec (the map rule's contract)."""
    explainer = MaskExplainer(ModelSpec.from_config(RESNET), load_file(tiny_data["checkpoints"]["resnet"]), N_CLASSES)
    save_state_dict(explainer.state_dict(), tmp_path / "e.safetensors")
    loaded = load_explainer(ModelSpec.from_config(RESNET), tmp_path / "e.safetensors", N_CLASSES)
    image = torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(loaded(image), explainer.eval()(image))


# --- the tiny CI run: file targets and the report ----------------------------------------------------------------


def test_tiny_run_writes_every_paper_figure_and_the_two_object_maps(tiny_run, repo):
    config = load_config(repo / "config" / "ci.yaml")
    two_object = read_label_file(tiny_run / "results/data/splits/two_object.txt")
    for model, settings in config["models"].items():
        for method in config["methods"][settings["family"]]:
            stored = load_two_object_maps(tiny_run / f"results/two_object/{model}/{method}.npz")
            assert stored["ids"] == [Path(name).stem for name, _ in two_object]
            np.testing.assert_array_equal(stored["classes"], [labels for _, labels in two_object])
            assert stored["maps"].shape[:2] == (len(two_object), 2) and np.isfinite(stored["maps"]).all()
    summary = json.loads((tiny_run / "results/figures/paper_figures.json").read_text())
    pngs = [f["png"] for f in summary["single_class"] + summary["multi_class"]] + [summary["mixed"]["png"]]
    assert len(pngs) == 2 * len(config["models"]) + len(config["models"]) + 1
    for png in pngs:
        assert (tiny_run / png).stat().st_size > 0 and (tiny_run / png).with_suffix(".pdf").exists()
    mixed = pd.read_csv(tiny_run / "results/tables/mixed_architectures.csv")
    n_test = config["dataset"]["embedded"]["counts"]["test"]
    assert len(mixed) == len(config["models"]) ** 2 and (mixed["n_images"] == n_test).all()
    report = (tiny_run / "results/report/index.html").read_text()
    assert 'id="mixed"' in report and 'id="multiclass"' in report and 'id="table-mixed"' in report
    assert report.count('id="figure-two-object-') == len(config["models"])
