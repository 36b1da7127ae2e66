"""Figures of the parameter-randomization sanity checks: similarity curves (Figs. 2 and 4) and grids (Figs. 3 and 5),
and the report's summary of the similarity tables (torch-free: these jobs only read CSVs).

Same conventions as :mod:`eea_repro.figures.grids`: fixed sizes in inches, the shared overlay colormap, and
:func:`eea_repro.figures.grids.save_figure` (atomic, timestamp-free PNG and PDF).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from eea_repro.figures.grids import (CELL_INCHES, DPI, FONT_SIZE, GAP_INCHES, LEFT_INCHES, MARGIN_INCHES, ROW_TITLE_WRAP, overlay,
                      save_figure)
from eea_repro.workflow.io import write_json
from eea_repro.sanity.runs import parse_run, run_label

MEASURE_TITLES = {"spearman": "Spearman ρ", "ssim": "SSIM", "hog": "HOG similarity"}
PAPER_BLUE = "#1f77b4"


def _level_axis(ax, levels: Sequence[int], xlabel: str) -> None:
    ax.set_xticks(list(levels))
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.tick_params(labelsize=FONT_SIZE - 1)


def spearman_curve(summary: pd.DataFrame, out_paths: Sequence[str | Path], *, title: str, xlabel: str,
                   confidence: float) -> None:
    """One method's mean Spearman ρ per level with its confidence band (``summary`` from ``level_summary``)."""
    summary = summary.sort_values("level")
    fig = Figure(figsize=(5.0, 3.4), dpi=DPI)
    ax = fig.add_subplot()
    ax.fill_between(summary["level"], summary["low"], summary["high"], color=PAPER_BLUE, alpha=0.25, linewidth=0,
                    label=f"{confidence:.0%} CI over images")
    ax.plot(summary["level"], summary["mean"], marker="o", color=PAPER_BLUE, label="mean")
    _level_axis(ax, summary["level"], xlabel)
    ax.set_ylim(min(-0.1, float(summary["low"].min()) - 0.05), 1.05)
    ax.set_ylabel("Spearman ρ (original vs randomized)", fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.legend(fontsize=FONT_SIZE - 1, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out_paths)


def method_curves(summaries: dict[str, pd.DataFrame], labels: dict[str, str], out_paths: Sequence[str | Path], *,
                  title: str, xlabel: str, confidence: float) -> None:
    """Every method's mean curve (one panel per similarity measure), EEA drawn thicker; bands = CI over images."""
    methods = sorted(labels, key=lambda m: (m not in ("eea", "peea"), m))
    palette = dict(zip(methods, sns.color_palette("tab20", len(methods))))
    fig = Figure(figsize=(4.0 * len(summaries) + 1.8, 3.6), dpi=DPI)
    axes = fig.subplots(1, len(summaries), squeeze=False)[0]
    for ax, (measure, summary) in zip(axes, summaries.items()):
        for method in methods:
            curve = summary[summary["method"] == method].sort_values("level")
            width = 2.4 if method == "eea" else 1.1
            ax.plot(curve["level"], curve["mean"], marker="o", markersize=3, linewidth=width, color=palette[method],
                    label=labels[method])
            ax.fill_between(curve["level"], curve["low"], curve["high"], color=palette[method], alpha=0.12,
                            linewidth=0)
        _level_axis(ax, sorted(summary["level"].unique()), xlabel)
        ax.set_ylim(-1.05 if measure != "ssim" else -0.3, 1.05)
        ax.set_title(MEASURE_TITLES.get(measure, measure), fontsize=FONT_SIZE + 1)
    axes[0].set_ylabel(f"similarity to the original map (mean, {confidence:.0%} CI)", fontsize=FONT_SIZE)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=FONT_SIZE - 1, frameon=False)
    fig.suptitle(title, fontsize=FONT_SIZE + 1)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
    save_figure(fig, out_paths)


def randomization_grid(images: np.ndarray, maps_by_level: dict[int, np.ndarray], row_titles: Sequence[str],
                       out_paths: Sequence[str | Path], *, title: str) -> None:
    """Rows: per image, its maps (row 1) and their overlays (row 2); columns: the image, then each level.

    ``maps_by_level`` maps the level x to (N, H, W) maps normalised to [0, 1] at the image size; x = 1 is the
    original model.
    """
    images = np.asarray(images)
    n_images, levels = len(images), sorted(maps_by_level)
    n_rows, n_cols = 2 * n_images, 1 + len(levels)
    header, title_height = 0.3, 0.35
    width = LEFT_INCHES + n_cols * CELL_INCHES + (n_cols - 1) * GAP_INCHES + MARGIN_INCHES
    height = title_height + header + n_rows * CELL_INCHES + (n_rows - 1) * GAP_INCHES + MARGIN_INCHES
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.text(0.5, 1 - (title_height / 2) / height, title, ha="center", va="center", fontsize=FONT_SIZE + 2)
    top = title_height + header
    for col, name in enumerate(["image"] + [f"x = {level}" + (" (original)" if level == 1 else "")
                                            for level in levels]):
        left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
        fig.text((left + CELL_INCHES / 2) / width, 1 - (top - 0.05) / height, name, ha="center", va="bottom",
                 fontsize=FONT_SIZE)
    for image_index in range(n_images):
        image = np.clip(images[image_index].transpose(1, 2, 0).astype(np.float64), 0.0, 1.0)
        for part in range(2):
            row = 2 * image_index + part
            row_top = top + row * (CELL_INCHES + GAP_INCHES)
            bottom = 1 - (row_top + CELL_INCHES) / height
            name = "\n".join(textwrap.wrap(str(row_titles[image_index]), ROW_TITLE_WRAP, max_lines=3,
                                            placeholder="…"))
            label = f"{name}\n(map)" if part == 0 else "(overlay)"
            fig.text((LEFT_INCHES - 0.08) / width, 1 - (row_top + CELL_INCHES / 2) / height, label, ha="right",
                     va="center", fontsize=FONT_SIZE)
            for col in range(n_cols):
                if col == 0 and part == 1:
                    continue
                left = LEFT_INCHES + col * (CELL_INCHES + GAP_INCHES)
                ax = fig.add_axes((left / width, bottom, CELL_INCHES / width, CELL_INCHES / height))
                if col == 0:
                    ax.imshow(image, interpolation="nearest")
                else:
                    level_map = maps_by_level[levels[col - 1]][image_index]
                    if part == 0:
                        ax.imshow(level_map, cmap="jet", vmin=0.0, vmax=1.0, interpolation="nearest")
                    else:
                        ax.imshow(overlay(image, level_map), interpolation="nearest")
                ax.set_axis_off()
    save_figure(fig, out_paths)


# --- stage: curves and the report's summary from the similarity tables -------------------------------------------


def level_summary(frame: pd.DataFrame, confidence: float = 0.95, measure: str = "spearman") -> pd.DataFrame:
    """Mean of ``measure`` per method and level with a t-interval over images (NaN rows of invalid maps dropped)."""
    rows = []
    for (method, level), group in frame.groupby(["method", "level"], sort=True):
        values = group[measure].dropna().to_numpy(dtype=float)
        mean = float(values.mean()) if len(values) else float("nan")
        half = 0.0
        if len(values) > 1 and values.std(ddof=1) > 0:
            half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
        rows.append({"method": method, "level": int(level), "mean": mean, "low": mean - half, "high": mean + half,
                     "n": len(values)})
    return pd.DataFrame(rows)


def _axis_label(run: str) -> str:
    return {"cascading": "x = k: the last k − 1 layers randomized",
            "bottom_up": "x = k: the first k − 1 layers from the input randomized",
            "smooth": "x = k: the first k − 1 layers from the input randomized (maps averaged over noisy copies)",
            "independent": "x = i: only layer i − 1 from the top randomized"}[parse_run(run)[0]]


def make_eea_curve(similarity_csv, model_label: str, confidence: float, out_paths) -> None:
    """Fig. 2 (cascading) / Fig. 4 (independent): EEA's mean Spearman ρ per level with its CI over images."""
    frame = pd.read_csv(similarity_csv)
    run = str(frame["mode"].iloc[0])
    summary = level_summary(frame[frame["method"] == "eea"], confidence)
    spearman_curve(summary, out_paths, title=f"{model_label}: {run_label(run)}, EEA", xlabel=_axis_label(run),
                   confidence=confidence)


def make_methods_curves(similarity_csv, model_label: str, confidence: float, method_labels: dict[str, str],
                        out_paths) -> None:
    """Every method's Spearman, SSIM and HOG curves in one figure (beyond the paper)."""
    frame = pd.read_csv(similarity_csv)
    run = str(frame["mode"].iloc[0])
    summaries = {measure: level_summary(frame, confidence, measure) for measure in ("spearman", "ssim", "hog")}
    labels = {name: method_labels[name] for name in frame["method"].unique()}
    method_curves(summaries, labels, out_paths, title=f"{model_label}: {run_label(run)}, every method",
                  xlabel=_axis_label(run), confidence=confidence)


def make_emprt_boxplot(similarity_csv, model_label: str, method_labels: dict[str, str], out_paths) -> None:
    """Efficient MPRT: one box of per-image eMPRT per method (EEA first); above 0, the map got more complex on the
    fully randomized network, as a map that follows the model should (Hedström et al. 2024)."""
    from eea_repro.sanity.data_randomization_figures import per_image_boxplot

    frame = pd.read_csv(similarity_csv)
    rows = frame[frame["level"] == frame["level"].max()]
    methods = sorted(dict.fromkeys(rows["method"]), key=lambda m: (m not in ("eea", "peea"), m != "eea"))
    data = {method_labels[m]: rows.loc[rows["method"] == m, "emprt"].dropna().to_numpy(dtype=float) for m in methods}
    per_image_boxplot(data, out_paths, title=f"{model_label}: {run_label(str(frame['mode'].iloc[0]))}",
                      ylabel="eMPRT: relative rise of the map's entropy", ylim=None)


def write_sanity_summary(similarity_files: dict[str, str], figures: dict[str, dict], model_labels: dict[str, str],
                         method_labels: dict[str, str], layer_counts: dict[str, int], sanity_cfg: dict,
                         confidence: float, n_classes: int, out_json) -> None:
    """Report input: per model x run (a mode on one layer granularity), the figure paths, the per-level mean Spearman ρ with its CI per method, EEA's
    mask range and the randomized model's accuracy on the sanity images (chance: 1 / ``n_classes``)."""
    entries = []
    for key, path in similarity_files.items():
        frame = pd.read_csv(path)
        model, run = key.split("/")
        summary = level_summary(frame, confidence)
        order = sorted(summary["method"].unique(), key=lambda m: (m not in ("eea", "peea"), m != "eea", m))
        curves = [
            {"method": method, "label": method_labels[method],
             "levels": [{key: (round(value, 4) if isinstance(value, float) else value)
                         for key, value in row.items() if key != "method"}
                        for row in summary[summary["method"] == method].sort_values("level").to_dict("records")]}
            for method in order
        ]
        # EEA's maps are sigmoid masks in [0, 1], so their range is comparable across levels (baselines' scales
        # are arbitrary): it shows whether a re-fitted explainer still separates regions at all.
        eea = frame[frame["method"] == "eea"]
        eea_range = [{"level": int(level), "mean": round(float(values.mean()), 4)}
                     for level, values in eea.groupby("level")["map_range"]]
        per_image = frame.drop_duplicates(["level", "image_id"])
        accuracy = [{"level": int(level), "accuracy": round(float(values.mean()), 4)}
                    for level, values in per_image.groupby("level")["model_correct"]]
        if "emprt" in frame:  # efficient MPRT: per method the mean per-image eMPRT with its interval
            emprt = level_summary(frame[frame["level"] == frame["level"].max()], confidence, "emprt")
            extra = {"emprt": [{"method": row["method"], "label": method_labels[row["method"]],
                                **{key: round(float(row[key]), 4) for key in ("mean", "low", "high")}, "n": int(row["n"])}
                               for row in emprt.set_index("method").loc[order].reset_index().to_dict("records")]}
        else:
            extra = {}
        entries.append({**extra, "model": model, "label": model_labels[model], "mode": parse_run(run)[0], "run": run,
                        "title": run_label(run), "figures": dict(figures[key]), "layers": layer_counts[key], "eea_range": eea_range, "model_accuracy": accuracy,
                        "n_images": int(frame["image_id"].nunique()), "curves": curves})
    write_json(out_json, {"settings": sanity_cfg, "confidence": confidence, "chance_accuracy": 1 / n_classes,
                          "entries": entries})
