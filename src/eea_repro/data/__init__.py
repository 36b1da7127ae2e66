"""Datasets: the procedural synthetic split generator and the image loader shared with ImageNet."""

from .loading import LabeledImageFolder, collate, make_loader, read_label_file, subset_by_count
from .synthetic import CLASSES, MAX_CLASSES, TWO_OBJECT_SPLIT, class_names, generate_dataset, generate_split

__all__ = [
    "CLASSES",
    "MAX_CLASSES",
    "TWO_OBJECT_SPLIT",
    "LabeledImageFolder",
    "class_names",
    "collate",
    "generate_dataset",
    "generate_split",
    "make_loader",
    "read_label_file",
    "subset_by_count",
]
