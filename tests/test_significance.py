"""The generated table sentence: best method per metric and EEA's paired test against the best baseline."""

import itertools

import numpy as np
import pandas as pd
import pytest

from eea_repro.methods import control_methods
from eea_repro.metrics.significance import compare_to_best_baseline, paired_wilcoxon, table_sentence


def _exact_signed_rank_p(differences: np.ndarray) -> float:
    """Two-sided exact p by enumerating every sign assignment of the ranks (no ties, no zeros)."""
    ranks = np.argsort(np.argsort(np.abs(differences))) + 1
    observed = ranks[differences > 0].sum()
    totals = np.array([sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product([0, 1], repeat=len(ranks))])
    centre = ranks.sum() / 2
    return float(np.mean(np.abs(totals - centre) >= abs(observed - centre) - 1e-9))


def test_paired_wilcoxon_matches_exact_enumeration():
    rng = np.random.default_rng(0)
    first = rng.normal(size=11)
    second = first - rng.normal(0.6, 1.0, size=11)
    assert paired_wilcoxon(first, second) == pytest.approx(_exact_signed_rank_p(first - second), rel=1e-9)


def test_paired_wilcoxon_edge_cases():
    assert paired_wilcoxon(np.ones(5), np.ones(5)) == 1.0
    assert np.isnan(paired_wilcoxon(np.array([np.nan]), np.array([1.0])))


def _per_image(values: dict[str, np.ndarray]) -> pd.DataFrame:
    frames = [pd.DataFrame({"method": method, "image_id": [f"i{k}" for k in range(len(v))], "POS": v, "INS": -v})
              for method, v in values.items()]
    return pd.concat(frames, ignore_index=True)


def test_best_method_and_best_baseline_respect_metric_direction_and_controls():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.5, size=12)
    per_image = _per_image({
        "eea": 10 + noise,
        "peea": 9 + noise,  # better than EEA but not a baseline
        "gradcam": 12 + rng.normal(0, 0.5, size=12),
        "layercam": 14 + noise,
        "all_ones": 1 + noise,  # a control: never best
    })
    rows = {r["metric"]: r for r in compare_to_best_baseline(per_image, control_methods())}
    assert control_methods() == {"random", "all_ones", "edges"}
    assert rows["POS"]["best"] == "peea" and rows["INS"]["best"] == "peea"  # POS lower is better, INS higher
    assert rows["POS"]["baseline"] == "gradcam" and rows["INS"]["baseline"] == "gradcam"
    assert rows["POS"]["eea_better"] and rows["INS"]["eea_better"]
    expected = _exact_signed_rank_p(per_image.query("method == 'eea'")["POS"].to_numpy()
                                    - per_image.query("method == 'gradcam'")["POS"].to_numpy())
    assert rows["POS"]["p_value"] == pytest.approx(expected, rel=1e-9)
    assert rows["POS"]["n_pairs"] == 12


def test_pairs_follow_image_ids_not_row_order():
    rng = np.random.default_rng(2)
    eea, gradcam = np.arange(8.0), np.arange(8.0) + rng.uniform(0.5, 1.0, 8)
    shuffled = _per_image({"eea": eea, "gradcam": gradcam}).sample(frac=1.0, random_state=0)
    rows = {r["metric"]: r for r in compare_to_best_baseline(shuffled, exclude=set())}
    assert rows["POS"]["p_value"] == pytest.approx(_exact_signed_rank_p(eea - gradcam), rel=1e-9)


def test_sentence_states_best_methods_and_significance():
    rng = np.random.default_rng(3)
    per_image = _per_image({"eea": rng.normal(10, 1, 30), "gradcam": rng.normal(13, 1, 30), "gae": rng.normal(10, 1, 30)})
    rows = compare_to_best_baseline(per_image, exclude=set())
    labels = {"eea": "EEA", "gradcam": "GC", "gae": "GAE"}
    sentence = table_sentence(rows, labels.get)
    pos = next(r for r in rows if r["metric"] == "POS")
    assert f"POS {labels[pos['best']]}" in sentence
    assert f"vs {labels[pos['baseline']]}" in sentence
    assert ("not significant" if pos["p_value"] >= 0.05 else "significant") in sentence
    assert "30 images" in sentence
