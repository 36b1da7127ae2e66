"""Data-randomization check: the label permutation, the permuted-label model, and the box plot's Spearman values."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

from eea_repro.workflow.config import ConfigError, load_config, validate_config
from eea_repro.data.files import read_label_file
from eea_repro.data.synthetic import generate_dataset
from eea_repro.sanity.data_randomization import data_randomization_similarity, permuted_labels, train_permuted_label_model
from eea_repro.sanity.data_randomization_figures import make_spearman_boxplot, spearman_by_method
from eea_repro.workflow.io import save_map_shard
from eea_repro.models.network import build_explained_model, ModelSpec

N_CLASSES = 8


def test_config_names_an_unknown_permuted_label_model(repo):
    config = load_config(repo / "config.yaml")
    config["data_randomization"]["models"]["vgg"] = config["data_randomization"]["models"]["resnet"]
    with pytest.raises(ConfigError, match=r"'data_randomization.models': 'vgg' is not a configured model"):
        validate_config(config)


def test_permutation_is_seeded_and_keeps_the_label_counts():
    labels = np.random.default_rng(5).integers(0, N_CLASSES, size=300)
    first, again, other = permuted_labels(labels, 1), permuted_labels(labels, 1), permuted_labels(labels, 2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(np.sort(first), np.sort(labels))  # same multiset of labels
    # a shuffle across images: about 1/8 of the images keep their label, as for independent draws
    assert 0.05 < (first == labels).mean() < 0.25


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A tiny embedded dataset (CI image size) with split lists in the workflow's format."""
    root = tmp_path_factory.mktemp("embedded")
    generate_dataset(root, 48, N_CLASSES, {"train": 64, "test": 96}, n_two_object=0, seed=0)
    for split in ("train", "test"):
        rows = read_label_file(root / split / "labels.txt")
        (root / f"{split}.txt").write_text("".join(f"{split}/images/{name} {labels[0]}\n" for name, labels in rows))
    return root


def _ci(repo):
    config = load_config(repo / "config/ci.yaml")
    return config["models"]["resnet"], config["data_randomization"]


def _images(root, split, size):
    rows = read_label_file(root / f"{split}.txt")
    images = [np.asarray(Image.open(root / name).convert("RGB").resize((size, size), Image.BILINEAR)) for name, _ in rows]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255, np.array([l[0] for _, l in rows])


def test_permuted_label_model_fits_its_labels_and_is_near_chance_on_test(repo, embedded, tmp_path):
    model_cfg, settings = _ci(repo)
    out, record = tmp_path / "model.safetensors", tmp_path / "model.json"
    train_permuted_label_model("resnet", model_cfg, settings["models"]["resnet"], settings, embedded,
                               embedded / "train.txt", embedded / "test.txt", embedded / "classes.txt", None, out,
                               record, resume=tmp_path / "resume.pt", seed=0, device="cpu")
    # score the saved weights here, against labels shuffled here (train_count = the whole 64-image split)
    model = build_explained_model(ModelSpec.from_config(model_cfg), N_CLASSES, out)
    images, labels = _images(embedded, "train", model_cfg["input_size"])
    shuffled = labels[np.random.default_rng(0).permutation(len(labels))]
    test_images, test_labels = _images(embedded, "test", model_cfg["input_size"])
    with torch.no_grad():
        train_accuracy = (model(images).argmax(1).numpy() == shuffled).mean()
        test_accuracy = (model(test_images).argmax(1).numpy() == test_labels).mean()
    assert train_accuracy > 0.95
    # chance is 1/8; a 96-image test set of a chance-level model stays below 0.3 with probability > 99.9 %
    assert test_accuracy < 0.3
    saved = json.loads(record.read_text())
    assert saved["train_accuracy"] == pytest.approx(train_accuracy, abs=1.5 / len(labels))
    assert saved["test_accuracy"] == pytest.approx(test_accuracy, abs=1.5 / len(test_labels))
    assert saved["epochs"] == len(saved["history"]) and saved["history"][-2]["train_accuracy"] <= 0.95
    assert not (tmp_path / "resume.pt").exists()


def test_permuted_label_model_that_does_not_fit_names_the_keys_and_resumes(repo, embedded, tmp_path):
    model_cfg, settings = _ci(repo)
    resnet = settings["models"]["resnet"]
    paths = (tmp_path / "m.safetensors", tmp_path / "m.json")
    with pytest.raises(RuntimeError, match=r"data_randomization\.models\.resnet\.max_epochs"):
        train_permuted_label_model("resnet", model_cfg, {**resnet, "max_epochs": 1}, settings, embedded,
                                   embedded / "train.txt", embedded / "test.txt", embedded / "classes.txt", None,
                                   *paths, resume=tmp_path / "resume.pt", seed=0, device="cpu")
    assert not paths[0].exists()
    first_epoch = torch.load(tmp_path / "resume.pt", weights_only=True)["history"][0]
    # a larger max_epochs continues from the saved epoch instead of starting over
    train_permuted_label_model("resnet", model_cfg, resnet, settings, embedded, embedded / "train.txt",
                               embedded / "test.txt", embedded / "classes.txt", None, *paths,
                               resume=tmp_path / "resume.pt", seed=0, device="cpu")
    assert json.loads(paths[1].read_text())["history"][0] == first_epoch


def test_boxplot_data_equal_spearman_of_the_upsampled_maps(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(9)]
    classes = rng.integers(0, N_CLASSES, size=9)
    original, permuted, expected = {}, {}, {}
    for method, side in (("gradcam", 3), ("eea", 6)):
        a, b = rng.random((9, side, side)), rng.random((9, side, side))
        a[0] = b[0]  # one identical pair: rho = 1
        a, b = a.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)  # as stored
        order = rng.permutation(9)  # the original file lists the images in another order
        original[method] = tmp_path / f"original_{method}.npz"
        permuted[method] = tmp_path / f"permuted_{method}.npz"
        save_map_shard(original[method], a[order], [ids[i] for i in order], classes[order], classes[order], method)
        save_map_shard(permuted[method], b, ids, classes, classes, method)
        up = [F.interpolate(torch.from_numpy(m)[:, None], size=(24, 24), mode="bilinear", align_corners=False)[:, 0]
              for m in (a, b)]
        expected[method] = [spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(*up)]
    out = tmp_path / "similarity.csv"
    data_randomization_similarity({m: str(p) for m, p in original.items()}, {m: str(p) for m, p in permuted.items()},
                                  24, out)
    data = spearman_by_method(pd.read_csv(out))
    assert list(data) == ["eea", "gradcam"]  # EEA first
    for method in data:
        np.testing.assert_allclose(data[method], expected[method], atol=1e-9)
    assert data["eea"][0] == pytest.approx(1.0)
    labels = {"eea": "EEA", "gradcam": "Grad-CAM"}
    make_spearman_boxplot(out, "tiny", labels, [tmp_path / "eea.png", tmp_path / "eea.pdf"], eea_only=True)
    make_spearman_boxplot(out, "tiny", labels, [tmp_path / "all.png", tmp_path / "all.pdf"], eea_only=False)
    assert all(Path(tmp_path / name).stat().st_size > 1000 for name in ("eea.png", "eea.pdf", "all.png", "all.pdf"))
