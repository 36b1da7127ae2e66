"""The claims' verdict rules on synthetic evidence, on both sides of their thresholds; missing evidence is 'not run'."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from eea_repro.claims.randomization import level_trend
from eea_repro.claims.registry import CLAIMS, check_claims
from eea_repro.claims.render import write_claims
from eea_repro.claims.verdicts import VERDICTS, Settings, side_of
from eea_repro.workflow.config import load_config
from eea_repro.workflow.io import save_map_shard

SETTINGS = Settings(bootstrap=200)
N = 40
IDS = [f"im{i:02d}" for i in range(N)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _per_image(tmp_path, name: str, values: dict[str, np.ndarray], metric_defaults=None) -> str:
    """A table's per-image CSV: one block of rows per method, every metric column present."""
    frames = []
    for method, column_values in values.items():
        frame = pd.DataFrame({"method": method, "image_id": IDS, "label": 0, "class": 0, "valid": True,
                              "constant": method == "all_ones", "correct": True})
        for metric in ("ADP", "PIC", "POS", "NEG", "DEL", "INS"):
            frame[metric] = column_values.get(metric, np.full(N, 50.0))
        frames.append(frame)
    path = tmp_path / f"{name}.per_image.csv"
    pd.concat(frames).to_csv(path, index=False)
    return str(path)


def _table_evidence(path, family="cnn"):
    return {"tables": [{"model": "m", "label": "Model", "family": family, "variant": "target", "per_image": path}]}


def _verdicts(key, evidence):
    return [finding.verdict for finding in CLAIMS[key].check(evidence, SETTINGS)]


def test_side_of_every_verdict():
    assert side_of(0.1, 0.2, 0.3, "below") == "reproduced"
    assert side_of(0.4, 0.5, 0.3, "below") == "not reproduced"
    assert side_of(0.2, 0.4, 0.3, "below") == "inconclusive"
    assert side_of(0.4, 0.5, 0.3, "above") == "reproduced"
    assert side_of(float("nan"), 0.5, 0.3, "above") == "inconclusive"


@pytest.mark.parametrize(("shift", "expected"), [(-10.0, "reproduced"), (10.0, "not reproduced"),
                                                 (0.0, "inconclusive")])
def test_gradcam_best_adp_both_sides(tmp_path, shift, expected):
    rng = _rng()
    rival = 30 + rng.normal(0, 5, N)
    gradcam = rival + shift + rng.normal(0, 1, N) * (shift != 0) + (rng.normal(0, 5, N) if shift == 0 else 0)
    path = _per_image(tmp_path, "t", {"gradcam": {"ADP": gradcam}, "layercam": {"ADP": rival},
                                      "eea": {"ADP": rival + 20}, "all_ones": {"ADP": np.zeros(N)}})
    assert _verdicts("gradcam_best_adp", _table_evidence(path)) == [expected]


def test_gradcam_best_pic_prefers_higher(tmp_path):
    rng = _rng(1)
    path = _per_image(tmp_path, "t", {"gradcam": {"PIC": 60 + rng.normal(0, 1, N)},
                                      "eea": {"PIC": 20 + rng.normal(0, 1, N)}})
    assert _verdicts("gradcam_best_pic", _table_evidence(path)) == ["reproduced"]
    assert _verdicts("gradcam_best_adp", _table_evidence(path, family="vit")) == ["not run"]


@pytest.mark.parametrize(("zero", "expected"), [(True, "reproduced"), (False, "not reproduced")])
def test_all_ones_adp_zero(tmp_path, zero, expected):
    path = _per_image(tmp_path, "t", {"gradcam": {"ADP": np.full(N, 20.0)},
                                      "all_ones": {"ADP": np.zeros(N) if zero else np.full(N, 0.5)}})
    assert _verdicts("all_ones_adp_zero", _table_evidence(path)) == [expected]


@pytest.mark.parametrize(("gradcam_lit", "expected"), [(0.8, "reproduced"), (0.1, "not reproduced")])
def test_gradcam_larger_maps(tmp_path, gradcam_lit, expected):
    rng = _rng(2)
    files = {}
    for method, lit in (("gradcam", gradcam_lit), ("eea", 0.4)):
        maps = (rng.random((N, 6, 6)) < lit).astype(np.float32) + rng.random((N, 6, 6)).astype(np.float32) * 0.01
        path = tmp_path / f"{method}.npz"
        save_map_shard(path, maps, IDS, np.zeros(N), np.zeros(N), method)
        files[method] = [str(path)]
    evidence = {"maps": [{"model": "m", "label": "Model", "variant": "target", "size": 24, "files": files}]}
    assert _verdicts("gradcam_larger_maps", evidence) == [expected]


def _similarity(tmp_path, mode: str, rho_by_level: dict[int, float], noise=0.02, methods=("eea",)) -> str:
    rng = _rng(3)
    rows = []
    for method in methods:
        for level, rho in rho_by_level.items():
            for image_id in IDS:
                value = 1.0 if level == 1 else rho + rng.normal(0, noise)
                rows.append({"mode": mode, "image_id": image_id, "method": method, "level": level,
                             "spearman": value, "spearman_abs": value, "ssim": value, "hog": value,
                             "map_range": 0.5, "model_correct": level < 3})
    path = tmp_path / f"{mode}.similarity.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def _sanity_evidence(path, mode):
    return {"sanity": [{"model": "m", "label": "Model", "mode": mode, "run": mode, "similarity": path}]}


@pytest.mark.parametrize(("curve", "expected"), [
    ({1: 1, 2: 0.7, 3: 0.4, 4: 0.2, 5: 0.05}, "reproduced"),
    ({1: 1, 2: 0.8, 3: 0.82, 4: 0.79, 5: 0.81}, "not reproduced"),  # flat and high: neither falls nor ends low
    ({1: 1, 2: 0.6, 3: 0.5, 4: 0.4, 5: 0.3}, "inconclusive"),  # falls steadily but ends at the threshold
])
@pytest.mark.parametrize("mode", ["cascading", "bottom_up", "smooth"])
def test_the_cumulative_modes_decrease(tmp_path, curve, expected, mode):
    evidence = _sanity_evidence(_similarity(tmp_path, mode, curve), mode)
    claims = {"cascading": "cascading_decreases", "bottom_up": "bottom_up_decreases",
              "smooth": "smooth_mprt_decreases"}
    assert _verdicts(claims[mode], evidence) == [expected]
    # a mode the run did not list leaves the others' claims 'not run'
    assert all(_verdicts(claims[other], evidence) == ["not run"] for other in claims if other != mode)


def test_level_trend_is_the_per_image_rank_correlation():
    frame = pd.DataFrame({"image_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 4, "level": [1, 2, 3, 4] * 3,
                          "spearman": [1, 0.5, 0.2, 0.1, 1, 0.2, 0.5, 0.1, 1, 1, 1, 1]})
    np.testing.assert_allclose(level_trend(frame), [-1.0, -0.8])  # 'c' does not vary: left out


def _efficient_similarity(tmp_path, rises: dict[str, float], noise=0.05) -> str:
    """An efficient-MPRT run (levels 1 and 6): per method, eMPRT around ``rises[method]`` (exactly it without noise)."""
    rng = _rng(7)
    rows = []
    for method, rise in rises.items():
        for image_id in IDS:
            emprt = rise + (rng.normal(0, noise) if rise else 0.0)
            for level, entropy, score in ((1, 2.0, np.nan), (6, 2.0 * (1 + emprt), emprt)):
                rows.append({"mode": "efficient", "image_id": image_id, "method": method, "level": level,
                             "spearman": 1.0 if level == 1 else 0.5, "spearman_abs": 0.5, "ssim": 0.5, "hog": 0.5,
                             "map_range": 0.5, "model_correct": level == 1, "entropy": entropy, "emprt": score})
    path = tmp_path / "efficient.similarity.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_efficient_mprt_rises_above_zero(tmp_path):
    rises = {"eea": 0.3, "gradcam": -0.3, "rollout": 0.01, "all_ones": 0.0}
    evidence = _sanity_evidence(_efficient_similarity(tmp_path, rises, noise=0.1), "efficient")
    rows = _rows(evidence, "efficient_mprt_rises").set_index("method")
    assert rows["verdict"].to_dict() == {"eea": "reproduced", "gradcam": "not reproduced",
                                         "rollout": "inconclusive",  # the CI straddles 0
                                         "all_ones": "not reproduced"}  # exactly 0: no rise at all
    assert rows.loc["all_ones", "value"] == rows.loc["all_ones", "ci_high"] == 0.0
    assert _verdicts("cascading_decreases", evidence) == ["not run"]  # efficient alone: the others do not run
    assert _verdicts("efficient_mprt_rises", _sanity_evidence(_similarity(tmp_path, "bottom_up", {1: 1, 2: 0.1}),
                                                              "bottom_up")) == ["not run"]


@pytest.mark.parametrize("passes", [False, True])
def test_the_no_information_control_must_fail_every_mode(tmp_path, passes):
    """The edge map is the same on every randomized model (ρ = 1, eMPRT = 0): each mode's test fails it, which is
    what the claim expects; a test that passed it (ρ falling to 0, eMPRT rising) could not tell model-sensitive maps
    from others."""
    (tmp_path / "c").mkdir(), (tmp_path / "e").mkdir()
    curve = {1: 1, 2: 0.6, 3: 0.3, 4: 0.05} if passes else {1: 1, 2: 1, 3: 1, 4: 1}
    cascading = _similarity(tmp_path / "c", "cascading", curve, noise=0.02 if passes else 0.0,
                            methods=("eea", "edges"))
    efficient = _efficient_similarity(tmp_path / "e", {"eea": 0.3, "edges": 0.3 if passes else 0.0})
    evidence = {"sanity": [*_sanity_evidence(cascading, "cascading")["sanity"],
                           *_sanity_evidence(efficient, "efficient")["sanity"]]}
    rows = _rows(evidence, "no_information_control_fails")
    expected = "not reproduced" if passes else "reproduced"
    assert rows["verdict"].tolist() == [expected, expected]
    assert rows["subject"].tolist() == ["Model, cascading randomization", "Model, efficient MPRT"]
    assert (rows["method"] == "edges").all()
    without = _sanity_evidence(_similarity(tmp_path, "cascading", curve), "cascading")  # EEA only
    assert _verdicts("no_information_control_fails", without) == ["not run"]


@pytest.mark.parametrize(("rho", "expected"), [(0.1, "reproduced"), (0.7, "not reproduced"), (0.3, "inconclusive")])
def test_independent_low(tmp_path, rho, expected):
    evidence = _sanity_evidence(_similarity(tmp_path, "independent", {1: 1, 2: rho, 3: rho, 4: rho}, noise=0.05),
                                "independent")
    assert _verdicts("independent_low", evidence) == [expected]


def _data_randomization(tmp_path, rho, train_accuracy=0.99, test_accuracy=0.13):
    record = tmp_path / "model.json"
    record.write_text(json.dumps({"train_accuracy": train_accuracy, "test_accuracy": test_accuracy,
                                  "chance_accuracy": 0.125}))
    rng = _rng(4)
    similarity = tmp_path / "similarity.csv"
    pd.DataFrame({"image_id": IDS, "method": "eea", "spearman": rho + rng.normal(0, 0.05, N)}).to_csv(similarity,
                                                                                                        index=False)
    return {"data_randomization": [{"model": "m", "label": "Model", "record": str(record),
                                    "similarity": str(similarity), "target_train_accuracy": 0.95}]}


@pytest.mark.parametrize(("rho", "train", "test", "expected"), [
    (0.05, 0.99, 0.13, "reproduced"), (0.8, 0.99, 0.13, "not reproduced"),
    (0.05, 0.80, 0.13, "inconclusive"),  # the permuted labels were not fitted: not the paper's setting
    (0.05, 0.99, 0.50, "inconclusive"),  # the twin generalises: its labels were not random enough
])
def test_data_randomization_differs(tmp_path, rho, train, test, expected):
    assert _verdicts("data_randomization_differs", _data_randomization(tmp_path, rho, train, test)) == [expected]


def test_a_precondition_that_fails_under_one_seed_makes_the_pooled_row_inconclusive(tmp_path):
    """Seed 0's permuted-label twin is at chance, seed 1's is not: seed 0 alone reproduces the claim, the pooled row
    (whose check reads seed 0's record) is inconclusive and says which seed's setting failed."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    evidence = _data_randomization(tmp_path / "a", 0.05)
    evidence["replicates"] = [_data_randomization(tmp_path / "b", 0.05, test_accuracy=0.5)]
    row = _rows(evidence, "data_randomization_differs").iloc[0]
    assert row["per_seed"] == "reproduced; inconclusive" and row["verdict"] == "inconclusive"
    assert row["note"].startswith("the paper's setting did not hold under seed 1 of 0-1 (permuted-label model")
    steady = _data_randomization(tmp_path / "a", 0.05)
    steady["replicates"] = [_data_randomization(tmp_path / "b", 0.05)]
    assert _rows(steady, "data_randomization_differs").iloc[0]["verdict"] == "reproduced"


@pytest.mark.parametrize(("eea_hits", "expected"), [(0.9, "reproduced"), (0.1, "not reproduced")])
def test_two_object_class_specific(tmp_path, eea_hits, expected):
    rng = _rng(5)
    rows = []
    for method, rate in (("eea", eea_hits), ("rollout", 0.5), ("all_ones", 0.3)):
        for image_id in IDS:
            for cls in (1, 2):
                rows.append({"method": method, "image_id": image_id, "class": cls,
                             "class_pointing": float(rng.random() < rate), "other_pointing": 0.0})
    path = tmp_path / "two_object.per_image.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    evidence = {"two_object": [{"model": "m", "label": "Model", "per_image": str(path)}]}
    assert _verdicts("two_object_class_specific", evidence) == [expected]


@pytest.mark.parametrize(("extra_pos", "expected"), [(2.0, "reproduced"), (30.0, "not reproduced")])
def test_mixed_architectures(tmp_path, extra_pos, expected):
    rng = _rng(6)
    own = 20 + rng.normal(0, 3, N)
    frames = []
    for label, pos in (("ViT → ViT", own), ("ResNet → ViT", own + extra_pos + rng.normal(0, 1, N))):
        frames.append(pd.DataFrame({"pair": label, "method": label, "image_id": IDS, "POS": pos}))
    path = tmp_path / "mixed.per_image.csv"
    pd.concat(frames).to_csv(path, index=False)
    evidence = {"mixed": {"per_image": str(path), "pairs": [
        {"label": "ViT → ViT", "explainer": "vit", "model": "vit"},
        {"label": "ResNet → ViT", "explainer": "resnet", "model": "vit"}]}}
    assert _verdicts("mixed_architectures", evidence) == [expected]


def test_missing_evidence_is_not_run_with_its_reason():
    evidence = {"reasons": {"sanity": "config key 'sanity.modes' is empty",
                            "mixed": "config key 'figures.mixed_architectures' is false"}}
    table = check_claims(evidence, SETTINGS)
    assert set(table["claim"]) == set(CLAIMS)  # no claim silently dropped
    assert set(table["verdict"]) == {"not run"}
    notes = table.set_index("claim")["note"]
    assert notes["cascading_decreases"] == notes["independent_low"] == "config key 'sanity.modes' is empty"
    assert notes["mixed_architectures"] == "config key 'figures.mixed_architectures' is false"


def test_a_mode_left_out_of_the_sanity_checks_is_named_as_the_reason(tmp_path):
    evidence = _sanity_evidence(_similarity(tmp_path, "cascading", {1: 1, 2: 0.5, 3: 0.1}), "cascading")
    evidence["reasons"] = {"sanity": "config key 'sanity.modes' is empty"}  # as the workflow always passes it
    row = check_claims(evidence, SETTINGS).set_index("claim").loc["independent_low"]
    assert row["verdict"] == "not run" and row["note"] == "config key 'sanity.modes' does not list independent"


def test_written_table_csv_and_html_agree(tmp_path):
    path = _per_image(tmp_path, "t", {"gradcam": {"ADP": np.full(N, 20.0)}, "all_ones": {"ADP": np.zeros(N)}})
    out = [tmp_path / f"claims.{ext}" for ext in ("csv", "json", "html")]
    table = write_claims(_table_evidence(path), SETTINGS, *out)
    written = pd.read_csv(out[0])
    assert len(written) == len(table) and set(written["claim"]) == set(CLAIMS)
    summary = json.loads(out[1].read_text())
    assert sum(summary["counts"].values()) == len(written) and set(summary["counts"]) == set(VERDICTS)
    html = out[2].read_text()
    assert html.count("<tr data-claim=") == len(written)
    assert summary["sentences"] and all(sentence.endswith(".") for sentence in summary["sentences"])


@pytest.mark.workflow
def test_ci_run_verdicts_and_the_report_table_equal_the_csv(tiny_run):
    table = pd.read_csv(tiny_run / "results/claims.csv")
    all_ones = table[table["claim"] == "all_ones_adp_zero"]
    assert len(all_ones) == 4 and set(all_ones["verdict"]) == {"reproduced"}  # 2 models x 2 variants
    assert set(table["claim"]) == set(CLAIMS) and set(table["verdict"]) <= set(VERDICTS)
    report = (tiny_run / "results/report/index.html").read_text()
    section = report[report.index('<section id="claims"'):].split("</section>")[0]
    rows = re.findall(r'<tr data-claim="([^"]+)"><td>.*?</td><td>(.*?)</td><td><span class="verdict [^"]+">(.*?)</span>',
                      section)
    expected = [(row.claim, html.escape(row.subject), row.verdict) for row in table.itertuples()]
    assert rows == expected
    assert report.index('id="claims"') < report.index('id="metrics"')  # the report's first section


def test_a_departing_protocol_makes_the_eea_rows_inconclusive_and_names_the_departure(tmp_path, repo):
    """The cascading claim assumes EEA re-fitted against each randomized model: under sanity.eea_refit: finetune a
    curve that would reproduce it gives EEA 'inconclusive' with the departure named, while a method that does not
    rest on EEA's maps keeps its verdict; with the paper's refit EEA keeps 'reproduced'."""

    from eea_repro.claims.verdicts import protocol_departures

    curve = {1: 1, 2: 0.7, 3: 0.4, 4: 0.2, 5: 0.05}
    evidence = _sanity_evidence(_similarity(tmp_path, "cascading", curve, methods=("eea", "gradcam")), "cascading")
    config = load_config(repo / "config/ci.yaml")
    for refit, eea_verdict in (("finetune", "inconclusive"), ("pretrain", "reproduced")):
        config["sanity"]["eea_refit"] = refit
        settings = Settings(bootstrap=200, departures=protocol_departures(config))
        table = check_claims(evidence, settings).set_index(["claim", "subject"])
        eea, gradcam = (table.loc[("cascading_decreases", f"Model, {label}")] for label in ("EEA", "GC"))
        assert (eea["verdict"], gradcam["verdict"]) == (eea_verdict, "reproduced")
        assert gradcam["protocol"] == "as the paper"
        if refit == "finetune":
            assert eea["protocol"].startswith("departs: sanity.eea_refit: finetune")
            assert "its numbers alone say reproduced" in eea["note"]
        else:
            assert eea["protocol"] == "as the paper"


def test_the_paper_values_each_claim_assumes_are_departures_when_changed(repo):
    """λ and the fine-tuning steps other than the paper's (the embedded default's 10 and 5) are named; the claims that
    compare EEA's maps with other methods' assume them, the sanity claims the refit."""
    from eea_repro.claims.verdicts import protocol_departures

    config = load_config(repo / "config.yaml")
    departures = protocol_departures(config)
    assert departures["size_penalty"].startswith("explainer.lambda_size: 10 (paper: 50")
    assert departures["finetune_steps"].startswith("finetune.steps: 5 (paper: 25")
    config["explainer"]["lambda_size"], config["finetune"]["steps"] = 50, 25
    assert "size_penalty" not in protocol_departures(config) and "finetune_steps" not in protocol_departures(config)
    assert CLAIMS["gradcam_larger_maps"].assumes == ("size_penalty", "finetune_steps")
    assert CLAIMS["independent_low"].assumes == ("explainer_refit",)
    assert CLAIMS["data_randomization_differs"].assumes == ()  # its explainer is always trained against the twin


def test_the_verdict_matrix_counts_each_claim_and_methods_rows_with_eea_first(tmp_path):
    """Cells count the verdicts of a (claim, method) pair's rows, mark a protocol departure and read 'mixed' when the
    rows disagree; EEA is the first column whatever the order of the rows."""
    from eea_repro.claims.render import matrix_html, verdict_matrix

    row = dict(section="§3.1", quote="q", figure="sanity", statistic="", value=None, ci_low=None, ci_high=None,
               rule="", evidence="", note="", seed_fragile=False)
    table = pd.DataFrame([
        {**row, "claim": "a", "subject": "M1, GC", "method": "gradcam", "verdict": "reproduced",
         "protocol": "as the paper"},
        {**row, "claim": "a", "subject": "M2, GC", "method": "gradcam", "verdict": "not reproduced",
         "protocol": "as the paper"},
        {**row, "claim": "a", "subject": "M1, EEA", "method": "eea", "verdict": "inconclusive",
         "protocol": "departs: sanity.eea_refit: finetune"},
        {**row, "claim": "b", "subject": "M1, GC", "method": "gradcam", "verdict": "reproduced",
         "protocol": "as the paper", "seed_fragile": True},
    ])
    matrix = verdict_matrix(table)
    assert matrix["methods"] == ["eea", "gradcam"]
    (eea_a, gc_a), (eea_b, gc_b) = (line["cells"] for line in matrix["rows"])
    assert eea_a == {"counts": {"inconclusive": 1}, "verdict": "inconclusive", "departs": True, "fragile": False}
    assert gc_a == {"counts": {"reproduced": 1, "not reproduced": 1}, "verdict": "mixed", "departs": False,
                    "fragile": False}
    assert eea_b == {"counts": {}, "verdict": "", "departs": False, "fragile": False}
    assert gc_b["verdict"] == "reproduced" and gc_b["fragile"]
    html_table = matrix_html(matrix)
    assert html_table.count('<td class="cell') == 4 and "?1 †" in html_table and "✓1 ✗1" in html_table
    assert "✓1 ‡" in html_table  # seed-fragile


# --- seed replicates: per-seed verdicts, pooled intervals ---------------------------------------------------------


def _seeded_tables(tmp_path, eea_adp_by_seed: list[float], noise=1.0) -> dict:
    """Table evidence of a CNN with one seed per entry of ``eea_adp_by_seed`` (EEA's mean ADP under that seed;
    Grad-CAM and the all-ones mask are seed-free), the later seeds as ``replicates``."""
    rng = _rng(5)
    gradcam = 30 + rng.normal(0, 5, N)
    paths = []
    for seed, eea_adp in enumerate(eea_adp_by_seed):
        eea = eea_adp + rng.normal(0, noise, N)
        paths.append(_per_image(tmp_path, f"seed{seed}", {"gradcam": {"ADP": gradcam}, "eea": {"ADP": eea},
                                                          "all_ones": {"ADP": np.zeros(N)}}))
    evidence = _table_evidence(paths[0])
    evidence["replicates"] = [{"tables": _table_evidence(path)["tables"]} for path in paths[1:]]
    return evidence


def _rows(evidence, claim):
    table = check_claims(evidence, SETTINGS)
    return table[table["claim"] == claim].reset_index(drop=True)


def test_a_claim_whose_seeds_disagree_is_seed_fragile_with_each_seeds_verdict(tmp_path):
    """Grad-CAM's ADP is the best under the first seed (EEA at 40) and not under the second (EEA at 20): the row
    lists both verdicts and is flagged; seeds that agree are not."""
    fragile = _rows(_seeded_tables(tmp_path, [40.0, 20.0]), "gradcam_best_adp").iloc[0]
    assert fragile["seeds"] == 2 and fragile["per_seed"] == "reproduced; not reproduced"
    assert bool(fragile["seed_fragile"]) and fragile["seed_share"] > 0.5  # most of the spread is between seeds
    steady = _rows(_seeded_tables(tmp_path, [40.0, 41.0]), "gradcam_best_adp").iloc[0]
    assert steady["per_seed"] == "reproduced; reproduced" and not steady["seed_fragile"]
    assert steady["verdict"] == "reproduced"


def test_the_pooled_interval_is_the_one_over_both_seeds_paired_images(tmp_path):
    """The pooled row's value and CI equal pooled_interval on the seeds x images array of the per-image differences
    the check compares (Grad-CAM − EEA's ADP per image), computed here independently."""
    from eea_repro.workflow.replicates import pooled_interval

    evidence = _seeded_tables(tmp_path, [40.0, 34.0], noise=3.0)
    row = _rows(evidence, "gradcam_best_adp").iloc[0]
    paths = [evidence["tables"][0]["per_image"], evidence["replicates"][0]["tables"][0]["per_image"]]
    differences = []
    for path in paths:
        frame = pd.read_csv(path).set_index(["method", "image_id"])["ADP"]
        differences.append((frame["eea"] - frame["gradcam"]).sort_index().to_numpy())  # rival − Grad-CAM: ADP
    expected = pooled_interval(np.stack(differences), SETTINGS.bootstrap, SETTINGS.confidence, SETTINGS.seed)
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx((expected.value, expected.low,
                                                                          expected.high))
    assert row["seed_note"] == expected.note


def test_one_seed_says_its_seed_variance_is_not_measured(tmp_path):
    from eea_repro.workflow.replicates import ONE_SEED

    table = check_claims(_seeded_tables(tmp_path, [40.0]), SETTINGS)
    ran = table[table["verdict"] != "not run"]
    assert len(ran) and set(ran["seed_note"]) == {ONE_SEED} and set(ran["seeds"]) == {1}
    assert (ran["per_seed"] == ran["verdict"]).all() and not ran["seed_fragile"].any()


def test_a_claim_whose_evidence_has_no_replicates_keeps_one_seed(tmp_path):
    """Replicates of the tables only: the sanity claims (which read the sanity similarities) stay one seed."""
    from eea_repro.workflow.replicates import ONE_SEED

    evidence = _seeded_tables(tmp_path, [40.0, 20.0])
    evidence |= _sanity_evidence(_similarity(tmp_path, "cascading", {1: 1, 2: 0.5, 3: 0.1}), "cascading")
    table = check_claims(evidence, SETTINGS).set_index("claim")
    assert table.loc["cascading_decreases", "seed_note"] == ONE_SEED
    assert table.loc["gradcam_best_adp", "seeds"] == 2


def test_seeds_pair_by_image_id_whatever_their_order_or_gaps():
    from eea_repro.claims.pooling import seeds_by_images

    first = pd.Series([1.0, 2.0, 3.0], index=["a", "b", "c"])
    second = pd.Series([30.0, 10.0], index=["c", "a"])
    np.testing.assert_array_equal(seeds_by_images([first, second]), [[1.0, 2.0, 3.0], [10.0, np.nan, 30.0]])
    with pytest.raises(ValueError, match="cannot be paired"):
        seeds_by_images([np.zeros(3), np.zeros(2)])
