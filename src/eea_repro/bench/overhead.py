"""Benchmark 7, ``overhead``: what starting a job costs before any work (interpreter, imports), and, from a finished
run's ``benchmarks/``, the measured shared work of its multi-method jobs and the share of map and metric work that
variant sharing skipped there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

# What a model job imports before its work (timm comes with its first network), and what a table or figure job does.
MODEL_JOB_IMPORTS = "import eea_repro.workflow.logs, eea_repro.methods.stage, timm"
LIGHT_JOB_IMPORTS = "import eea_repro.workflow.logs, eea_repro.metrics.tables, eea_repro.sanity.figures"


def bench_job_start(repeats: int = 3) -> dict:
    """Seconds from starting a Python interpreter to having imported what a model job imports, and what a table or
    figure job imports (best of ``repeats``), and the same for a bare interpreter: the floor of every job's overhead."""
    def run(code: str) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(
                Path(__file__).resolve().parents[2])})
            best = min(best, time.perf_counter() - started)
        return best

    return {"python_s": run("pass"), "model_job_imports_s": run(MODEL_JOB_IMPORTS),
            "light_job_imports_s": run(LIGHT_JOB_IMPORTS)}


def run_sharing_and_overhead(benchmarks_dir: str | Path) -> dict:
    """From a finished run's ``benchmarks/``: per multi-method job, its wall time beyond its methods' own seconds
    (start-up, loading, shared forwards), and per stage the share of map / metric work variant sharing skipped
    (images served minus images computed, over images served)."""
    from eea_repro.report.page import rule_runtimes

    runtimes = rule_runtimes(benchmarks_dir).set_index(["stage", "job"])["seconds"]
    jobs, stages = [], {}
    for path in sorted(Path(benchmarks_dir).rglob("*.methods.csv")):
        frame = pd.read_csv(path)
        key = (path.parent.name, path.name.removesuffix(".methods.csv"))
        if key in runtimes.index:
            jobs.append({"stage": key[0], "job": key[1], "wall_s": float(runtimes[key]),
                         "shared_s": float(runtimes[key]) - float(frame["seconds"].sum())})
        totals = stages.setdefault(key[0], {"served": 0, "computed": 0})
        totals["served"] += int(frame["images"].sum())
        totals["computed"] += int(frame["computed"].sum())
    skipped = {stage: 1 - t["computed"] / t["served"] for stage, t in stages.items() if t["served"]}
    return {"jobs": jobs, "skipped_share": skipped}
