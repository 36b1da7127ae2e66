"""§3.1 and §3.2, the sanity checks: the claims that the maps change when the model's weights (parameter
randomization) or its training labels (data randomization) are randomized, read from the maps' similarities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.claims.verdicts import (EEA, EEA_METHODS, Finding, Settings, build_finding, claim, missing_evidence,
                                       not_run, read_evidence, shown_label, side_of, values_by_image)


# --- §3.1, parameter randomization --------------------------------------------------------------------------------


def level_trend(frame: pd.DataFrame) -> pd.Series:
    """Per image: Spearman's correlation between the randomization level and the map's ρ with the original map
    (-1 = ρ falls at every added level); images whose ρ does not vary are left out (undefined). All images at once:
    Pearson's correlation of the rows' ranks with the levels' ranks."""
    from scipy.stats import rankdata

    pivot = frame.pivot_table(index="image_id", columns="level", values="spearman", aggfunc="first")
    values = pivot.to_numpy(dtype=np.float64)
    kept = np.isfinite(values).all(axis=1) & (np.ptp(values, axis=1) > 0)
    if not kept.any():
        return pd.Series(dtype=np.float64)
    ranks = rankdata(values[kept], axis=1)
    ranks -= ranks.mean(axis=1, keepdims=True)
    levels = rankdata(pivot.columns.to_numpy())
    levels -= levels.mean()
    return pd.Series((ranks @ levels) / (np.linalg.norm(ranks, axis=1) * np.linalg.norm(levels)),
                     index=pivot.index[kept])


def _levels_note(frame: pd.DataFrame, method: str) -> str:
    """ρ per level, and for EEA the randomized model's accuracy and EEA's mask range per level: what the reader
    needs to judge a flat curve (a model that still classifies may rightly keep its maps)."""
    rows = frame[frame["method"] == method].groupby("level")
    parts = [f"mean ρ by level: {', '.join(f'{v:.2f}' for v in rows['spearman'].mean())}"]
    if method == EEA:
        per_image = frame.drop_duplicates(["level", "image_id"]).groupby("level")["model_correct"].mean()
        parts.append(f"randomized model's accuracy: {', '.join(f'{100 * v:.0f} %' for v in per_image)}")
        parts.append(f"EEA's mask range: {', '.join(f'{v:.3g}' for v in rows['map_range'].mean())}")
    return "; ".join(parts)


def _sanity_methods(frame: pd.DataFrame) -> list[str]:
    methods = list(dict.fromkeys(frame["method"]))
    return sorted(methods, key=lambda m: m != EEA)  # EEA first (the paper's claim), then every other method


def _sanity_entries(evidence: dict, mode: str) -> list[dict]:
    """The sanity evidence of one mode: a run per model and layer granularity."""
    return [entry for entry in evidence.get("sanity", []) if entry["mode"] == mode]


def _sanity_missing(evidence: dict, mode: str) -> str:
    """Why a mode's claim did not run: no sanity check at all (the evidence's reason), or another mode only."""
    if evidence.get("sanity"):
        return f"config key 'sanity.modes' does not list {mode}"
    return evidence.get("reasons", {}).get("sanity", "the sanity checks did not run")


@claim("cascading_decreases", "§3.1, parameter randomization (Fig. 2)",
       "as more layers' weights are randomized, the correlation with the explanation map of the original model "
       "significantly deteriorates", "sanity", reads=("sanity",), assumes=("explainer_refit",))
def cascading_decreases(evidence: dict, settings: Settings) -> list[Finding]:
    return _deteriorates("cascading_decreases", "cascading", evidence, settings)


@claim("bottom_up_decreases", "beyond the paper: bottom-up MPRT (Hedström et al., TMLR 2024)",
       "randomizing the layers from the input up, the correlation with the explanation map of the original model "
       "deteriorates (the field's repair of the top-down test, which leaves the lower layers intact)", "sanity",
       reads=("sanity",), assumes=("explainer_refit",))
def bottom_up_decreases(evidence: dict, settings: Settings) -> list[Finding]:
    return _deteriorates("bottom_up_decreases", "bottom_up", evidence, settings)


def _deteriorates(key: str, mode: str, evidence: dict, settings: Settings) -> list[Finding]:
    """A cascading run's claim, per model and method: ρ falls with the level (trend CI below
    ``cascading_trend``) and is low at the last level, the fully random network (CI below ``low_correlation``)."""
    entries = _sanity_entries(evidence, mode)
    if not entries:
        return [not_run(key, "every model", _sanity_missing(evidence, mode))]
    findings = []
    for entry in entries:
        frame = read_evidence(entry["similarity"])
        last = int(frame["level"].max())
        for method in _sanity_methods(frame):
            rows = frame[frame["method"] == method]
            trend = build_finding(key, f"{entry['label']}, {shown_label(method)}", level_trend(rows), settings,
                             "mean per-image Spearman(level, ρ)", settings.cascading_trend, "below",
                             [entry["similarity"]])
            end_value, end_low, end_high = settings.ci(values_by_image(rows[rows["level"] == last], "spearman"))
            end = side_of(end_low, end_high, settings.low_correlation, "below")
            verdict = ("reproduced" if trend.verdict == end == "reproduced" else
                       "not reproduced" if "not reproduced" in (trend.verdict, end) else "inconclusive")
            findings.append(Finding(
                key, trend.subject, verdict, trend.statistic, trend.value, trend.ci_low, trend.ci_high,
                f"{trend.rule}, and the last level's mean ρ {100 * settings.confidence:g} % CI < "
                f"{settings.low_correlation:g}", trend.evidence,
                f"last level (x = {last}, every layer randomized) mean ρ {end_value:.2f} "
                f"[{end_low:.2f}, {end_high:.2f}]; {_levels_note(frame, method)}", method in EEA_METHODS,
                method=method))
    return findings


@claim("independent_low", "§3.1, parameter randomization (Fig. 4)",
       "the correlation values are low across all layers", "sanity", reads=("sanity",), assumes=("explainer_refit",))
def independent_low(evidence: dict, settings: Settings) -> list[Finding]:
    key = "independent_low"
    entries = _sanity_entries(evidence, "independent")
    if not entries:
        return [not_run(key, "every model", _sanity_missing(evidence, "independent"))]
    findings = []
    for entry in entries:
        frame = read_evidence(entry["similarity"])
        for method in _sanity_methods(frame):
            rows = frame[(frame["method"] == method) & (frame["level"] > 1)]
            by_level = {level: settings.ci(values_by_image(group, "spearman"))
                        for level, group in rows.groupby("level")}
            worst = max(by_level, key=lambda level: by_level[level][0])
            value, low, high = by_level[worst]
            verdicts = {side_of(l, h, settings.low_correlation, "below") for _, l, h in by_level.values()}
            verdict = ("not reproduced" if "not reproduced" in verdicts else
                       "reproduced" if verdicts == {"reproduced"} else "inconclusive")
            findings.append(Finding(
                key, f"{entry['label']}, {shown_label(method)}", verdict,
                f"highest mean ρ over the levels (x = {worst})",
                value, low, high, f"every level's {100 * settings.confidence:g} % CI < {settings.low_correlation:g}",
                (str(entry["similarity"]),), _levels_note(frame, method), method in EEA_METHODS, method=method))
    return findings


# --- §3.2, data randomization -----------------------------------------------------------------------------------


@claim("data_randomization_differs", "§3.2, data randomization (Fig. 6)",
       "train a ViT model to achieve a training set accuracy greater than 95% … the correlation values are very low",
       "data_randomization", reads=("data_randomization",))
def data_randomization_differs(evidence: dict, settings: Settings) -> list[Finding]:
    key = "data_randomization_differs"
    if reason := missing_evidence(evidence, "data_randomization"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["data_randomization"]:
        record = json.loads(Path(entry["record"]).read_text())
        frame = read_evidence(entry["similarity"])
        trained = record["train_accuracy"] >= entry["target_train_accuracy"]
        chance = record["test_accuracy"] <= record["chance_accuracy"] + settings.chance_margin
        precondition = (f"permuted-label model: train accuracy {100 * record['train_accuracy']:.1f} % (target "
                        f"{100 * entry['target_train_accuracy']:.0f} %), test accuracy "
                        f"{100 * record['test_accuracy']:.1f} % (chance {100 * record['chance_accuracy']:.1f} % "
                        f"+ {100 * settings.chance_margin:g} points)")
        for method in _sanity_methods(frame):
            finding = build_finding(key, f"{entry['label']}, {shown_label(method)}",
                               values_by_image(frame[frame["method"] == method], "spearman"), settings,
                               "median per-image ρ (original vs permuted-label model's map)",
                               settings.low_correlation, "below", [entry["similarity"], entry["record"]],
                               note=precondition, estimator=np.median, method=method,
                               precondition_met=trained and chance)
            findings.append(finding)
    return findings
