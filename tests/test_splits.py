"""The data stage's split lists: which images go where."""

import pytest
from PIL import Image

from eea_repro.data.files import read_label_file
from eea_repro.data.splits import make_imagenet_split_lists


def _labels(tmp_path, count):
    """A label file and its image folder (tiny JPEGs: the split stage decodes the images it draws)."""
    path = tmp_path / "val_labels.txt"
    path.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {i % 10}\n" for i in range(1, count + 1)))
    (tmp_path / "val").mkdir(exist_ok=True)
    for i in range(1, count + 1):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    return path


def _draw_splits(tmp_path, label_file, counts=None, seed=3, **options):
    make_imagenet_split_lists(label_file, tmp_path / "val", tmp_path, counts or COUNTS, seed, tmp_path / "classes.txt",
                              tmp_path / "skipped.csv", tmp_path / "skipped.json", **options)


COUNTS = {"n_classes": 10, "eval_count": 60, "explainer_train_count": 25, "explainer_val_count": 10}


def _split(tmp_path, name):
    return [row[0] for row in read_label_file(tmp_path / f"{name}.txt")]


def test_imagenet_splits_disjoint_by_default(tmp_path):
    _draw_splits(tmp_path, _labels(tmp_path, 100))
    test, train, val = (_split(tmp_path, s) for s in ("test", "explainer_train", "explainer_val"))
    assert (len(test), len(train), len(val)) == (60, 25, 10)
    assert not set(test) & set(train) and not set(test) & set(val) and not set(train) & set(val)
    assert test == sorted(test)
    assert (tmp_path / "classes.txt").read_text().splitlines()[3] == "class 3"


def test_imagenet_splits_can_overlap_as_the_released_code(tmp_path):
    _draw_splits(tmp_path, _labels(tmp_path, 70), disjoint=False)
    test, train = _split(tmp_path, "test"), _split(tmp_path, "explainer_train")
    assert len(test) == 60 and set(train) & set(test)


def test_imagenet_splits_refuse_too_few_images_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="asks for 95"):
        _draw_splits(tmp_path, _labels(tmp_path, 90), seed=0)
    bad = tmp_path / "bad.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 12\n")
    with pytest.raises(ValueError, match="outside"):
        _draw_splits(tmp_path, bad, seed=0)


def test_every_label_line_is_checked_for_its_file_drawn_or_not(tmp_path):
    labels = _labels(tmp_path, 100)
    with labels.open("a") as stream:
        stream.write("ILSVRC2012_val_00000999.JPEG 3\n")  # line 101: no such file
    with pytest.raises(ValueError, match=r"ILSVRC2012_val_00000999.JPEG \(line 101 of .*\): file not found"):
        _draw_splits(tmp_path, labels, counts={**COUNTS, "eval_count": 2, "explainer_train_count": 1,
                                               "explainer_val_count": 1})
    _draw_splits(tmp_path, labels, on_bad_image="skip")
    assert "ILSVRC2012_val_00000999.JPEG,101,file not found" in (tmp_path / "skipped.csv").read_text()


def test_an_image_folder_without_the_listed_images_has_no_usable_image(tmp_path):
    labels = _labels(tmp_path, 5)
    for image in (tmp_path / "val").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match="0 usable images"):
        _draw_splits(tmp_path, labels, counts={**COUNTS, "eval_count": 3, "explainer_train_count": 0,
                                               "explainer_val_count": 0}, on_bad_image="skip")
