"""The metrics stage: every map of one shard scored with ADP, PIC, POS, NEG, DEL and INS, per image."""

from __future__ import annotations

import time

import pandas as pd
import torch

from eea_repro.data.loading import shard_tensors
from eea_repro.metrics.pixel_order import TieBreak
from eea_repro.models.network import compile_model, for_inference, load_model, resolve_device
from eea_repro.workflow.io import atomic_path, load_map_shard
from eea_repro.workflow.logs import progress


def evaluate_shard(model_cfg, metrics_cfg, checkpoint, map_files: list[tuple[str, str]], image_root, split_file,
                   classes_file, out_csv, *, shard_range, seed, device, precision, model_key="",
                   timing_csv=None) -> None:
    """Per-image metrics of every map file of one shard (``map_files``: (variant, path) pairs), in one job.

    The model, the images, their clean and black forwards and their tie permutations are loaded and computed once
    for all methods; a method's map that two variants share is scored once (:func:`metrics.score_variants`). Writes
    one row per (method, variant, image) to ``out_csv`` and per method the seconds spent, the rows served and the
    rows scored to ``timing_csv`` (the report's per-method cost; not a rule output, since timings differ between
    runs).
    """

    from eea_repro.metrics.engine import PER_IMAGE_COLUMNS, per_image_frame, prepare_shard, score_variants

    device = resolve_device(device)
    model = compile_model(for_inference(load_model(model_cfg, checkpoint, classes_file, device)),
                          metrics_cfg["compile"], device)
    images, labels, ids = shard_tensors(model_cfg, image_root, split_file, classes_file, shard_range)
    batch_size = metrics_cfg["batch_size"]
    ties = TieBreak(metrics_cfg["tie_break"], seed).permutations(ids, images.shape[-1] ** 2)
    shard = prepare_shard(model, images.to(device), labels, ties=ties, batch_size=batch_size, precision=precision)
    by_method: dict[str, dict[str, dict]] = {}
    for variant, path in map_files:
        maps = load_map_shard(path)
        if ids != maps["image_ids"]:
            raise ValueError(f"{path}: image ids do not match shard {shard_range} of {split_file}; rerun its map rule")
        by_method.setdefault(maps["method"], {})[variant] = maps | {"path": path}
    frames, timings = [], []
    for method, variants in progress()(by_method.items(), desc="methods"):
        started = time.perf_counter()
        results = score_variants(model, shard, {v: torch.from_numpy(m["maps"]) for v, m in variants.items()},
                                 ltx_code=metrics_cfg["ltx_code"], batch_size=batch_size, precision=precision)
        for variant, result in results.items():
            classes = shard.classes(variant)
            mismatched = int((classes.cpu().numpy() != variants[variant]["classes"]).sum())
            if mismatched:  # 'predicted' recomputes the top-1; another device or precision may flip near-ties
                print(f"warning: {mismatched} images are scored for another class than their map explains "
                      f"({variants[variant]['path']})")
            frame = per_image_frame(ids, shard, classes, result)
            frames.append(frame.assign(method=method, variant=variant)[["method", "variant", *PER_IMAGE_COLUMNS]])
            print(f"{method} ({variant}): {int((~frame['valid']).sum())} invalid maps, "
                  f"{int(frame['constant'].sum())} constant")
        timings.append({"model": model_key, "method": method, "seconds": time.perf_counter() - started,
                        "images": len(ids) * len(results),
                        "computed": int(sum(result["scored"].sum() for result in results.values()))})
    with atomic_path(out_csv) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)
    if timing_csv is not None:
        with atomic_path(timing_csv) as tmp:
            pd.DataFrame(timings).to_csv(tmp, index=False)
