"""Localisation on ground-truth object masks (beyond the paper): does a map point at the object, and how well does it
rank the object's pixels?

Conventions (the metric engine's): each map is upsampled bilinearly to the model's input size S and min-max
normalised (``metrics.normalize_maps``); masks are resized to S x S with nearest-neighbour sampling, as the image is
square-resized.

* **Pointing game**: 1 when the map's maximum lies inside the object. Upsampled maps often have a small plateau of
  tied maxima; an image then scores the *fraction of its maximal pixels inside the object*, which is the expected hit
  under uniform random tie-breaking. So a constant map (all ones) scores the object's area fraction, i.e. chance,
  instead of whatever a fixed scan order happens to hit. No tolerance radius (the original pointing game allowed 15 px).
* **Average precision (AP)**: area under the precision-recall curve of the map's pixel ranking against the mask, in
  scikit-learn's step-wise convention: AP = sum_n (R_n - R_{n-1}) P_n over the distinct map values taken as thresholds
  (tied pixels enter together). Its chance level is the object's area fraction, not 0: a map equal to the inverted mask
  scores AP = area fraction exactly (both thresholds put all of the object last), and a random map scores about it.
* Images whose mask is empty, and invalid maps (NaN / inf), score NaN and are left out of the means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from eea_repro.workflow.io import atomic_path, load_map_shard
from eea_repro.metrics.engine import normalize_maps


def pointing_game(maps01: Tensor, masks: Tensor) -> Tensor:
    """(B,) fraction of each map's maximal pixels that lie inside its mask (1 = hit); NaN for empty masks / NaN maps."""
    maps01, masks = _check_shapes(maps01, masks)
    flat, inside = maps01.flatten(1), masks.flatten(1)
    is_max = flat == flat.amax(dim=1, keepdim=True)
    hits = (is_max & inside).sum(dim=1).float() / is_max.sum(dim=1).clamp_min(1).float()
    undefined = ~inside.any(dim=1) | torch.isnan(flat).any(dim=1)
    return hits.masked_fill(undefined, float("nan"))


def average_precision(maps01: Tensor, masks: Tensor) -> Tensor:
    """(B,) step-wise average precision of each map's pixel scores against its mask (scikit-learn's convention).

    Batched: sort each row by decreasing score; a pixel's precision is the one at the end of its group of tied scores,
    so AP = (1 / P) * sum over object pixels of the precision at the end of their tie group.
    """
    maps01, masks = _check_shapes(maps01, masks)
    scores, inside = maps01.flatten(1), masks.flatten(1)
    batch, n_pixels = scores.shape
    order = torch.argsort(scores, dim=1, descending=True)
    sorted_scores = torch.gather(scores, 1, order)
    positive = torch.gather(inside, 1, order).float()
    true_positives = positive.cumsum(dim=1)
    rank = torch.arange(1, n_pixels + 1, device=scores.device, dtype=torch.float32)
    group_end = torch.ones_like(positive, dtype=torch.bool)
    group_end[:, :-1] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    group = group_end.long().cumsum(dim=1) - group_end.long()  # index of the tie group of each sorted position
    # Precision at each group's end, scattered to the group's index; other positions write to a spare column.
    target = torch.where(group_end, group, torch.full_like(group, n_pixels))
    end_precision = torch.zeros(batch, n_pixels + 1, device=scores.device, dtype=torch.float32)
    end_precision.scatter_(1, target, true_positives / rank)
    precision = torch.gather(end_precision, 1, group)
    n_positive = positive.sum(dim=1)
    ap = (positive * precision).sum(dim=1) / n_positive.clamp_min(1.0)
    undefined = (n_positive == 0) | torch.isnan(scores).any(dim=1)
    return ap.masked_fill(undefined, float("nan"))


def _check_shapes(maps01: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    if maps01.dim() != 3 or maps01.shape != masks.shape:
        raise ValueError(f"maps and masks must both be (B, H, W) of one shape, got {tuple(maps01.shape)} and "
                         f"{tuple(masks.shape)}")
    return maps01.float(), masks.to(device=maps01.device, dtype=torch.bool)


def load_masks(paths: Sequence[Path], size: int) -> Tensor:
    """(B, size, size) bool masks, each resized with nearest-neighbour sampling (the image's square resize)."""
    from eea_repro.data.loading import _open_mask

    if not paths:
        return torch.zeros((0, size, size), dtype=torch.bool)
    return torch.stack([_open_mask(Path(path), size) for path in paths]).bool()


def score_maps(maps: np.ndarray | Tensor, masks: Tensor) -> dict[str, Tensor]:
    """Pointing game, AP and the object's area fraction of native-resolution maps against (B, S, S) masks."""
    size = masks.shape[-1]
    maps01, _valid, _constant = normalize_maps(torch.as_tensor(maps).to(masks.device), size)
    return {
        "pointing": pointing_game(maps01, masks),
        "ap": average_precision(maps01, masks),
        "area": masks.flatten(1).float().mean(dim=1),
    }


# --- stage functions (called by scripts/localisation_*.py) -------------------------------------------------------


def localisation_scores(map_files: Mapping[str, Sequence[str | Path]], mask_dir: str | Path, size: int,
                        out_csvs: Mapping[str, str | Path], *, device: str = "cpu") -> None:
    """Per-image pointing game and AP of every map shard of one model, one CSV per variant.

    ``map_files`` and ``out_csvs`` are keyed by variant: one job scores all of a model's variants, so it starts,
    imports and reads each shard's masks once. Images without a mask file (a user's ImageNet masks may cover a subset)
    are skipped and counted in the log.
    """
    from eea_repro.models.network import resolve_device

    device, mask_dir = resolve_device(device), Path(mask_dir)
    mask_cache: dict[tuple[str, ...], Tensor] = {}  # every method's and variant's shards cover the same images
    for variant, files in map_files.items():
        frames = []
        for path in files:
            shard = load_map_shard(path)
            have = [i for i, image_id in enumerate(shard["image_ids"]) if (mask_dir / f"{image_id}.png").is_file()]
            if len(have) < len(shard["image_ids"]):
                print(f"{path}: {len(shard['image_ids']) - len(have)} of {len(shard['image_ids'])} images have no mask")
            ids = [shard["image_ids"][i] for i in have]
            key = tuple(ids)
            if key not in mask_cache:
                mask_cache[key] = load_masks([mask_dir / f"{image_id}.png" for image_id in ids], size).to(device)
            scores = score_maps(shard["maps"][have], mask_cache[key])
            frame = pd.DataFrame({name: values.cpu().numpy() for name, values in scores.items()})
            frame.insert(0, "image_id", ids)
            frame.insert(0, "method", shard["method"])
            frames.append(frame)
        per_image = pd.concat(frames, ignore_index=True)
        if per_image.empty:
            raise ValueError(f"no evaluated image has a mask in {mask_dir} (expected <image id>.png files)")
        with atomic_path(out_csvs[variant]) as tmp:
            per_image.to_csv(tmp, index=False)


def two_object_scores(map_files: Sequence[str | Path], mask_dir: str | Path, label_file: str | Path, size: int,
                      out_csv: str | Path) -> None:
    """Class-specific pointing game on the two-object images: does the map for class A point inside object A?

    Each file holds ``maps`` (N, 2, h, w), ``classes`` (N, 2) and ``ids`` (N): the map for each of the image's two
    classes. Object k of an image is the one whose label (``<id>_a.png``, ``<id>_b.png`` in label order) is the class
    its map explains; ``other_pointing`` is how often that map points inside the *other* object instead.
    """
    from eea_repro.data.files import read_label_file
    from eea_repro.data.loading import MASK_SUFFIXES_TWO_OBJECTS
    from eea_repro.localisation.two_object import load_two_object_maps

    mask_dir = Path(mask_dir)
    labels = {Path(name).stem: values for name, values in read_label_file(label_file)}
    cached: dict[Path, Tensor] = {}  # every method scores the same objects: read each mask once

    def masks_of(paths: list[Path]) -> Tensor:
        new = [path for path in dict.fromkeys(paths) if path not in cached]
        cached.update(zip(new, load_masks(new, size)))
        return torch.stack([cached[path] for path in paths])

    frames = []
    for path in map_files:
        stored = load_two_object_maps(path)
        maps, classes, ids = stored["maps"], stored["classes"], stored["ids"]
        method = Path(path).stem
        rows, own, other = [], [], []
        for index, image_id in enumerate(ids):
            objects = labels[image_id]
            for slot, explained in enumerate(classes[index]):
                if int(explained) not in objects:
                    raise ValueError(f"{path}: {image_id} has no object of class {int(explained)} ({objects})")
                target = objects.index(int(explained))
                rows.append((image_id, int(explained), maps[index, slot]))
                own.append(mask_dir / f"{image_id}{MASK_SUFFIXES_TWO_OBJECTS[target]}.png")
                other.append(mask_dir / f"{image_id}{MASK_SUFFIXES_TWO_OBJECTS[1 - target]}.png")
        if not rows:
            continue
        maps01, _valid, _constant = normalize_maps(torch.from_numpy(np.stack([r[2] for r in rows])), size)
        frames.append(pd.DataFrame({
            "method": method,
            "image_id": [r[0] for r in rows],
            "class": [r[1] for r in rows],
            "class_pointing": pointing_game(maps01, masks_of(own)).numpy(),
            "other_pointing": pointing_game(maps01, masks_of(other)).numpy(),
        }))
    per_image = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["method", "image_id", "class", "class_pointing", "other_pointing"])
    with atomic_path(out_csv) as tmp:
        per_image.to_csv(tmp, index=False)
