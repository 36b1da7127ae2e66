"""The memory each job declares (resources: mem_mb): the model behind it, the line each job logs, and the CI run's
jobs against their declarations."""

import re

import pandas as pd
import pytest

from eea_repro.preflight import job_memory
from eea_repro.workflow.logs import PEAK_MEMORY, memory_line

SETTINGS = {"explainer": {"batch_size": 16, "val_count": 2}, "finetune": {"chunk_size": 6},
            "metrics": {"batch_size": 64}, "dataset": {"shard_size": 3}}
# EfficientNet-Lite2 at 224 px, as measured on the meta device
LITE2 = {"weights": 24_368_288, "retained": 138_732_064, "largest": 4_816_896, "image": 602_112,
         "cpu_budget": 2**30}


def test_a_pass_counts_its_configured_inputs_or_what_fits_in_the_budget():
    tiny = {**LITE2, "retained": 1000, "largest": 100, "image": 100, "weights": 10}
    # a tiny network's largest pass: 128 IG steps under autograd (1,100 bytes each)
    assert job_memory.largest_pass_bytes(tiny, SETTINGS, budget=10**9) == 128 * 1100
    # Lite2: fine-tuning cuts its chunk of 6 to the 3 images that fit (2 x 139.3 MB each), each with 5 weight copies
    per_image = 2 * (LITE2["retained"] + LITE2["image"])
    assert job_memory.largest_pass_bytes(LITE2, SETTINGS, budget=2**30) == 3 * (per_image + 5 * LITE2["weights"])
    # a pass that does not fit at all still takes one input
    assert job_memory.largest_pass_bytes(LITE2, SETTINGS, budget=10) == per_image + 5 * LITE2["weights"]


def test_a_cpu_job_declares_the_process_weights_images_and_its_passes():
    declared = job_memory.model_job_mb(LITE2, SETTINGS, "cpu")
    expected = job_memory.PROCESS_MB + (job_memory.WEIGHT_COPIES * LITE2["weights"]
                                        + job_memory.IMAGE_COPIES * 3 * LITE2["image"]
                                        + job_memory.PASSES * job_memory.largest_pass_bytes(LITE2, SETTINGS, 2**30)
                                        ) / 1e6
    assert declared == pytest.approx(expected, abs=1)
    # on a GPU the passes are in device memory; "auto" counts as a CPU
    assert job_memory.model_job_mb(LITE2, SETTINGS, "cuda:1") < declared - 2000
    assert job_memory.model_job_mb(LITE2, SETTINGS, "auto") == declared


def test_training_declares_the_whole_batch_under_autograd_and_its_images():
    small, large = (job_memory.training_job_mb(LITE2, batch, 100, "cpu") for batch in (8, 32))
    assert large - small == pytest.approx(3 * 24 * (LITE2["retained"] + LITE2["image"]) / 1e6, abs=1)
    fewer, more = (job_memory.training_job_mb(LITE2, 8, images, "cpu") for images in (100, 1100))
    assert more - fewer == pytest.approx(2 * 1000 * LITE2["image"] / 1e6, abs=1)


def test_the_logged_line_flags_a_job_above_its_declaration(monkeypatch):
    from eea_repro.workflow import logs

    monkeypatch.setattr(logs, "peak_resident_mb", lambda: 1200)
    assert memory_line(1500) == f"{PEAK_MEMORY} 1200 MB of the 1500 MB declared (resources: mem_mb)"
    assert "ABOVE the declaration" in memory_line(1000)
    assert memory_line(None).endswith("(no mem_mb declared)")


def test_the_meta_footprint_is_the_real_one():
    import torch

    from eea_repro.models.memory import input_footprint
    from eea_repro.models.network import ModelSpec, create_network

    config = {"models": {"resnet": {"family": "cnn", "timm_name": "resnet18", "input_size": 48,
                                    "mean": [0.5] * 3, "std": [0.5] * 3}}}
    facts = job_memory.model_facts(config)["resnet"]
    net = create_network(ModelSpec.from_config(config["models"]["resnet"]), 1000).eval()
    real = input_footprint(net, 48, torch.device("cpu"))
    assert (facts["retained"], facts["largest"], facts["image"]) == (real.retained, real.largest, real.image)
    assert facts["weights"] == sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])


def _declared(log_text: str) -> tuple[int, int | None]:
    match = re.search(rf"{PEAK_MEMORY} (\d+) MB of the (\d+) MB declared", log_text)
    return (int(match[1]), int(match[2])) if match else (0, None)


def test_every_job_of_the_ci_run_stays_within_the_memory_it_declares(tiny_run):
    """Each job's peak, from its own log and from Snakemake's benchmark of its process tree, is at most its
    declared mem_mb."""
    logs = sorted((tiny_run / "logs").rglob("*.log"))
    lines = {path.relative_to(tiny_run / "logs").with_suffix(""): _declared(path.read_text()) for path in logs}
    undeclared = [str(name) for name, (_, declared) in lines.items() if declared is None]
    assert not undeclared, f"jobs without a memory line: {undeclared[:5]}"
    above = {str(name): pair for name, pair in lines.items() if pair[0] > pair[1]}
    assert not above, f"jobs above their declared mem_mb (peak, declared): {above}"
    benchmarked = 0
    for path in (tiny_run / "benchmarks").rglob("*.tsv"):
        name = path.relative_to(tiny_run / "benchmarks").with_suffix("")
        if name in lines:
            benchmarked += 1
            peak = pd.read_csv(path, sep="\t")["max_rss"].max()
            assert peak <= lines[name][1], f"{name}: benchmark max_rss {peak:.0f} MB > {lines[name][1]} MB declared"
    assert benchmarked >= 10  # the heavy jobs: maps, metrics, explainers, sanity checks


def test_a_similarity_job_declares_its_reference_maps_at_the_input_size():
    small = job_memory.similarity_job_mb(6, 7, 48)
    assert small == job_memory.LIGHT_JOB_MB + 4  # 6 images x 8 stacks x 48^2 pixels x 32 bytes = 3.5 MB, rounded up
    # the paper preset: 1,000 images, 10 methods at 224 px hold gigabytes, where a light job's 1.3 GB would not do
    assert job_memory.similarity_job_mb(1000, 10, 224) > 15_000


def test_the_profile_gives_light_jobs_what_the_memory_model_counts_for_them():
    import yaml

    from conftest import REPO

    profile = yaml.safe_load((REPO / "profiles" / "default" / "profile.yaml").read_text())
    assert profile["default-resources"]["mem_mb"] == job_memory.LIGHT_JOB_MB
