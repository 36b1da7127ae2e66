"""The appendix's testable statements, each checked against this run's own numbers.

A :class:`Claim` quotes the sentence it checks (short, with its section), reads evidence files of the run, computes a
statistic with its bootstrap confidence interval over images, and turns it into a verdict by a rule whose thresholds
come from the config (``claims:``, printed with every row). A verdict is what the run shows, never a test outcome:

* ``reproduced``: the confidence interval lies on the paper's side of the threshold;
* ``not reproduced``: it lies on the other side;
* ``inconclusive``: it straddles the threshold, or a precondition of the paper's setting did not hold here;
* ``not run``: the run's configuration does not produce the evidence (the reason names the config key).

With seed replicates (config ``replicates``), a claim whose evidence every replicate re-made is checked once per seed
(the per-seed verdicts; "seed-fragile" when they disagree) and once more with every interval pooled over seeds and
images (:mod:`.replicates`): the check runs unchanged, each interval it asks for is the pooled interval of the values
it asked with under every seed. That pooled run gives the row's verdict.

A verdict never comes from a shortcut the paper did not take: each claim declares the parts of the paper's protocol
its statement assumes (``assumes``, keys of :data:`PROTOCOL`), and a row that rests on EEA's maps in a run that departs
from one of them is ``inconclusive``, the departure named in its ``protocol`` column.

The same rules serve every method where they apply (beyond the paper), so a reader sees which methods pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from eea_repro.workflow.io import atomic_path, write_json
from eea_repro.workflow.replicates import ONE_SEED, pooled_interval, seed_fragile
from eea_repro.metrics.tables import bootstrap_ci

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
EEA = "eea"
EEA_METHODS = (EEA, "peea")
GRADCAM = "gradcam"
ALL_ONES = "all_ones"


def _refit_departure(config: dict) -> str | None:
    refit = config["sanity"]["eea_refit"]
    return None if refit == "pretrain" else (
        f"sanity.eea_refit: {refit} (the paper's EEA is an explainer trained against the model it explains; here the "
        "randomized models' maps come from the original explainer, fine-tuned per image)")


def _paper_value_departure(section: str, key: str, paper: int, why: str) -> Callable[[dict], str | None]:
    def departure(config: dict) -> str | None:
        value = config[section][key]
        return None if value == paper else f"{section}.{key}: {value} (paper: {paper}; {why})"
    return departure


# The parts of the paper's protocol a claim may assume: name -> config -> the run's departure from it, or None.
PROTOCOL: dict[str, Callable[[dict], str | None]] = {
    "explainer_refit": _refit_departure,
    "size_penalty": _paper_value_departure("explainer", "lambda_size", 50, "λ sets EEA's mask size"),
    "finetune_steps": _paper_value_departure("finetune", "steps", 25, "EEA's per-image fine-tuning"),
}


def protocol_departures(config: dict) -> dict[str, str]:
    """The run's departures from the paper's protocol, by :data:`PROTOCOL` name."""
    return {name: text for name, departure in PROTOCOL.items() if (text := departure(config))}


@dataclass(frozen=True)
class Settings:
    """The verdict rules' thresholds (config ``claims:``), the CIs' settings (config ``tables:``) and the run's
    departures from the paper's protocol."""

    low_correlation: float = 0.3
    cascading_trend: float = -0.5
    adp_zero: float = 0.0
    chance_margin: float = 0.05
    mixed_pos_margin: float = 10.0
    confidence: float = 0.95
    bootstrap: int = 1000
    seed: int = 0
    departures: dict[str, str] = field(default_factory=dict)
    # how ci() computes (ImageIntervals / PooledIntervals while claims are checked over seeds); None = over images
    intervals: Callable | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_config(cls, config: dict) -> "Settings":
        return cls(**config["claims"], confidence=config["tables"]["confidence"],
                   bootstrap=config["tables"]["bootstrap"], seed=config["seed"],
                   departures=protocol_departures(config))

    def ci(self, values, statistic=np.mean) -> tuple[float, float, float]:
        """``statistic`` of per-image ``values`` (a Series keyed by image where seeds must be paired) and its CI."""
        if self.intervals is not None:
            return self.intervals(self, values, statistic)
        return bootstrap_ci(np.asarray(values, dtype=np.float64), self.bootstrap, self.confidence, self.seed,
                            statistic=statistic)

    def recorded(self) -> dict:
        """The settings as claims.json records them."""
        return {key: value for key, value in asdict(self).items() if key != "intervals"}


class ImageIntervals:
    """Intervals over the images of one seed (the bootstrap of :meth:`Settings.ci`), keeping each call's values: the
    seed's row of the pooled intervals."""

    def __init__(self):
        self.values = []

    def __call__(self, settings: Settings, values, statistic) -> tuple[float, float, float]:
        self.values.append(values)
        return replace(settings, intervals=None).ci(values, statistic)


_NAN_AWARE = {np.mean: np.nanmean, np.median: np.nanmedian}


def seeds_by_images(per_seed_values: list) -> np.ndarray:
    """A seeds x images array of one statistic's per-image values under every seed: Series are paired by their
    image keys (an image missing under a seed is NaN there), arrays by position (they must have one length)."""
    if all(isinstance(values, pd.Series) for values in per_seed_values):
        frame = pd.concat([values.rename(k) for k, values in enumerate(per_seed_values)], axis=1)
        return frame.to_numpy(dtype=np.float64).T
    arrays = [np.asarray(values, dtype=np.float64) for values in per_seed_values]
    if len({len(values) for values in arrays}) != 1:
        raise ValueError("per-seed values of different lengths without image keys cannot be paired")
    return np.stack(arrays)


class PooledIntervals:
    """The k-th interval a check asks for, pooled over seeds and images (:func:`.replicates.pooled_interval`) from
    the k-th values each seed's check asked with; the check itself runs on the first seed's evidence."""

    def __init__(self, per_seed_values: list[list]):
        self.per_seed_values = per_seed_values
        self.pooled = []

    def __call__(self, settings: Settings, values, statistic) -> tuple[float, float, float]:
        k = len(self.pooled)
        if any(len(seed) <= k for seed in self.per_seed_values):
            raise RuntimeError("a claim's check asked for more intervals than under its seeds")
        if not np.array_equal(np.asarray(values, dtype=np.float64), np.asarray(self.per_seed_values[0][k],
                                                                               dtype=np.float64), equal_nan=True):
            raise RuntimeError("a claim's check asked for other values than under its first seed")
        table = seeds_by_images([seed[k] for seed in self.per_seed_values])
        pooled = pooled_interval(table, settings.bootstrap, settings.confidence, settings.seed,
                                 _NAN_AWARE.get(statistic, statistic))
        self.pooled.append(pooled)
        return pooled.value, pooled.low, pooled.high

    def interval_of(self, finding) -> object | None:
        """The pooled interval that gave a finding its value and CI (None: the finding computed them otherwise)."""
        return next((pooled for pooled in self.pooled
                     if (pooled.value, pooled.low, pooled.high) == (finding.value, finding.ci_low, finding.ci_high)),
                    None)


@dataclass(frozen=True)
class Finding:
    """One row of the verdict table: a claim checked on one subject (a model, variant or method)."""

    claim: str
    subject: str
    verdict: str
    statistic: str = ""
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    rule: str = ""
    evidence: tuple[str, ...] = ()
    note: str = ""
    rests_on_eea: bool = False  # the row's statistic reads EEA's or pEEA's maps (the claim's protocol applies)
    protocol: str = "as the paper"
    method: str = ""  # the registry name of the method the row is about (the verdict matrix's column)
    seeds: int = 1  # training seeds pooled into the verdict (config `replicates`, where the evidence has replicates)
    per_seed: tuple[str, ...] = ()  # the verdict under each seed alone
    seed_fragile: bool = False  # the per-seed verdicts disagree
    seed_share: float | None = None  # share of the variance between seeds (against between images)
    seed_note: str = ""
    precondition_met: bool = True  # False: a precondition of the paper's setting failed, so the row is inconclusive


@dataclass(frozen=True)
class Claim:
    key: str
    section: str
    quote: str
    figure: str  # the report section that shows the evidence
    check: Callable[[dict, Settings], list[Finding]] = field(repr=False)
    assumes: tuple[str, ...] = ()  # names in PROTOCOL
    reads: tuple[str, ...] = ()  # the evidence kinds its check reads (pooled over seeds where replicates have them)


CLAIMS: dict[str, Claim] = {}


def claim(key: str, section: str, quote: str, figure: str, reads: tuple[str, ...],
          assumes: tuple[str, ...] = ()) -> Callable:
    """Register a claim's check: ``check(evidence, settings) -> [Finding, ...]``; ``reads`` names the evidence kinds
    it reads, ``assumes`` the parts of the paper's protocol (:data:`PROTOCOL`) its statement rests on."""
    unknown = set(assumes) - set(PROTOCOL)
    if unknown:
        raise ValueError(f"claim {key!r} assumes unknown protocol parts {sorted(unknown)}")

    def add(check: Callable) -> Callable:
        CLAIMS[key] = Claim(key, section, quote, figure, check, assumes, reads)
        return check

    return add


def under_protocol(finding: Finding, assumes: tuple[str, ...], departures: dict[str, str]) -> Finding:
    """A row whose evidence rests on EEA's maps, in a run that departs from what its claim assumes, is inconclusive
    with the departures named; every other row is kept."""
    if not finding.rests_on_eea or finding.verdict == "not run":
        return finding
    departed = [departures[name] for name in assumes if name in departures]
    if not departed:
        return finding
    note = f"its numbers alone say {finding.verdict}, but the claim assumes the paper's protocol" + (
        f"; {finding.note}" if finding.note else "")
    return replace(finding, verdict="inconclusive", protocol="departs: " + "; ".join(departed), note=note)


def side_of(low: float, high: float, threshold: float, paper_side: str) -> str:
    """The verdict of a CI against a threshold; ``paper_side`` is where the paper's statement puts the value."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    below, above = high < threshold, low > threshold
    if paper_side == "below":
        return "reproduced" if below else "not reproduced" if above else "inconclusive"
    return "reproduced" if above else "not reproduced" if below else "inconclusive"


def _finding(key: str, subject: str, values, settings: Settings, statistic: str, threshold: float, paper_side: str,
             evidence, note: str = "", estimator=np.mean, rests_on_eea: bool = False, method: str = "",
             precondition_met: bool = True) -> Finding:
    value, low, high = settings.ci(values, estimator)
    relation = "<" if paper_side == "below" else ">"
    verdict = side_of(low, high, threshold, paper_side) if precondition_met else "inconclusive"
    return Finding(key, subject, verdict, statistic, value, low, high,
                   f"{100 * settings.confidence:g} % CI {relation} {threshold:g}", tuple(map(str, evidence)), note,
                   rests_on_eea, method=method, precondition_met=precondition_met)


def not_run(key: str, subject: str, reason: str) -> Finding:
    return Finding(key, subject, "not run", note=reason)


def _label(method: str) -> str:
    from eea_repro.methods import method_label

    return method_label(method)


def _controls() -> set[str]:
    from eea_repro.methods import control_methods

    return control_methods()


def _class_agnostic(method: str) -> bool:
    from eea_repro.localisation.two_object import is_class_specific

    return not is_class_specific(method)


def _paired(frame: pd.DataFrame, first: str, second: str, column: str, keys=("image_id",)) -> pd.Series:
    """Per-image ``first - second`` of one column, on the images both methods scored."""
    pivot = frame.pivot_table(index=list(keys), columns="method", values=column, aggfunc="first")
    return (pivot[first] - pivot[second]).dropna().astype(np.float64)


def _missing(evidence: dict, kind: str) -> str | None:
    """Why this run has no evidence of a kind (None when it has some)."""
    return None if evidence.get(kind) else evidence.get("reasons", {}).get(kind, f"the run has no {kind} evidence")


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str})


def _by_image(rows: pd.DataFrame, column: str) -> pd.Series:
    """One value per image (keyed by its id, so that seeds pair up), NaNs left out."""
    return rows.set_index("image_id")[column].dropna()


# --- §2, Table 5 discussion: Grad-CAM and the all-ones mask -------------------------------------------------------


def _gradcam_best(key: str, metric: str, evidence: dict, settings: Settings) -> list[Finding]:
    if reason := _missing(evidence, "tables"):
        return [not_run(key, "CNN models", reason)]
    findings = []
    for entry in evidence["tables"]:
        if entry["family"] != "cnn":
            continue
        subject = f"{entry['label']}, '{entry['variant']}'"
        frame = _read(entry["per_image"])
        methods = [m for m in dict.fromkeys(frame["method"]) if m not in _controls()]
        if GRADCAM not in methods or len(methods) < 2:
            findings.append(not_run(key, subject, "config key 'methods.cnn' lists no Grad-CAM and another method"))
            continue
        means = frame[frame["method"].isin(methods)].groupby("method")[metric].mean().drop(GRADCAM)
        lower_is_better = metric == "ADP"
        rival = means.idxmin() if lower_is_better else means.idxmax()
        first, second = (rival, GRADCAM) if lower_is_better else (GRADCAM, rival)  # > 0: Grad-CAM is better
        findings.append(_finding(
            key, subject, _paired(frame, first, second, metric), settings,
            f"per-image {metric} of {_label(first)} − {_label(second)}, the best other method "
            f"(> 0: Grad-CAM better)", 0.0, "above", [entry["per_image"]],
            note=f"mean {metric}: Grad-CAM {frame.loc[frame['method'] == GRADCAM, metric].mean():.2f}, "
                 f"{_label(rival)} {means[rival]:.2f} ({'lower' if lower_is_better else 'higher'} is better)",
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
    if reason := _missing(evidence, "maps"):
        return [not_run(key, "CNN models", reason)]
    findings = []
    for entry in evidence["maps"]:
        subject = f"{entry['label']}, '{entry['variant']}'"
        if GRADCAM not in entry["files"] or EEA not in entry["files"]:
            findings.append(not_run(key, subject, "config key 'methods.cnn' lists no Grad-CAM and EEA"))
            continue
        gradcam, eea = (map_mass(entry["files"][m], entry["size"]) for m in (GRADCAM, EEA))
        paired = (gradcam - eea.reindex(gradcam.index)).dropna()
        findings.append(_finding(
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
    if reason := _missing(evidence, "tables"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["tables"]:
        subject = f"{entry['label']}, '{entry['variant']}'"
        frame = _read(entry["per_image"])
        if ALL_ONES not in set(frame["method"]):
            findings.append(not_run(key, subject, f"config key 'methods.{entry['family']}' lists no all_ones"))
            continue
        means = frame.groupby("method")["ADP"].mean()
        values = _by_image(frame[frame["method"] == ALL_ONES], "ADP")
        value, low, high = settings.ci(values)
        optimal = value <= settings.adp_zero and value <= means.min()
        findings.append(Finding(key, subject, "reproduced" if optimal else "not reproduced", "mean ADP of All-ones",
                                value, low, high, f"≤ {settings.adp_zero:g} and the lowest mean ADP of the table",
                                (str(entry["per_image"]),),
                                f"lowest other mean ADP {means.drop(ALL_ONES).min():.2f}", method=ALL_ONES))
    return findings


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
    key = "cascading_decreases"
    entries = _sanity_entries(evidence, "cascading")
    if not entries:
        return [not_run(key, "every model", _sanity_missing(evidence, "cascading"))]
    findings = []
    for entry in entries:
        frame = _read(entry["similarity"])
        last = int(frame["level"].max())
        for method in _sanity_methods(frame):
            rows = frame[frame["method"] == method]
            trend = _finding(key, f"{entry['label']}, {_label(method)}", level_trend(rows), settings,
                             "mean per-image Spearman(level, ρ)", settings.cascading_trend, "below",
                             [entry["similarity"]])
            end_value, end_low, end_high = settings.ci(_by_image(rows[rows["level"] == last], "spearman"))
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
        frame = _read(entry["similarity"])
        for method in _sanity_methods(frame):
            rows = frame[(frame["method"] == method) & (frame["level"] > 1)]
            by_level = {level: settings.ci(_by_image(group, "spearman")) for level, group in rows.groupby("level")}
            worst = max(by_level, key=lambda level: by_level[level][0])
            value, low, high = by_level[worst]
            verdicts = {side_of(l, h, settings.low_correlation, "below") for _, l, h in by_level.values()}
            verdict = ("not reproduced" if "not reproduced" in verdicts else
                       "reproduced" if verdicts == {"reproduced"} else "inconclusive")
            findings.append(Finding(
                key, f"{entry['label']}, {_label(method)}", verdict, f"highest mean ρ over the levels (x = {worst})",
                value, low, high, f"every level's {100 * settings.confidence:g} % CI < {settings.low_correlation:g}",
                (str(entry["similarity"]),), _levels_note(frame, method), method in EEA_METHODS, method=method))
    return findings


# --- §3.2, data randomization -----------------------------------------------------------------------------------


@claim("data_randomization_differs", "§3.2, data randomization (Fig. 6)",
       "train a ViT model to achieve a training set accuracy greater than 95% … the correlation values are very low",
       "data_randomization", reads=("data_randomization",))
def data_randomization_differs(evidence: dict, settings: Settings) -> list[Finding]:
    key = "data_randomization_differs"
    if reason := _missing(evidence, "data_randomization"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["data_randomization"]:
        record = json.loads(Path(entry["record"]).read_text())
        frame = _read(entry["similarity"])
        trained = record["train_accuracy"] >= entry["target_train_accuracy"]
        chance = record["test_accuracy"] <= record["chance_accuracy"] + settings.chance_margin
        precondition = (f"permuted-label model: train accuracy {100 * record['train_accuracy']:.1f} % (target "
                        f"{100 * entry['target_train_accuracy']:.0f} %), test accuracy "
                        f"{100 * record['test_accuracy']:.1f} % (chance {100 * record['chance_accuracy']:.1f} % "
                        f"+ {100 * settings.chance_margin:g} points)")
        for method in _sanity_methods(frame):
            finding = _finding(key, f"{entry['label']}, {_label(method)}",
                               _by_image(frame[frame["method"] == method], "spearman"), settings,
                               "median per-image ρ (original vs permuted-label model's map)",
                               settings.low_correlation, "below", [entry["similarity"], entry["record"]],
                               note=precondition, estimator=np.median, method=method,
                               precondition_met=trained and chance)
            findings.append(finding)
    return findings


# --- §4 and §5: mixed architectures, two-object images ----------------------------------------------------------


@claim("mixed_architectures", "§4, EEA with mixed architectures (Fig. 9)",
       "even with mixed architectures the EEA manages to produce meaningful explanation maps", "mixed", reads=("mixed",))
def mixed_architectures(evidence: dict, settings: Settings) -> list[Finding]:
    key = "mixed_architectures"
    if reason := _missing(evidence, "mixed"):
        return [not_run(key, "cross pairs", reason)]
    mixed = evidence["mixed"]
    frame = _read(mixed["per_image"])
    own = {pair["model"]: pair["label"] for pair in mixed["pairs"] if pair["explainer"] == pair["model"]}
    findings = []
    for pair in mixed["pairs"]:
        if pair["explainer"] == pair["model"] or pair["model"] not in own:
            continue
        rows = frame[frame["pair"].isin([pair["label"], own[pair["model"]]])].assign(method=lambda f: f["pair"])
        findings.append(_finding(
            key, pair["label"], _paired(rows, pair["label"], own[pair["model"]], "POS"), settings,
            f"POS of {pair['label']} − POS of {own[pair['model']]} (the explained model's own architecture)",
            settings.mixed_pos_margin, "below", [mixed["per_image"]], method=EEA))
    return findings or [not_run(key, "cross pairs", "no cross pair of two configured models")]


@claim("two_object_class_specific", "§5, multiple-class images (Fig. 10)",
       "EEA provides the most accurate class-specific explanation maps", "multiclass", reads=("two_object",),
       assumes=("size_penalty", "finetune_steps"))
def two_object_class_specific(evidence: dict, settings: Settings) -> list[Finding]:
    key = "two_object_class_specific"
    if reason := _missing(evidence, "two_object"):
        return [not_run(key, "every model", reason)]
    findings = []
    for entry in evidence["two_object"]:
        frame = _read(entry["per_image"])
        methods = list(dict.fromkeys(frame["method"]))
        agnostic = [m for m in methods if _class_agnostic(m)]
        if not agnostic:
            findings.append(not_run(key, entry["label"], "no class-agnostic method to compare with"))
            continue
        best = frame[frame["method"].isin(agnostic)].groupby("method")["class_pointing"].mean().idxmax()
        for method in sorted((m for m in methods if m not in agnostic), key=lambda m: m != EEA):
            findings.append(_finding(
                key, f"{entry['label']}, {_label(method)}",
                _paired(frame, method, best, "class_pointing", keys=("image_id", "class")), settings,
                f"class-specific pointing game of {_label(method)} − the best class-agnostic method's "
                f"({_label(best)})", 0.0, "above", [entry["per_image"]],
                rests_on_eea=method in EEA_METHODS or best in EEA_METHODS, method=method))
    return findings


# --- the run's verdict table -----------------------------------------------------------------------------------


COLUMNS = ["claim", "section", "quote", "subject", "method", "verdict", "statistic", "value", "ci_low", "ci_high",
           "rule", "protocol", "seeds", "per_seed", "seed_fragile", "seed_share", "seed_note", "evidence", "figure",
           "note"]


def seed_evidence(evidence: dict, reads: tuple[str, ...]) -> list[dict]:
    """The run's evidence, then each seed replicate's (``evidence['replicates']``: the kinds it re-made), when every
    replicate re-made every kind a claim reads; else the run's alone."""
    replicates = evidence.get("replicates", [])
    if not replicates or not reads or not all(kind in replicate for replicate in replicates for kind in reads):
        return [evidence]
    return [evidence] + [{**evidence, **{kind: replicate[kind] for kind in reads}} for replicate in replicates]


def check_over_seeds(entry: Claim, evidence: dict, settings: Settings) -> list[Finding]:
    """One claim's findings, pooled over the seeds whose evidence it has (see the module's docstring)."""
    evidences = seed_evidence(evidence, entry.reads)
    recorders = [ImageIntervals() for _ in evidences]
    per_seed = [entry.check(seed, replace(settings, intervals=recorder))
                for seed, recorder in zip(evidences, recorders)]
    if len(evidences) == 1:
        return [replace(f, per_seed=(f.verdict,), seed_note=ONE_SEED) if f.verdict != "not run" else f
                for f in per_seed[0]]
    pooling = PooledIntervals([recorder.values for recorder in recorders])
    pooled = entry.check(evidence, replace(settings, intervals=pooling))
    if any([f.subject for f in seed] != [f.subject for f in pooled] for seed in per_seed):
        raise RuntimeError(f"claim {entry.key!r}: its seeds gave other rows than the pooled check")
    findings = []
    for index, finding in enumerate(pooled):
        if finding.verdict == "not run":
            findings.append(finding)
            continue
        verdicts = tuple(seed[index].verdict for seed in per_seed)
        failed = [k for k, seed in enumerate(per_seed) if not seed[index].precondition_met]
        if failed:  # the pooled check read the first seed's preconditions: every seed's must hold
            finding = replace(finding, verdict="inconclusive", precondition_met=False, note=(
                f"the paper's setting did not hold under seed {', '.join(map(str, failed))} of 0-{len(per_seed) - 1} "
                f"({per_seed[failed[0]][index].note}); {finding.note}"))
        interval = pooling.interval_of(finding)
        findings.append(replace(
            finding, seeds=len(verdicts), per_seed=verdicts, seed_fragile=seed_fragile(list(verdicts)),
            seed_share=None if interval is None else interval.seed_share,
            seed_note=f"{len(verdicts)} seeds" if interval is None else interval.note))
    return findings


def check_claims(evidence: dict, settings: Settings) -> pd.DataFrame:
    """Every registered claim against the evidence: one row per (claim, subject), in registration order."""
    rows = []
    for entry in CLAIMS.values():
        for finding in check_over_seeds(entry, evidence, settings):
            finding = under_protocol(finding, entry.assumes, settings.departures)
            if finding.verdict not in VERDICTS:
                raise ValueError(f"claim {entry.key!r}: verdict {finding.verdict!r} is not one of {VERDICTS}")
            row = asdict(finding)
            del row["rests_on_eea"], row["precondition_met"]
            row.update(section=entry.section, quote=entry.quote, figure=entry.figure,
                       evidence="; ".join(finding.evidence), per_seed="; ".join(finding.per_seed))
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict_html(table: pd.DataFrame) -> str:
    """The verdict table as the report shows it (the same rows and values as the CSV)."""
    import html

    def number(value) -> str:
        return "" if value is None or pd.isna(value) else f"{value:.3g}"

    lines = ['<table class="claims-table">', "<thead><tr><th>claim</th><th>subject</th><th>verdict</th>"
             "<th>statistic</th><th>value</th><th>CI</th><th>rule</th><th>protocol</th><th>seeds</th>"
             "<th>evidence</th></tr></thead>",
             "<tbody>"]
    for row in table.itertuples():
        ci = "" if pd.isna(row.ci_low) else f"[{number(row.ci_low)}, {number(row.ci_high)}]"
        cells = [f'<a href="#{row.figure}">{html.escape(row.section)}</a>: “{html.escape(row.quote)}”',
                 html.escape(row.subject), f'<span class="verdict {row.verdict.replace(" ", "-")}">{row.verdict}</span>',
                 html.escape(row.statistic) + (f"<br><small>{html.escape(row.note)}</small>" if row.note else ""),
                 number(row.value), ci, html.escape(row.rule), html.escape(row.protocol), seeds_cell(row),
                 html.escape(row.evidence)]
        lines.append('<tr data-claim="' + html.escape(row.claim) + '">' + "".join(f"<td>{c}</td>" for c in cells)
                     + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def seeds_cell(row) -> str:
    """The seeds column of the report's table: the per-seed verdicts, the seed-fragile mark and the variance share."""
    import html

    if not row.per_seed:
        return ""
    text = html.escape(row.per_seed) + (' <b class="fragile">seed-fragile ‡</b>' if row.seed_fragile else "")
    return text + (f"<br><small>{html.escape(row.seed_note)}</small>" if row.seed_note else "")


VERDICT_MARKS = {"reproduced": "✓", "not reproduced": "✗", "inconclusive": "?", "not run": "–"}


def verdict_matrix(table: pd.DataFrame) -> dict:
    """Claims as rows, methods as columns (EEA and pEEA first, then as they first appear): per cell the verdicts of its rows
    (models, variants, runs) counted, whether any of them departs from the paper's protocol, and whether any is
    seed-fragile."""
    rows = table[table["method"].fillna("") != ""]
    methods = sorted(dict.fromkeys(rows["method"]), key=lambda m: (m != EEA, m not in EEA_METHODS))
    cells = []
    for key, group in table.groupby("claim", sort=False):
        first = group.iloc[0]
        line = {"claim": key, "section": first["section"], "quote": first["quote"], "figure": first["figure"],
                "cells": []}
        for method in methods:
            mine = group[group["method"] == method]
            counts = mine["verdict"].value_counts().reindex(VERDICTS, fill_value=0)
            shown = {verdict: int(n) for verdict, n in counts.items() if n}
            line["cells"].append({
                "counts": shown,
                "verdict": next(iter(shown)) if len(shown) == 1 else ("mixed" if shown else ""),
                "departs": bool((mine["protocol"] != "as the paper").any()),
                "fragile": bool(mine["seed_fragile"].astype(bool).any()),
            })
        cells.append(line)
    return {"methods": methods, "rows": cells}


def matrix_html(matrix: dict) -> str:
    """The verdict matrix as the report's first table: one coloured cell per claim and method."""
    import html

    head = "".join(f"<th>{html.escape(_label(m))}</th>" for m in matrix["methods"])
    lines = ['<table class="verdict-matrix">', f"<thead><tr><th>claim</th>{head}</tr></thead>", "<tbody>"]
    for row in matrix["rows"]:
        cells = []
        for cell in row["cells"]:
            text = " ".join(f"{VERDICT_MARKS[v]}{n}" for v, n in cell["counts"].items())
            title = ", ".join(f"{n} {v}" for v, n in cell["counts"].items())
            if cell["departs"]:
                text += " †"
                title += "; † the run departs from the paper's protocol"
            if cell.get("fragile"):
                text += " ‡"
                title += "; ‡ seed-fragile: its seeds' verdicts disagree"
            kind = cell["verdict"].replace(" ", "-") or "empty"
            cells.append(f'<td class="cell {kind}" title="{html.escape(title)}">{text}</td>')
        claim = f'<a href="#{row["figure"]}">{html.escape(row["section"])}</a><br><small>{html.escape(row["claim"])}</small>'
        lines.append(f"<tr><td>{claim}</td>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def claim_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per claim, from the table's numbers: which subjects reproduced it and which did not."""
    sentences = []
    for key, rows in table.groupby("claim", sort=False):
        first = rows.iloc[0]
        by_verdict = {verdict: ", ".join(rows.loc[rows["verdict"] == verdict, "subject"]) for verdict in VERDICTS
                      if (rows["verdict"] == verdict).any()}
        parts = [f"{verdict}: {subjects}" for verdict, subjects in by_verdict.items()]
        sentences.append(f"{first['section']}, “{first['quote']}”: " + "; ".join(parts) + ".")
    return sentences


def write_claims(evidence: dict, settings: Settings, out_csv, out_json, out_html) -> pd.DataFrame:
    """Check every claim and write the verdict table (CSV, the report's HTML) and its summary (JSON), with the
    verdict matrix (claims x methods) the report opens with."""
    table = check_claims(evidence, settings)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    html_table = verdict_html(table)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html_table + "\n", encoding="utf-8")
    counts = table["verdict"].value_counts().reindex(VERDICTS, fill_value=0).to_dict()
    matrix = verdict_matrix(table)
    write_json(out_json, {"settings": settings.recorded(), "counts": counts, "html": html_table,
                          "seeds": 1 + len(evidence.get("replicates", [])),
                          "seed_fragile": int(table["seed_fragile"].astype(bool).sum()),
                          "matrix": matrix, "matrix_html": matrix_html(matrix),
                          "sentences": claim_sentences(table), "rows": json.loads(table.to_json(orient="records"))})
    return table
