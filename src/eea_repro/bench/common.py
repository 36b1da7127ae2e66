"""What the benchmarks share: the presets' models with random weights, seeded inputs, timing, peak memory and the
bare forward pass the metric work is measured against.

Models have random weights (``embedded`` = the models of config.yaml, ``ci`` = the tiny ones of config/ci.yaml,
``paper`` = ViT-B/16 and ResNet-101 of config/paper.yaml): nothing is downloaded, and speed does not depend on the
weights.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from eea_repro.metrics.engine import MAP_STEPS
from eea_repro.models.network import ExplainedModel, ModelSpec, build_explained_model
from eea_repro.workflow.config import load_config

PRESET_FILES = {"embedded": "config.yaml", "ci": "config/ci.yaml", "paper": "config/paper.yaml"}
# Model inputs per image of the metric engine, which shares the inputs the metrics have in common: MAP_STEPS per
# map, plus the image's clean forward (shared by all methods in a metric job; here, one method, it counts in full)
# and one black image per call.
ENGINE_INPUTS_PER_IMAGE = MAP_STEPS + 1


def default_workflow_dir() -> Path:
    """The workflow folder holding this package (src/eea_repro/bench -> the folder with the Snakefile)."""
    return Path(__file__).resolve().parents[3]


def preset_config(preset: str, workflow_dir: str | Path | None = None) -> dict:
    if preset not in PRESET_FILES:
        raise ValueError(f"preset {preset!r} is not one of {tuple(PRESET_FILES)}")
    path = Path(workflow_dir or default_workflow_dir()) / PRESET_FILES[preset]
    return load_config(path)  # the preset with the schema's defaults filled in


def num_classes_of(config: dict) -> int:
    dataset = config["dataset"]
    return int(dataset[dataset["kind"]]["n_classes"])


def random_model(model_cfg: dict, num_classes: int, device: torch.device, seed: int = 0) -> ExplainedModel:
    """The configured timm network with random weights, frozen and in eval mode (as the stages use it)."""
    torch.manual_seed(seed)
    return build_explained_model(ModelSpec.from_config(model_cfg), num_classes, None, device)


def random_inputs(model: ExplainedModel, count: int, num_classes: int, device: torch.device, seed: int = 1):
    """[0, 1] images, maps on a coarse grid (as the methods produce) and classes, all seeded."""
    generator = torch.Generator().manual_seed(seed)
    size = model.input_size
    grid = max(2, size // 16)
    images = torch.rand(count, 3, size, size, generator=generator)
    maps = torch.rand(count, grid, grid, generator=generator)
    classes = torch.randint(num_classes, (count,), generator=generator)
    return images.to(device), maps.to(device), classes.to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(run: Callable[[], object], device: torch.device, repeats: int = 1,
              warmup: Callable[[], object] | None = None) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (``warmup``, default ``run`` itself)."""
    (warmup or run)()
    _synchronize(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        run()
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def _rss_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return None


def peak_memory(run: Callable[[], object], device: torch.device) -> tuple[object, int | None]:
    """(result, peak bytes above the starting level) of one call: CUDA allocator peak, or sampled RSS on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = run()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - start
    start = _rss_bytes()
    if start is None:
        return run(), None
    peak, done = [start], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run()
    finally:
        done.set()
        sampler.join()
    return result, max(0, peak[0] - start)


def bare_forward(model, images01: torch.Tensor, total_inputs: int, batch_size: int, precision: str) -> None:
    """``total_inputs`` model inputs in forwards of ``batch_size``: the ceiling the metric engine works against."""
    device = images01.device
    batch = images01[torch.arange(batch_size, device=device) % images01.shape[0]]
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, total_inputs, batch_size):
            model(batch[: min(batch_size, total_inputs - start)])
