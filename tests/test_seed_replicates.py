"""Seed replicates end to end on the CI config's run (`replicates: 2`): what replicate 1 re-makes with its own seed,
what it shares with the run, and the claims that pool both seeds; `replicates: 1` is the run as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eea_repro.workflow.config import load_config
from eea_repro.workflow.io import load_map_shard
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


def test_a_replicate_trains_its_own_permuted_label_twin_and_cross_pair_explainers(tiny_run):
    """Data randomization: replicate 1's twin and its explainer are its own, so every method's maps on it are new;
    they are compared with replicate 1's maps on the original model. Mixed architectures and two-object images: the
    cross pairs' explainers and the seeded methods' maps are re-made; seed-free two-object maps are the run's."""
    results, replicate = tiny_run / "results", tiny_run / "results/replicate-1"
    for name in ("model.safetensors", "explainer.safetensors", "maps/gradcam.npz", "similarity.csv"):
        assert _bytes(results / "data_randomization/resnet" / name) != _bytes(replicate / "data_randomization/resnet" / name)
    record = json.loads((replicate / "data_randomization/resnet/model.json").read_text())
    assert record["train_accuracy"] > 0  # a fitted twin with its own record
    for pair in ("vit/mixed_resnet_target", "resnet/mixed_vit_target"):
        assert _bytes(results / f"explainers/{pair}.safetensors") != _bytes(replicate / f"explainers/{pair}.safetensors")
    main_pairs = pd.read_csv(results / "tables/mixed_architectures.per_image.csv")
    replicate_pairs = pd.read_csv(replicate / "tables/mixed_architectures.per_image.csv")
    assert list(main_pairs["pair"]) == list(replicate_pairs["pair"])
    assert not np.allclose(main_pairs["POS"], replicate_pairs["POS"])
    assert sorted(p.name for p in (replicate / "two_object/vit").iterdir()) == ["eea.npz", "peea.npz", "random.npz"]
    main_points = pd.read_csv(results / "localisation/vit/two_object.per_image.csv")
    replicate_points = pd.read_csv(replicate / "localisation/vit/two_object.per_image.csv")
    seed_free = ~main_points["method"].isin(["eea", "peea", "random"])
    pd.testing.assert_frame_equal(main_points[seed_free], replicate_points[seed_free])


def test_claims_pool_both_seeds_in_every_row_that_ran(tiny_run):
    table = pd.read_csv(tiny_run / "results/claims.csv", keep_default_na=False)
    ran = table[table["verdict"] != "not run"]
    assert set(ran["seeds"]) == {2} and (ran["per_seed"].str.count("; ") == 1).all()
    assert ran["seed_note"].str.startswith("2 seeds").all()
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
    assert load_config(repo / "config/ci.yaml")["replicates"] == 2
    assert one == {path: rule for path, rule in two.items() if not path.startswith("results/replicate-")}
    assert any(path.startswith("results/replicate-1/") for path in two)
