"""What the device checks share: tiny random models on the CPU, seeded inputs, a model copied to the device, and the
two ways results are compared (normalised maps, agreement of discrete outputs)."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch

from eea_repro.bench.gpu_check import CHECK_DEVICE_VARIABLE
from eea_repro.metrics.engine import normalize_maps
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

CPU = torch.device("cpu")
NUM_CLASSES = 5
# The CI config's models at CI size (config/ci.yaml): a ViT on an 8x8 patch grid, a ResNet on a 3x3 feature grid.
SPECS = {
    "vit": ModelSpec("vit_tiny_patch16_224", "vit", 48, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 6, "depth": 2, "embed_dim": 64, "num_heads": 2}),
    "cnn": ModelSpec("resnet18", "cnn", 48, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                     {"channels": (8, 16, 32, 64), "stem_width": 8, "output_stride": 16}),
}


def checked_device_name() -> str:
    return os.environ.get(CHECK_DEVICE_VARIABLE, "cuda")


def tiny_model(family: str, seed: int = 0) -> ExplainedModel:
    """A frozen random model of ``family`` on the CPU; the device's copy comes from :func:`moved`."""
    torch.manual_seed(seed)
    spec = SPECS[family]
    return ExplainedModel(create_network(spec, NUM_CLASSES), spec).eval().requires_grad_(False)


def moved(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of ``module`` on ``device``: both sides start from the same weights, whatever happens to one of them."""
    return copy.deepcopy(module).to(device)


def tiny_images(count: int, size: int = 48, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def normalised_difference(reference: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Mean |difference| per map after the engine's min-max normalisation (a constant map becomes all ones), so a
    map's scale, which no metric reads, does not count."""
    assert reference.shape == other.shape, (reference.shape, other.shape)
    size = reference.shape[-1]
    return (normalize_maps(reference.cpu(), size)[0] - normalize_maps(other.cpu(), size)[0]).abs().flatten(1).mean(1)


def agreement(reference, other) -> float:
    """The fraction of entries two discrete outputs (top-1 classes, accuracy-based scores) share."""
    return float(np.mean(np.asarray(torch.as_tensor(reference).cpu()) == np.asarray(torch.as_tensor(other).cpu())))
