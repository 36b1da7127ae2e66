"""Benchmark 1, ``engine``: the metric engine's throughput (images x perturbation steps / s) against the bare forward
pass of the same model at the same precision and batch size."""

from __future__ import annotations

from eea_repro.bench.common import ENGINE_INPUTS_PER_IMAGE, bare_forward, best_time
from eea_repro.metrics.engine import evaluate_batch
from eea_repro.metrics.pixel_order import TieBreak


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
