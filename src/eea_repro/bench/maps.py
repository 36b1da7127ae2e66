"""Benchmark 5, ``maps``: each baseline method's map throughput, which with ``engine`` and ``finetune`` feeds a
paper-scale cost estimate (:func:`eea_repro.report.costs.paper_cost_estimate`)."""

from __future__ import annotations

import torch

from eea_repro.bench.common import best_time
from eea_repro.methods import compute_maps


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
