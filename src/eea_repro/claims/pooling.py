"""The claims over seed replicates.

With seed replicates (config ``replicates``), a claim whose evidence every replicate re-made is checked once per seed
(the per-seed verdicts; "seed-fragile" when they disagree) and once more with every interval pooled over seeds and
images (:mod:`eea_repro.workflow.replicates`): the check runs unchanged, each interval it asks for is the pooled
interval of the values it asked with under every seed. That pooled run gives the row's verdict.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from eea_repro.claims.verdicts import Claim, Finding, Settings
from eea_repro.workflow.replicates import ONE_SEED, pooled_interval, seed_fragile


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
    """The k-th interval a check asks for, pooled over seeds and images
    (:func:`eea_repro.workflow.replicates.pooled_interval`) from the k-th values each seed's check asked with; the
    check itself runs on the first seed's evidence."""

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
