"""Faults in real Snakemake runs: SIGKILL of long jobs and resume, a bad input image stopping the run before any model
job, and two runs with the same seed giving identical tables."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eea_repro.workflow.config import load_config
from eea_repro.explainer.pretraining import PRETRAIN_STATE_FILE

from workflow_helpers import snakemake, write_config

pytestmark = pytest.mark.workflow

TARGET = "results/tables/vit_target.csv"  # pretraining, EEA/pEEA map shards, metric shards, one table


def kill_test_config(repo: Path) -> dict:
    """The CI config with EEA only, the 'target' variant, three shards of 8 images and a 3-epoch explainer; the test
    asks for one table (ViT), so the other model stays configured but does not run."""
    config = load_config(repo / "config/ci.yaml")
    config["variants"] = ["target"]
    config["models"]["vit"]["train"]["epochs"] = 1
    config["methods"] = {"vit": ["eea"], "cnn": ["eea"]}
    config["dataset"]["embedded"]["counts"] = {"train": 96, "val": 32, "test": 24}
    config["dataset"]["shard_size"] = 8
    config["explainer"] |= {"epochs": 3, "train_count": 64, "val_count": 16, "batch_size": 16}
    config["finetune"] |= {"steps": 4, "chunk_size": 8}
    return config


def start_snakemake(repo: Path, workdir: Path, configfile: Path) -> subprocess.Popen:
    """Snakemake in its own process group (its jobs are its children there), as a user's terminal would run it."""
    command = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(workdir),
               "--cores", "2", TARGET, "--rerun-incomplete", "--configfile", str(configfile)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def incomplete_outputs(workdir: Path) -> set[str]:
    """Outputs Snakemake has marked as belonging to a started, unfinished job (.snakemake/incomplete/<base64 path>)."""
    root = workdir / ".snakemake" / "incomplete"
    found = set()
    for path in root.rglob("*") if root.exists() else ():
        if path.is_file() and path.name != "migration_underway":
            encoded = "".join(part.lstrip("@") for part in path.relative_to(root).parts)
            found.add(base64.urlsafe_b64decode(encoded).decode())
    return found


def finished(workdir: Path, pattern: str) -> dict[str, tuple[int, str]]:
    """Outputs matching ``pattern`` whose job finished: path -> (mtime_ns, sha256)."""
    pending = incomplete_outputs(workdir)
    done = {}
    for path in sorted(workdir.glob(pattern)):
        relative = path.relative_to(workdir).as_posix()
        if relative not in pending:
            done[relative] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return done


def running(workdir: Path, log_pattern: str, output_of) -> list[Path]:
    """Jobs whose script has started (log opened) and whose output is absent or still marked incomplete."""
    pending = incomplete_outputs(workdir)
    return [log for log in workdir.glob(log_pattern)
            if not (workdir / output_of(log)).exists() or output_of(log) in pending]


def kill_when(process: subprocess.Popen, condition, what: str, timeout: float = 240.0) -> None:
    """SIGKILL Snakemake and all its jobs (the process group) as soon as ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def shard_of(log: Path) -> str:
    return log.stem.rsplit("_", 1)[1]


def map_of(log: Path) -> str:  # logs/maps/vit_target_<method>_<shard>.log
    method = log.stem.split("_")[2]
    return f"results/maps/vit/target/{method}/shard-{shard_of(log)}.npz"


def metrics_of(log: Path) -> str:  # logs/metrics/vit_<shard>.log
    return f"results/metrics/vit/shard-{shard_of(log)}.csv"


def final_outputs(workdir: Path) -> dict[str, object]:
    """Everything the target depends on that must not depend on the run's history: explainer weights, maps, selected
    steps, per-image metrics, the table."""
    outputs = {}
    for path in sorted((workdir / "results").rglob("*")):
        relative = path.relative_to(workdir).as_posix()
        if path.suffix == ".npz":
            with np.load(path) as shard:
                outputs[relative] = {key: shard[key].tolist() for key in shard.files}
        elif relative.startswith(("results/explainers/", "results/maps/", "results/metrics/", "results/tables/")) \
                and path.suffix in (".safetensors", ".csv"):
            outputs[relative] = path.read_bytes()
    return outputs


def test_sigkill_of_pretraining_finetuning_and_metrics_then_rerun_matches_an_uninterrupted_run(repo, tmp_path):
    configfile = write_config(tmp_path / "kill.yaml", kill_test_config(repo))
    reference = tmp_path / "reference"
    snakemake(repo, reference, TARGET, "--configfile", str(configfile))

    workdir = tmp_path / "killed"
    untouched: dict[str, tuple[int, str]] = {}

    # 1. explainer pretraining, mid-way: after its first epoch's training checkpoint, before its weights
    kill_when(start_snakemake(repo, workdir, configfile),
              lambda: (workdir / "results/explainers/vit/target.resume" / PRETRAIN_STATE_FILE).exists(),
              "explainer pretraining to finish an epoch")
    assert not (workdir / "results/explainers/vit/target.json").exists(), "pretraining ended before the kill"

    # 2. an EEA fine-tuning shard, while another map shard is finished
    snakemake(repo, workdir, "--unlock", "--configfile", str(configfile))
    kill_when(start_snakemake(repo, workdir, configfile),
              lambda: running(workdir, "logs/maps/vit_target_eea_*.log", map_of)
              and finished(workdir, "results/maps/vit/target/*/shard-*.npz"),
              "an EEA shard running next to a finished one")
    untouched |= finished(workdir, "results/maps/vit/target/*/shard-*")

    # 3. a metric shard, while another metric shard is finished
    snakemake(repo, workdir, "--unlock", "--configfile", str(configfile))
    kill_when(start_snakemake(repo, workdir, configfile),
              lambda: running(workdir, "logs/metrics/vit_*.log", metrics_of)
              and finished(workdir, "results/metrics/vit/shard-*.csv"),
              "a metric shard running next to a finished one")
    untouched |= finished(workdir, "results/maps/vit/target/*/shard-*") | finished(
        workdir, "results/metrics/vit/shard-*.csv")
    assert any("/metrics/" in path for path in untouched) and any("/maps/" in path for path in untouched)

    # 4. the documented recovery: unlock, rerun the same command (--rerun-incomplete)
    snakemake(repo, workdir, "--unlock", "--configfile", str(configfile))
    snakemake(repo, workdir, TARGET, "--rerun-incomplete", "--configfile", str(configfile))
    now = {path: (Path(workdir / path).stat().st_mtime_ns,
                  hashlib.sha256((workdir / path).read_bytes()).hexdigest()) for path in untouched}
    assert now == untouched, "a shard finished before a kill was recomputed"
    assert not incomplete_outputs(workdir)
    killed, uninterrupted = final_outputs(workdir), final_outputs(reference)
    assert sorted(killed) == sorted(uninterrupted)
    differing = [path for path in uninterrupted if killed[path] != uninterrupted[path]]
    assert not differing, f"outputs differ from the uninterrupted run: {differing}"


def test_a_bad_image_stops_the_run_at_the_split_stage(repo, tmp_path):
    """ImageNet layout with one truncated JPEG: the first job fails naming file and line; no model job runs."""
    images = tmp_path / "val"
    images.mkdir()
    lines = []
    for index in range(1, 13):
        noise = np.random.default_rng(index).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(noise).save(images / f"ILSVRC2012_val_{index:08d}.JPEG", quality=90)
        lines.append(f"ILSVRC2012_val_{index:08d}.JPEG {index % 4}\n")
    broken = images / "ILSVRC2012_val_00000005.JPEG"
    broken.write_bytes(broken.read_bytes()[:300])
    labels = tmp_path / "val_labels.txt"
    labels.write_text("".join(lines))
    config = load_config(repo / "config/paper.yaml")
    config |= {"imagenet_dir": str(images), "imagenet_labels": str(labels)}
    config["dataset"] |= {"shard_size": 4, "imagenet": {"n_classes": 4, "eval_count": 8, "explainer_train_count": 2,
                                                         "explainer_val_count": 2}}
    for name in config["models"]:
        weights = tmp_path / f"{name}.pth"
        weights.write_bytes(b"")
        config["models"][name]["checkpoint"] = {"source": "file", "path": str(weights)}
    workdir = tmp_path / "run"
    result = snakemake(repo, workdir, "--configfile", str(write_config(tmp_path / "bad.yaml", config)), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    failure = next(line for line in output.splitlines() if line.startswith("Input error: "))
    assert failure.startswith(f"Input error: {broken} (line 5 of {labels}): ") and "truncated" in failure.lower()
    assert "Error in rule split_lists" in output and "Traceback" not in output  # one line; the log keeps the rest
    log = failure.rsplit("(traceback in ", 1)[1].rstrip(")")
    assert "Traceback (most recent call last)" in (workdir / log).read_text()
    assert not (workdir / "results/checkpoints").exists() and not (workdir / "logs/checkpoints").exists()


def test_two_runs_with_the_same_seed_give_identical_tables(repo, tiny_run, tmp_path):
    """The metric tables and the localisation tables (every map of every method feeds them), rebuilt from scratch."""
    config = load_config(repo / "config/ci.yaml")
    tables = [Path(f"results/tables/{model}_{variant}.csv")
              for model in config["models"] for variant in config["variants"]]
    tables += [Path(f"results/tables/localisation_{model}.csv") for model in config["models"]]
    second = tmp_path / "second"
    second.mkdir()
    snakemake(repo, second, *map(str, tables), "--configfile", str(repo / "config/ci.yaml"))  # --configfile takes all
    differing = [str(p) for p in tables if (tiny_run / p).read_bytes() != (second / p).read_bytes()]
    assert not differing, f"tables differ between two runs with the same seed: {differing}"
