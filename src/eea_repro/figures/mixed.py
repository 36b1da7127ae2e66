"""Paper Fig. 9 (EEA with mixed architectures) and the index of the paper-style figures shown in the report.

A mixed pair is (explainer model X, explained model Y): the explainer has X's architecture with its backbone
initialised from X's checkpoint (as the paper's explainers start from the explained weights) and is pretrained against
Y with the usual pretraining code; EEA maps of Y's evaluated images are then fine-tuned per image as usual. The pair's
maps sit at the explainer's native grid (X's token or feature grid) and are stored like any map shard, under the
method name :func:`mixed_method` (X == Y is the ordinary ``eea``), so the metric engine upsamples them to Y's input
size like every other map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.workflow.io import atomic_path, write_json


def mixed_method(explainer_model: str, model: str) -> str:
    """The map/method name of EEA with ``explainer_model``'s architecture explaining ``model``."""
    return "eea" if explainer_model == model else f"eea_by_{explainer_model}"


def short_label(model_label: str) -> str:
    """'ViT (embedded)' -> 'ViT': the name without its parenthetical, for column headers."""
    return model_label.split(" (")[0]


def pair_label(explainer_label: str, model_label: str) -> str:
    return f"{short_label(explainer_label)} → {short_label(model_label)}"


def make_mixed_table(pairs: list[dict], variant: str, tables_cfg: dict, seed: int, caption: str, out_csv, out_tex,
                     out_html, out_per_image) -> None:
    """One row per pair (``{"label", "method", "per_image": [csv, ...]}``): the EEA metrics of ``variant`` with
    bootstrap CIs."""
    from eea_repro.metrics.tables import read_per_image
    from eea_repro.metrics.tables import summarize, write_table

    frames = []
    for pair in pairs:
        frame = read_per_image(pair["per_image"], variant, [pair["method"]])
        frame.insert(0, "pair", pair["label"])
        frame["method"] = pair["label"]
        frames.append(frame)
    per_image = pd.concat(frames, ignore_index=True)
    with atomic_path(out_per_image) as tmp:
        per_image.to_csv(tmp, index=False)
    summary = summarize(per_image, n_boot=tables_cfg["bootstrap"], level=tables_cfg["confidence"], seed=seed)
    write_table(summary, out_csv, out_tex, out_html, caption=caption,
                method_labels={pair["label"]: pair["label"] for pair in pairs})


def make_mixed_grid(pairs: list[dict], model_cfg: dict, figures_cfg: dict, image_root, split_file, classes_file,
                    out_paths, *, title: str, seed: int, mask_dir=None) -> None:
    """Images (rows) x explainer/explained pairs (columns, ``{"label", "maps": [shard, ...]}``), EEA maps overlaid.

    ``model_cfg`` sets the display size (use the largest input size among the pairs' explained models).
    """
    from eea_repro.figures.grids import qualitative_grid
    from eea_repro.data.loading import pick_images
    from eea_repro.figures.qualitative import figure_maps, figure_rows
    from eea_repro.workflow.io import read_classes

    class_names = read_classes(classes_file)
    picked, images = pick_images(image_root, split_file, model_cfg, classes_file,
                                 figure_rows(split_file, figures_cfg, seed), mask_dir)
    ids = [item["image_id"] for item in picked]
    columns = {pair["label"]: figure_maps(pair["maps"], ids, model_cfg["input_size"]) for pair in pairs}
    masks = np.stack([item["mask"][0].numpy() for item in picked]) if mask_dir is not None else None
    row_titles = [class_names[item["label"]] for item in picked]
    qualitative_grid(images.numpy(), columns, row_titles, out_paths, title=title, masks=masks)


def write_paper_figures_summary(out_json, *, single_class: list[dict], mixed: dict | None,
                                multi_class: list[dict]) -> None:
    """The report's index of paper-style figures: a caption and a PNG path per figure, plus the mixed-pair table.

    ``mixed`` carries ``table_html`` as a path; its content goes into the JSON so the report needs no other file.
    ``multi_class`` entries may carry ``eea_maps`` (a two-object npz): the caption then says on how many images
    EEA's two class maps differ.
    """
    from eea_repro.localisation.two_object import differing_images, load_two_object_maps

    multi = []
    for entry in multi_class:
        entry = dict(entry)
        eea_maps = entry.pop("eea_maps", None)
        if eea_maps is not None:
            maps = load_two_object_maps(eea_maps)["maps"]
            entry["caption"] += (f" EEA's maps for the two classes differ on {differing_images(maps)} of {len(maps)} "
                                 "images (where they do not, fine-tuning kept the pretrained map for both).")
        multi.append(entry)
    payload = {"single_class": single_class, "multi_class": multi, "mixed": None}
    if mixed is not None:
        payload["mixed"] = {**mixed, "table_html": Path(mixed["table_html"]).read_text()}
    write_json(out_json, payload)
