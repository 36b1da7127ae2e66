"""Benchmark 2, ``naive``: the metric engine against the six metrics computed the way the published evaluation
scripts do (one metric after another, one removal fraction at a time, a fresh sort per step, one image per forward
as in LTX's per-image evaluation), on the same inputs, with their numerical agreement; for speed and agreement
only."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eea_repro.bench.common import ENGINE_INPUTS_PER_IMAGE, bare_forward, best_time
from eea_repro.metrics.engine import METRICS, evaluate_batch

_AGREEMENT_TOLERANCE = {"fp32": 0.01, "bf16": 1.0}  # on the x100 metric scale
# Forwards per image of :func:`naive_metrics`: ADP and PIC (clean + masked each), POS and NEG (10 fractions each),
# DEL and INS (11 each).
NAIVE_FORWARDS_PER_IMAGE = 2 + 2 + 10 + 10 + 11 + 11


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
