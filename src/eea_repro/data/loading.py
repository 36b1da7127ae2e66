"""One image loader for the synthetic splits and ImageNet validation.

Both are a flat image folder plus an ImageNet-val-style label file ("<file name> <label> [<label> ...]", 0-based),
optionally with a mask folder. Images become float tensors in [0, 1] after a square (no crop) bilinear resize, the
input convention shared by every model, map method and metric.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from eea_repro.data.files import first_line, open_rgb, read_label_file
from eea_repro.workflow.io import read_classes
from eea_repro.workflow.logs import progress

MASK_SUFFIXES_TWO_OBJECTS = ("_a", "_b")


def _open_mask(path: Path, size: int) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with Image.open(path) as mask:
            mask = mask.convert("L").resize((size, size), Image.Resampling.NEAREST)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read mask {path}: {first_line(error)}") from error
    return torch.from_numpy(np.asarray(mask) > 127).float()


class LabeledImageFolder(Dataset):
    """Images of a flat folder listed by a label file; the first label of a line is the class of that image.

    Items are dicts: ``image`` (3, size, size) float in [0, 1], ``label`` int, ``labels`` list of ints, ``image_id``
    (file stem) and, with ``mask_dir``, ``mask`` (1, size, size) for the first label's object and ``masks``
    (n_labels, size, size) with one mask per label. A mask is ``<mask_dir>/<id>.png`` for single-label lines and
    ``<mask_dir>/<id>_a.png``, ``<id>_b.png`` for two-label lines.
    """

    def __init__(
        self,
        image_dir: str | Path,
        label_file: str | Path,
        size: int,
        num_classes: int | None = None,
        mask_dir: str | Path | None = None,
        indices: Sequence[int] | None = None,
    ):
        self.image_dir = Path(image_dir)
        self.label_file = Path(label_file)
        self.size = int(size)
        self.mask_dir = Path(mask_dir) if mask_dir is not None else None
        entries = read_label_file(self.label_file)
        if indices is not None:
            entries = [entries[int(index)] for index in indices]
        if num_classes is not None:
            for file_name, labels in entries:
                if max(labels) >= num_classes:
                    raise ValueError(
                        f"{self.label_file}: label {max(labels)} of {file_name} is outside [0, {num_classes})"
                    )
        for file_name, _ in entries:
            if not (self.image_dir / file_name).is_file():
                raise FileNotFoundError(f"image file not found: {self.image_dir / file_name}")
        self.file_names = [file_name for file_name, _ in entries]
        self.all_labels = [labels for _, labels in entries]
        self.image_ids = [Path(file_name).stem for file_name in self.file_names]
        self.labels = [labels[0] for labels in self.all_labels]

    def __len__(self) -> int:
        return len(self.file_names)

    def mask_paths(self, index: int) -> list[Path]:
        image_id, n_labels = self.image_ids[index], len(self.all_labels[index])
        suffixes = ("",) if n_labels == 1 else MASK_SUFFIXES_TWO_OBJECTS[:n_labels]
        if len(suffixes) != n_labels:
            raise ValueError(f"{self.label_file}: no mask naming scheme for {n_labels} labels ({image_id})")
        return [self.mask_dir / f"{image_id}{suffix}.png" for suffix in suffixes]

    def __getitem__(self, index: int) -> dict:
        image = open_rgb(self.image_dir / self.file_names[index])
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        item = {
            "image": torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous(),
            "label": self.labels[index],
            "labels": list(self.all_labels[index]),
            "image_id": self.image_ids[index],
        }
        if self.mask_dir is not None:
            masks = torch.stack([_open_mask(path, self.size) for path in self.mask_paths(index)])
            item["masks"] = masks
            item["mask"] = masks[:1]
        return item


def collate(batch: list[dict]) -> dict:
    """Stack tensors; ``label`` becomes a LongTensor (B,), ``labels`` a LongTensor (B, K) when every item has K labels
    (a list of lists otherwise), ``image_id`` a list of strings."""
    out = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif key == "label":
            out[key] = torch.tensor(values, dtype=torch.long)
        elif key == "labels" and len({len(labels) for labels in values}) == 1:
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
    )


def subset_by_count(dataset_len: int, count: int, seed: int, exclude: Iterable[int] = ()) -> list[int]:
    """``count`` sorted indices of ``range(dataset_len)`` not in ``exclude``, sampled deterministically from ``seed``.

    The indices are the first eligible ones of one seeded permutation, so a larger ``count`` gives a superset and
    excluding indices never reshuffles the others.
    """
    excluded = {int(index) for index in exclude}
    order = np.random.default_rng(seed).permutation(dataset_len)
    eligible = [int(index) for index in order if int(index) not in excluded]
    if count > len(eligible):
        raise ValueError(
            f"asked for {count} indices but only {len(eligible)} of {dataset_len} remain after excluding {len(excluded)}"
        )
    return sorted(eligible[:count])


def open_split(image_root, split_file, model_cfg: dict, classes_file, rows=None, mask_dir=None) -> LabeledImageFolder:
    """The images of a split (or of its ``rows``, in that order), resized to the model's input size."""
    return LabeledImageFolder(image_root, split_file, size=model_cfg["input_size"],
                              num_classes=len(read_classes(classes_file)), mask_dir=mask_dir, indices=rows)


def pick_images(image_root, split_file, model_cfg: dict, classes_file, rows, mask_dir=None):
    """The dataset items of a figure's ``rows`` and their images stacked (N, 3, size, size)."""
    dataset = open_split(image_root, split_file, model_cfg, classes_file, rows, mask_dir)
    items = [dataset[i] for i in range(len(dataset))]
    return items, torch.stack([item["image"] for item in items])


def load_tensors(dataset: LabeledImageFolder, batch_size: int = 64, desc: str = "loading images"):
    """All images of a (small) split as one tensor; used where a job needs its whole shard in memory anyway."""
    images, labels, ids = [], [], []
    for batch in progress()(make_loader(dataset, batch_size), desc=desc):
        images.append(batch["image"])
        labels.append(torch.as_tensor(batch["label"]))
        ids.extend(batch["image_id"])
    return torch.cat(images), torch.cat(labels), ids


def shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range):
    return load_tensors(open_split(image_root, split_file, model_cfg, classes_file, range(*shard_range)),
                        desc="shard images")
