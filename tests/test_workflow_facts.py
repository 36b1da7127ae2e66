"""The registry and model-check answers kept between workflow reads: reused only under the same key, never hiding a
config error, and a warm read of the workflow imports neither torch nor timm."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from eea_repro.methods import METHODS
from eea_repro.preflight import facts as workflow_facts
from eea_repro.preflight.compatibility import check_models
from eea_repro.preflight.facts import WorkflowFacts
from eea_repro.workflow.config import ConfigError, load_config
from eea_repro.workflow.io import kept
from workflow_helpers import job_counts, write_config


def test_a_kept_value_is_read_back_under_its_key_and_computed_again_under_another(tmp_path):
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"value": value}
        return run

    assert kept(tmp_path, "facts", {"a": 1}, compute(1)) == {"value": 1}
    assert kept(tmp_path, "facts", {"a": 1}, compute(2)) == {"value": 1}  # read back, not computed
    assert kept(tmp_path, "facts", {"a": 2}, compute(3)) == {"value": 3}
    assert calls == [1, 3]
    assert len(list(tmp_path.glob("facts-*.json"))) == 1  # the answer under the old key is dropped
    assert kept(tmp_path, "facts", {"a": 1}, compute(4)) == {"value": 4}


def test_a_kept_value_keeps_its_key_order(tmp_path):
    """Rules take registry answers as params, and Snakemake reruns a job whose params changed, dict order included."""
    value = {"zeta": 1, "alpha": {"y": 2, "b": 3}}
    kept(tmp_path, "facts", {}, lambda: value)
    read_back = kept(tmp_path, "facts", {}, dict)
    assert read_back == value
    assert list(read_back) == ["zeta", "alpha"] and list(read_back["alpha"]) == ["y", "b"]


def test_an_unwritable_cache_only_costs_computing_again(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert kept(blocked, "facts", {}, lambda: [1, 2]) == [1, 2]
    assert kept(blocked, "facts", {}, lambda: [3]) == [3]


def test_the_package_digest_follows_the_source_files(tmp_path, monkeypatch):
    (tmp_path / "module.py").write_text("A = 1\n")
    monkeypatch.setattr(workflow_facts, "PACKAGE_DIR", tmp_path)
    before = workflow_facts.package_digest()
    assert workflow_facts.package_digest() == before
    (tmp_path / "module.py").write_text("A = 2\n")
    assert workflow_facts.package_digest() != before


def test_method_entries_are_the_registry_s(tmp_path):
    entries = WorkflowFacts(tmp_path).methods()
    assert entries == {name: {"families": list(method.families), "label": method.label, "seeded": method.seeded,
                              "control": method.control} for name, method in METHODS.items()}
    assert {name for name, entry in entries.items() if entry["control"]} == {"random", "all_ones", "edges"}
    assert WorkflowFacts(tmp_path).methods() == entries  # read back from the file


def test_check_models_counts_the_sanity_layers(repo):
    config = load_config(repo / "config.yaml")
    config["sanity"]["layers"] = {"vit": "attention", "cnn": "block"}
    counts = check_models(config)
    depth = config["models"]["vit"]["timm_kwargs"]["depth"]
    assert counts == {"vit": {"attention": depth}, "resnet": {"block": 8}}  # resnet18: 2 blocks in each of 4 stages
    config["sanity"]["modes"] = []
    assert check_models(config) == {}


def test_a_model_the_kept_answer_did_not_check_is_checked(repo, tmp_path):
    config = load_config(repo / "config/ci.yaml")
    facts = WorkflowFacts(tmp_path)
    counts = facts.models(config)
    assert facts.models(config) == counts
    broken = copy.deepcopy(config)
    broken["models"]["vit"]["timm_name"] = "vit_no_such_model"
    with pytest.raises(ConfigError, match=r"models\.vit\.timm_name"):
        facts.models(broken)


def _imported(stderr: str) -> set[str]:
    """Top-level packages in ``python -X importtime``'s report."""
    return {match.group(1) for match in re.finditer(r"^import time:.*\|\s+(\w+)$", stderr, re.MULTILINE)}


def test_snakemake_s_process_never_imports_torch_or_timm_and_a_second_read_plans_the_same_jobs(repo, tmp_path):
    """The first read computes the preflight answers in a child process, the second reads them back: Snakemake's
    process, which lives as long as the run, imports neither torch nor timm (0.7 GB it would hold)."""
    config_file = repo / "config/ci.yaml"
    command = [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(repo / "Snakefile"),
               "--directory", str(tmp_path / "run"), "--cores", "2", "-n", "--configfile", str(config_file)]
    first, second = (subprocess.run(command, capture_output=True, text=True, check=True) for _ in range(2))
    assert not {"torch", "timm"} & (_imported(first.stderr) | _imported(second.stderr))
    assert sorted(path.name.split("-")[0] for path in (tmp_path / "run/.snakemake/eea_repro").glob("*.json")) == [
        "methods", "models"]
    assert job_counts(second.stdout) == job_counts(first.stdout)
    broken = yaml.safe_load(config_file.read_text())
    broken["models"]["vit"]["timm_name"] = "vit_no_such_model"
    command[-1] = str(write_config(tmp_path / "broken.yaml", broken))
    third = subprocess.run(command, capture_output=True, text=True)
    assert third.returncode != 0
    assert "Config error: config key 'models.vit.timm_name'" in third.stderr + third.stdout
