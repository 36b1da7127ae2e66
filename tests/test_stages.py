"""Stage functions that decide which images go where: the split lists."""

import pytest

from eea_repro.data.loading import read_label_file
from eea_repro.stages import make_imagenet_split_lists


def _labels(tmp_path, count):
    path = tmp_path / "val_labels.txt"
    path.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {i % 10}\n" for i in range(1, count + 1)))
    return path


COUNTS = {"n_classes": 10, "eval_count": 60, "explainer_train_count": 25, "explainer_val_count": 10}


def _split(tmp_path, name):
    return [row[0] for row in read_label_file(tmp_path / f"{name}.txt")]


def test_imagenet_splits_disjoint_by_default(tmp_path):
    make_imagenet_split_lists(_labels(tmp_path, 100), tmp_path, COUNTS, seed=3, classes_out=tmp_path / "classes.txt")
    test, train, val = (_split(tmp_path, s) for s in ("test", "explainer_train", "explainer_val"))
    assert (len(test), len(train), len(val)) == (60, 25, 10)
    assert not set(test) & set(train) and not set(test) & set(val) and not set(train) & set(val)
    assert test == sorted(test)
    assert (tmp_path / "classes.txt").read_text().splitlines()[3] == "class 3"


def test_imagenet_splits_can_overlap_as_the_released_code(tmp_path):
    make_imagenet_split_lists(_labels(tmp_path, 70), tmp_path, COUNTS, seed=3, classes_out=tmp_path / "c.txt",
                              disjoint=False)
    test, train = _split(tmp_path, "test"), _split(tmp_path, "explainer_train")
    assert len(test) == 60 and set(train) & set(test)


def test_imagenet_splits_refuse_too_few_images_and_bad_labels(tmp_path):
    with pytest.raises(ValueError, match="asks for 95"):
        make_imagenet_split_lists(_labels(tmp_path, 90), tmp_path, COUNTS, seed=0, classes_out=tmp_path / "c.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 12\n")
    with pytest.raises(ValueError, match="outside"):
        make_imagenet_split_lists(bad, tmp_path, COUNTS, seed=0, classes_out=tmp_path / "c.txt")
