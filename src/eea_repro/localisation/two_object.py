"""Paper Fig. 10: class-specific maps on images that hold two objects of different classes.

Every method explains each two-object image once for each of its two classes. Per explained model and method the maps
go to one file, ``results/two_object/{model}/{method}.npz``, with the arrays

* ``maps``    (N, 2, h, w) float32 at the method's native resolution, as in the map shards (bring them to the image
  size with :func:`eea_repro.metrics.engine.normalize_maps`); ``maps[i, k]`` explains ``classes[i, k]``;
* ``classes`` (N, 2) int64: the two classes of image i, in the order of its label line, so column k is the object
  whose mask is ``<id>_a.png`` (k = 0) or ``<id>_b.png`` (k = 1);
* ``ids``     (N,) str: the image ids (file stems).

EEA explains a class by per-image fine-tuning towards it (the loss is the explained model's cross-entropy on that
class), with the evaluated EEA's settings; pEEA and the other class-agnostic methods give one map whatever the class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eea_repro.data.loading import LabeledImageFolder, make_loader
from eea_repro.workflow.io import atomic_path
from eea_repro.models.network import resolve_device

TWO_OBJECT_ARRAYS = ("maps", "classes", "ids")


def save_two_object_maps(path: str | Path, maps, classes, ids) -> None:
    """Write the two-class maps of one method (format in the module docstring), atomically."""
    maps = np.asarray(maps, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    ids = np.asarray(ids, dtype=str)
    if maps.ndim != 4 or maps.shape[1] != 2:
        raise ValueError(f"maps must be (N, 2, h, w), got shape {maps.shape}")
    if classes.shape != (len(maps), 2) or ids.shape != (len(maps),):
        raise ValueError(f"classes {classes.shape} and ids {ids.shape} must be (N, 2) and (N,) for N = {len(maps)}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, maps=maps, classes=classes, ids=ids)


def load_two_object_maps(path: str | Path) -> dict:
    """``{"maps": (N, 2, h, w) float32, "classes": (N, 2) int64, "ids": list of N str}``."""
    with np.load(path, allow_pickle=False) as stored:
        return {"maps": stored["maps"].astype(np.float32), "classes": stored["classes"].astype(np.int64),
                "ids": stored["ids"].tolist()}


def is_class_specific(method: str) -> bool:
    """EEA fine-tunes towards the class; pEEA's explainer never sees one; baselines say so in the registry."""
    from eea_repro.methods import METHODS
    from eea_repro.workflow.names import EEA_METHODS

    if method in EEA_METHODS:
        return method == "eea"
    return METHODS[method].class_specific


def explain_both_classes(method: str, model, images01: torch.Tensor, classes: torch.Tensor, *, explainer=None,
                         explainer_cfg: dict | None = None, finetune_cfg: dict | None = None, seed: int = 0,
                         batch_size: int = 64, scoring: dict | None = None, ties: torch.Tensor | None = None,
                         precision: str = "fp32") -> torch.Tensor:
    """Maps (N, 2, h, w) of ``method`` for images (N, 3, H, W) and their two classes (N, 2), on the images' device.

    Both classes of all images go through the method as one batch of 2N (image, class) pairs; EEA's POS scores break
    ties by the images' ``ties`` (N, H*W), the same for both classes of an image.
    """
    from eea_repro.explainer.finetuning import finetune_maps
    from eea_repro.explainer.network import explain
    from eea_repro.methods import compute_maps
    from eea_repro.explainer.stage import finetune_settings
    from eea_repro.metrics.engine import autocast

    count = len(images01)
    if classes.shape != (count, 2):
        raise ValueError(f"classes must be (N, 2) = ({count}, 2), got {tuple(classes.shape)}")
    if method == "peea":
        maps = explain(explainer, images01)
        return torch.stack([maps, maps], dim=1)
    pair_images = torch.cat([images01, images01])
    pair_classes = torch.cat([classes[:, 0], classes[:, 1]]).to(images01.device)
    if method == "eea":
        maps, info = finetune_maps(
            explainer, model, pair_images, pair_classes,
            **finetune_settings(explainer_cfg, finetune_cfg, scoring),
            ties=None if ties is None else torch.cat([ties, ties]),
            keep="last",  # the map learnt for each class; the best-POS map is often the shared pretrained one
        )
        print(f"eea: best step per (image, class): {info['best_step'].tolist()}")
    else:
        chunks = []
        for start in range(0, len(pair_images), batch_size):
            with autocast(images01.device, precision):
                chunks.append(compute_maps(method, model, pair_images[start : start + batch_size],
                                           pair_classes[start : start + batch_size], seed=seed + start))
        maps = torch.cat(chunks)
    return maps.float().unflatten(0, (2, count)).transpose(0, 1)


def load_two_object_images(image_root, split_file, size: int, num_classes: int, mask_dir=None):
    """(images (N, 3, size, size), classes (N, 2), ids, masks (N, 2, size, size) or None) of the two-object split."""
    dataset = LabeledImageFolder(image_root, split_file, size=size, num_classes=num_classes, mask_dir=mask_dir)
    images, classes, ids, masks = [], [], [], []
    for batch in make_loader(dataset, batch_size=64):
        if not isinstance(batch["labels"], torch.Tensor) or batch["labels"].shape[1] != 2:
            raise ValueError(f"{split_file}: every line of the two-object split must carry exactly two labels")
        images.append(batch["image"])
        classes.append(batch["labels"])
        ids.extend(batch["image_id"])
        if mask_dir is not None:
            masks.append(batch["masks"])
    return torch.cat(images), torch.cat(classes), ids, (torch.cat(masks) if mask_dir is not None else None)


def make_two_object_maps(methods: list[str], model_cfg, explainer_cfg, finetune_cfg, scoring, checkpoint,
                         explainer_file, image_root, split_file, classes_file, out_files: list[str], *, seed, device,
                         precision, batch_size) -> None:
    """Every method's two-class maps of one explained model (one job: the model and images load once)."""
    from eea_repro.explainer.network import load_explainer
    from eea_repro.models.network import ModelSpec, for_inference
    from eea_repro.workflow.names import EEA_METHODS
    from eea_repro.metrics.pixel_order import scoring_ties
    from eea_repro.models.network import load_model
    from eea_repro.workflow.io import read_classes
    from eea_repro.workflow.numerics import seed_everything

    seed_everything(seed)
    device = resolve_device(device)
    num_classes = len(read_classes(classes_file))
    model = load_model(model_cfg, checkpoint, classes_file, device)
    explainer = None
    if explainer_file is not None:
        explainer = load_explainer(ModelSpec.from_config(model_cfg), explainer_file, num_classes).to(device)
    images, classes, ids, _ = load_two_object_images(image_root, split_file, model_cfg["input_size"], num_classes)
    images, classes = images.to(device), classes.to(device)
    ties = scoring_ties(scoring, ids, images.shape[-1], device)
    inference = for_inference(model)
    for method, out_file in zip(methods, out_files, strict=True):
        maps = explain_both_classes(method, model if method in EEA_METHODS else inference, images, classes, explainer=explainer, explainer_cfg=explainer_cfg,
                                    finetune_cfg=finetune_cfg, seed=seed, batch_size=batch_size,
                                    scoring=scoring, ties=ties, precision=precision)
        save_two_object_maps(out_file, maps.cpu().numpy(), classes.cpu().numpy(), ids)
        print(f"{method}: {differing_images(maps.cpu().numpy())} of {len(ids)} images get two different maps")


def differing_images(maps: np.ndarray) -> int:
    """How many images' two class maps differ (after per-map min-max normalisation, the way they are shown)."""
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(maps.shape[0], 2, -1)
    low, high = flat.min(axis=2, keepdims=True), flat.max(axis=2, keepdims=True)
    scaled = (flat - low) / np.where(high > low, high - low, 1.0)
    return int((np.abs(scaled[:, 0] - scaled[:, 1]).max(axis=1) > 1e-3).sum())
