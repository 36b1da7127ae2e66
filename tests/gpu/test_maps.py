"""Every registered map method on the device against the CPU, on a tiny random ViT and ResNet, at fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from gpu.device_helpers import CPU, SPECS, moved, normalised_difference, tiny_images, tiny_model
from eea_repro.methods import METHODS, compute_maps, methods_for_family
from eea_repro.metrics.engine import PRECISIONS, autocast
from eea_repro.models.network import for_inference

pytestmark = pytest.mark.gpu

# Mean |difference| of the min-max normalised maps, averaged over the batch. fp32: a GPU computes convolutions in
# TF32 (cuDNN's default; the workflow keeps it), and on the CPU an input change of that size (5e-4) moves these maps
# by 0.0024 at most; bf16: the same rounding in other places (the CPU's bf16 maps under a 1e-3 input change move by
# 0.07 at most, partial LRP's).
MAP_TOLERANCE = {"fp32": 0.01, "bf16": 0.1}
# Pixel-level LRP amplifies any rounding on a random ViT: on the CPU a 5e-4 input change moves its maps by 0.09 on
# average, bf16 rounding by 0.25; it is held to finite maps that agree at this coarse level.
ILL_CONDITIONED_TOLERANCE = {"full_lrp": 0.35}
MAP_SEED = 7
METHOD_FAMILY_PAIRS = [(name, family) for family in SPECS for name in methods_for_family(family)]


@pytest.fixture(scope="module")
def models():
    """Each family's model as the maps stage uses it (channels-last for the CNN), on the CPU."""
    return {family: for_inference(tiny_model(family)) for family in SPECS}


def maps_of(name, model, images, classes, precision):
    with autocast(images.device, precision):
        return compute_maps(name, model, images, classes, seed=MAP_SEED)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(("name", "family"), METHOD_FAMILY_PAIRS)
def test_maps_on_the_device_match_the_cpu(models, device, name, family, precision):
    model = models[family]
    images = tiny_images(4)
    with torch.no_grad():
        classes = model(images).argmax(1)  # the explained class scores highest: class-specific maps are informative
    on_cpu = maps_of(name, model, images, classes, precision)
    on_device_model = moved(model, device)
    on_device = maps_of(name, on_device_model, images.to(device), classes.to(device), precision)
    assert on_device.device.type == device.type and on_device.dtype == torch.float32
    assert on_device.shape == on_cpu.shape and torch.isfinite(on_device).all()
    if METHODS[name].seeded and device != CPU:
        # drawn from the device's own generator, whose stream is not the CPU's: the seed promises the same maps on
        # the device, not the CPU's
        again = maps_of(name, on_device_model, images.to(device), classes.to(device), precision)
        assert torch.equal(on_device, again)
        assert 0 <= on_device.min() and on_device.max() < 1
        return
    difference = normalised_difference(on_cpu, on_device).mean().item()
    assert difference <= ILL_CONDITIONED_TOLERANCE.get(name, MAP_TOLERANCE[precision]), (name, precision, difference)
