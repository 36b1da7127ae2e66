"""Benchmark 4, ``dry_run``: the time of ``snakemake -n`` for the paper preset with 50,000 images, first and second
read of the workflow in one folder."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from eea_repro.bench.common import preset_config


def paper_dry_run_config(workflow_dir: str | Path, folder: str | Path, n_images: int = 50_000) -> Path:
    """A complete paper-preset config over an ImageNet-val layout of ``n_images`` label lines (an image folder that
    holds one placeholder file and empty local checkpoint files suffice for ``snakemake -n``); returns the config file
    written in ``folder``."""
    folder = Path(folder)
    images = folder / "val"
    images.mkdir(parents=True, exist_ok=True)
    (images / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    labels = folder / "val_labels.txt"
    labels.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {i % 1000}\n" for i in range(1, n_images + 1)))
    config = preset_config("paper", workflow_dir)
    config |= {"imagenet_dir": str(images), "imagenet_labels": str(labels)}
    imagenet = config["dataset"]["imagenet"]
    if n_images < 50_000:  # keep the preset's proportions on a smaller label file
        scale = n_images / 50_000
        for key in ("eval_count", "explainer_train_count", "explainer_val_count"):
            imagenet[key] = max(1, int(imagenet[key] * scale))
    for name in config["models"]:
        weights = folder / f"{name}.pth"
        weights.write_bytes(b"")
        config["models"][name]["checkpoint"] = {"source": "file", "path": str(weights)}
    path = folder / "paper.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def bench_dry_run(workflow_dir: str | Path, n_images: int = 50_000) -> dict:
    """Wall time of ``snakemake -n`` (Python start-up included) and the number of jobs it plans: the first read of
    the workflow in a folder checks the models; a second one reads the kept answers (``eea_repro.preflight.facts``),
    as every later invocation there does, a cluster job's included."""
    with tempfile.TemporaryDirectory(prefix="eea-dry-run-") as folder:
        config = paper_dry_run_config(workflow_dir, folder, n_images)
        command = [sys.executable, "-m", "snakemake", "-s", str(Path(workflow_dir) / "Snakefile"), "--directory",
                   str(Path(folder) / "run"), "--cores", "1", "-n", "--configfile", str(config)]
        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True)
            seconds.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise RuntimeError(f"snakemake -n failed:\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE)
    return {"images": n_images, "seconds": seconds[0], "seconds_again": seconds[1],
            "jobs": int(total.group(1)) if total else None}
