"""Figures and the report's summary of the data-randomization check (Figs. 6-8's box plots), from the similarity
tables of :mod:`eea_repro.sanity.data_randomization` (torch-free: these jobs only read CSVs and JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from eea_repro.figures.grids import DPI, FONT_SIZE, save_figure
from eea_repro.workflow.io import write_json

EEA = "eea"
PAPER_BLUE = "#1f77b4"


def spearman_by_method(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The box plot's data: per method (EEA first, then in file order) the per-image ρ, invalid maps dropped."""
    methods = list(dict.fromkeys(frame["method"]))
    methods.sort(key=lambda name: name != EEA)
    return {m: frame.loc[frame["method"] == m, "spearman"].dropna().to_numpy(dtype=float) for m in methods}


def spearman_summary(values: np.ndarray) -> dict:
    """Median and quartiles (the box) of one method's per-image ρ."""
    if not len(values):
        return {"n": 0, "median": None, "q1": None, "q3": None, "iqr": None}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"n": int(len(values)), "median": float(median), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1)}


def per_image_boxplot(data: dict[str, np.ndarray], out_paths: Sequence[str | Path], *, title: str, ylabel: str,
                      ylim: tuple[float, float] | None = (-1.05, 1.05)) -> None:
    """One box of per-image values per method (``data``: label -> values), points overlaid, a line at 0; ``ylim``
    None fits the values."""
    fig = Figure(figsize=(max(4.5, 0.65 * len(data) + 1.6), 3.6), dpi=DPI)
    ax = fig.add_subplot()
    labels, values = list(data), list(data.values())
    boxes = ax.boxplot(values, tick_labels=labels, widths=0.55, showfliers=False, patch_artist=True,
                       medianprops={"color": "black"})
    for box in boxes["boxes"]:
        box.set(facecolor=PAPER_BLUE, alpha=0.35)
    jitter = np.random.default_rng(0)
    for position, points in enumerate(values, start=1):
        ax.scatter(position + jitter.uniform(-0.12, 0.12, len(points)), points, s=6, color=PAPER_BLUE, alpha=0.7,
                   linewidths=0, zorder=3)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.tick_params(labelsize=FONT_SIZE - 1)
    ax.tick_params(axis="x", labelrotation=45 if len(labels) > 3 else 0)
    ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.97, bottom=0.3 if len(labels) > 3 else 0.12,
                        top=0.9)
    save_figure(fig, out_paths)


def make_spearman_boxplot(similarity_csv, model_label: str, method_labels: dict[str, str], out_paths, *,
                          eea_only: bool) -> None:
    """Fig. 6 (``eea_only``: EEA's box, as the seed) or the same box plot for every configured method."""
    data = spearman_by_method(pd.read_csv(similarity_csv))
    if eea_only:
        data = {EEA: data[EEA]}
    # Fig. 6: per-image Spearman ρ, original vs permuted-label map
    per_image_boxplot({method_labels[name]: values for name, values in data.items()}, out_paths,
                      title=f"{model_label}: data randomization" + (", EEA" if eea_only else ", every method"),
                      ylabel="Spearman ρ, original vs permuted-label")


# --- report ------------------------------------------------------------------------------------------------------


def write_data_randomization_summary(models: dict[str, dict], settings: dict, source_split: str,
                                     method_labels: dict[str, str], out_json) -> None:
    """Report input: per model its permuted-label training record, explainer epoch, ρ summary per method, figures.

    ``models`` maps a model name to ``{"label", "record", "explainer", "similarity", "figures"}`` (file paths);
    ``settings`` is the ``data_randomization`` config block, ``source_split`` the split whose labels were permuted.
    """
    entries, n_images = [], 0
    for name, files in models.items():
        record = json.loads(Path(files["record"]).read_text())
        explainer = json.loads(Path(files["explainer"]).read_text())
        frame = pd.read_csv(files["similarity"])
        n_images = max(n_images, int(frame["image_id"].nunique()))
        data = spearman_by_method(frame)
        entries.append({
            "model": name,
            "label": files["label"],
            "training": {k: record[k] for k in ("init", "train_images", "test_images", "epochs", "seconds",
                                                "train_accuracy", "train_accuracy_true_labels", "test_accuracy",
                                                "chance_accuracy", "label_agreement")},
            "explainer_best_epoch": explainer["history"]["best_epoch"],
            "spearman": [{"method": m, "label": method_labels[m], **spearman_summary(v)} for m, v in data.items()],
            "figures": files["figures"],
        })
    write_json(out_json, {"settings": settings, "source_split": source_split, "n_images": n_images, "models": entries})
