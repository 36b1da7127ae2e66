"""The GPU path proven in one call: ``python -m eea_repro.bench.gpu_check OUT_DIR [--device cuda] [--budget-s 480]``.

A GPU machine is lent for minutes, so one prepared command does it all, each step only while the budget lasts:
(1) the device-against-CPU tests (``tests/gpu``); (2) the CI config end to end on the device and on the CPU, side by
side, every metric table compared; (3) the bench of the paper's models (random weights) at fp32 and bf16; (4) the
paper-scale cost estimate from those rates, and the speed goals of the GPU path met or not. OUT_DIR/gpu_check.json holds
every figure, OUT_DIR/gpu_check.txt the summary (also printed), OUT_DIR/*.log each command's output. The exit status
is 1 when a test failed, a table is outside its tolerance or a step broke. ``--device cpu --tiny`` runs every step at
CI size on a CPU, where the two runs' tables must be identical.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eea_repro.bench.common import default_workflow_dir, num_classes_of, preset_config
from eea_repro.bench.run import format_results, machine_info, measured_throughputs, run_benchmarks
from eea_repro.methods import METHODS
from eea_repro.models.network import resolve_device
from eea_repro.report.costs import markdown_table, paper_cost_estimate
from eea_repro.workflow.gpu_slots import visible_devices
from eea_repro.workflow.numerics import cpu_model, export_numerics_settings

CHECK_DEVICE_VARIABLE = "EEA_CHECK_DEVICE"  # the device tests/gpu compares with the CPU
RESERVE_S = 10  # of the budget, kept for what the step clock does not see: the start (imports) and the summary
TAIL_LINES = 30
# Max |difference| per column of a metric table (points of 100), device run against CPU run: the same CI run on this
# CPU's native kernels instead of the portable ones (other rounding, training included) moved a column by 2.8 at
# most, and a PIC mean moves 2.5 for each of the 40 images that changes side.
TABLE_TOLERANCE = 5.0
# Methods drawing from the device's own generator (the random control): CUDA's stream is not the CPU's, so their rows
# are left out of a device-against-CPU comparison.
DEVICE_DRAWN_METHODS = frozenset(name for name, method in METHODS.items() if method.seeded)
# The GPU path's goals: ViT-B/16 fine-tuning image-steps/s per GPU, at most 1 GiB per fine-tuned image, and the metric
# engine at 85 % of the bare forward pass or more.
FINETUNE_GOALS = {"H200": 250.0, "H100": 150.0}
FINETUNE_MEMORY_GOAL_MIB = 1024.0
ENGINE_GOAL = 0.85
GOAL_MODEL = "ViT-B/16"
# Fine-tuning has no bf16 path, so it is timed once, with the fp32 run.
PRECISION_BENCHMARKS = {"fp32": ("finetune", "engine", "maps"), "bf16": ("engine", "maps")}
TINY_BENCH = dict(images=6, naive_images=2, finetune_images=4, finetune_loop_images=2, finetune_steps=2, chunk_size=4,
                  map_images=2, batch_size=32, repeats=1)
RUNS = ("run_device", "run_cpu")


class BudgetSpent(Exception):
    """The budget ran out while a step ran."""


class Budget:
    """The seconds a check may take: a step starts only while some are left (:data:`RESERVE_S` kept back) and is
    stopped when they run out."""

    def __init__(self, seconds: float):
        self.seconds, self.started = seconds, time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.seconds - RESERVE_S - self.used()

    @contextlib.contextmanager
    def enforced(self):
        """Raise :class:`BudgetSpent` in the step when the budget runs out (a SIGALRM timer: main thread only)."""
        def spent(signum, frame):
            raise BudgetSpent

        previous = signal.signal(signal.SIGALRM, spent)
        signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-3))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_step(record: dict, name: str, budget: Budget, work) -> None:
    """``work(entry)`` as step ``name`` while the budget lasts; its status, seconds and figures go to the record."""
    entry = record["steps"][name] = {}
    if budget.left() <= 0:
        entry.update(status="skipped", reason=f"the budget of {budget.seconds:g} s was spent before this step "
                     f"({budget.used():.0f} s used, {RESERVE_S} s kept for the summary)")
        return
    log(f"step {name}: {budget.left():.0f} s of the budget left")
    started = time.monotonic()
    try:
        with budget.enforced():
            work(entry)
        entry["status"] = "done"
    except BudgetSpent:
        entry.update(status="stopped", reason=f"the budget ran out {time.monotonic() - started:.0f} s into this step")
    except Exception as error:  # recorded, and the later steps still run
        entry.update(status="error", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    entry["seconds"] = round(time.monotonic() - started, 1)


@contextlib.contextmanager
def started(command: list[str], log_path: Path, *, cwd: Path, env: dict | None = None):
    """A running command writing to ``log_path`` in its own process group, killed with its children (Snakemake's
    jobs) when the step is stopped or fails."""
    with open(log_path, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def tail(log_path: Path) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:])


def gpu_tests(entry: dict, device: torch.device, workflow_dir: Path, out_dir: Path) -> None:
    """``pytest tests/gpu`` on ``device``, in the numerics a workflow job runs in; the outcome counts and the tail."""
    env = dict(os.environ)
    export_numerics_settings(preset_config("ci", workflow_dir)["numerics"], env)
    env[CHECK_DEVICE_VARIABLE] = str(device)
    command = [sys.executable, "-m", "pytest", "tests/gpu", "-q", "-rs", "-p", "no:cacheprovider"]
    log_path = out_dir / "gpu_tests.log"
    with started(command, log_path, cwd=workflow_dir, env=env) as process:
        returncode = process.wait()
    output = log_path.read_text(errors="replace")
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {outcome.rstrip("s"): int(count)
              for count, outcome in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    entry.update(command=f"{CHECK_DEVICE_VARIABLE}={device} {shlex.join(command)}", returncode=returncode,
                 counts=counts, tail=tail(log_path))


def snakemake_command(workflow_dir: Path, folder: Path, device: torch.device, targets: list[str]) -> list[str]:
    """The CI config, one seed, to ``targets`` on ``device``; on a GPU as many GPU jobs at once as there are devices
    (each job binds its own, ``eea_repro.workflow.gpu_slots``)."""
    gpus = ["--resources", f"gpu={len(visible_devices())}"] if device.type == "cuda" else []
    return [sys.executable, "-m", "snakemake", "--cores", "all", "--configfile", str(workflow_dir / "config/ci.yaml"),
            "--config", f"device={device.type}", "replicates=1", *gpus, "-s", str(workflow_dir / "Snakefile"),
            "--directory", str(folder), *targets]


def workflow_runs(entry: dict, device: torch.device, tiny: bool, workflow_dir: Path, out_dir: Path) -> None:
    """The CI config to its metric tables (``tiny``: its first model's only) on ``device`` (OUT_DIR/run_device) and on
    the CPU (OUT_DIR/run_cpu), side by side (the first mostly waits on the GPU, the second on the cores), then every
    table compared."""
    config = preset_config("ci", workflow_dir)
    entry["models"] = list(config["models"])[:1] if tiny else list(config["models"])
    tables = [f"results/tables/{model}_{variant}.csv" for model in entry["models"] for variant in config["variants"]]
    runs = dict(zip(RUNS, (device, torch.device("cpu"))))
    starts = time.monotonic()
    with contextlib.ExitStack() as stack:
        processes = {folder: stack.enter_context(started(
            snakemake_command(workflow_dir, out_dir / folder, where, tables), out_dir / f"{folder}.log",
            cwd=workflow_dir)) for folder, where in runs.items()}
        while not all(folder in entry for folder in runs):  # polled: each run's own wall time, whichever ends first
            for folder, process in processes.items():
                if folder not in entry and process.poll() is not None:
                    entry[folder] = {"command": shlex.join(process.args), "returncode": process.returncode,
                                     "seconds": round(time.monotonic() - starts, 1)}
            time.sleep(0.5)
    for folder in RUNS:
        if entry[folder]["returncode"] != 0:
            entry[folder]["tail"] = tail(out_dir / f"{folder}.log")
            raise RuntimeError(f"snakemake in {folder} failed (exit {entry[folder]['returncode']}): "
                               f"see {out_dir / folder}.log")
    exact = device.type == "cpu"
    entry["tolerance"] = 0.0 if exact else TABLE_TOLERANCE
    entry["tables"] = {Path(table).name: compare_tables(out_dir / RUNS[0] / table, out_dir / RUNS[1] / table, exact)
                       for table in tables}
    entry["within_tolerance"] = all(table["within_tolerance"] for table in entry["tables"].values())


def compare_tables(device_csv: Path, cpu_csv: Path, exact: bool) -> dict:
    """One metric table of both runs: the max |difference| per numeric column and whether it is within
    :data:`TABLE_TOLERANCE` (``exact``: both runs on the CPU, so the files must be identical)."""
    identical = filecmp.cmp(device_csv, cpu_csv, shallow=False)
    on_device, on_cpu = (pd.read_csv(path).set_index("method") for path in (device_csv, cpu_csv))
    left_out = [] if exact else sorted(DEVICE_DRAWN_METHODS & set(on_cpu.index))
    on_device, on_cpu = on_device.drop(index=left_out, errors="ignore"), on_cpu.drop(index=left_out)
    if not (on_device.index.equals(on_cpu.index) and on_device.columns.equals(on_cpu.columns)):
        return {"identical": identical, "within_tolerance": False, "reason": "other methods or columns"}
    numeric = on_cpu.select_dtypes("number").columns
    one_sided_nan = on_device[numeric].isna() ^ on_cpu[numeric].isna()
    difference = (on_device[numeric] - on_cpu[numeric]).abs().fillna(0.0).mask(one_sided_nan, np.inf)
    columns = {column: float(value) for column, value in difference.max().items()}
    worst = max(columns, key=columns.get)
    same_labels = on_device.drop(columns=numeric).equals(on_cpu.drop(columns=numeric))
    within = identical if exact else same_labels and columns[worst] <= TABLE_TOLERANCE
    return {"identical": identical, "within_tolerance": within, "max_abs_difference": columns[worst],
            "worst_column": worst, "columns": columns, "left_out": left_out}


def bench(entry: dict, device: torch.device, tiny: bool, workflow_dir: Path) -> None:
    """The bench's fine-tuning, engine and map benchmarks at fp32 and bf16: the paper's models, or the CI ones."""
    entry["preset"] = "ci" if tiny else "paper"
    config = preset_config(entry["preset"], workflow_dir)
    for precision, benchmarks in PRECISION_BENCHMARKS.items():
        entry[precision] = run_benchmarks(
            config["models"], num_classes_of(config), device=str(device), precision=precision, benchmarks=benchmarks,
            methods=config["methods"], workflow_dir=workflow_dir, log=log, **(TINY_BENCH if tiny else {}))


def cost_estimate(entry: dict, bench_entry: dict) -> None:
    """The paper-scale estimate from the bench's rates: fp32, and with ``precision: bf16`` (the maps' and the metric
    engine's bf16 rates; fine-tuning keeps its rate)."""
    rates = measured_throughputs(bench_entry["fp32"])
    entry["fp32"] = paper_cost_estimate(rates).to_dict("records")
    if "bf16" in bench_entry:
        bf16_rates = measured_throughputs(bench_entry["bf16"])
        entry["bf16"] = paper_cost_estimate({label: {**model_rates, **bf16_rates.get(label, {})}
                                             for label, model_rates in rates.items()}).to_dict("records")


def goals(record: dict) -> list[dict]:
    """The GPU path's goals with what this check measured: met, missed, or not applicable (with why)."""
    machine = record["machine"]
    gpu = machine.get("gpu")
    kind = next((kind for kind in FINETUNE_GOALS if gpu and kind in gpu), None)
    runs = {precision: results for precision, results in record["steps"].get("bench", {}).items()
            if precision in PRECISION_BENCHMARKS}
    models = {entry["label"]: entry for entry in runs.get("fp32", {}).get("models", {}).values()}
    finetune = models.get(GOAL_MODEL, {}).get("finetune")

    def goal(text, measured, threshold, at_most=False):
        if gpu is None:
            return {"goal": text, "measured": measured, "met": None, "why": "not applicable on a CPU"}
        if measured is None:
            return {"goal": text, "measured": None, "met": None, "why": "not measured in this check"}
        return {"goal": text, "measured": measured, "met": measured <= threshold if at_most else measured >= threshold}

    rate_goal = (f"{GOAL_MODEL} fine-tuning >= {FINETUNE_GOALS['H200']:.0f} image-steps/s on an H200 "
                 f"(>= {FINETUNE_GOALS['H100']:.0f} on an H100)")
    rate = finetune and finetune["batched_image_steps_per_s"]
    if gpu is not None and kind is None:
        found = [{"goal": rate_goal, "measured": rate, "met": None, "why": f"no goal is set for a {gpu}"}]
    else:
        found = [goal(rate_goal, rate, FINETUNE_GOALS.get(kind))]
    found.append(goal(f"{GOAL_MODEL} fine-tuning at <= {FINETUNE_MEMORY_GOAL_MIB:.0f} MiB per image",
                      finetune and finetune["peak_memory_per_image_mib"], FINETUNE_MEMORY_GOAL_MIB, at_most=True))
    for precision, results in runs.items():
        for entry in results.get("models", {}).values():
            ratio = entry.get("engine", {}).get("eager", {}).get("ratio")
            found.append(goal(f"{entry['label']} metric engine >= {100 * ENGINE_GOAL:.0f} % of the bare forward at "
                              f"{precision}", ratio, ENGINE_GOAL))
    return found


def failures(record: dict) -> list[str]:
    """What makes the check fail: a broken step, a failed GPU test, a table outside its tolerance."""
    steps = record["steps"]
    found = [f"step {name}: {step['error']}" for name, step in steps.items() if step["status"] == "error"]
    tests = steps.get("gpu_tests", {})
    if tests.get("returncode", 0) != 0:
        found.append(f"GPU tests failed (exit {tests['returncode']}, {tests['counts']})")
    workflow = steps.get("workflow", {})
    if workflow.get("within_tolerance") is False:
        outside = [name for name, table in workflow["tables"].items() if not table["within_tolerance"]]
        found.append(f"tables outside the tolerance {workflow['tolerance']:g}: {', '.join(outside)}")
    return found


def device_info(device: torch.device) -> dict:
    """The bench's machine record, with the device's memory, the CUDA and cuDNN versions and the CPU."""
    info = machine_info(device) | {"cuda": torch.version.cuda, "cpu": cpu_model()}
    if device.type == "cuda":
        info["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return info


def describe_machine(machine: dict) -> str:
    return (f"{machine.get('gpu') or machine['cpu']} ({machine['memory_gib']} GiB), torch {machine['torch']}, CUDA "
            f"{machine['cuda']}" + (f", cuDNN {machine['cudnn']}" if "cudnn" in machine else "")
            + f", {machine['threads']} CPU threads")


def format_summary(record: dict) -> str:
    """The readable summary: each step's outcome, the tables' differences, the bench's tables, the estimate, goals."""
    steps = record["steps"]
    lines = [f"GPU check {record['date']} on {describe_machine(record['machine'])}; budget {record['budget_s']:.0f} s,"
             f" used {record['used_s']:.0f} s", ""]
    for number, (name, step) in enumerate(steps.items(), 1):
        state = "" if step["status"] == "done" else f" {step['status'].upper()}: {step.get('reason') or step['error']}"
        lines.append(f"{number}. {name} ({step.get('seconds', 0):.0f} s){state}")
        if name == "gpu_tests" and "counts" in step:
            lines.append(f"   {step['command']}: {step['counts']} (exit {step['returncode']})")
        if name == "workflow" and "tables" in step:
            run_times = " and ".join(f"{run} {step[run]['seconds']:.0f} s" for run in RUNS)
            lines.append(f"   {run_times}; tolerance {step['tolerance']:g} (max |difference| per column)")
            lines.extend(f"   {table}: " + ("identical" if result["identical"] else
                                            f"max |difference| {result.get('max_abs_difference', float('nan')):.3g} "
                                            f"({result.get('worst_column') or result.get('reason')})")
                         + ("" if result["within_tolerance"] else "  OUTSIDE")
                         + (f", left out {', '.join(result['left_out'])}" if result.get("left_out") else "")
                         for table, result in step["tables"].items())
        if name == "bench":  # the bench's own tables; the cost estimate is step 4's
            for precision in (precision for precision in PRECISION_BENCHMARKS if precision in step):
                figures = {key: value for key, value in step[precision].items() if key != "cost_estimate"}
                lines += [f"   {precision}:", format_results(figures)]
        if name == "cost_estimate":
            lines.extend(f"   {precision} (50,000 images, both variants, one seed):\n"
                         + markdown_table(pd.DataFrame(step[precision])) for precision in ("fp32", "bf16")
                         if precision in step)
    lines += ["", "Goals:"] + [f"   {g['goal']}: measured "
                               + ("-" if g["measured"] is None else format(g["measured"], ".3g")) + ", "
                               + ("met" if g["met"] else "not met" if g["met"] is False else g["why"])
                               for g in record["goals"]]
    incomplete = [name for name, step in steps.items() if step["status"] in ("skipped", "stopped")]
    lines += ["", ("FAIL: " + "; ".join(record["failures"]) if record["failures"] else
                   f"INCOMPLETE: nothing failed, but {', '.join(incomplete)} did not finish" if incomplete else "PASS")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eea_repro.bench.gpu_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="where the runs, logs, gpu_check.json and gpu_check.txt go")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--budget-s", type=float, default=480, help="the check stops itself before this")
    parser.add_argument("--tiny", action="store_true", help="a CPU-sized check: the workflow to the CI config's "
                        "first model's tables only, the bench on the CI models and a few images")
    parser.add_argument("--workflow-dir", type=Path, default=None, help="the folder with the Snakefile and tests/")
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)
    workflow_dir = (args.workflow_dir or default_workflow_dir()).resolve()
    out_dir = args.out_dir.resolve()
    for folder in RUNS:
        if (out_dir / folder).exists():
            parser.error(f"{out_dir / folder} exists: the check runs the workflow from scratch; give a new OUT_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": device_info(device),
              "device": str(device), "tiny": args.tiny, "budget_s": args.budget_s, "steps": {}}
    print(f"GPU check on {describe_machine(record['machine'])}", flush=True)
    run_step(record, "gpu_tests", budget, lambda entry: gpu_tests(entry, device, workflow_dir, out_dir))
    run_step(record, "workflow", budget, lambda entry: workflow_runs(entry, device, args.tiny, workflow_dir, out_dir))
    run_step(record, "bench", budget, lambda entry: bench(entry, device, args.tiny, workflow_dir))
    if "fp32" in record["steps"]["bench"]:
        run_step(record, "cost_estimate", budget, lambda entry: cost_estimate(entry, record["steps"]["bench"]))
    else:
        record["steps"]["cost_estimate"] = {"status": "skipped", "reason": "no fp32 bench figures to estimate from"}
    record["goals"] = goals(record)
    record["failures"] = failures(record)
    record["passed"] = not record["failures"]
    record["used_s"] = round(budget.used(), 1)
    summary = format_summary(record)
    (out_dir / "gpu_check.json").write_text(json.dumps(record, indent=2, default=float))
    (out_dir / "gpu_check.txt").write_text(summary + "\n")
    print(summary)
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
