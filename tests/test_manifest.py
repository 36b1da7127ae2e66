"""The results manifest: what it records, the first differing file named with its rule, and the CI config's run
checked against the committed manifest (made on another machine, so this is the test of portable numerics)."""

import base64
import json

import pytest

from eea_repro.workflow import manifest


def make_run(workdir, files: dict[str, str], rules: dict[str, str]):
    """A results folder with ``files`` (path -> text) and Snakemake's per-output records naming their rules."""
    for path, text in files.items():
        (workdir / "results" / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / "results" / path).write_text(text)
    metadata = workdir / ".snakemake" / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    for output, rule in rules.items():
        name = base64.urlsafe_b64encode(output.encode()).decode()
        (metadata / name).write_text(json.dumps({"rule": rule}))
    return workdir / "results"


RUN = {
    "claims.csv": "claim,verdict\n",
    "tables/vit_target.csv": "method,ADP\n",
    "maps/vit/target/eea/shard-0.npz": "maps",
    "checkpoints/vit.json": json.dumps({"sha256": "ab", "seconds": 1.5, "machine": {"cpu": "A"}}),
    "data/embedded/test/images/0.png": "png",
    "figures/qualitative_vit_target.png": "figure",
    "report/index.html": "<html>",
    "explainers/vit/target.resume/pretrain_state.pt": "resume",
    "replicate-1/maps/vit/target/eea/shard-0.npz": "replicate maps",
}
RULES = {
    "results/claims.csv": "claims",
    "results/tables/vit_target.csv": "table",
    "results/maps/vit/target/eea/shard-0.npz": "eea_maps",
    "results/checkpoints/vit.json": "train_model",
    "results/data/embedded": "embedded_dataset",  # a folder output: its files are the rule's
    "results/replicate-1/maps/vit/target/eea/shard-0.npz": "eea_maps_replicate",
}


def test_collect_records_results_in_stage_order_with_their_rules(tmp_path):
    entries = manifest.collect(make_run(tmp_path, RUN, RULES))
    assert [e["path"] for e in entries] == [
        "data/embedded/test/images/0.png", "checkpoints/vit.json", "maps/vit/target/eea/shard-0.npz",
        "replicate-1/maps/vit/target/eea/shard-0.npz", "tables/vit_target.csv", "claims.csv",
    ]  # figures, the report and resume files are left out; a seed replicate's files rank with their stage
    assert [e["rule"] for e in entries] == ["embedded_dataset", "train_model", "eea_maps", "eea_maps_replicate",
                                            "table", "claims"]


def test_json_records_are_hashed_without_their_timings_and_machine(tmp_path):
    first = manifest.collect(make_run(tmp_path / "a", RUN, RULES))
    other_machine = {**RUN, "checkpoints/vit.json": json.dumps({"machine": {"cpu": "B"}, "sha256": "ab",
                                                                "seconds": 9.0})}
    assert manifest.collect(make_run(tmp_path / "b", other_machine, RULES)) == first
    other_result = {**RUN, "checkpoints/vit.json": json.dumps({"sha256": "cd", "seconds": 1.5})}
    assert manifest.collect(make_run(tmp_path / "c", other_result, RULES)) != first


def test_check_names_the_first_differing_file_and_its_rule(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(manifest, "numerics_fingerprint", lambda mode: {"exp (ATen)": "0"})
    results = make_run(tmp_path / "run", RUN, RULES)
    written = tmp_path / "m.json"
    assert manifest.main(["write", str(results), str(written), "--config", "config/ci.yaml"]) == 0
    assert manifest.main(["check", str(results), str(written)]) == 0
    changed = make_run(tmp_path / "changed", {**RUN, "maps/vit/target/eea/shard-0.npz": "other maps",
                                              "claims.csv": "claim,verdict\nx,y\n"}, RULES)
    capsys.readouterr()
    assert manifest.main(["check", str(changed), str(written)]) == 1
    out = capsys.readouterr().out
    assert "differs from" in out and "in 2 file(s); the first: maps/vit/target/eea/shard-0.npz: differs " \
        "(made by rule eea_maps)" in out
    assert "then claims.csv: differs (made by rule claims)" in out
    missing = dict(RUN)
    del missing["tables/vit_target.csv"]
    assert manifest.check(make_run(tmp_path / "missing", missing, RULES), written) == [
        "tables/vit_target.csv: missing (made by rule table)"]
    assert manifest.main(["check", str(tmp_path / "nowhere"), str(written)]) == 2


def test_a_matching_check_records_this_cpu_on_request(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "numerics_fingerprint", lambda mode: {})
    results = make_run(tmp_path, RUN, RULES)
    written = tmp_path / "m.json"
    manifest.write(results, written, "config.yaml")
    stored = json.loads(written.read_text())
    stored["matched_on"] = ["another CPU"]
    written.write_text(json.dumps(stored))
    assert manifest.check(results, written, record_cpu=True) == []
    assert json.loads(written.read_text())["matched_on"] == ["another CPU", manifest.this_cpu()]


@pytest.mark.workflow
def test_the_ci_configs_run_matches_the_committed_manifest(tiny_run, repo):
    """The committed manifest was made on another machine: a difference here means the numerics are not portable to
    this CPU, or a commit changed results without rewriting the manifest (see docs/reproducibility.md, "Same bits on every
    machine")."""
    committed = json.loads((repo / "manifests/ci.json").read_text())
    assert committed["config"] == "config/ci.yaml" and committed["numerics"] == "portable"
    problems = manifest.check(tiny_run / "results", repo / "manifests/ci.json")
    assert not problems, f"{len(problems)} file(s) differ; the first: {problems[0]} (this CPU: {manifest.this_cpu()})"
