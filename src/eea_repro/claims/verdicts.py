"""What every claim is made of: its verdict, the finding that carries it, the paper's protocol it assumes.

A :class:`Claim` quotes the sentence it checks (short, with its section), reads evidence files of the run, computes a
statistic with its bootstrap confidence interval over images, and turns it into a verdict by a rule whose thresholds
come from the config (``claims:``, printed with every row). A verdict is what the run shows, never a test outcome:

* ``reproduced``: the confidence interval lies on the paper's side of the threshold;
* ``not reproduced``: it lies on the other side;
* ``inconclusive``: it straddles the threshold, or a precondition of the paper's setting did not hold here;
* ``not run``: the run's configuration does not produce the evidence (the reason names the config key).

A verdict never comes from a shortcut the paper did not take: each claim declares the parts of the paper's protocol
its statement assumes (``assumes``, keys of :data:`PROTOCOL`), and a row that rests on EEA's maps in a run that departs
from one of them is ``inconclusive``, the departure named in its ``protocol`` column.

The same rules serve every method where they apply (beyond the paper), so a reader sees which methods pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from eea_repro.metrics.tables import bootstrap_ci

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run")
EEA = "eea"
EEA_METHODS = (EEA, "peea")


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


def claim(key: str, section: str, quote: str, figure: str, reads: tuple[str, ...],
          assumes: tuple[str, ...] = ()) -> Callable[[Callable], Claim]:
    """Make a check into a :class:`Claim`: ``check(evidence, settings) -> [Finding, ...]``; ``reads`` names the
    evidence kinds it reads, ``assumes`` the parts of the paper's protocol (:data:`PROTOCOL`) its statement rests on.
    A claim is checked once it is listed in :data:`eea_repro.claims.registry.CLAIMS`."""
    unknown = set(assumes) - set(PROTOCOL)
    if unknown:
        raise ValueError(f"claim {key!r} assumes unknown protocol parts {sorted(unknown)}")

    def make(check: Callable) -> Claim:
        return Claim(key, section, quote, figure, check, assumes, reads)

    return make


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


def build_finding(key: str, subject: str, values, settings: Settings, statistic: str, threshold: float, paper_side: str,
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


def shown_label(method: str) -> str:
    from eea_repro.methods import method_label

    return method_label(method)


def paired_values(frame: pd.DataFrame, first: str, second: str, column: str, keys=("image_id",)) -> pd.Series:
    """Per-image ``first - second`` of one column, on the images both methods scored."""
    pivot = frame.pivot_table(index=list(keys), columns="method", values=column, aggfunc="first")
    return (pivot[first] - pivot[second]).dropna().astype(np.float64)


def missing_evidence(evidence: dict, kind: str) -> str | None:
    """Why this run has no evidence of a kind (None when it has some)."""
    return None if evidence.get(kind) else evidence.get("reasons", {}).get(kind, f"the run has no {kind} evidence")


def read_evidence(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str})


def values_by_image(rows: pd.DataFrame, column: str) -> pd.Series:
    """One value per image (keyed by its id, so that seeds pair up), NaNs left out."""
    return rows.set_index("image_id")[column].dropna()
