"""Benchmark 3, ``finetune``: batched per-image EEA fine-tuning against the one-image-at-a-time loop at equal steps,
with the peak memory per image, and against a bare forward + backward of explainer and explained model at the same
batch (the work's limit)."""

from __future__ import annotations

import torch

from eea_repro.bench.common import bare_forward, best_time, peak_memory, random_inputs, random_model
from eea_repro.explainer.finetuning import finetune_maps, finetune_maps_loop
from eea_repro.explainer.network import MaskExplainer, eea_loss, trainable_parameters

SELECTION_FORWARDS = 10  # EEA's POS selection per image and step: removal fractions 0, 0.1, ..., 0.9


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
