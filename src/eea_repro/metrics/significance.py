"""The generated sentence under each results table: the best method per metric, and whether EEA's difference to the
best baseline is significant (two-sided paired Wilcoxon signed-rank test on the per-image values)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from eea_repro.metrics.names import HIGHER_IS_BETTER, METRICS

EEA = "eea"
NOT_BASELINES = ("eea", "peea")  # EEA and its own pretrained explainer


def paired_wilcoxon(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided p-value of the signed-rank test on paired values (pairs with a NaN dropped); 1 when all are equal."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    keep = np.isfinite(first) & np.isfinite(second)
    differences = first[keep] - second[keep]
    if differences.size == 0:
        return math.nan
    if not np.any(differences != 0):
        return 1.0
    return float(wilcoxon(differences, alternative="two-sided").pvalue)


def compare_to_best_baseline(per_image: pd.DataFrame, exclude: set[str]) -> list[dict]:
    """Per metric: the best method's mean, the best baseline and EEA's mean, and the paired test of EEA against it.

    ``per_image`` has one row per (method, image_id) and a column per metric; methods in ``exclude`` (the controls)
    are never best. Images are paired by id; images with an invalid map in either method are dropped.
    """
    candidates = per_image[~per_image["method"].isin(exclude)]
    rows = []
    for metric in (m for m in METRICS if m in per_image.columns):
        means = candidates.groupby("method", sort=False)[metric].mean().dropna()
        if means.empty:
            continue
        higher = HIGHER_IS_BETTER[metric]
        best = means.idxmax() if higher else means.idxmin()
        row = {"metric": metric, "higher_is_better": higher, "best": best, "best_mean": float(means[best])}
        baselines = means.drop([m for m in NOT_BASELINES if m in means.index])
        if EEA in means.index and not baselines.empty:
            baseline = baselines.idxmax() if higher else baselines.idxmin()
            values = per_image.pivot_table(index="image_id", columns="method", values=metric, aggfunc="first",
                                           dropna=False)
            pairs = values[[EEA, baseline]].dropna()
            row.update({
                "eea_mean": float(means[EEA]),
                "baseline": baseline,
                "baseline_mean": float(means[baseline]),
                "eea_better": bool(means[EEA] > means[baseline]) if higher else bool(means[EEA] < means[baseline]),
                "n_pairs": len(pairs),
                "p_value": paired_wilcoxon(pairs[EEA].to_numpy(), pairs[baseline].to_numpy()),
            })
        rows.append(row)
    return rows


def table_sentence(comparisons: list[dict], label: Callable[[str], str], alpha: float = 0.05) -> str:
    """'Best per metric: ...; EEA vs the best baseline: ...' from :func:`compare_to_best_baseline`'s rows."""
    if not comparisons:
        return "No metric has a finite mean."
    best = ", ".join(f"{r['metric']} {label(r['best'])} ({r['best_mean']:.2f})" for r in comparisons)
    text = f"Best per metric (controls left out): {best}."
    tested = [r for r in comparisons if "p_value" in r]
    if not tested:
        return text
    verdicts = []
    for r in tested:
        if not np.isfinite(r["p_value"]):
            verdicts.append(f"{r['metric']}: no paired images")
            continue
        direction = "better" if r["eea_better"] else "worse"
        significance = "significant" if r["p_value"] < alpha else "not significant"
        verdicts.append(f"{r['metric']}: {r['eea_mean']:.2f} vs {label(r['baseline'])} {r['baseline_mean']:.2f}, "
                        f"{direction}, {significance} (p = {_format_p(r['p_value'])})")
    n_pairs = max(r.get("n_pairs", 0) for r in tested)
    return (f"{text} EEA against the best baseline per metric (paired two-sided Wilcoxon signed-rank test, "
            f"{n_pairs} images, α = {alpha}, no correction for the {len(tested)} tests): {'; '.join(verdicts)}.")


def _format_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
