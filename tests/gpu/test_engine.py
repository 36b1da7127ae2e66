"""The metric engine on the device against the CPU: one shard's shared forwards and both variants' scores, at fp32
and bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu.device_helpers import CPU, NUM_CLASSES, SPECS, agreement, moved, tiny_images, tiny_model
from eea_repro.metrics.engine import PRECISIONS, prepare_shard, score_variants
from eea_repro.metrics.pixel_order import TieBreak
from eea_repro.models.network import for_inference

pytestmark = pytest.mark.gpu

# Max |difference| per image of the probability-based metrics (ADP, DEL, INS; points of 100): on the CPU a 5e-4 input
# change (TF32's rounding) moves them by 0.017 at most, bf16 against fp32 by 0.15.
METRIC_TOLERANCE = {"fp32": 0.1, "bf16": 1.0}
# Share of images whose argmax-sensitive outputs (clean top-1, 'correct', and the accuracy or threshold based POS,
# NEG, PIC) are the same: a random model's classes sit close, and bf16 against fp32 on the CPU changes 8 % of them.
ARGMAX_AGREEMENT = {"fp32": 0.9, "bf16": 0.85}
ARGMAX_METRICS = ("POS", "NEG", "PIC")
PROBABILITY_METRICS = ("ADP", "DEL", "INS")
IMAGES = 32


def shard_inputs():
    """Images, labels, tie orders and each variant's maps on a coarse grid, with one invalid and one constant map."""
    generator = torch.Generator().manual_seed(2)
    maps = {variant: torch.rand(IMAGES, 6, 6, generator=generator) for variant in ("target", "predicted")}
    maps["target"][0] = float("nan")
    maps["target"][1] = 0.5
    labels = torch.randint(NUM_CLASSES, (IMAGES,), generator=generator)
    ties = TieBreak("random", 0).permutations([f"image{i}" for i in range(IMAGES)], 48 * 48)
    return tiny_images(IMAGES), labels, ties, maps


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", SPECS)
def test_metric_engine_on_the_device_matches_the_cpu(device, family, precision):
    model = for_inference(tiny_model(family))  # as the metric stage uses it
    images, labels, ties, maps = shard_inputs()
    sides = []
    for where in (CPU, device):
        on_where = moved(model, where)
        shard = prepare_shard(on_where, images.to(where), labels, ties=ties, batch_size=64, precision=precision)
        sides.append((shard, score_variants(on_where, shard, maps, batch_size=64, precision=precision)))
    (cpu_shard, cpu_scores), (device_shard, device_scores) = sides
    assert device_shard.clean_probs.device.type == device.type
    threshold = ARGMAX_AGREEMENT[precision]
    assert agreement(cpu_shard.clean_top1, device_shard.clean_top1) >= threshold
    for variant, cpu_result in cpu_scores.items():
        result = device_scores[variant]
        np.testing.assert_array_equal(result["valid"], cpu_result["valid"])
        np.testing.assert_array_equal(result["constant"], cpu_result["constant"])
        assert agreement(cpu_result["correct"], result["correct"]) >= threshold
        # scores of one class on both sides: where the two top-1s differ, 'predicted' explains another class
        same_class = (cpu_shard.classes(variant) == device_shard.classes(variant).cpu()).numpy() & result["valid"]
        for name in ARGMAX_METRICS:
            assert agreement(cpu_result[name][same_class], result[name][same_class]) >= threshold, (variant, name)
        for name in PROBABILITY_METRICS:
            difference = np.abs(cpu_result[name][same_class] - result[name][same_class]).max()
            assert difference <= METRIC_TOLERANCE[precision], (variant, name, difference)
