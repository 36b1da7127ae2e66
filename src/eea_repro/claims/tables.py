"""§2, Table 5 discussion: the claims about Grad-CAM's maps and the all-ones mask, read from the tables' per-image
scores and the maps."""

from __future__ import annotations

import pandas as pd

from eea_repro.claims.verdicts import (EEA, EEA_METHODS, Finding, Settings, build_finding, claim, missing_evidence,
                                       not_run, paired_values, read_evidence, shown_label, values_by_image)

GRADCAM = "gradcam"
ALL_ONES = "all_ones"


def _controls() -> set[str]:
    from eea_repro.methods import control_methods

    return control_methods()


def _gradcam_best(key: str, metric: str, evidence: dict, settings: Settings) -> list[Finding]:
    if reason := missing_evidence(evidence, "tables"):
        return [not_run(key, "CNN models", reason)]
    findings = []
    for entry in evidence["tables"]:
        if entry["family"] != "cnn":
            continue
        subject = f"{entry['label']}, '{entry['variant']}'"
        frame = read_evidence(entry["per_image"])
        methods = [m for m in dict.fromkeys(frame["method"]) if m not in _controls()]
        if GRADCAM not in methods or len(methods) < 2:
            findings.append(not_run(key, subject, "config key 'methods.cnn' lists no Grad-CAM and another method"))
            continue
        means = frame[frame["method"].isin(methods)].groupby("method")[metric].mean().drop(GRADCAM)
        lower_is_better = metric == "ADP"
        rival = means.idxmin() if lower_is_better else means.idxmax()
        first, second = (rival, GRADCAM) if lower_is_better else (GRADCAM, rival)  # > 0: Grad-CAM is better
        findings.append(build_finding(
            key, subject, paired_values(frame, first, second, metric), settings,
            f"per-image {metric} of {shown_label(first)} − {shown_label(second)}, the best other method "
            f"(> 0: Grad-CAM better)", 0.0, "above", [entry["per_image"]],
            note=f"mean {metric}: Grad-CAM {frame.loc[frame['method'] == GRADCAM, metric].mean():.2f}, "
                 f"{shown_label(rival)} {means[rival]:.2f} ({'lower' if lower_is_better else 'higher'} is better)",
            rests_on_eea=any(m in EEA_METHODS for m in methods), method=GRADCAM))  # EEA decides the best rival
    return findings or [not_run(key, "CNN models", "no CNN model is configured (config key 'models')")]


@claim("gradcam_best_adp", "§2, EEA for CNNs (Table 5)",
       "Grad-CAM's maps … may explain their superior performance in the ADP and PIC tests", "cnn", reads=("tables",),
       assumes=("size_penalty", "finetune_steps"))
def gradcam_best_adp(evidence: dict, settings: Settings) -> list[Finding]:
    return _gradcam_best("gradcam_best_adp", "ADP", evidence, settings)


@claim("gradcam_best_pic", "§2, EEA for CNNs (Table 5)",
       "Grad-CAM's maps … may explain their superior performance in the ADP and PIC tests", "cnn", reads=("tables",),
       assumes=("size_penalty", "finetune_steps"))
def gradcam_best_pic(evidence: dict, settings: Settings) -> list[Finding]:
    return _gradcam_best("gradcam_best_pic", "PIC", evidence, settings)


def map_mass(map_files, size: int) -> pd.Series:
    """Per image id: the mean of its min-max normalised map at the input size (1 = the whole image lit)."""
    import torch

    from eea_repro.workflow.io import load_map_shard
    from eea_repro.metrics.engine import normalize_maps

    masses = []
    for path in map_files:
        shard = load_map_shard(path)
        normalized, _valid, _constant = normalize_maps(torch.from_numpy(shard["maps"]), size)
        masses.append(pd.Series(normalized.flatten(1).mean(dim=1).double().numpy(), index=shard["image_ids"]))
    return pd.concat(masses)


@claim("gradcam_larger_maps", "§2, EEA for CNNs (Fig. 1)",
       "Grad-CAM's (GC) explanation maps are generally larger and cover a greater area", "cnn", reads=("maps",),
       assumes=("size_penalty", "finetune_steps"))
def gradcam_larger_maps(evidence: dict, settings: Settings) -> list[Finding]:
    key = "gradcam_larger_maps"
    if reason := missing_evidence(evidence, "maps"):
        return [not_run(key, "CNN models", reason)]
    findings = []
    for entry in evidence["maps"]:
        subject = f"{entry['label']}, '{entry['variant']}'"
        if GRADCAM not in entry["files"] or EEA not in entry["files"]:
            findings.append(not_run(key, subject, "config key 'methods.cnn' lists no Grad-CAM and EEA"))
            continue
        gradcam, eea = (map_mass(entry["files"][m], entry["size"]) for m in (GRADCAM, EEA))
        paired = (gradcam - eea.reindex(gradcam.index)).dropna()
        findings.append(build_finding(
            key, subject, paired, settings,
            "mean normalised map mass (mean of the min-max normalised map at the input size) of Grad-CAM − EEA",
            0.0, "above", [*entry["files"][GRADCAM], *entry["files"][EEA]],
            note=f"mass Grad-CAM {gradcam.mean():.3f}, EEA {eea.mean():.3f}", rests_on_eea=True, method=GRADCAM))
    return findings or [not_run(key, "CNN models", "no CNN model is configured (config key 'models')")]


@claim("all_ones_adp_zero", "§2, EEA for CNNs",
       "a simple all-ones mask (that effectively leaves the image unmasked) can yield an optimal ADP value of 0",
       "results", reads=("tables",))
def all_ones_adp_zero(evidence: dict, settings: Settings) -> list[Finding]:
    key = "all_ones_adp_zero"
    if reason := missing_evidence(evidence, "tables"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["tables"]:
        subject = f"{entry['label']}, '{entry['variant']}'"
        frame = read_evidence(entry["per_image"])
        if ALL_ONES not in set(frame["method"]):
            findings.append(not_run(key, subject, f"config key 'methods.{entry['family']}' lists no all_ones"))
            continue
        means = frame.groupby("method")["ADP"].mean()
        values = values_by_image(frame[frame["method"] == ALL_ONES], "ADP")
        value, low, high = settings.ci(values)
        optimal = value <= settings.adp_zero and value <= means.min()
        findings.append(Finding(key, subject, "reproduced" if optimal else "not reproduced", "mean ADP of All-ones",
                                value, low, high, f"≤ {settings.adp_zero:g} and the lowest mean ADP of the table",
                                (str(entry["per_image"]),),
                                f"lowest other mean ADP {means.drop(ALL_ONES).min():.2f}", method=ALL_ONES))
    return findings
