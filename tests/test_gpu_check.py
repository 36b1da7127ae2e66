"""``python -m eea_repro.bench.gpu_check``: at CPU size every step runs and the two CPU runs' tables are identical; a
spent budget stops a step and skips the rest; tables are compared column by column; the goals are judged per GPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from eea_repro.bench.gpu_check import TABLE_TOLERANCE, compare_tables, goals

STEPS = ["gpu_tests", "workflow", "bench", "cost_estimate"]


def gpu_check(out, *args):
    command = [sys.executable, "-m", "eea_repro.bench.gpu_check", str(out), "--device", "cpu", "--tiny", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    return result, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.workflow
def test_the_tiny_check_runs_every_step_on_a_cpu(tmp_path):
    result, record = gpu_check(tmp_path / "check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert record["passed"] and record["failures"] == [] and record["machine"]["device"] == "cpu"
    steps = record["steps"]
    assert list(steps) == STEPS and all(step["status"] == "done" for step in steps.values())
    counts = steps["gpu_tests"]["counts"]
    assert counts["passed"] >= 40 and set(counts) == {"passed"}  # CPU against CPU: nothing skipped, nothing failed
    tables = steps["workflow"]["tables"]
    assert set(tables) == {"vit_target.csv", "vit_predicted.csv"}  # --tiny: the first model's tables
    assert all(table["identical"] and table["max_abs_difference"] == 0 for table in tables.values())
    for precision in ("fp32", "bf16"):
        for entry in steps["bench"][precision]["models"].values():
            assert entry["engine"]["eager"]["ratio"] > 0 and len(entry["maps"]) >= 5
    for entry in steps["bench"]["fp32"]["models"].values():
        assert entry["finetune"]["batched_image_steps_per_s"] > 0
        assert entry["finetune"]["peak_memory_per_image_mib"] is not None
    stages = {"maps", "EEA fine-tuning", "metrics", "explainer pretraining", "total"}
    for precision in ("fp32", "bf16"):  # bf16 keeps fine-tuning's fp32 rate
        assert {row["stage"] for row in steps["cost_estimate"][precision]} == stages
    assert record["goals"] and all(goal["why"] == "not applicable on a CPU" for goal in record["goals"])
    summary = (tmp_path / "check" / "gpu_check.txt").read_text()
    assert summary.strip().endswith("PASS") and summary.strip() in result.stdout


def test_a_spent_budget_stops_the_step_and_skips_the_rest(tmp_path):
    result, record = gpu_check(tmp_path / "check", "--budget-s", "13")  # 3 s for the steps, 10 kept back
    steps = record["steps"]
    assert steps["gpu_tests"]["status"] == "stopped" and "budget ran out" in steps["gpu_tests"]["reason"]
    assert steps["gpu_tests"]["seconds"] < 5
    assert [steps[name]["status"] for name in STEPS[1:]] == ["skipped"] * 3
    assert "budget" in steps["workflow"]["reason"] and "no fp32 bench figures" in steps["cost_estimate"]["reason"]
    assert record["used_s"] < 13 and result.returncode == 0  # nothing failed; the summary says what did not run
    assert result.stdout.strip().splitlines()[-1].startswith("INCOMPLETE: nothing failed, but gpu_tests, workflow")


def table(path, changes=()):
    """A small metric table; ``changes`` maps (method, column) to a new value."""
    frame = pd.DataFrame({"method": ["gae", "random", "all_ones"], "n_images": [40, 40, 40],
                          "POS_mean": [20.0, 30.0, 21.0], "label": ["GAE", "Random", "All-ones"]})
    for (row, column), value in dict(changes).items():
        frame.loc[frame["method"] == row, column] = value
    frame.to_csv(path, index=False)
    return path


def test_tables_are_compared_column_by_column(tmp_path):
    cpu = table(tmp_path / "cpu.csv")
    near = compare_tables(table(tmp_path / "near.csv", {("gae", "POS_mean"): 22.5, ("random", "POS_mean"): 50.0}),
                          cpu, exact=False)
    assert near["within_tolerance"] and not near["identical"] and near["left_out"] == ["random"]
    assert near["columns"] == {"n_images": 0.0, "POS_mean": 2.5} and near["worst_column"] == "POS_mean"
    far = compare_tables(table(tmp_path / "far.csv", {("gae", "POS_mean"): 20 + 2 * TABLE_TOLERANCE}), cpu, False)
    assert not far["within_tolerance"]
    missing = compare_tables(table(tmp_path / "nan.csv", {("all_ones", "POS_mean"): float("nan")}), cpu, False)
    assert math.isinf(missing["max_abs_difference"]) and not missing["within_tolerance"]
    assert not compare_tables(table(tmp_path / "near2.csv", {("gae", "POS_mean"): 20.5}), cpu, exact=True)[
        "within_tolerance"]  # two CPU runs: identical or outside
    assert compare_tables(table(tmp_path / "same.csv"), cpu, exact=True)["identical"]


def bench_record(gpu, rate, mib_per_image, engine_ratio):
    """What goals() reads of a check on ``gpu``: ViT-B/16's fine-tuning and its engine at fp32 and bf16."""
    engine = {"engine": {"eager": {"ratio": engine_ratio}}}
    fp32 = {"label": "ViT-B/16", "finetune": {"batched_image_steps_per_s": rate,
                                              "peak_memory_per_image_mib": mib_per_image}, **engine}
    bf16 = {"label": "ViT-B/16", **engine}
    bench = {"preset": "paper", "fp32": {"models": {"vit": fp32}}, "bf16": {"models": {"vit": bf16}}}
    return {"machine": {"device": "cuda", "gpu": gpu}, "steps": {"bench": bench}}


def test_goals_are_judged_per_gpu():
    met = [goal["met"] for goal in goals(bench_record("NVIDIA H200", 200.0, 900.0, 0.9))]
    assert met == [False, True, True, True]  # rate, memory per image, engine at fp32, engine at bf16
    met = [goal["met"] for goal in goals(bench_record("NVIDIA H100 80GB HBM3", 200.0, 1500.0, 0.8))]
    assert met == [True, False, False, False]
    other = goals(bench_record("NVIDIA A100-SXM4-40GB", 200.0, 900.0, 0.9))
    assert other[0]["met"] is None and "A100" in other[0]["why"] and other[1]["met"] is True
