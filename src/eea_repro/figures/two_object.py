"""Paper Fig. 10's grid: each two-object image once per class, that class's object outlined, and its maps."""

from __future__ import annotations

from pathlib import Path

import torch

from eea_repro.data.loading import subset_by_count
from eea_repro.figures.grids import qualitative_grid
from eea_repro.localisation.two_object import is_class_specific, load_two_object_images, load_two_object_maps
from eea_repro.methods import method_label
from eea_repro.metrics.engine import normalize_maps
from eea_repro.workflow.io import read_classes


def make_two_object_figure(map_files: list[str], model_cfg, figures_cfg, image_root, split_file, classes_file,
                           mask_dir, out_paths, *, title, seed) -> None:
    """Rows = (image, class) pairs with that class's object outlined; columns = the class-specific methods, then the
    class-agnostic ones (marked) for contrast. Shows ``figures.n_images`` images (a seeded sample)."""
    class_names = read_classes(classes_file)
    size = model_cfg["input_size"]
    images, classes, ids, masks = load_two_object_images(image_root, split_file, size, len(class_names), mask_dir)
    shown = subset_by_count(len(ids), min(figures_cfg["n_images"], len(ids)), seed)
    stored = {}
    for path in map_files:
        method = Path(path).stem
        stored[method] = load_two_object_maps(path)
        if stored[method]["ids"] != ids:
            raise ValueError(f"{path}: image ids differ from {split_file}; rerun its rule")
    order = sorted(stored, key=lambda method: not is_class_specific(method))  # stable: config order within groups
    columns = {}
    for method in order:
        maps = torch.from_numpy(stored[method]["maps"][shown])  # (n, 2, h, w) -> rows (image 0 class a, class b, ...)
        normalized, _valid, _constant = normalize_maps(maps.flatten(0, 1), size)
        header = method_label(method) + ("" if is_class_specific(method) else " (agnostic)")
        columns[header] = normalized.numpy()
    row_images = images[shown].repeat_interleave(2, dim=0).numpy()
    row_masks = masks[shown].flatten(0, 1).numpy()
    row_titles = [class_names[int(classes[i, k])] for i in shown for k in range(2)]
    qualitative_grid(row_images, columns, row_titles, out_paths, title=title, masks=row_masks)
