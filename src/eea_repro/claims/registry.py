"""Every claim the run checks, in the verdict table's row order, and the table they make.

A new claim is a check with a ``@claim(...)`` line in its family's module and its name in :data:`CLAIMS`; the list is
the one place that sets which claims run and in which order (the table's rows, claims.json).
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from eea_repro.claims.mixed_and_multiclass import mixed_architectures, two_object_class_specific
from eea_repro.claims.pooling import check_over_seeds
from eea_repro.claims.randomization import (bottom_up_decreases, cascading_decreases, data_randomization_differs,
                                            efficient_mprt_rises, independent_low, no_information_control_fails,
                                            smooth_mprt_decreases)
from eea_repro.claims.tables import all_ones_adp_zero, gradcam_best_adp, gradcam_best_pic, gradcam_larger_maps
from eea_repro.claims.verdicts import VERDICTS, Claim, Settings, under_protocol

CLAIMS: dict[str, Claim] = {entry.key: entry for entry in (
    gradcam_best_adp, gradcam_best_pic, gradcam_larger_maps, all_ones_adp_zero,  # §2
    cascading_decreases, independent_low, data_randomization_differs,  # §3
    bottom_up_decreases, smooth_mprt_decreases, efficient_mprt_rises,  # the field's repairs (beyond the paper)
    no_information_control_fails,
    mixed_architectures, two_object_class_specific,  # §4, §5
)}

COLUMNS = ["claim", "section", "quote", "subject", "method", "verdict", "statistic", "value", "ci_low", "ci_high",
           "rule", "protocol", "seeds", "per_seed", "seed_fragile", "seed_share", "seed_note", "evidence", "figure",
           "note"]


def check_claims(evidence: dict, settings: Settings) -> pd.DataFrame:
    """Every claim of :data:`CLAIMS` against the evidence: one row per (claim, subject), in the list's order."""
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
