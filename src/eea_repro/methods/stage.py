"""The maps stage for the registry's methods: every baseline method's maps of one shard, for every variant."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pandas as pd
import torch

from eea_repro.data.loading import shard_tensors
from eea_repro.metrics.engine import autocast, classes_for_variant
from eea_repro.models.network import for_inference, load_model, resolve_device
from eea_repro.models.memory import gradient_chunk
from eea_repro.workflow.io import atomic_path, save_map_shard
from eea_repro.workflow.logs import progress
from eea_repro.workflow.numerics import seed_everything


@contextlib.contextmanager
def naming_shard_images(method: str, shard_range, image_ids) -> Iterator[None]:
    """A method that crashes on a shard fails the shard's job with one line naming its images (the original
    traceback stays chained above it in the log), so the culprits can be found among a few hundred images."""
    try:
        yield
    except Exception as error:
        reason = " ".join(str(error).split())
        raise RuntimeError(f"map method {method!r} failed on images {shard_range[0]}..{shard_range[1] - 1} of the "
                           f"evaluated split ({', '.join(image_ids)}): {type(error).__name__}: {reason}") from error


def unique_explanations(classes_per_variant: torch.Tensor, class_specific: bool) -> tuple[torch.Tensor, torch.Tensor,
                                                                                          torch.Tensor]:
    """The distinct (image, class) pairs that the variants need, and where each variant's maps are among them.

    ``classes_per_variant`` is (V, N). Returns the pairs' image rows and classes, and a (V, N) index into the pairs.
    Where the prediction equals the ground truth the two variants share one map; a class-agnostic method needs one
    map per image whatever the class.
    """
    num_variants, num_images = classes_per_variant.shape
    rows = torch.arange(num_images).expand(num_variants, num_images)
    keys = rows * (int(classes_per_variant.max()) + 1) + classes_per_variant if class_specific else rows
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(unique_keys),), num_variants * num_images, dtype=torch.long)
    first.scatter_reduce_(0, inverse.flatten(), torch.arange(num_variants * num_images), reduce="amin")
    return rows.flatten()[first], classes_per_variant.flatten()[first], inverse


def make_baseline_maps(methods, model_cfg, checkpoint, image_root, split_file, classes_file,
                       out_maps: dict[str, dict[str, str]], *, shard_range, seed, device, precision, batch_size,
                       model_key="", timing_csv=None) -> None:
    """Maps of the registry ``methods`` for one shard, every variant (``out_maps[method][variant]`` -> file), in one
    job: the model and the images load once, and a map two variants share is computed once (``unique_explanations``).
    The seconds spent per method go to ``timing_csv`` (the report's per-method cost)."""

    from eea_repro.methods import METHODS, compute_maps

    seed_everything(seed)
    device = resolve_device(device)
    model = for_inference(load_model(model_cfg, checkpoint, classes_file, device))
    images, labels, ids = shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
    variants = list(next(iter(out_maps.values())))
    # clone: the classes come out of inference mode, and gradient methods index with them under autograd
    classes = torch.stack([classes_for_variant(model, images.to(device), labels.to(device), variant).cpu().clone()
                           for variant in variants])
    # gradient methods keep every activation of a batch for the backward pass: fewer images where they would not fit
    batch_size = gradient_chunk(model, batch_size, images.shape[-1], device)
    timings = []
    for method in methods:
        started = time.perf_counter()
        rows, pair_classes, index = unique_explanations(classes, METHODS[method].class_specific)
        print(f"{method}: {len(rows)} maps serve {len(variants)} variant(s) of {len(images)} images")
        maps = []
        with naming_shard_images(method, shard_range, ids):
            for start in progress()(range(0, len(rows), batch_size), desc=method):
                chunk = slice(start, start + batch_size)
                with autocast(device, precision):
                    maps.append(compute_maps(method, model, images[rows[chunk]].to(device),
                                             pair_classes[chunk].to(device), seed=seed + shard_range[0] + start).cpu())
        maps = torch.cat(maps)
        for variant, variant_index, variant_classes in zip(variants, index, classes):
            save_map_shard(out_maps[method][variant], maps[variant_index].numpy(), ids, variant_classes.numpy(),
                           labels.numpy(), method)
        timings.append({"model": model_key, "method": method, "seconds": time.perf_counter() - started,
                        "images": len(ids) * len(variants), "computed": len(rows)})
    if timing_csv is not None:
        with atomic_path(timing_csv) as tmp:
            pd.DataFrame(timings).to_csv(tmp, index=False)
