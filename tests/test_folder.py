"""A plain image folder as the dataset: the ImageFolder layout or a CSV, the class mapping, augmented explainer crops,
boxes rasterised into masks, and one-line errors naming what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from eea_repro.data.files import read_label_file
from eea_repro.data.folder import (
    AUGMENTED,
    IMAGES,
    LABELS,
    augmented_split,
    box_masks,
    make_folder_split_lists,
    write_folder_labels,
)
from eea_repro.data.loading import LabeledImageFolder
from eea_repro.data.plan import plan_from_config
from eea_repro.workflow.config import ConfigError

FOLDER = {"csv": None, "class_map": {"cat": 3, "dog": 5}, "n_classes": 8, "eval_count": None,
          "explainer_train_count": 1, "explainer_val_count": 1, "augment": None, "boxes": None}


def _image(path, seed: int, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """root/<class>/<image>: three cats, two dogs; the working folder is tmp_path/run."""
    root = tmp_path / "photos"
    for index, name in enumerate(["cat/a.png", "cat/b.png", "cat/sub/c.jpg", "dog/d.png", "dog/e.png"]):
        _image(root / name, index)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    return root


def test_imagefolder_layout_with_an_explicit_class_map(folder):
    names = write_folder_labels({**FOLDER, "root": str(folder)}, LABELS)
    assert read_label_file(LABELS) == [("source/cat/a.png", [3]), ("source/cat/b.png", [3]),
                                       ("source/cat/sub/c.jpg", [3]), ("source/dog/d.png", [5]),
                                       ("source/dog/e.png", [5])]
    assert names[3] == "cat" and names[5] == "dog" and names[0] == "class 0"
    dataset = LabeledImageFolder(IMAGES, LABELS, size=16, num_classes=8)
    assert dataset.image_ids == ["a", "b", "c", "d", "e"] and dataset[2]["image"].shape == (3, 16, 16)


def test_csv_with_imagenet_names_wnids_and_indices(folder, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\ncat/a.png,Egyptian cat\ncat/b.png,n02124075\ndog/d.png,207\ndog/e.png,golden_retriever\n")
    write_folder_labels({**FOLDER, "root": str(folder), "csv": str(csv), "class_map": "imagenet",
                         "n_classes": 1000}, LABELS)
    assert [labels[0] for _, labels in read_label_file(LABELS)] == [285, 285, 207, 207]


@pytest.mark.parametrize(("change", "message"), [
    ({"class_map": {"cat": 3}}, "label 'dog' is not in config key 'dataset.folder.class_map'"),
    ({"class_map": {"cat": 3, "dog": 9}}, "label 'dog' maps to 9, outside the model's 8 outputs"),
])
def test_a_label_without_a_class_is_one_line_naming_it(folder, change, message):
    with pytest.raises(ValueError, match=message):
        write_folder_labels({**FOLDER, "root": str(folder), **change}, LABELS)


def test_two_images_with_one_id_are_refused(folder):
    _image(folder / "dog" / "a.png", 9)
    with pytest.raises(ValueError, match="share the image id 'a'"):
        write_folder_labels({**FOLDER, "root": str(folder)}, LABELS)


def test_split_lists_augment_and_boxes(folder, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"how": "by hand", "boxes": {"d": [[5, 5, 20, 15]], "e": [[0, 0, 40, 30]]}}))
    config = {**FOLDER, "root": str(folder), "augment": 3, "boxes": str(boxes)}
    make_folder_split_lists(config, {"disjoint_from_eval": True}, "splits", "classes.txt", "skipped.csv",
                            "skipped.json", eval_count=3, masks_dir="masks", on_bad_image="error", seed=0)
    test = [name for name, _ in read_label_file("splits/test.txt")]
    train = read_label_file("splits/explainer_train.txt")
    assert len(test) == 3 and len(train) == 3 and all(name.startswith(f"{AUGMENTED}/") for name, _ in train)
    crops = {Image.open(f"{IMAGES}/{name}").size for name, _ in train}
    assert all(20 <= w <= 40 and 15 <= h <= 30 for w, h in crops)  # 50-100 % of the side
    boxed = sorted(path.stem for path in (tmp_path / "run" / "masks").iterdir())
    assert boxed == sorted({"d", "e"} & {name.split("/")[-1].split(".")[0] for name in test})
    if "d" in boxed:
        mask = np.asarray(Image.open("masks/d.png"))
        assert mask.shape == (30, 40) and mask[5:15, 5:20].all() and mask.sum() == 255 * 15 * 10


def test_a_box_outside_its_image_names_it(folder, tmp_path):
    write_folder_labels({**FOLDER, "root": str(folder)}, LABELS)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [[0, 0, 50, 10]]}))
    with pytest.raises(ValueError, match=r"box \[0, 0, 50, 10\] of 'a' is outside its 40x30 image"):
        box_masks(boxes, LABELS, "masks")


def test_augmented_crops_are_seeded(folder):
    write_folder_labels({**FOLDER, "root": str(folder)}, LABELS)
    (folder.parent / "run" / "split.txt").write_text("source/cat/a.png 3\n")
    augmented_split("split.txt", 2, seed=4)
    first = [np.asarray(Image.open(f"{IMAGES}/{name}")) for name, _ in read_label_file("split.txt")]
    (folder.parent / "run" / "split.txt").write_text("source/cat/a.png 3\n")
    augmented_split("split.txt", 2, seed=4)
    again = [np.asarray(Image.open(f"{IMAGES}/{name}")) for name, _ in read_label_file("split.txt")]
    assert len(first) == 2 and all(np.array_equal(a, b) for a, b in zip(first, again))


def _plan_config(folder_cfg: dict, on_bad_image: str = "skip") -> dict:
    return {"dataset": {"kind": "folder", "folder": folder_cfg, "on_bad_image": on_bad_image, "shard_size": 2},
            "explainer": {"disjoint_from_eval": True}}


def _split(config: dict, eval_count: int, on_bad_image: str = "skip") -> None:
    make_folder_split_lists(config, {"disjoint_from_eval": True}, "splits", "classes.txt", "skipped.csv",
                            "skipped.json", eval_count=eval_count, on_bad_image=on_bad_image, seed=0)


def test_skipping_a_bad_image_without_an_eval_count_evaluates_the_rest(folder, tmp_path):
    (folder / "cat" / "b.png").write_bytes(b"not an image")
    config = {**FOLDER, "root": str(folder)}
    plan = plan_from_config(_plan_config(config), tmp_path / "cache")
    assert plan.n_eval == 2 and plan.shards == ["0000"]  # 5 listed, 1 bad, 2 for the explainer
    assert plan_from_config(_plan_config(config), tmp_path / "cache").n_eval == 2  # read back from the cache
    _split(config, plan.n_eval)
    drawn = [name for split in ("test", "explainer_train", "explainer_val")
             for name, _ in read_label_file(f"splits/{split}.txt")]
    assert len(read_label_file("splits/test.txt")) == 2 and len(drawn) == 4 and "source/cat/b.png" not in drawn
    assert plan_from_config(_plan_config(config, "error")).n_eval == 3  # refused at the split job instead


def test_too_few_readable_images_points_to_a_skipped_list_that_exists(folder, tmp_path):
    (folder / "cat" / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="1 skipped, listed in skipped.csv"):
        _split({**FOLDER, "root": str(folder)}, eval_count=3)
    assert "source/cat/b.png" in (tmp_path / "run" / "skipped.csv").read_text()


def test_a_bad_image_is_named_by_the_users_own_file_and_csv_line(folder, tmp_path):
    (folder / "dog" / "d.png").write_bytes(b"not an image")
    with pytest.raises(ValueError) as refused:
        _split({**FOLDER, "root": str(folder)}, eval_count=3, on_bad_image="error")
    assert str(refused.value).startswith(f"{folder / 'dog' / 'd.png'}: not an image file")
    assert "results/data" not in str(refused.value)
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\ncat/a.png,cat\ndog/d.png,dog\ncat/b.png,cat\ndog/e.png,dog\n")
    with pytest.raises(ValueError) as refused:
        _split({**FOLDER, "root": str(folder), "csv": str(csv)}, eval_count=2, on_bad_image="error")
    assert str(refused.value).startswith(f"{folder / 'dog' / 'd.png'} (line 3 of {csv}): not an image file")


def test_a_folder_that_leaves_no_image_to_evaluate_is_a_config_error(folder):
    with pytest.raises(ConfigError, match="no image is left to evaluate"):
        plan_from_config(_plan_config({**FOLDER, "root": str(folder), "explainer_train_count": 3,
                                       "explainer_val_count": 2}))


def test_a_reversed_box_is_named_as_such(folder, tmp_path):
    write_folder_labels({**FOLDER, "root": str(folder)}, LABELS)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a": [[20, 0, 10, 10]]}))
    with pytest.raises(ValueError, match=r"box \[20, 0, 10, 10\] of 'a' is empty or reversed"):
        box_masks(boxes, LABELS, "masks")


def test_a_csv_without_a_label_column_is_a_config_error(folder, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("path,class\ncat/a.png,cat\n")
    with pytest.raises(ConfigError, match=f"config key 'dataset.folder': {csv}: expected a header 'path,label'"):
        plan_from_config(_plan_config({**FOLDER, "root": str(folder), "csv": str(csv)}))
