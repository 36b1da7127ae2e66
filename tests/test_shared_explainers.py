"""The explainer side of variant sharing: one explainer when the model predicts every explainer-training label, and
EEA / pEEA maps made once per (image, class) when the variants' explainers are the same file; the files must be the
bits that one job per variant makes (the metric side: test_variant_sharing.py)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from eea_repro.models.checkpoints import save_state_dict
from eea_repro.data.files import read_label_file
from eea_repro.data.splits import make_embedded_split_lists
from eea_repro.data.synthetic import make_embedded_dataset
from eea_repro.explainer.pretraining import SURE_MARGIN, predicted_as_labelled
from eea_repro.models.network import ModelSpec, create_network
from eea_repro.data.loading import load_tensors, open_split
from eea_repro.explainer.stage import make_eea_maps, pretrain_variant_explainers
from eea_repro.models.network import load_model

VIT = {"family": "vit", "label": "ViT (tiny)", "timm_name": "vit_tiny_patch16_224", "input_size": 48,
       "timm_kwargs": {"patch_size": 6, "depth": 2, "embed_dim": 32, "num_heads": 2},
       "mean": [0.5] * 3, "std": [0.5] * 3, "checkpoint": {"source": "train"}}
EXPLAINER = {"lambda_size": 10, "size_loss": "ltx", "lr": 1e-3, "weight_decay": 0.01, "batch_size": 4, "epochs": 2,
             "train_count": 12, "val_count": 4, "disjoint_from_eval": True, "variants_together": True}
FINETUNE = {"steps": 3, "lr": 1e-2, "early_stop_pos": None, "chunk_size": 4, "select_with": "label"}
SCORING = {"batch_size": 64, "tie_break": "random", "seed": 0}
N_CLASSES = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Embedded images and a random-weight tiny ViT, which misclassifies many of them."""
    root = tmp_path_factory.mktemp("variant_sharing")
    settings = {"image_size": 48, "n_classes": N_CLASSES, "counts": {"train": 24, "val": 6, "test": 10},
                "n_two_object": 1}
    make_embedded_dataset(root / "embedded", settings, seed=0)
    make_embedded_split_lists(root / "embedded", root / "splits", EXPLAINER, seed=0)
    torch.manual_seed(0)
    checkpoint = root / "vit.safetensors"
    state = create_network(ModelSpec.from_config(VIT), N_CLASSES).state_dict()
    state["head.weight"] *= 200  # logits far apart: most images predicted with a clear lead
    save_state_dict(state, checkpoint)
    return {"image_root": root / "embedded", "splits": root / "splits", "classes": root / "embedded" / "classes.txt",
            "checkpoint": checkpoint}


def logits_of(data, split_file):
    model = load_model(VIT, data["checkpoint"], data["classes"], "cpu")
    images, labels, _ = load_tensors(open_split(data["image_root"], split_file, VIT, data["classes"]))
    with torch.no_grad():
        return model(images), labels


def relabelled_as_predicted(data, tmp_path) -> Path:
    """The explainer-training list with each image labelled as the model predicts it (images whose lead is within
    the margin dropped): a model that predicts every label."""
    split = data["splits"] / "explainer_train.txt"
    logits, _ = logits_of(data, split)
    top = logits.topk(2, dim=1)
    lines = [f"{name} {int(predicted)}\n" for (name, _), predicted, lead
             in zip(read_label_file(split), top.indices[:, 0], top.values[:, 0] - top.values[:, 1])
             if lead > 2 * SURE_MARGIN]
    assert len(lines) >= 8
    relabelled = tmp_path / "explainer_train.txt"
    relabelled.write_text("".join(lines))
    return relabelled


def pretrain(data, train_file, out_dir: Path, variants):
    explainers = {v: out_dir / f"{v}.safetensors" for v in variants}
    histories = {v: out_dir / f"{v}.json" for v in variants}
    pretrain_variant_explainers(VIT, EXPLAINER, SCORING, data["image_root"], train_file,
                                data["splits"] / "explainer_val.txt", data["classes"], data["checkpoint"], explainers,
                                histories, {v: out_dir / f"{v}.resume" for v in variants}, seed=0, device="cpu")
    return explainers, histories


class Logits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, images):
        return self.logits[: len(images)]


def test_predicted_as_labelled_needs_every_label_with_a_clear_lead():
    labels = torch.tensor([0, 1])
    clear = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    assert predicted_as_labelled(Logits(clear), [(torch.zeros(2, 3, 4, 4), labels)])
    wrong = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.5]])
    assert not predicted_as_labelled(Logits(wrong), [(torch.zeros(2, 3, 4, 4), labels)])
    close = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0 - SURE_MARGIN / 2]])
    assert not predicted_as_labelled(Logits(close), [(torch.zeros(2, 3, 4, 4), labels)])


def test_a_model_that_predicts_every_label_trains_one_explainer_for_both_variants(data, tmp_path):
    train_file = relabelled_as_predicted(data, tmp_path)
    together, histories = pretrain(data, train_file, tmp_path / "together", ["target", "predicted"])
    separate = {v: pretrain(data, train_file, tmp_path / f"only_{v}", [v])[0][v] for v in ("target", "predicted")}
    for variant in ("target", "predicted"):
        assert together[variant].read_bytes() == separate[variant].read_bytes()
    assert '"trained_as": "target"' in histories["predicted"].read_text()
    assert not (tmp_path / "together" / "predicted.resume").exists()  # trained once: no second run started


def test_a_model_that_misses_a_label_trains_one_explainer_per_variant(data, tmp_path):
    train_file = data["splits"] / "explainer_train.txt"
    logits, labels = logits_of(data, train_file)
    assert (logits.argmax(1) != labels).any()
    together, histories = pretrain(data, train_file, tmp_path / "together", ["target", "predicted"])
    separate = pretrain(data, train_file, tmp_path / "only_predicted", ["predicted"])[0]
    assert together["predicted"].read_bytes() == separate["predicted"].read_bytes()
    assert together["predicted"].read_bytes() != together["target"].read_bytes()
    assert "trained_as" not in histories["predicted"].read_text()


def eea_maps(data, explainers: dict, out_dir: Path):
    out_dir.mkdir()
    variants = list(explainers)
    out_maps = {method: {v: out_dir / f"{v}_{method}.npz" for v in variants} for method in ("eea", "peea")}
    selection = {v: out_dir / f"{v}.steps.csv" for v in variants}
    make_eea_maps(VIT, EXPLAINER, FINETUNE, SCORING, data["checkpoint"], explainers, data["image_root"],
                  data["splits"] / "test.txt", data["classes"], out_maps, selection, shard_range=(0, 10),
                  device="cpu", timing_csv=out_dir / "timing.csv")
    return [*(path for paths in out_maps.values() for path in paths.values()), *selection.values()]


def test_variants_with_one_explainer_share_eea_maps_and_keep_separate_ones_for_misclassified_images(data, tmp_path):
    explainer = pretrain(data, data["splits"] / "explainer_train.txt", tmp_path / "explainer", ["target"])[0]["target"]
    together = eea_maps(data, {"target": explainer, "predicted": explainer}, tmp_path / "together")
    separate = [*eea_maps(data, {"target": explainer}, tmp_path / "target"),
                *eea_maps(data, {"predicted": explainer}, tmp_path / "predicted")]
    by_name = {path.name: path.read_bytes() for path in separate}
    assert {path.name: path.read_bytes() for path in together} == by_name

    timing = pd.read_csv(tmp_path / "together" / "timing.csv").set_index("method")
    logits, labels = logits_of(data, data["splits"] / "test.txt")
    missed = (logits.argmax(1) != labels).numpy()
    assert 0 < missed.sum() < len(labels)
    assert timing.loc["eea", "computed"] == len(labels) + missed.sum()  # fine-tuned again: the misclassified only
    assert timing.loc["peea", "computed"] == len(labels) and timing.loc["eea", "images"] == 2 * len(labels)
    with np.load(tmp_path / "together" / "target_eea.npz") as target, \
            np.load(tmp_path / "together" / "predicted_eea.npz") as predicted:
        np.testing.assert_array_equal(target["classes"] != predicted["classes"], missed)
        np.testing.assert_array_equal(target["maps"][~missed], predicted["maps"][~missed])
