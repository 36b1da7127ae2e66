"""Seed replicates end to end on the CI config's run (`replicates: 2`): what replicate 1 re-makes with its own seed,
what it shares with the run, and the claims that pool both seeds; `replicates: 1` is the run as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from eea_repro.io import load_map_shard
from eea_repro.replicates import ONE_SEED
from workflow_helpers import snakemake

pytestmark = pytest.mark.workflow


def _bytes(path):
    return path.read_bytes()


def test_a_replicate_retrains_the_explainers_and_remakes_only_the_seeded_maps(tiny_run):
    results, replicate = tiny_run / "results", tiny_run / "results/replicate-1"
    for model in ("vit", "resnet"):
        assert _bytes(results / f"explainers/{model}/target.safetensors") != \
            _bytes(replicate / f"explainers/{model}/target.safetensors")
        for method in ("eea", "peea", "random"):  # the seeded methods: other maps
            ours, theirs = (load_map_shard(root / f"maps/{model}/target/{method}/shard-0000.npz")
                            for root in (results, replicate))
            assert ours["image_ids"] == theirs["image_ids"] and not np.array_equal(ours["maps"], theirs["maps"])
        assert not (replicate / f"maps/{model}/target/gradcam").exists()  # seed-free methods are the run's own
        assert not (replicate / "checkpoints").exists()  # one explained model per config


def test_a_replicates_table_takes_the_runs_rows_for_seed_free_methods(tiny_run):
    main = pd.read_csv(tiny_run / "results/tables/resnet_target.per_image.csv")
    replicate = pd.read_csv(tiny_run / "results/replicate-1/tables/resnet_target.per_image.csv")
    assert list(main["method"]) == list(replicate["method"]) and list(main["image_id"]) == list(replicate["image_id"])
    seeded = main["method"].isin(["eea", "peea", "random"])
    pd.testing.assert_frame_equal(main[~seeded], replicate[~seeded])
    assert not np.allclose(main.loc[seeded, "POS"], replicate.loc[seeded, "POS"])


def test_a_replicates_sanity_check_refits_eea_on_the_same_randomized_models(tiny_run):
    """Replicate 1 re-fits EEA against each randomized model with its own seed; its original setting's EEA maps are
    replicate 1's evaluated maps; seed-free methods and the predictions are the run's (not made again)."""
    results, replicate = tiny_run / "results", tiny_run / "results/replicate-1"
    main_rows = pd.read_csv(results / "sanity/vit/cascading.similarity.csv")
    replicate_rows = pd.read_csv(replicate / "sanity/vit/cascading.similarity.csv")
    assert len(main_rows) == len(replicate_rows)
    seed_free = ~main_rows["method"].isin(["eea", "peea", "random"])
    pd.testing.assert_frame_equal(main_rows[seed_free], replicate_rows[seed_free])
    eea = main_rows["method"] == "eea"
    assert not np.allclose(main_rows.loc[eea, "spearman"], replicate_rows.loc[eea, "spearman"], equal_nan=True)
    assert not list(replicate.glob("sanity/*/*/predictions.csv")) and not list(replicate.glob("sanity/*/*/gradcam.npz"))
    original = load_map_shard(replicate / "sanity/vit/original/eea.npz")
    evaluated = load_map_shard(replicate / "maps/vit/target/eea/shard-0000.npz")
    rows = [evaluated["image_ids"].index(image_id) for image_id in original["image_ids"]]
    np.testing.assert_array_equal(original["maps"], evaluated["maps"][rows])


def test_claims_pool_the_seeds_where_every_seed_made_the_evidence(tiny_run):
    table = pd.read_csv(tiny_run / "results/claims.csv", keep_default_na=False)
    ran = table[table["verdict"] != "not run"]
    pooled = ran["claim"].isin(["gradcam_best_adp", "gradcam_best_pic", "gradcam_larger_maps", "all_ones_adp_zero",
                                "cascading_decreases", "independent_low"])
    assert set(ran.loc[pooled, "seeds"]) == {2} and (ran.loc[pooled, "per_seed"].str.count("; ") == 1).all()
    assert set(ran.loc[~pooled, "seed_note"]) == {ONE_SEED}  # explainers of those stages are trained once still
    fragile = ran["seed_fragile"].astype(str) == "True"
    assert all(len(set(per_seed.split("; "))) == 2 for per_seed in ran.loc[fragile, "per_seed"])
    summary = json.loads((tiny_run / "results/claims.json").read_text())
    assert summary["seeds"] == 2 and summary["seed_fragile"] == int(fragile.sum())
    report = (tiny_run / "results/report/index.html").read_text()
    assert "2 training seeds" in report and report.count("seed-fragile ‡</b>") == fragile.sum()


def _planned_outputs(repo, workdir, *args) -> dict[str, str]:
    """Output file -> rule of every job a run would make (Snakemake's --summary of an empty folder)."""
    listed = snakemake(repo, workdir, "--summary", "--configfile", str(repo / "config/ci.yaml"), *args).stdout
    rows = [line.split("\t") for line in listed.splitlines()[1:] if "\t" in line]
    return {row[0]: row[2] for row in rows}


def test_one_replicate_plans_the_runs_jobs_and_files_without_replicate_ones(repo, tmp_path):
    """`replicates: 1` plans exactly replicate 0's files and rules of a two-replicate run, and nothing else: the
    committed manifest (two replicates, checked bit for bit by the manifest test) then covers the one-seed run."""
    one = _planned_outputs(repo, tmp_path / "one", "--config", "replicates=1")
    two = _planned_outputs(repo, tmp_path / "two")
    assert yaml.safe_load((repo / "config/ci.yaml").read_text())["replicates"] == 2
    assert one == {path: rule for path, rule in two.items() if not path.startswith("results/replicate-")}
    assert any(path.startswith("results/replicate-1/") for path in two)
