"""What the per-pass memory budget (``models.memory``) costs and saves, side by side: each heavy pass of a real-photos
job (EfficientNet-Lite2 at 224 px, random weights) run with the budget and without it (a budget no pass reaches),
alternately, each run in a fresh process started as the workflow starts its jobs (allocator and CPU-kernel settings,
the rule's thread count), so that one run's heap does not serve the next:

    python -m eea_repro.bench.memory_bound [--repeats 2] [--out memory_bound.json]

It prints, per pass, the best wall time and the peak resident memory (VmHWM) of the process with and without the
budget, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from eea_repro.models.memory import CPU_BUDGET_BYTES

MODEL = {"family": "cnn", "timm_name": "efficientnet_lite2", "input_size": 224, "mean": [0.485, 0.456, 0.406],
         "std": [0.229, 0.224, 0.225]}
UNBOUNDED = 2**50
# pass -> (threads of its rule, what it runs)
PASSES = {
    "scorecam": (1, "Score-CAM of 1 image (1,280 masked images, chunks of 128)"),
    "integrated_gradients": (1, "IG of 3 images (50 steps, chunks of 128)"),
    "gradcam_batch": (1, "Grad-CAM of 16 images, in batches of what fits"),
    "explainer": (2, "2 training steps of 16 images, then validation POS of 16 images (256 inputs per forward)"),
}


def _run_pass(name: str) -> None:
    """The pass itself (in the worker process)."""
    import torch

    from eea_repro.bench.common import random_model
    from eea_repro.methods import compute_maps

    model = random_model(MODEL, 1000, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(16, 3, 224, 224, generator=generator)
    classes = torch.randint(1000, (16,), generator=generator)
    if name == "scorecam":
        compute_maps("scorecam", model, images[:1], classes[:1])
    elif name == "integrated_gradients":
        compute_maps("integrated_gradients", model, images[:3], classes[:3])
    elif name == "gradcam_batch":  # as the maps stage cuts a batch of 16 (explainer.batch_size)
        from eea_repro.models.memory import gradient_chunk

        batch = gradient_chunk(model, 16, 224, torch.device("cpu"))
        for start in range(0, 16, batch):
            compute_maps("gradcam", model, images[start:start + batch], classes[start:start + batch])
    else:
        from eea_repro.explainer.network import MaskExplainer, freeze
        from eea_repro.explainer.pretraining import _accumulate_gradients, _validation_pos
        from eea_repro.models.network import ModelSpec

        explainer = MaskExplainer(ModelSpec.from_config(MODEL), None, 1000)
        freeze(model.net)
        optimizer = torch.optim.AdamW([p for p in explainer.parameters() if p.requires_grad], lr=1e-4)
        explainer.train()
        for _ in range(2):
            optimizer.zero_grad()
            _accumulate_gradients(explainer, model, images, classes, 10.0, "l1")
            optimizer.step()
        _validation_pos(explainer, model, images, classes, 64, 256)


def _worker(name: str, budget: int) -> None:
    import torch

    from eea_repro.models import memory
    from eea_repro.workflow.logs import peak_resident_mb

    torch.set_num_threads(PASSES[name][0])
    memory.CPU_BUDGET_BYTES = budget
    started = time.perf_counter()
    _run_pass(name)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_resident_mb()}))


def _job_environment() -> dict[str, str]:
    """The environment the workflow gives its jobs (allocator and portable CPU kernels)."""
    from eea_repro.workflow.allocator import export_allocator_settings
    from eea_repro.workflow.numerics import export_numerics_settings

    environment = dict(os.environ)
    export_allocator_settings(environment)
    export_numerics_settings("portable", environment)
    return environment


def measure(names: list[str], repeats: int) -> dict[str, dict]:
    environment = _job_environment()
    results = {name: {"unbounded": [], "bounded": []} for name in names}
    for _ in range(repeats):
        for name in names:
            for label, budget in (("unbounded", UNBOUNDED), ("bounded", CPU_BUDGET_BYTES)):
                command = [sys.executable, "-m", "eea_repro.bench.memory_bound", "--worker", name, str(budget)]
                output = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
                results[name][label].append(json.loads(output.stdout.strip().splitlines()[-1]))
    summary = {}
    for name, runs in results.items():
        best = {label: min(run["seconds"] for run in values) for label, values in runs.items()}
        peak = {label: max(run["peak_mb"] for run in values) for label, values in runs.items()}
        summary[name] = {"what": PASSES[name][1], "threads": PASSES[name][0], "seconds": best, "peak_mb": peak,
                         "time_ratio": best["bounded"] / best["unbounded"],
                         "memory_ratio": peak["bounded"] / peak["unbounded"], "runs": runs}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--passes", nargs="+", default=list(PASSES), choices=list(PASSES))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", nargs=2, metavar=("PASS", "BUDGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], int(args.worker[1]))
        return 0
    summary = measure(args.passes, args.repeats)
    print(f"{'pass':22s} {'threads':>7s} {'unbounded s':>12s} {'bounded s':>10s} {'time':>6s} "
          f"{'unbounded MB':>13s} {'bounded MB':>11s} {'memory':>7s}")
    for name, row in summary.items():
        print(f"{name:22s} {row['threads']:7d} {row['seconds']['unbounded']:12.1f} {row['seconds']['bounded']:10.1f} "
              f"{row['time_ratio']:6.2f} {row['peak_mb']['unbounded']:13.0f} {row['peak_mb']['bounded']:11.0f} "
              f"{row['memory_ratio']:7.2f}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
