"""The split lists: label files that point the loader at the images of every split, drawn once, with the inputs
checked before any model job reads them (embedded data, ImageNet, and a plain folder through the ImageNet path).

Kept free of torch, so the job that writes them, which every later job waits for, starts in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.workflow.io import atomic_path, write_json
from eea_repro.data.checks import BadImage, first_usable, scan_label_file, unlabeled_images
from eea_repro.data.files import read_label_file

SKIPPED_SHOWN = 20  # skipped inputs listed in the report; the CSV has them all


def write_label_lines(path, rows) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{name} {' '.join(map(str, labels))}\n" for name, labels in rows))


def make_embedded_split_lists(embedded_root, out_dir, explainer: dict, seed: int) -> None:
    """Point every split at the embedded images; explainer subsets are drawn from train/val, never from test."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    rows = {}
    for split in ("train", "val", "test", "two_object"):
        rows[split] = [
            (f"{split}/images/{name}", labels) for name, labels in read_label_file(Path(embedded_root) / split / "labels.txt")
        ]
        write_label_lines(out_dir / f"{split}.txt", rows[split])
    for split, source, count in (
        ("explainer_train", "train", explainer["train_count"]),
        ("explainer_val", "val", explainer["val_count"]),
    ):
        if count > len(rows[source]):
            raise ValueError(f"config key 'explainer.{split.split('_')[1]}_count': {count} > {len(rows[source])} {source} images")
        chosen = np.sort(rng.choice(len(rows[source]), size=count, replace=False))
        write_label_lines(out_dir / f"{split}.txt", [rows[source][i] for i in chosen])


def make_imagenet_split_lists(label_file, image_dir, out_dir, counts: dict, seed: int, classes_out, skipped_csv,
                              skipped_summary, *, disjoint: bool = True, on_bad_image: str = "error",
                              threads: int = 1, class_names: list[str] | None = None,
                              check_unlabeled: bool = True, config_key: str = "dataset.imagenet",
                              user_terms: Callable[[BadImage], str] | None = None) -> None:
    """Draw the evaluated images and the explainer's train/val images as seeded subsets of ImageNet-val.

    ``disjoint`` keeps explainer images out of the evaluated set; the released code trained the explainer on
    evaluated images (``disjoint=False`` reproduces that). The report says which one ran.

    The inputs are checked here, before any model job: every label line, every image file in ``image_dir``, and a full
    decode of each image drawn. ``on_bad_image: error`` stops at the first bad one with one line naming file and line;
    ``skip`` draws past it and lists it in ``skipped_csv`` (file, line, reason), counted in ``skipped_summary``.
    A plain image folder (:mod:`.data.folder`) comes here as a label file too, with its own ``class_names``; a CSV of
    its images lists what belongs to the dataset, so other files under its root are not checked
    (``check_unlabeled=False``), and ``user_terms`` names a bad image as the user knows it (their file and CSV line)
    instead of by the workflow's label file.
    """
    skip = on_bad_image == "skip"

    def refuse(bad: BadImage) -> str:
        named = user_terms(bad) if user_terms else bad.describe(image_dir, label_file)
        return f"{named}; fix it, or set dataset.on_bad_image: skip to leave it out"

    usable, bad = scan_label_file(label_file, counts["n_classes"], image_dir)
    if check_unlabeled:
        bad += unlabeled_images(image_dir, label_file)
    if bad and not skip:
        raise ValueError(refuse(bad[0]))
    wanted = {"test": counts["eval_count"], "explainer_train": counts["explainer_train_count"],
              "explainer_val": counts["explainer_val_count"]}
    needed = sum(wanted.values()) if disjoint else max(wanted["test"], wanted["explainer_train"] + wanted["explainer_val"])
    asked = f"{'eval_count + explainer_train_count + explainer_val_count' if disjoint else 'the larger subset'}"

    def record_skipped() -> None:
        skipped = [{"file": b.name, "line": b.line or None, "reason": b.reason} for b in bad]
        with atomic_path(skipped_csv) as tmp:
            pd.DataFrame(skipped, columns=["file", "line", "reason"]).astype({"line": "Int64"}).to_csv(tmp, index=False)
        write_json(skipped_summary, {"on_bad_image": on_bad_image, "count": len(bad), "list": str(skipped_csv),
                                     "first": skipped[:SKIPPED_SHOWN]})

    if needed > len(usable):
        record_skipped()
        raise ValueError(f"{label_file}: {len(usable)} usable images, but {config_key} asks for {needed} ({asked})"
                         + (f"; {len(bad)} skipped, listed in {skipped_csv}" if bad else ""))
    order = np.random.default_rng(seed).permutation(len(usable))
    chosen, unreadable_images = first_usable(image_dir, [usable[i] for i in order], needed, skip=skip,
                                             describe=refuse, threads=threads)
    bad += unreadable_images
    if len(chosen) < needed:
        record_skipped()
        raise ValueError(f"{label_file}: {len(chosen)} readable images, but {config_key} asks for {needed} ({asked}); "
                         f"{len(bad)} skipped, listed in {skipped_csv}")
    starts = {"test": 0, "explainer_train": wanted["test"] if disjoint else 0}
    starts["explainer_val"] = starts["explainer_train"] + wanted["explainer_train"]
    for split, count in wanted.items():
        rows = sorted(chosen[starts[split] : starts[split] + count], key=lambda entry: entry.line)
        write_label_lines(Path(out_dir) / f"{split}.txt", [(entry.name, entry.labels) for entry in rows])
    names = class_names or imagenet_class_names(counts["n_classes"])
    with atomic_path(classes_out) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in names))
    record_skipped()
    if bad:
        print(f"skipped {len(bad)} bad images or label lines (dataset.on_bad_image: skip), listed in {skipped_csv}")


def imagenet_class_names(n_classes: int) -> list[str]:
    if n_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i).split(",")[0] for i in range(n_classes)]
    return [f"class {i}" for i in range(n_classes)]
