"""§3.1 and §3.2, the sanity checks: the claims that the maps change when the model's weights (parameter
randomization) or its training labels (data randomization) are randomized, read from the maps' similarities."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.claims.verdicts import (EEA, EEA_METHODS, Finding, Settings, build_finding, claim, missing_evidence,
                                       not_run, read_evidence, shown_label, side_of, values_by_image)
from eea_repro.sanity.runs import run_label


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
    return _mode_findings("cascading_decreases", "cascading", evidence, settings)


@claim("bottom_up_decreases", "beyond the paper: bottom-up MPRT (Hedström et al., TMLR 2024)",
       "randomizing the layers from the input up, the correlation with the explanation map of the original model "
       "deteriorates (the field's repair of the top-down test, which leaves the lower layers intact)", "sanity",
       reads=("sanity",), assumes=("explainer_refit",))
def bottom_up_decreases(evidence: dict, settings: Settings) -> list[Finding]:
    return _mode_findings("bottom_up_decreases", "bottom_up", evidence, settings)


@claim("smooth_mprt_decreases", "beyond the paper: Smooth MPRT (Hedström et al., TMLR 2024)",
       "with each map averaged over noisy copies of the image (its noise taken out), randomizing the layers from the "
       "input up, the correlation with the original model's map deteriorates", "sanity", reads=("sanity",),
       assumes=("explainer_refit",))
def smooth_mprt_decreases(evidence: dict, settings: Settings) -> list[Finding]:
    return _mode_findings("smooth_mprt_decreases", "smooth", evidence, settings)


def _mode_findings(key: str, mode: str, evidence: dict, settings: Settings) -> list[Finding]:
    """A sanity mode's claim: per model and layer granularity, every method under the mode's rule
    (:data:`MODE_FINDINGS`)."""
    entries = _sanity_entries(evidence, mode)
    if not entries:
        return [not_run(key, "every model", _sanity_missing(evidence, mode))]
    findings = []
    for entry in entries:
        frame = read_evidence(entry["similarity"])
        findings += [MODE_FINDINGS[mode](key, entry, frame, method, settings) for method in _sanity_methods(frame)]
    return findings


def _deterioration_finding(key: str, entry: dict, frame: pd.DataFrame, method: str, settings: Settings) -> Finding:
    """One method in a cumulative run: ρ falls with the level (trend CI below ``cascading_trend``) and is low at the
    last level, the fully random network (CI below ``low_correlation``)."""
    last = int(frame["level"].max())
    rows = frame[frame["method"] == method]
    trend = build_finding(key, f"{entry['label']}, {shown_label(method)}", level_trend(rows), settings,
                          "mean per-image Spearman(level, ρ)", settings.cascading_trend, "below", [entry["similarity"]])
    end_value, end_low, end_high = settings.ci(values_by_image(rows[rows["level"] == last], "spearman"))
    end = side_of(end_low, end_high, settings.low_correlation, "below")
    verdict = ("reproduced" if trend.verdict == end == "reproduced" else
               "not reproduced" if "not reproduced" in (trend.verdict, end) else "inconclusive")
    return Finding(
        key, trend.subject, verdict, trend.statistic, trend.value, trend.ci_low, trend.ci_high,
        f"{trend.rule}, and the last level's mean ρ {100 * settings.confidence:g} % CI < "
        f"{settings.low_correlation:g}", trend.evidence,
        f"last level (x = {last}, every layer randomized) mean ρ {end_value:.2f} "
        f"[{end_low:.2f}, {end_high:.2f}]; {_levels_note(frame, method)}", method in EEA_METHODS,
        method=method)


@claim("independent_low", "§3.1, parameter randomization (Fig. 4)",
       "the correlation values are low across all layers", "sanity", reads=("sanity",), assumes=("explainer_refit",))
def independent_low(evidence: dict, settings: Settings) -> list[Finding]:
    return _mode_findings("independent_low", "independent", evidence, settings)


def _independent_finding(key: str, entry: dict, frame: pd.DataFrame, method: str, settings: Settings) -> Finding:
    """One method in an independent run: every level's mean ρ CI below ``low_correlation``."""
    rows = frame[(frame["method"] == method) & (frame["level"] > 1)]
    by_level = {level: settings.ci(values_by_image(group, "spearman")) for level, group in rows.groupby("level")}
    worst = max(by_level, key=lambda level: by_level[level][0])
    value, low, high = by_level[worst]
    verdicts = {side_of(l, h, settings.low_correlation, "below") for _, l, h in by_level.values()}
    verdict = ("not reproduced" if "not reproduced" in verdicts else
               "reproduced" if verdicts == {"reproduced"} else "inconclusive")
    return Finding(
        key, f"{entry['label']}, {shown_label(method)}", verdict, f"highest mean ρ over the levels (x = {worst})",
        value, low, high, f"every level's {100 * settings.confidence:g} % CI < {settings.low_correlation:g}",
        (str(entry["similarity"]),), _levels_note(frame, method), method in EEA_METHODS, method=method)


@claim("efficient_mprt_rises", "beyond the paper: efficient MPRT (Hedström et al., TMLR 2024)",
       "a map that follows the model becomes more complex when every parameter is randomized: the relative rise of "
       "its entropy (eMPRT) is above 0", "sanity", reads=("sanity",), assumes=("explainer_refit",))
def efficient_mprt_rises(evidence: dict, settings: Settings) -> list[Finding]:
    return _mode_findings("efficient_mprt_rises", "efficient", evidence, settings)


def _emprt_finding(key: str, entry: dict, frame: pd.DataFrame, method: str, settings: Settings) -> Finding:
    """One method in an efficient-MPRT run: the mean per-image eMPRT's CI above 0; a CI at or below 0 (no rise,
    as two identical or two constant maps give) is not."""
    last = int(frame["level"].max())
    rows = frame[frame["method"] == method]
    entropy = rows.groupby("level")["entropy"].mean()
    finding = build_finding(key, f"{entry['label']}, {shown_label(method)}",
                            values_by_image(rows[rows["level"] == last], "emprt"), settings, "mean per-image eMPRT",
                            0.0, "above", [entry["similarity"]],
                            note=f"mean entropy of the maps: {entropy[1]:.3f} nats (original), {entropy[last]:.3f} "
                                 f"(x = {last}, every parameter randomized)",
                            rests_on_eea=method in EEA_METHODS, method=method)
    if finding.ci_high is not None and finding.ci_high <= 0:
        return replace(finding, verdict="not reproduced")
    return finding


# The mode's rule applied to one method, per sanity mode (the modes' claims and the no-information control's)
MODE_FINDINGS = {"cascading": _deterioration_finding, "bottom_up": _deterioration_finding,
                 "smooth": _deterioration_finding, "independent": _independent_finding, "efficient": _emprt_finding}
NO_INFORMATION_CONTROL = "edges"
_FAILED = {"reproduced": "not reproduced", "not reproduced": "reproduced", "inconclusive": "inconclusive"}


@claim("no_information_control_fails", "beyond the paper: the no-information control (Binder et al., CVPR 2023)",
       "a map that never reads the model (an edge detector's) fails every test of sensitivity to the model", "sanity",
       reads=("sanity",))
def no_information_control_fails(evidence: dict, settings: Settings) -> list[Finding]:
    """Per model and sanity run, the edge map under that mode's own rule: the test works when the control does not
    pass it (reproduced), and cannot tell a model-sensitive map from one that is not when it passes (not
    reproduced)."""
    key = "no_information_control_fails"
    entries = evidence.get("sanity", [])
    if not entries:
        return [not_run(key, "every model", _sanity_missing(evidence, "any mode"))]
    findings = []
    for entry in entries:
        frame = read_evidence(entry["similarity"])
        if NO_INFORMATION_CONTROL not in set(frame["method"]):
            findings.append(not_run(key, f"{entry['label']}, {run_label(entry['mode'])}", "the sanity methods do not include "
                                    f"'{NO_INFORMATION_CONTROL}' (config keys 'methods.<family>', 'sanity.methods')"))
            continue
        own = MODE_FINDINGS[entry["mode"]](key, entry, frame, NO_INFORMATION_CONTROL, settings)
        findings.append(replace(own, subject=f"{entry['label']}, {run_label(entry['mode'])}",
                                verdict=_FAILED[own.verdict], rule=f"the control does not pass: not ({own.rule})"))
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
