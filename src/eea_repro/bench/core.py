"""Benchmarks of the heavy stages, each ratio measured side by side in one run: ``python -m eea_repro.bench.core``.

1. engine: the metric engine's throughput (images x perturbation steps / s) against the bare forward pass of the same
   model at the same precision and batch size;
2. naive: the engine against the six metrics computed the way the published evaluation scripts do (one metric after
   another, one removal fraction at a time, a fresh sort per step, one image per forward as in LTX's per-image
   evaluation), on the same inputs, with their numerical agreement;
3. finetune: batched per-image EEA fine-tuning against the one-image-at-a-time loop at equal steps, with the peak
   memory per image;
   and against a bare forward + backward of explainer and explained model at the same batch (the work's limit);
4. dry_run: the time of ``snakemake -n`` for the paper preset with 50,000 images, first and second read;
5. maps: each baseline method's map throughput, which with 1 and 3 feeds a paper-scale cost estimate
   (:func:`eea_repro.report.costs.paper_cost_estimate`);
6. kernels: the explained model's forward throughput under the CPU options a job could take (inference mode,
   channels-last, ``torch.compile`` with its compile time, one or two threads), side by side;
7. overhead: what starting a model job costs before any work (interpreter, imports), and, with ``--run-dir``, the
   measured shared work of a finished run's multi-method jobs and the share of map and metric work that variant
   sharing skipped there;
8. numerics: a training step and a forward of each model under ``numerics: portable`` against ``native``, each
   in fresh processes (the kernel selectors are read when torch loads), alternating, best of the rounds kept;
9. tie_rules (with ``--run-dir``, not in the default list): a finished run's maps scored again under the other tie
   rule, and per method how far NEG and INS move, next to the table's CI half-width.

Models have random weights (``embedded`` = the models of config.yaml, ``ci`` = the tiny ones of config/ci.yaml,
``paper`` = ViT-B/16 and ResNet-101 of config/paper.yaml): nothing is downloaded, and speed does not depend on the
weights.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

from eea_repro.workflow.config import load_config
from eea_repro.report.costs import paper_cost_estimate
from eea_repro.explainer.network import MaskExplainer, eea_loss, finetune_maps, finetune_maps_loop, trainable_parameters
from eea_repro.methods import compute_maps, control_methods
from eea_repro.metrics.engine import MAP_STEPS, METRICS, PRECISIONS, evaluate_batch
from eea_repro.metrics.pixel_order import TieBreak
from eea_repro.models.network import ExplainedModel, ModelSpec, build_explained_model, compile_model, resolve_device
from eea_repro.workflow.names import EEA_METHODS

BENCHMARKS = ("engine", "naive", "finetune", "dry_run", "maps", "kernels", "overhead", "numerics")
PRESET_FILES = {"embedded": "config.yaml", "ci": "config/ci.yaml", "paper": "config/paper.yaml"}
_AGREEMENT_TOLERANCE = {"fp32": 0.01, "bf16": 1.0}  # on the x100 metric scale
# Forwards per image of :func:`naive_metrics`: ADP and PIC (clean + masked each), POS and NEG (10 fractions each),
# DEL and INS (11 each). The engine shares the inputs these have in common: MAP_STEPS per map, plus the image's clean
# forward (shared by all methods in a metric job; here, one method, it counts in full) and one black image per call.
NAIVE_FORWARDS_PER_IMAGE = 2 + 2 + 10 + 10 + 11 + 11
ENGINE_INPUTS_PER_IMAGE = MAP_STEPS + 1
SELECTION_FORWARDS = 10  # EEA's POS selection per image and step: removal fractions 0, 0.1, ..., 0.9


# --------------------------------------------------------------------------------------------------------------
# models and inputs


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


# --------------------------------------------------------------------------------------------------------------
# timing


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


# --------------------------------------------------------------------------------------------------------------
# 1. metric engine vs the bare forward pass


def bare_forward(model, images01: torch.Tensor, total_inputs: int, batch_size: int, precision: str) -> None:
    """``total_inputs`` model inputs in forwards of ``batch_size``: the ceiling the metric engine works against."""
    device = images01.device
    batch = images01[torch.arange(batch_size, device=device) % images01.shape[0]]
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, total_inputs, batch_size):
            model(batch[: min(batch_size, total_inputs - start)])


def bench_engine(model, images01, maps, classes, *, batch_size: int, precision: str, repeats: int) -> dict:
    count = images01.shape[0]
    inputs = count * ENGINE_INPUTS_PER_IMAGE
    device = images01.device
    # the default tie rule; a job draws these once per image and shares them between methods, so they are not timed
    ties = TieBreak("random").permutations([str(i) for i in range(count)], images01.shape[-1] ** 2, device)

    def engine():
        evaluate_batch(model, images01, maps, classes, classes, batch_size=batch_size, precision=precision, ties=ties)

    # Warm-ups run the full workload, so that a compiled model has met every batch shape before the timing.
    engine_s = best_time(engine, device, repeats)
    forward_s = best_time(lambda: bare_forward(model, images01, inputs, batch_size, precision), device, repeats)
    return {
        "images": count,
        "inputs": inputs,
        "engine_inputs_per_s": inputs / engine_s,
        "forward_inputs_per_s": inputs / forward_s,
        "engine_images_per_s": count / engine_s,
        "ratio": forward_s / engine_s,
    }


# --------------------------------------------------------------------------------------------------------------
# 2. the naive implementation (published-scripts style), for speed and agreement only


def naive_metrics(model, images01: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, *,
                  precision: str = "fp32", batch_size: int = 1) -> dict[str, np.ndarray]:
    """ADP, PIC, POS, NEG, DEL, INS with the engine's conventions, computed as the published scripts do.

    One metric after another, one removal fraction at a time, a fresh sort of the map for every step, ``batch_size``
    images per forward (1 = LTX's per-image evaluation). Maps must not be constant (no all-ones special case here);
    ties go in raster order, as the engine's without tie permutations.
    """
    size = images01.shape[-1]
    pixels = size * size
    results: dict[str, list[np.ndarray]] = {name: [] for name in METRICS}

    @torch.inference_mode()
    def probs_hits(inputs, scored):
        with torch.autocast(inputs.device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(inputs).float()
        return logits.softmax(-1).gather(1, scored[:, None])[:, 0], (logits.argmax(-1) == scored).float()

    def removal_curve(images, scored, flat_map, most_relevant_first, fractions, black_canvas=False):
        probs, hits = [], []
        for step in range(fractions):
            removed = pixels * (10 - step) // 10 if black_canvas else pixels * step // 10
            order = torch.sort(flat_map, dim=1, descending=True, stable=True).indices
            keep = torch.ones_like(flat_map)
            keep.scatter_(1, order[:, :removed] if most_relevant_first else order[:, pixels - removed:], 0.0)
            p, h = probs_hits(images * keep.view(-1, 1, size, size), scored)
            probs.append(p)
            hits.append(h)
        return torch.stack(probs, 1), torch.stack(hits, 1)

    def auc(curve):
        return (100 * torch.trapezoid(curve, dx=0.1, dim=1)).double().cpu().numpy()

    for start in range(0, images01.shape[0], batch_size):
        images, scored = images01[start:start + batch_size], classes[start:start + batch_size]
        upsampled = F.interpolate(maps[start:start + batch_size, None].float(), size=(size, size),
                                  mode="bilinear", align_corners=False)[:, 0].flatten(1)
        low, high = upsampled.amin(1, keepdim=True), upsampled.amax(1, keepdim=True)
        soft = ((upsampled - low) / (high - low)).view(-1, 1, size, size)

        clean, _ = probs_hits(images, scored)
        masked, _ = probs_hits(images * soft, scored)
        results["ADP"].append((100 * (clean - masked).clamp(min=0) / clean).double().cpu().numpy())
        clean, _ = probs_hits(images, scored)
        masked, _ = probs_hits(images * soft, scored)
        results["PIC"].append((100 * (clean < masked).double()).cpu().numpy())
        flat = soft.flatten(1)
        results["POS"].append(auc(removal_curve(images, scored, flat, True, 10)[1]))
        results["NEG"].append(auc(removal_curve(images, scored, flat, False, 10)[1]))
        results["DEL"].append(auc(removal_curve(images, scored, flat, True, 11)[0]))
        # Insertion: reveal the most relevant fraction f on black = keep all but the least relevant 1 - f.
        results["INS"].append(auc(removal_curve(images, scored, flat, False, 11, black_canvas=True)[0]))
    return {name: np.concatenate(values) for name, values in results.items()}


def bench_naive(model, images01, maps, classes, *, batch_size: int, precision: str, repeats: int,
                naive_batch_size: int = 1) -> dict:
    device = images01.device
    engine_result = {}

    def engine():
        engine_result.update(evaluate_batch(model, images01, maps, classes, classes, batch_size=batch_size,
                                            precision=precision))

    naive_result = {}

    def naive():
        naive_result.update(naive_metrics(model, images01, maps, classes, precision=precision,
                                          batch_size=naive_batch_size))

    engine_s = best_time(engine, device, repeats)
    naive_s = best_time(naive, device, 1, warmup=lambda: naive_metrics(
        model, images01[:1], maps[:1], classes[:1], precision=precision, batch_size=1))
    # The naive code's forwards at its batch size against the engine's at its batch size, bare: the part of the
    # speed-up that batching and shared inputs can give. The rest is the naive code's per-step bookkeeping.
    count = images01.shape[0]
    engine_forwards_s = best_time(lambda: bare_forward(model, images01, count * ENGINE_INPUTS_PER_IMAGE, batch_size,
                                                       precision), device, repeats)
    naive_forwards_s = best_time(lambda: bare_forward(model, images01, count * NAIVE_FORWARDS_PER_IMAGE,
                                                      naive_batch_size, precision), device, 1)
    differences = {name: float(np.max(np.abs(engine_result[name] - naive_result[name]))) for name in METRICS}
    return {
        "images": images01.shape[0],
        "naive_batch_size": naive_batch_size,
        "engine_images_per_s": images01.shape[0] / engine_s,
        "naive_images_per_s": images01.shape[0] / naive_s,
        "speedup": naive_s / engine_s,
        "forward_bound_speedup": naive_forwards_s / engine_forwards_s,
        "max_abs_difference": differences,
        "agree": all(d <= _AGREEMENT_TOLERANCE[precision] for d in differences.values()),
    }


# --------------------------------------------------------------------------------------------------------------
# 3. batched fine-tuning vs the one-image loop


def bench_finetune(model_cfg: dict, num_classes: int, device: torch.device, *, images: int, loop_images: int,
                   steps: int, chunk_size: int, metric_batch_size: int, seed: int = 0) -> dict:
    """Image-steps per second of :func:`finetune_maps` (chunked, vmapped) and :func:`finetune_maps_loop`.

    No early stop, so both take exactly ``steps`` steps per image. The loop runs on the first ``loop_images`` images
    (its cost is linear in images) and both maps are compared there.
    """
    explained = random_model(model_cfg, num_classes, device, seed)
    explainer = MaskExplainer(explained.spec, explained.net.state_dict(), num_classes).to(device)
    batch, _maps, classes = random_inputs(explained, images, num_classes, device, seed + 1)
    settings = dict(steps=steps, lr=1e-3, lam=10.0, size_loss="ltx", early_stop_pos=None, weight_decay=0.01,
                    metric_batch_size=metric_batch_size)
    loop_images = min(loop_images, images)
    chunk = min(chunk_size, images)
    outputs = {}

    def batched():
        outputs["batched"] = finetune_maps(explainer, explained, batch, classes, chunk_size=chunk, **settings)[0]

    def loop():
        outputs["loop"] = finetune_maps_loop(explainer, explained, batch[:loop_images], classes[:loop_images],
                                             **settings)[0]

    def bare():  # per step, the work itself with shared weights: forward and backward of both models, and the POS
        # selection's forwards of the explained model (one per removal fraction), no per-image parameters
        for start in range(0, images, chunk):
            part = slice(start, start + chunk)
            for _ in range(steps):
                loss = eea_loss(explained, explainer(batch[part]), batch[part], classes[part], 10.0, "ltx")[0]
                torch.autograd.grad(loss, list(trainable_parameters(explainer).values()))
                bare_forward(explained, batch[part], len(batch[part]) * SELECTION_FORWARDS, metric_batch_size,
                             "fp32")

    short = dict(settings, steps=min(2, steps))
    batched_s = best_time(batched, device, 1, warmup=lambda: finetune_maps(
        explainer, explained, batch[:chunk], classes[:chunk], chunk_size=chunk, **short))
    bare_s = best_time(bare, device, 1)
    loop_s = best_time(loop, device, 1, warmup=lambda: finetune_maps_loop(
        explainer, explained, batch[:1], classes[:1], **short))
    _, peak = peak_memory(lambda: finetune_maps(explainer, explained, batch[:chunk], classes[:chunk],
                                                chunk_size=chunk, **short), device)
    batched_rate = images * steps / batched_s
    loop_rate = loop_images * steps / loop_s
    return {
        "images": images,
        "loop_images": loop_images,
        "steps": steps,
        "chunk_size": chunk,
        "batched_image_steps_per_s": batched_rate,
        "loop_image_steps_per_s": loop_rate,
        "batched_ms_per_image_step": 1000 / batched_rate,
        "speedup": batched_rate / loop_rate,
        "bare_image_steps_per_s": images * steps / bare_s,
        "of_bare": bare_s / batched_s,
        "peak_memory_per_image_mib": None if peak is None else peak / chunk / 2**20,
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "sampled RSS growth",
        "max_abs_map_difference": float((outputs["batched"][:loop_images] - outputs["loop"]).abs().max()),
    }


# --------------------------------------------------------------------------------------------------------------
# 4. snakemake -n of the paper preset


def paper_dry_run_config(workflow_dir: str | Path, folder: str | Path, n_images: int = 50_000) -> Path:
    """A complete paper-preset config over an ImageNet-val layout of ``n_images`` label lines (an empty image folder
    and empty local checkpoint files suffice for ``snakemake -n``); returns the config file written in ``folder``."""
    folder = Path(folder)
    images = folder / "val"
    images.mkdir(parents=True, exist_ok=True)
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


# --------------------------------------------------------------------------------------------------------------
# 5. map throughput per method


def bench_maps(model, methods: list[str], images01, classes, *, batch_size: int, precision: str) -> dict[str, float]:
    """Images per second of each method's maps on one batch (after a warm-up on two images)."""
    device = images01.device
    batch, batch_classes = images01[:batch_size], classes[:batch_size]
    rates = {}
    for method in methods:
        def run(images=batch, scored=batch_classes, name=method):
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                compute_maps(name, model, images, scored, seed=0)

        seconds = best_time(run, device, 1, warmup=lambda: run(batch[:2], batch_classes[:2]))
        rates[method] = batch.shape[0] / seconds
    return rates


# --------------------------------------------------------------------------------------------------------------
# 6. CPU kernel options for the metric jobs' forwards


def bench_kernels(model_cfg: dict, num_classes: int, *, images: int, batch_size: int, repeats: int) -> dict:
    """Forward throughput (inputs/s) of the explained model on the CPU, fp32, under each option, side by side; the
    compiled model's first call (the compile, which every job would pay) is timed on its own."""
    device = torch.device("cpu")
    model = random_model(model_cfg, num_classes, device)
    inputs = torch.rand(images, 3, model.input_size, model.input_size, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()

    def forwards(net, data, mode=torch.inference_mode):
        def run():
            with mode():
                for chunk in data.split(batch_size):
                    net(chunk)
        return run

    rates, extra = {}, {}
    torch.set_num_threads(1)
    try:
        rates["no_grad, 1 thread"] = images / best_time(forwards(model, inputs, torch.no_grad), device, repeats)
        rates["inference_mode, 1 thread"] = images / best_time(forwards(model, inputs), device, repeats)
        last = random_model(model_cfg, num_classes, device).to(memory_format=torch.channels_last)
        rates["channels_last, 1 thread"] = images / best_time(
            forwards(last, inputs.contiguous(memory_format=torch.channels_last)), device, repeats)
        compiled = compile_model(model, True)
        started = time.perf_counter()
        forwards(compiled, inputs[:batch_size])()
        extra["compile_seconds"] = time.perf_counter() - started
        rates["torch.compile, 1 thread"] = images / best_time(forwards(compiled, inputs), device, repeats)
        torch.set_num_threads(2)
        rates["inference_mode, 2 threads"] = images / best_time(forwards(model, inputs), device, repeats)
    finally:
        torch.set_num_threads(threads)
    return {"images": images, "inputs_per_s": rates, **extra}


# --------------------------------------------------------------------------------------------------------------
# 7. job overhead and what variant sharing skipped

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


# --------------------------------------------------------------------------------------------------------------
# 9. NEG and INS under the other tie rule, on a finished run


def tie_rule_shift(run_dir: str | Path, config: dict) -> list[dict]:
    """Score a finished run's maps again under the tie rule it did not use (same engine, same images), and per
    (model, variant, method) report the mean NEG and INS under both and the run's table CI half-width."""
    from eea_repro.data.plan import plan_from_config
    from eea_repro.metrics.stage import evaluate_shard
    from eea_repro.metrics.tables import read_per_image

    run_dir = Path(run_dir)
    ran = config["metrics"]["tie_break"]
    other = "raster" if ran == "random" else "random"
    plan = plan_from_config(config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eea-ties-") as scratch:
        for model, model_cfg in config["models"].items():
            methods = config["methods"][model_cfg["family"]]
            shards = []
            for shard in plan.shards:
                out = Path(scratch) / f"{model}_{shard}.csv"
                files = [(v, str(run_dir / f"results/maps/{model}/{v}/{m}/shard-{shard}.npz"))
                         for m in methods for v in config["variants"]]
                evaluate_shard(model_cfg, {**config["metrics"], "tie_break": other},
                               run_dir / f"results/checkpoints/{model}.safetensors", files,
                               run_dir / plan.image_root, run_dir / plan.split_label_file("test"),
                               run_dir / plan.classes_file, out, shard_range=plan.shard_range(shard),
                               seed=config["seed"], device="cpu", precision=config["precision"])
                shards.append(out)
            for variant in config["variants"]:
                table = pd.read_csv(run_dir / f"results/tables/{model}_{variant}.csv").set_index("method")
                rescored = read_per_image(shards, variant, methods).groupby("method", sort=False)[["NEG", "INS"]]
                for method, means in rescored.mean().iterrows():
                    row = {"model": model, "variant": variant, "method": method, "ran": ran}
                    for metric in ("NEG", "INS"):
                        row[f"{metric}_{ran}"] = float(table.loc[method, f"{metric}_mean"])
                        row[f"{metric}_{other}"] = float(means[metric])
                        row[f"{metric}_ci_half"] = float(table.loc[method, f"{metric}_ci_high"]
                                                         - table.loc[method, f"{metric}_ci_low"]) / 2
                    rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------------------
# the whole run


# --------------------------------------------------------------------------------------------------------------
# 8. portable against native numerics


def numerics_step_times(models: dict[str, dict], num_classes: int, *, images: int, repeats: int) -> dict:
    """Best seconds of one AdamW training step and of one forward per model, at this process's numerics (the worker
    of :func:`bench_numerics`)."""
    from eea_repro.models.network import create_network

    device = torch.device("cpu")
    times = {}
    for name, model_cfg in models.items():
        torch.manual_seed(0)
        net = create_network(ModelSpec.from_config(model_cfg), num_classes)
        size = model_cfg["input_size"]
        inputs = torch.rand(images, 3, size, size, generator=torch.Generator().manual_seed(3))
        labels = torch.randint(0, num_classes, (images,), generator=torch.Generator().manual_seed(4))
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

        def step():
            optimizer.zero_grad()
            F.cross_entropy(net(inputs), labels).backward()
            optimizer.step()

        def forward():
            with torch.inference_mode():
                net(inputs)

        step(), forward()  # warm-up: oneDNN generates its kernels on first use
        times[name] = {"train_step_s": best_time(step, device, repeats),
                       "forward_s": best_time(forward, device, repeats)}
    return times


def bench_numerics(models: dict[str, dict], num_classes: int, *, images: int, repeats: int, rounds: int = 2,
                   threads: int = 2) -> dict:
    """Each model's training step and forward under both numerics modes, in fresh processes side by side."""
    from eea_repro.workflow import numerics

    code = ("import json, sys, torch; from eea_repro import bench; job = json.load(sys.stdin); "
            "torch.set_num_threads(job['threads']); "
            "print(json.dumps(bench.numerics_step_times(job['models'], job['num_classes'], images=job['images'], "
            "repeats=job['repeats'])))")
    job = json.dumps({"models": models, "num_classes": num_classes, "images": images, "repeats": repeats,
                      "threads": threads})
    best: dict[str, dict] = {mode: {} for mode in numerics.MODES}
    for _ in range(rounds):
        for mode in numerics.MODES:
            env = {k: v for k, v in os.environ.items() if k not in numerics.SHOWN_VARIABLES}
            numerics.export_numerics_settings(mode, env)
            out = subprocess.run([sys.executable, "-c", code], input=job, env=env, check=True, capture_output=True,
                                 text=True)
            for model, figures in json.loads(out.stdout).items():
                kept = best[mode].setdefault(model, figures)
                best[mode][model] = {k: min(v, kept[k]) for k, v in figures.items()}
    return {"images": images, "threads": threads, "seconds": best}


def run_benchmarks(models: dict[str, dict], num_classes: int, *, device: str = "auto", precision: str = "fp32",
                   batch_size: int = 256, benchmarks: tuple[str, ...] = BENCHMARKS, images: int = 64,
                   naive_images: int = 8, finetune_images: int = 32, finetune_loop_images: int = 4,
                   finetune_steps: int = 5, chunk_size: int = 32, map_images: int = 16,
                   methods: dict[str, list[str]] | None = None, compile: bool = False, repeats: int = 2,
                   workflow_dir: str | Path | None = None, dry_run_images: int = 50_000,
                   run_dir: str | Path | None = None, config: dict | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run the chosen benchmarks for every model; returns a JSON-ready dict (see :func:`format_results`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    unknown = set(benchmarks) - set(BENCHMARKS) - {"tie_rules"}
    if unknown:
        raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; choose from {(*BENCHMARKS, 'tie_rules')}")
    device = resolve_device(device)
    results = {"machine": machine_info(device), "settings": {
        "precision": precision, "batch_size": batch_size, "images": images, "naive_images": naive_images,
        "finetune_images": finetune_images, "finetune_loop_images": finetune_loop_images,
        "finetune_steps": finetune_steps, "chunk_size": chunk_size, "compile": compile}, "models": {}}
    for name, model_cfg in models.items():
        label = model_cfg.get("label", name)
        log(f"{label}: building the model")
        model = random_model(model_cfg, num_classes, device)
        entry = results["models"][name] = {"label": label}
        if methods and methods.get(model_cfg["family"]):
            entry["evaluated_methods"] = len(methods[model_cfg["family"]])  # map sets the metrics score
        if "engine" in benchmarks or "naive" in benchmarks:
            batch, maps, classes = random_inputs(model, images, num_classes, device)
        if "engine" in benchmarks:
            log(f"{label}: metric engine vs bare forward")
            entry["engine"] = {"eager": bench_engine(model, batch, maps, classes, batch_size=batch_size,
                                                     precision=precision, repeats=repeats)}
            if compile:
                entry["engine"]["compiled"] = bench_engine(compile_model(model, True), batch, maps, classes,
                                                           batch_size=batch_size, precision=precision,
                                                           repeats=repeats)
        if "naive" in benchmarks:
            log(f"{label}: metric engine vs naive metrics")
            count = min(naive_images, images)
            entry["naive"] = bench_naive(model, batch[:count], maps[:count], classes[:count], batch_size=batch_size,
                                         precision=precision, repeats=repeats)
        if "finetune" in benchmarks:
            log(f"{label}: batched fine-tuning vs the one-image loop")
            entry["finetune"] = bench_finetune(model_cfg, num_classes, device, images=finetune_images,
                                               loop_images=finetune_loop_images, steps=finetune_steps,
                                               chunk_size=chunk_size, metric_batch_size=batch_size)
        if "maps" in benchmarks:
            family_methods = (methods or {}).get(model_cfg["family"], [])
            chosen = [m for m in family_methods if m not in EEA_METHODS and m not in control_methods()]
            if chosen:
                log(f"{label}: map throughput of {len(chosen)} methods")
                map_batch, _, map_classes = random_inputs(model, map_images, num_classes, device, seed=2)
                entry["maps"] = bench_maps(model, chosen, map_batch, map_classes,
                                           batch_size=min(batch_size, map_images), precision=precision)
        if "kernels" in benchmarks and device.type == "cpu":
            log(f"{label}: CPU kernel options")
            entry["kernels"] = bench_kernels(model_cfg, num_classes, images=images, batch_size=batch_size,
                                             repeats=repeats)
        del model
    if "numerics" in benchmarks and device.type == "cpu":
        log("portable against native numerics")
        results["numerics"] = bench_numerics(models, num_classes, images=images, repeats=repeats)
    if "dry_run" in benchmarks:
        log(f"snakemake -n of the paper preset with {dry_run_images} images")
        results["dry_run"] = bench_dry_run(workflow_dir or default_workflow_dir(), dry_run_images)
    if "overhead" in benchmarks:
        log("job start-up")
        results["overhead"] = {"start": bench_job_start()}
        if run_dir is not None and (Path(run_dir) / "benchmarks").is_dir():
            results["overhead"]["run"] = run_sharing_and_overhead(Path(run_dir) / "benchmarks")
    if "tie_rules" in benchmarks:
        if run_dir is None or config is None:
            raise ValueError("the tie_rules benchmark reads a finished run: give --run-dir (and its preset)")
        log("NEG and INS under the other tie rule")
        results["tie_rules"] = tie_rule_shift(run_dir, config)
    throughputs = measured_throughputs(results)
    if throughputs:
        results["cost_estimate"] = paper_cost_estimate(throughputs).to_dict("records")
    return results


def measured_throughputs(results: dict) -> dict:
    """The figures :func:`paper_cost_estimate` needs, from this run's measurements."""
    throughputs = {}
    for entry in results["models"].values():
        rates = {}
        if "maps" in entry:
            rates["maps"] = entry["maps"]
        if "finetune" in entry:
            rates["finetune"] = entry["finetune"]["batched_image_steps_per_s"]
        if "engine" in entry:
            rates["metrics"] = entry["engine"]["eager"]["engine_images_per_s"]
            if "evaluated_methods" in entry:
                rates["evaluated_methods"] = entry["evaluated_methods"]
        if rates:
            throughputs[entry["label"]] = rates
    return throughputs


def machine_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        try:
            info["load_average"] = [round(load, 2) for load in os.getloadavg()]
        except OSError:
            pass
    return info


def format_results(results: dict) -> str:
    """A plain-text report: one table per benchmark, ratios next to their goals."""
    machine, settings = results["machine"], results["settings"]
    lines = [f"device {machine.get('gpu', machine['device'])}, torch {machine['torch']}, "
             f"{machine['threads']} threads, {settings['precision']}, batch {settings['batch_size']}"
             + (f", load {machine['load_average']}" if "load_average" in machine else ""), ""]
    models = results["models"].values()

    def table(title, header, rows):
        if rows:
            frame = pd.DataFrame(rows, columns=header)
            lines.extend([title, frame.to_string(index=False), ""])

    table("1. metric engine vs bare forward (inputs = images x 20 perturbation steps; goal >= 85 %)",
          ["model", "mode", "engine inputs/s", "forward inputs/s", "engine images/s", "engine / forward"],
          [[e["label"], mode, f"{r['engine_inputs_per_s']:.1f}", f"{r['forward_inputs_per_s']:.1f}",
            f"{r['engine_images_per_s']:.2f}", f"{100 * r['ratio']:.0f} %"]
           for e in models for mode, r in e.get("engine", {}).items()])
    table("2. metric engine vs naive metrics (one metric, one step, one image at a time; CPU goal >= 20x)\n"
          f"   forward-bound = bare forwards of the naive code ({NAIVE_FORWARDS_PER_IMAGE} per image at its batch) "
          f"over the engine's ({ENGINE_INPUTS_PER_IMAGE} per image at batch {settings['batch_size']}), the speed-up "
          "batching and shared inputs alone can give",
          ["model", "images", "engine images/s", "naive images/s", "speed-up", "forward-bound", "max |diff|",
           "agree"],
          [[e["label"], r["images"], f"{r['engine_images_per_s']:.2f}", f"{r['naive_images_per_s']:.3f}",
            f"{r['speedup']:.1f}x", f"{r['forward_bound_speedup']:.1f}x",
            f"{max(r['max_abs_difference'].values()):.2g}", "yes" if r["agree"] else "NO"]
           for e in models if (r := e.get("naive"))])
    table("3. batched EEA fine-tuning vs one-image loop, equal steps (GPU goal >= 30x), and vs a bare forward + "
          "backward of both models at the same batch (the work's limit)",
          ["model", "images", "steps", "chunk", "batched img-steps/s", "loop img-steps/s", "speed-up",
           "bare img-steps/s", "of bare", "ms / img-step", "peak MiB / image", "max |map diff|"],
          [[e["label"], r["images"], r["steps"], r["chunk_size"], f"{r['batched_image_steps_per_s']:.2f}",
            f"{r['loop_image_steps_per_s']:.2f}", f"{r['speedup']:.1f}x", f"{r['bare_image_steps_per_s']:.2f}",
            f"{100 * r['of_bare']:.0f} %", f"{r['batched_ms_per_image_step']:.1f}",
            "-" if r["peak_memory_per_image_mib"] is None else f"{r['peak_memory_per_image_mib']:.1f}",
            f"{r['max_abs_map_difference']:.1e}"]
           for e in models if (r := e.get("finetune"))])
    if "dry_run" in results:
        r = results["dry_run"]
        lines.extend([f"4. snakemake -n, paper preset, {r['images']:,} images: {r['seconds']:.1f} s, again in the "
                      f"same folder {r['seconds_again']:.1f} s ({r['jobs']} jobs)", ""])
    table("5. map throughput (images/s)", ["model", "method", "images/s"],
          [[e["label"], m, f"{rate:.2f}"] for e in models for m, rate in e.get("maps", {}).items()])
    kernel_rows = []
    for e in models:
        if r := e.get("kernels"):
            base = r["inputs_per_s"]["inference_mode, 1 thread"]
            kernel_rows += [[e["label"], option, f"{rate:.1f}", f"{rate / base:.2f}x"]
                            for option, rate in r["inputs_per_s"].items()]
            kernel_rows.append([e["label"], "torch.compile: the compile itself", f"{r['compile_seconds']:.1f} s", ""])
    table("6. CPU kernel options, fp32 forwards (inputs/s; ratio to inference_mode on 1 thread)",
          ["model", "option", "inputs/s", "ratio"], kernel_rows)
    if result := results.get("numerics"):
        rows = []
        for model, portable in result["seconds"]["portable"].items():
            native = result["seconds"]["native"][model]
            rows += [[model, what.removesuffix("_s").replace("_", " "), f"{1000 * native[what]:.0f}",
                      f"{1000 * portable[what]:.0f}", f"{portable[what] / native[what]:.2f}x"] for what in native]
        table(f"8. numerics, {result['images']} images, {result['threads']} threads (ms; ratio portable / native)",
              ["model", "work", "native ms", "portable ms", "ratio"], rows)
    if overhead := results.get("overhead"):
        start = overhead["start"]
        lines.extend([f"7. job start-up: bare interpreter {start['python_s']:.2f} s, interpreter + a model job's "
                      f"imports {start['model_job_imports_s']:.2f} s, + a table or figure job's "
                      f"{start['light_job_imports_s']:.2f} s", ""])
        if run := overhead.get("run"):
            table("   multi-method jobs of the run: wall time and the part not spent in any method (start-up, "
                  "loading, shared forwards)", ["stage", "job", "wall s", "shared s"],
                  [[j["stage"], j["job"], f"{j['wall_s']:.1f}", f"{j['shared_s']:.1f}"] for j in run["jobs"]])
            lines.extend([f"   variant sharing skipped {100 * share:.1f} % of the {stage} work" for stage, share in
                          run["skipped_share"].items()] + [""])
    if results.get("tie_rules"):
        frame = pd.DataFrame(results["tie_rules"])
        ran = frame["ran"].iloc[0]
        other = "raster" if ran == "random" else "random"
        for metric in ("NEG", "INS"):
            frame[f"{metric} shift"] = frame[f"{metric}_{other}"] - frame[f"{metric}_{ran}"]
            frame[f"{metric} > CI"] = (frame[f"{metric} shift"].abs() > frame[f"{metric}_ci_half"]).map(
                {True: "yes", False: ""})
        columns = ["model", "variant", "method"] + [c for m in ("NEG", "INS") for c in
                                                    (f"{m}_{ran}", f"{m}_{other}", f"{m} shift", f"{m}_ci_half",
                                                     f"{m} > CI")]
        lines.extend([f"9. NEG and INS under the {other} tie rule against the run's {ran} one (CI half-width: the "
                      "run's table)", frame[columns].round(2).to_string(index=False), ""])
    if results.get("cost_estimate"):
        frame = pd.DataFrame(results["cost_estimate"])
        frame["gpu_hours"] = frame["gpu_hours"].map(lambda h: f"{h:.2f}")
        frame["throughput"] = frame["throughput"].map(lambda t: "" if pd.isna(t) else f"{t:.2f}")
        lines.extend(["Cost estimate for 50,000 images on this device (hours; fine-tuning at 25 steps, 2 variants)",
                      frame[["model", "stage", "method", "throughput", "unit", "gpu_hours"]]
                      .fillna("").to_string(index=False), ""])
    return "\n".join(lines)


def save_results(results: dict, json_path: str | Path | None = None, text_path: str | Path | None = None) -> str:
    """Write the figures (JSON) and the printed tables (text); returns the text."""
    text = format_results(results)
    for path, content in ((json_path, json.dumps(results, indent=2, default=float)), (text_path, text + "\n")):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m eea_repro.bench.core", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int, default=256, help="model inputs per forward pass")
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help=f"comma-separated subset of {BENCHMARKS}, or tie_rules (with --run-dir)")
    parser.add_argument("--preset", default="embedded", choices=tuple(PRESET_FILES),
                        help="models (random weights): embedded = config.yaml's, ci = config/ci.yaml's (tiny), "
                        "paper = ViT-B/16 + ResNet-101")
    parser.add_argument("--models", default=None, help="comma-separated model keys of the preset (default: all)")
    parser.add_argument("--images", type=int, default=64, help="images for the engine benchmark")
    parser.add_argument("--naive-images", type=int, default=8, help="images for the naive comparison")
    parser.add_argument("--finetune-images", type=int, default=32, help="images fine-tuned by the batched code")
    parser.add_argument("--finetune-loop-images", type=int, default=4, help="images fine-tuned by the loop")
    parser.add_argument("--finetune-steps", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=32, help="images fine-tuned together")
    parser.add_argument("--map-images", type=int, default=16, help="images per map method")
    parser.add_argument("--dry-run-images", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of the fast measurements (best kept)")
    parser.add_argument("--compile", action="store_true", help="also time the engine on a torch.compile'd model")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workflow-dir", default=None, help="the folder with the Snakefile and configs")
    parser.add_argument("--run-dir", default=None, help="a finished run's working folder: its benchmarks/ feed the "
                        "overhead benchmark (shared work per job, the share variant sharing skipped)")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = preset_config(args.preset, args.workflow_dir)
    models = config["models"]
    if args.models:
        models = {name: models[name] for name in args.models.split(",")}
    results = run_benchmarks(
        models, num_classes_of(config), device=args.device, precision=args.precision, batch_size=args.batch_size,
        benchmarks=tuple(b for b in args.benchmarks.split(",") if b), images=args.images,
        naive_images=args.naive_images, finetune_images=args.finetune_images,
        finetune_loop_images=args.finetune_loop_images, finetune_steps=args.finetune_steps,
        chunk_size=args.chunk_size, map_images=args.map_images, methods=config["methods"], compile=args.compile,
        repeats=args.repeats, workflow_dir=args.workflow_dir, dry_run_images=args.dry_run_images,
        run_dir=args.run_dir, config=config, log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    results["settings"]["preset"] = args.preset
    print(save_results(results, args.json))
    return results


if __name__ == "__main__":
    main()
