"""A plain image folder as the dataset: ``root/<class>/<image>`` (torchvision's ImageFolder layout) or a CSV of
``path,label``, its labels mapped to the model's output indices by the user (ImageNet indices, WNIDs or class names,
or an explicit mapping).

The folder becomes an ImageNet-style label file over ``results/data/folder/images/`` (a link to the user's folder,
named ``source``), so the split, shard, bad-image and report logic is the ImageNet path's. Two additions a small folder
needs: augmented crops of the explainer images when the explainer needs more images than the folder holds, and object
masks rasterised from bounding boxes for the localisation scores.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from eea_repro.workflow.io import atomic_path, kept
from eea_repro.workflow.paths import resolve
from eea_repro.data.checks import IMAGE_SUFFIXES, BadImage, LabeledFile, unreadable
from eea_repro.data.files import open_rgb, read_label_file
from eea_repro.data.splits import imagenet_class_names, make_imagenet_split_lists, write_label_lines

FOLDER_ROOT = "results/data/folder"
IMAGES = f"{FOLDER_ROOT}/images"  # the image root every split file is relative to
SOURCE = "source"  # the link to the user's folder inside IMAGES
AUGMENTED = "augmented"
MASKS = f"{FOLDER_ROOT}/masks"
LABELS = f"{FOLDER_ROOT}/labels.txt"


def folder_entries(root: Path, csv_file: Path | None) -> list[tuple[str, str]]:
    """(path relative to ``root``, label as written) of every image: the CSV's rows, or every image file under a class
    folder of ``root`` (the folder's name is the label), sorted."""
    if csv_file is not None:
        with open(csv_file, newline="") as stream:
            rows = list(csv.DictReader(stream))
        if not rows or not {"path", "label"} <= set(rows[0]):
            raise ValueError(f"{csv_file}: expected a header 'path,label' and one row per image")
        return [(row["path"].strip(), row["label"].strip()) for row in rows]
    entries = []
    for class_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        for folder, _, files in os.walk(class_dir):
            for name in sorted(files):
                if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    entries.append(((Path(folder) / name).relative_to(root).as_posix(), class_dir.name))
    if not entries:
        raise ValueError(f"{root}: no image in a class folder (expected root/<class>/<image>, or set dataset.folder.csv)")
    return sorted(entries)


def _normalised(label: str) -> str:
    return " ".join(label.replace("_", " ").lower().split())


def imagenet_lookup() -> dict[str, int]:
    """ImageNet-1k labels -> index: the index itself, the WNID and every synonym of the class description."""
    from timm.data import ImageNetInfo

    info, lookup = ImageNetInfo(), {}
    for index in range(1000):
        lookup[str(index)] = index
        lookup[info.index_to_label_name(index).lower()] = index
        for synonym in info.index_to_description(index).split(","):
            lookup.setdefault(_normalised(synonym), index)
    return lookup


def label_indices(labels, class_map, n_classes: int, source) -> dict[str, int]:
    """Each distinct label -> the model's output index: ``class_map`` is ``imagenet`` or a mapping label -> index."""
    lookup = imagenet_lookup() if class_map == "imagenet" else {_normalised(str(k)): int(v) for k, v in class_map.items()}
    indices = {}
    for label in sorted(set(labels)):
        index = lookup.get(_normalised(label), lookup.get(label.lower()))
        if index is None:
            raise ValueError(f"{source}: label {label!r} is not in config key 'dataset.folder.class_map' "
                             f"({'ImageNet index, WNID or class name' if class_map == 'imagenet' else 'the mapping'})")
        if not 0 <= index < n_classes:
            raise ValueError(f"{source}: label {label!r} maps to {index}, outside the model's {n_classes} outputs")
        indices[label] = index
    return indices


def class_names(class_map, n_classes: int) -> list[str]:
    if class_map == "imagenet":
        return imagenet_class_names(n_classes)
    names = [f"class {index}" for index in range(n_classes)]
    for label, index in class_map.items():
        names[int(index)] = str(label)
    return names


def link_source(root: Path) -> None:
    """``results/data/folder/images/source`` -> the user's folder (replaced when the config points elsewhere)."""
    link = Path(IMAGES) / SOURCE
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == root.resolve():
            return
        link.unlink()
    link.symlink_to(root.resolve(), target_is_directory=True)


def user_paths(folder_cfg: dict) -> tuple[Path, Path | None]:
    """The user's image folder and CSV (None without one), resolved as the config names them."""
    return resolve(folder_cfg["root"]), resolve(folder_cfg["csv"]) if folder_cfg.get("csv") else None


def write_folder_labels(folder_cfg: dict, out_labels) -> list[str]:
    """The folder as an ImageNet-style label file over :data:`IMAGES`; returns the class names per output index."""
    root, csv_file = user_paths(folder_cfg)
    if not root.is_dir():
        raise ValueError(f"config key 'dataset.folder.root': {root} is not a folder")
    entries = folder_entries(root, csv_file)
    bad = [path for path, _ in entries if len(path.split()) != 1]
    if bad:
        raise ValueError(f"{csv_file or root}: image path {bad[0]!r} contains white space")
    stems: dict[str, str] = {}
    for path, _ in entries:
        if Path(path).stem in stems:
            raise ValueError(f"{csv_file or root}: {path} and {stems[Path(path).stem]} share the image id "
                             f"{Path(path).stem!r} (ids are file names without suffix); rename one")
        stems[Path(path).stem] = path
    indices = label_indices([label for _, label in entries], folder_cfg["class_map"], folder_cfg["n_classes"],
                            csv_file or root)
    link_source(root)
    write_label_lines(out_labels, [(f"{SOURCE}/{path}", [indices[label]]) for path, label in entries])
    return class_names(folder_cfg["class_map"], folder_cfg["n_classes"])


def augmented_split(split_file, crops_per_image: int, seed: int) -> None:
    """Replace an explainer split by ``crops_per_image`` seeded random crops (50-100 % of the side, any position) of
    each of its images, half of them mirrored, written next to the folder's images: a folder of a few photos still
    gives the explainer enough different images to train on. The report says so."""
    rng = np.random.default_rng(seed)
    out_dir = Path(IMAGES) / AUGMENTED
    rows = []
    for name, labels in read_label_file(split_file):
        image = open_rgb(Path(IMAGES) / name)
        width, height = image.size
        for k in range(crops_per_image):
            scale = rng.uniform(0.5, 1.0)
            w, h = max(1, int(width * scale)), max(1, int(height * scale))
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            crop = image.crop((x, y, x + w, y + h))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            target = out_dir / f"{Path(name).stem}_crop{k:03d}.png"
            with atomic_path(target) as tmp:
                crop.save(tmp, format="PNG")
            rows.append((f"{AUGMENTED}/{target.name}", labels))
    write_label_lines(split_file, rows)


def box_masks(boxes_file, split_file, out_dir) -> int:
    """Object masks (white inside any of an image's boxes) of the split's images that have boxes, at each image's own
    size; ``boxes_file`` is JSON ``{image id: [[x0, y0, x1, y1], ...]}`` in that image's pixels. Returns the count."""
    boxes = json.loads(Path(boxes_file).read_text())
    boxes = boxes.get("boxes", boxes)
    written = 0
    for name, _ in read_label_file(split_file):
        image_id = Path(name).stem
        if image_id not in boxes:
            continue
        with Image.open(Path(IMAGES) / name) as image:
            width, height = image.size
        mask = np.zeros((height, width), dtype=np.uint8)
        for x0, y0, x1, y1 in boxes[image_id]:
            if not (x0 < x1 and y0 < y1):
                raise ValueError(f"{boxes_file}: box {[x0, y0, x1, y1]} of {image_id!r} is empty or reversed (a box "
                                 "is [x0, y0, x1, y1] with x0 < x1 and y0 < y1)")
            if not (0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height):
                raise ValueError(f"{boxes_file}: box {[x0, y0, x1, y1]} of {image_id!r} is outside its "
                                 f"{width}x{height} image")
            mask[int(y0):int(y1), int(x0):int(x1)] = 255
        with atomic_path(Path(out_dir) / f"{image_id}.png") as tmp:
            Image.fromarray(mask).save(tmp, format="PNG")
        written += 1
    return written


def folder_image_count(folder_cfg: dict, without_bad: bool, cache_dir=None) -> int:
    """How many images the folder lists; ``without_bad``: only those that decode (the split job's check, for
    ``dataset.on_bad_image: skip``), the answer kept in ``cache_dir`` under every file's name, size and time."""
    root, csv_file = user_paths(folder_cfg)
    entries = folder_entries(root, csv_file)
    if not without_bad:
        return len(entries)
    files = [LabeledFile(path, (0,), line) for line, (path, _) in enumerate(entries, 1)]

    def signature(path: str):
        try:
            stat = (root / path).stat()
        except OSError:
            return None
        return [stat.st_size, stat.st_mtime_ns]

    def decodable() -> int:
        return len(files) - len(unreadable(root, files, threads=os.cpu_count() or 1))

    if cache_dir is None:
        return decodable()
    key = {"root": str(root), "csv": str(csv_file), "files": [[path, signature(path)] for path, _ in entries]}
    return kept(cache_dir, "folder-images", key, decodable)


def in_user_terms(folder_cfg: dict) -> Callable[[BadImage], str]:
    """A bad image named as the user wrote it: the file in their folder and, with a CSV, its line there (the header
    is line 1), not the workflow's link and label file."""
    root, csv_file = user_paths(folder_cfg)

    def describe(bad: BadImage) -> str:
        where = f" (line {bad.line + 1} of {csv_file})" if csv_file and bad.line else ""
        return f"{root / bad.name.removeprefix(SOURCE + '/')}{where}: {bad.reason}"

    return describe


def make_folder_split_lists(folder_cfg: dict, explainer_cfg: dict, out_dir, classes_out, skipped_csv,
                            skipped_summary, *, eval_count: int, masks_dir=None, on_bad_image: str, seed: int,
                            threads: int = 1) -> None:
    """The split lists of a plain folder: its label file, then the ImageNet path's checks and draws of ``eval_count``
    evaluated images (the plan's count, :func:`folder_image_count`); the explainer splits become augmented crops
    (``augment``), and boxes become masks of the evaluated images (``boxes``)."""
    names = write_folder_labels(folder_cfg, LABELS)
    counts = {"n_classes": folder_cfg["n_classes"], "explainer_train_count": folder_cfg["explainer_train_count"],
              "explainer_val_count": folder_cfg["explainer_val_count"], "eval_count": eval_count}
    disjoint = explainer_cfg["disjoint_from_eval"]
    make_imagenet_split_lists(LABELS, IMAGES, out_dir, counts, seed, classes_out, skipped_csv, skipped_summary,
                              disjoint=disjoint, on_bad_image=on_bad_image, threads=threads, class_names=names,
                              check_unlabeled=not folder_cfg["csv"], config_key="dataset.folder",
                              user_terms=in_user_terms(folder_cfg))
    if folder_cfg["augment"]:
        for offset, split in enumerate(("explainer_train", "explainer_val")):
            augmented_split(Path(out_dir) / f"{split}.txt", folder_cfg["augment"], seed + offset)
    if folder_cfg["boxes"]:
        count = box_masks(resolve(folder_cfg["boxes"]), Path(out_dir) / "test.txt", masks_dir)
        print(f"rasterised the boxes of {count} evaluated images into {masks_dir}")
