"""The qualitative grids (paper Figs. 1 and 11-16): the images shown and their maps, one column per method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eea_repro.data.files import read_label_file
from eea_repro.data.loading import pick_images, subset_by_count
from eea_repro.methods import method_label
from eea_repro.metrics.engine import normalize_maps
from eea_repro.workflow.io import gather_maps, load_map_shard, read_classes


def figure_rows(split_file, figures_cfg: dict, seed: int) -> list[int]:
    """Row indices (in the evaluated split) of the images shown: the configured ids, else a seeded sample."""
    names = [Path(name).stem for name, _ in read_label_file(split_file)]
    if figures_cfg["image_ids"]:
        missing = [i for i in figures_cfg["image_ids"] if i not in names]
        if missing:
            raise ValueError(f"config key 'figures.image_ids': {missing[0]!r} is not an evaluated image ({split_file})")
        return [names.index(i) for i in figures_cfg["image_ids"]]
    return subset_by_count(len(names), min(figures_cfg["n_images"], len(names)), seed)


def figure_maps(map_files, image_ids, size: int, method: str | None = None) -> np.ndarray:
    """The maps of ``image_ids`` (in that order) from their shards, upsampled to ``size`` and min-max normalised."""
    gathered = gather_maps(map_files, image_ids, method)
    return normalize_maps(torch.from_numpy(gathered["maps"]), size)[0].numpy()


def make_qualitative_grid(map_files, model_cfg, figures_cfg, image_root, split_file, classes_file, out_paths, *,
                          title, seed, mask_dir=None) -> None:
    """Paper Figs. 1 and 11-16: images x methods; with ``mask_dir`` the image column outlines the object."""
    from eea_repro.figures.grids import qualitative_grid

    picked, images = pick_images(image_root, split_file, model_cfg, classes_file,
                                 figure_rows(split_file, figures_cfg, seed), mask_dir)
    row_of = {item["image_id"]: row for row, item in enumerate(picked)}
    columns: dict[str, np.ndarray] = {}
    explained = np.asarray([item["label"] for item in picked])
    for path in map_files:  # maps of one method may be spread over several shards
        shard = load_map_shard(path)
        hits = [(i, row_of[image_id]) for i, image_id in enumerate(shard["image_ids"]) if image_id in row_of]
        if not hits:
            continue
        source, rows = map(list, zip(*hits))
        maps, _valid, _constant = normalize_maps(torch.from_numpy(shard["maps"][source]), images.shape[-1])
        column = columns.setdefault(method_label(shard["method"]), np.zeros(images.shape[:1] + images.shape[2:], np.float32))
        column[rows] = maps.numpy()
        explained[rows] = shard["classes"][source]
    class_names = read_classes(classes_file)
    row_titles = [
        class_names[item["label"]]
        + ("" if explained[row] == item["label"] else f"\n(explains {class_names[explained[row]]})")
        for row, item in enumerate(picked)
    ]
    masks = np.stack([item["mask"][0].numpy() for item in picked]) if mask_dir is not None else None
    qualitative_grid(images.numpy(), columns, row_titles, out_paths, title=title, masks=masks)
