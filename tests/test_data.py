"""Synthetic dataset generator and the shared image loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eea_repro.data.files import read_label_file
from eea_repro.data.loading import LabeledImageFolder, collate, make_loader, subset_by_count
from eea_repro.data.synthetic import class_names, generate_dataset, generate_split

N_CLASSES = 8


def _split_files(split_dir):
    return {path.relative_to(split_dir).as_posix(): path.read_bytes() for path in sorted(split_dir.rglob("*.*"))}


def _load_split(split_dir, size, two_objects=False):
    dataset = LabeledImageFolder(
        split_dir / "images", split_dir / "labels.txt", size, num_classes=N_CLASSES, mask_dir=split_dir / "masks"
    )
    batch = collate([dataset[i] for i in range(len(dataset))])
    return dataset, batch


# --- generator --------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    generate_split(tmp_path / "a" / "train", 6, 40, N_CLASSES, seed=3)
    generate_split(tmp_path / "b" / "train", 6, 40, N_CLASSES, seed=3)
    generate_split(tmp_path / "c" / "train", 6, 40, N_CLASSES, seed=4)
    files_a = _split_files(tmp_path / "a" / "train")
    files_c = _split_files(tmp_path / "c" / "train")
    assert len(files_a) == 6 * 2 + 1
    assert files_a == _split_files(tmp_path / "b" / "train")
    assert files_a.keys() == files_c.keys()
    images_a = {name: data for name, data in files_a.items() if name.startswith("images/")}
    assert all(files_c[name] != data for name, data in images_a.items())


@pytest.mark.parametrize("two_objects", [False, True])
def test_parallel_writers_give_the_same_files_as_one(tmp_path, two_objects):
    """The embedded dataset job renders with a process pool; each image's own random stream makes it byte-equal."""
    generate_split(tmp_path / "one" / "train", 11, 40, N_CLASSES, seed=3, two_objects=two_objects)
    generate_split(tmp_path / "three" / "train", 11, 40, N_CLASSES, seed=3, two_objects=two_objects, workers=3)
    files = _split_files(tmp_path / "one" / "train")
    assert len(files) == 11 * (3 if two_objects else 2) + 1
    assert files == _split_files(tmp_path / "three" / "train")


def test_generate_dataset_layout_and_disjoint_splits(tmp_path):
    counts = {"train": 10, "test": 8}
    generate_dataset(tmp_path, 32, N_CLASSES, counts, n_two_object=3, seed=0)
    assert (tmp_path / "classes.txt").read_text().splitlines() == class_names(N_CLASSES)
    assert len(set(class_names(N_CLASSES))) == N_CLASSES
    for split, count in [*counts.items(), ("two_object", 3)]:
        entries = read_label_file(tmp_path / split / "labels.txt")
        assert len(entries) == count
        assert entries[0][0] == f"synth_{split}_00000001.png"
        assert len(list((tmp_path / split / "images").iterdir())) == count
    train = {p.read_bytes() for p in (tmp_path / "train" / "images").iterdir()}
    test = {p.read_bytes() for p in (tmp_path / "test" / "images").iterdir()}
    assert not train & test
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders left behind"


def test_single_object_split_is_balanced_and_masks_sit_on_the_object(tmp_path):
    size, n_images = 48, 24
    generate_split(tmp_path / "train", n_images, size, N_CLASSES, seed=1)
    dataset, batch = _load_split(tmp_path / "train", size)
    assert np.bincount(dataset.labels, minlength=N_CLASSES).tolist() == [n_images // N_CLASSES] * N_CLASSES
    masks = batch["mask"][:, 0].bool()
    assert batch["masks"].shape == (n_images, 1, size, size)
    area = masks.float().mean(dim=(1, 2))
    assert (area > 0.02).all() and (area < 0.5).all()
    # Colour changes across the mask boundary must be much stronger than between neighbours inside the background.
    images = batch["image"]
    boundary_steps, background_steps = [], []
    for dim in (2, 3):
        step = images.diff(dim=dim).abs().sum(1)
        first = masks.narrow(dim - 1, 0, size - 1)
        second = masks.narrow(dim - 1, 1, size - 1)
        boundary_steps.append(step[first != second])
        background_steps.append(step[~first & ~second])
    boundary, background = torch.cat(boundary_steps).mean(), torch.cat(background_steps).mean()
    assert boundary > 8 * background  # a one-pixel misalignment drops this ratio to about 5
    # Object pixels are far from the typical background colour.
    for image, mask in zip(images, masks):
        background_colour = image[:, ~mask].median(dim=1).values[:, None]
        inside = (image[:, mask] - background_colour).abs().sum(0).mean()
        outside = (image[:, ~mask] - background_colour).abs().sum(0).mean()
        assert inside > 1.5 * outside


def test_two_object_split_has_distinct_labels_and_disjoint_masks(tmp_path):
    size = 64
    generate_split(tmp_path / "two_object", 10, size, N_CLASSES, seed=2, two_objects=True)
    assert len(list((tmp_path / "two_object" / "masks").iterdir())) == 20
    dataset, batch = _load_split(tmp_path / "two_object", size)
    assert batch["labels"].shape == (10, 2)
    assert (batch["labels"][:, 0] != batch["labels"][:, 1]).all()
    assert torch.equal(batch["label"], batch["labels"][:, 0])
    masks = batch["masks"].bool()
    assert masks.shape == (10, 2, size, size)
    assert masks.flatten(2).any(2).all()
    assert not (masks[:, 0] & masks[:, 1]).any()
    assert torch.equal(batch["mask"][:, 0], batch["masks"][:, 0])


def _region_features(image, region):
    """Colour and gradient statistics of one region; gradients only between two pixels of the region."""
    luminance = image.mean(-1)
    features = []
    for channel in range(3):
        values = image[..., channel][region]
        features += [values.mean(), values.std()]
    for axis in (0, 1):
        steps = np.abs(np.diff(luminance, axis=axis))
        both = np.logical_and(
            np.take(region, range(region.shape[axis] - 1), axis=axis),
            np.take(region, range(1, region.shape[axis]), axis=axis),
        )
        features += [steps[both].mean(), (steps[both] > 0.3).mean()]
    return np.array(features)


def _nearest_class_mean_accuracy(features, labels, n_classes):
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    train = np.arange(len(labels)) % 2 == 0
    means = np.stack([features[train & (labels == c)].mean(0) for c in range(n_classes)])
    distances = ((features[~train, None] - means[None]) ** 2).sum(-1)
    return (distances.argmin(1) == labels[~train]).mean()


def test_background_carries_no_class_information(tmp_path):
    size, n_images = 32, 240
    generate_split(tmp_path / "train", n_images, size, N_CLASSES, seed=5)
    dataset, batch = _load_split(tmp_path / "train", size)
    images = batch["image"].permute(0, 2, 3, 1).numpy()
    masks = batch["mask"][:, 0].numpy() > 0.5
    labels = np.array(dataset.labels)
    background = np.stack([_region_features(image, ~mask) for image, mask in zip(images, masks)])
    objects = np.stack([_region_features(image, mask) for image, mask in zip(images, masks)])
    chance = 1 / N_CLASSES
    background_accuracy = _nearest_class_mean_accuracy(background, labels, N_CLASSES)
    object_accuracy = _nearest_class_mean_accuracy(objects, labels, N_CLASSES)
    assert background_accuracy < chance + 0.12, background_accuracy
    assert object_accuracy > chance + 0.25, object_accuracy


def test_every_supported_class_renders(tmp_path):
    n_classes = len(class_names(12))
    generate_split(tmp_path / "all", n_classes, 32, n_classes, seed=0)
    entries = read_label_file(tmp_path / "all" / "labels.txt")
    assert sorted(labels[0] for _, labels in entries) == list(range(n_classes))
    with pytest.raises(ValueError, match="n_classes"):
        class_names(13)


# --- loader -------------------------------------------------------------------------------------------------------


@pytest.fixture
def imagenet_like(tmp_path):
    """A flat ImageNet-val-style folder: JPEG (RGB, grayscale, CMYK) and an RGBA PNG, with a label file."""
    folder = tmp_path / "val"
    folder.mkdir()
    wide = np.zeros((30, 80, 3), dtype=np.uint8)
    wide[:, :20] = (255, 0, 0)  # left quarter red, the rest blue: a centre crop would lose the red part
    wide[:, 20:] = (0, 0, 255)
    Image.fromarray(wide).save(folder / "ILSVRC2012_val_00000001.JPEG", quality=95)
    Image.new("L", (41, 37), 90).save(folder / "ILSVRC2012_val_00000002.JPEG", quality=95)
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(folder / "ILSVRC2012_val_00000003.JPEG", quality=95)
    Image.new("RGBA", (25, 25), (10, 200, 30, 40)).save(folder / "ILSVRC2012_val_00000004.png")
    labels = tmp_path / "val_labels.txt"
    labels.write_text(
        "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 0\n\n"
        "ILSVRC2012_val_00000003.JPEG 999\nILSVRC2012_val_00000004.png 7\n"
    )
    return folder, labels


def test_imagenet_style_folder_loads(imagenet_like):
    folder, labels = imagenet_like
    dataset = LabeledImageFolder(folder, labels, size=16, num_classes=1000)
    assert dataset.image_ids == [f"ILSVRC2012_val_0000000{i}" for i in (1, 2, 3)] + ["ILSVRC2012_val_00000004"]
    assert dataset.labels == [65, 0, 999, 7]
    batch = next(iter(make_loader(dataset, batch_size=4)))
    images = batch["image"]
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert batch["label"].tolist() == [65, 0, 999, 7]
    assert batch["image_id"] == dataset.image_ids
    wide = images[0]
    assert (wide[0, :, :3] > 0.85).all() and (wide[2, :, :3] < 0.15).all()  # squashed, not cropped: red kept
    assert (wide[2, :, 5:] > 0.85).all() and (wide[0, :, 5:] < 0.15).all()
    assert torch.allclose(images[1], torch.full((3, 16, 16), 90 / 255), atol=3 / 255)  # grayscale -> 3 channels
    assert (images[2, 0] > 0.85).all() and (images[2, 1:] < 0.15).all()  # CMYK (0, 255, 255, 0) is red
    expected_rgb = torch.tensor([10, 200, 30]).view(3, 1, 1) / 255
    assert torch.allclose(images[3], expected_rgb.expand(3, 16, 16), atol=1e-6)  # RGBA -> RGB


def test_indices_select_a_subset(imagenet_like):
    folder, labels = imagenet_like
    dataset = LabeledImageFolder(folder, labels, size=8, indices=[3, 1])
    assert dataset.labels == [7, 0]
    assert dataset[0]["image_id"] == "ILSVRC2012_val_00000004"


@pytest.mark.parametrize(
    "line, message",
    [("ILSVRC2012_val_00000002.JPEG", "line 2"), ("ILSVRC2012_val_00000002.JPEG dog", "line 2: labels must be int")],
)
def test_malformed_label_line_is_a_one_line_error(tmp_path, line, message):
    label_file = tmp_path / "labels.txt"
    label_file.write_text(f"ILSVRC2012_val_00000001.JPEG 3\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        read_label_file(label_file)
    assert str(label_file) in str(error.value) and "\n" not in str(error.value)


def test_out_of_range_label_names_the_file(imagenet_like):
    folder, labels = imagenet_like
    with pytest.raises(ValueError, match="ILSVRC2012_val_00000003.JPEG") as error:
        LabeledImageFolder(folder, labels, size=8, num_classes=100)
    assert str(labels) in str(error.value) and "\n" not in str(error.value)


def test_missing_and_truncated_images_name_the_file(imagenet_like):
    folder, labels = imagenet_like
    (folder / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_val_00000002.JPEG"):
        LabeledImageFolder(folder, labels, size=8)
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(folder / "ILSVRC2012_val_00000002.JPEG", quality=95)
    data = (folder / "ILSVRC2012_val_00000002.JPEG").read_bytes()
    (folder / "ILSVRC2012_val_00000002.JPEG").write_bytes(data[: len(data) // 2])
    dataset = LabeledImageFolder(folder, labels, size=8)
    assert dataset[0]["image"].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="ILSVRC2012_val_00000002.JPEG") as error:
        dataset[1]
    assert "\n" not in str(error.value)


def test_shuffled_loader_order_depends_only_on_seed(imagenet_like):
    folder, labels = imagenet_like
    dataset = LabeledImageFolder(folder, labels, size=8)

    def order(seed):
        return [image_id for batch in make_loader(dataset, 1, shuffle=True, seed=seed) for image_id in batch["image_id"]]

    orders = {tuple(order(seed)) for seed in range(6)}
    assert order(3) == order(3)
    assert len(orders) > 1
    assert all(sorted(o) == sorted(dataset.image_ids) for o in orders)


def test_subset_by_count():
    first = subset_by_count(1000, 50, seed=0)
    assert first == subset_by_count(1000, 50, seed=0)
    assert first != subset_by_count(1000, 50, seed=1)
    assert len(set(first)) == 50 and first == sorted(first) and all(0 <= i < 1000 for i in first)
    assert set(first) <= set(subset_by_count(1000, 80, seed=0))
    second = subset_by_count(1000, 100, seed=0, exclude=first)
    assert len(second) == 100 and not set(first) & set(second)
    assert subset_by_count(10, 10, seed=2) == list(range(10))
    with pytest.raises(ValueError):
        subset_by_count(10, 8, seed=0, exclude=range(3))
