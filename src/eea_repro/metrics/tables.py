"""Result tables: bootstrap confidence intervals of per-image metrics, written as CSV, LaTeX and HTML."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.workflow.io import atomic_path
from eea_repro.metrics.names import HIGHER_IS_BETTER, METRICS

CI_STYLES = ("pm", "interval")
_BOOTSTRAP_ELEMENTS_PER_BLOCK = 4_000_000  # bounds the memory of the resampling index matrix
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0, statistic=np.mean
) -> tuple[float, float, float]:
    """``statistic`` (the mean, or e.g. ``np.median``) and its percentile-bootstrap confidence interval; NaNs (invalid
    maps) are left out.

    Resampling is vectorised in blocks of bootstrap replicates so 50k images x 1000 replicates stays small in memory.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(statistic(values))
    if n_boot < 1 or values.size == 1:
        return estimate, estimate, estimate
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_ELEMENTS_PER_BLOCK // values.size)
    replicates = np.concatenate(
        [
            statistic(values[rng.integers(0, values.size, size=(min(block, n_boot - start), values.size))], axis=1)
            for start in range(0, n_boot, block)
        ]
    )
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return estimate, float(low), float(high)


def summarize(per_image: pd.DataFrame, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per method (in order of first appearance): image counts and mean / CI of every metric present.

    Invalid maps are counted in ``n_invalid`` and excluded from the means (their metrics are NaN).
    """
    metrics = [name for name in METRICS if name in per_image.columns]
    rows = []
    for method, group in per_image.groupby("method", sort=False):
        row = {"method": method, "n_images": len(group), "n_invalid": int((~group["valid"].astype(bool)).sum())}
        if "constant" in group.columns:
            row["n_constant"] = int(group["constant"].astype(bool).sum())
        for name in metrics:
            mean, low, high = bootstrap_ci(group[name].to_numpy(dtype=np.float64), n_boot, level, seed)
            row.update({f"{name}_mean": mean, f"{name}_ci_low": low, f"{name}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(
    summary: pd.DataFrame,
    csv_path: str | Path,
    tex_path: str | Path,
    html_path: str | Path,
    caption: str,
    method_labels: dict[str, str],
    *,
    ci_style: str = "pm",
    decimals: int = 2,
) -> None:
    """Write the summary as CSV (every number), a booktabs LaTeX table and an HTML ``<table>`` fragment.

    Cells read "mean ± CI half-width" (``ci_style="pm"``) or "mean [low, high]" (``"interval"``); the best mean per
    metric (exact ties included) is bold in LaTeX and has class ``best`` in HTML.
    """
    if ci_style not in CI_STYLES:
        raise ValueError(f"ci_style {ci_style!r} is not one of {CI_STYLES}")
    metrics = [name for name in METRICS if f"{name}_mean" in summary.columns]
    labels = [str(method_labels.get(method, method)) for method in summary["method"]]
    best = {name: _best_rows(summary[f"{name}_mean"].to_numpy(dtype=np.float64), name) for name in metrics}

    with atomic_path(csv_path) as tmp:
        summary.assign(label=labels).to_csv(tmp, index=False)
    with atomic_path(tex_path) as tmp:
        tmp.write_text(_latex(summary, labels, metrics, best, caption, ci_style, decimals), encoding="utf-8")
    with atomic_path(html_path) as tmp:
        tmp.write_text(_html(summary, labels, metrics, best, caption, ci_style, decimals), encoding="utf-8")


def _best_rows(means: np.ndarray, metric: str) -> set[int]:
    finite = np.isfinite(means)
    if not finite.any():
        return set()
    target = means[finite].max() if HIGHER_IS_BETTER[metric] else means[finite].min()
    return {int(index) for index in np.flatnonzero(finite & (means == target))}


def _cell_text(row: pd.Series, metric: str, ci_style: str, decimals: int, plus_minus: str) -> str:
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if not np.isfinite(mean):
        return "n/a"
    if ci_style == "pm":
        return f"{mean:.{decimals}f} {plus_minus} {(high - low) / 2:.{decimals}f}"
    return f"{mean:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _show_invalid(summary: pd.DataFrame) -> bool:
    return "n_invalid" in summary.columns and bool((summary["n_invalid"] > 0).any())


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


def _latex(summary, labels, metrics, best, caption, ci_style, decimals) -> str:
    show_invalid = _show_invalid(summary)
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    header = ["Method", *(f"{name} {arrows[HIGHER_IS_BETTER[name]]}" for name in metrics)]
    if show_invalid:
        header.append("invalid maps")
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for index, (label, (_, row)) in enumerate(zip(labels, summary.iterrows())):
        cells = [latex_escape(label)]
        for name in metrics:
            text = _cell_text(row, name, ci_style, decimals, r"$\pm$")
            cells.append(rf"\textbf{{{text}}}" if index in best[name] else text)
        if show_invalid:
            cells.append(str(int(row["n_invalid"])))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _html(summary, labels, metrics, best, caption, ci_style, decimals) -> str:
    show_invalid = _show_invalid(summary)
    arrows = {True: "↑", False: "↓"}
    header = ['<th class="method" scope="col">Method</th>']
    header += [
        f'<th class="metric {name}" scope="col">{name} {arrows[HIGHER_IS_BETTER[name]]}</th>' for name in metrics
    ]
    if show_invalid:
        header.append('<th class="invalid" scope="col">invalid maps</th>')
    lines = [
        '<table class="metrics-table">',
        f"<caption>{html.escape(caption)}</caption>",
        "<thead><tr>" + "".join(header) + "</tr></thead>",
        "<tbody>",
    ]
    for index, (label, (_, row)) in enumerate(zip(labels, summary.iterrows())):
        cells = [f'<th class="method" scope="row">{html.escape(label)}</th>']
        for name in metrics:
            classes = f"metric {name} best" if index in best[name] else f"metric {name}"
            cells.append(f'<td class="{classes}">{html.escape(_cell_text(row, name, ci_style, decimals, "±"))}</td>')
        if show_invalid:
            cells.append(f'<td class="invalid">{int(row["n_invalid"])}</td>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>", ""]
    return "\n".join(lines)


# --- stage: one metric table from the per-image metric shards -----------------------------------------------------


def read_per_image(metric_files, variant: str, methods: list[str] | None = None, replaced_by=()) -> pd.DataFrame:
    """The per-image rows of one variant (and of ``methods``, in that order; default all, in file order) from metric
    shard files, method by method, without the variant column: the rows a table summarises. A method with rows in
    ``replaced_by`` (a seed replicate's shards of its seeded methods) takes them instead of those of ``metric_files``."""
    frame = pd.concat([pd.read_csv(path, dtype={"image_id": str}) for path in metric_files], ignore_index=True)
    if replaced_by:
        replacement = pd.concat([pd.read_csv(path, dtype={"image_id": str}) for path in replaced_by],
                                ignore_index=True)
        frame = pd.concat([frame[~frame["method"].isin(set(replacement["method"]))], replacement], ignore_index=True)
    frame = frame[frame["variant"] == variant].drop(columns="variant")
    order = list(dict.fromkeys(frame["method"])) if methods is None else methods
    missing = [method for method in order if method not in set(frame["method"])]
    if missing:
        raise ValueError(f"no '{variant}' rows of method {missing[0]!r} in {', '.join(map(str, metric_files))}")
    rank = {method: index for index, method in enumerate(order)}
    frame = frame[frame["method"].isin(rank)]
    return frame.sort_values("method", key=lambda column: column.map(rank), kind="stable").reset_index(drop=True)


def make_table(per_image_files, variant, methods, tables_cfg, seed, caption, method_labels: dict[str, str], out_csv,
               out_tex, out_html, out_per_image, replaced_by=()) -> None:
    """One metric table (CSV, LaTeX, HTML) of ``methods`` for one variant, with bootstrap CIs, and its per-image rows
    (a method's rows from ``replaced_by`` where it has some there: see :func:`read_per_image`)."""
    per_image = read_per_image(per_image_files, variant, methods, replaced_by)
    with atomic_path(out_per_image) as tmp:
        per_image.to_csv(tmp, index=False)
    summary = summarize(per_image, n_boot=tables_cfg["bootstrap"], level=tables_cfg["confidence"], seed=seed)
    write_table(summary, out_csv, out_tex, out_html, caption=caption, method_labels=method_labels)
