"""Control maps that carry no information about the image, for both model families: uniform noise (the floor a
real method should beat) and a constant map (every pixel tied)."""

from __future__ import annotations

import torch

from eea_repro.methods.cnn import feature_map_network, last_features
from eea_repro.methods.vit import attention_network
from eea_repro.methods.registry import register


def native_grid(model, images01: torch.Tensor) -> tuple[int, int]:
    """(h, w) of the model's native map grid: the ViT patch grid or the CNN's last feature map (one 1-image forward)."""
    if model.family == "vit":
        grid_h, grid_w = model.net.patch_embed.grid_size
        return int(grid_h), int(grid_w)
    features = last_features(model, images01[:1])
    return int(features.shape[-2]), int(features.shape[-1])


def grid_network(net, spec) -> None:
    """The controls need the model's native map grid: the ViT patch grid or the CNN feature map."""
    if spec.family == "vit":
        attention_network(net, spec)
    else:
        feature_map_network(net, spec)


@register("random", "Random", ("vit", "cnn"), class_specific=False, control=True, requires=grid_network, seeded=True)
def random_map(model, images01, classes, generator=None):
    """Uniform noise in [0, 1) on the native grid, drawn from ``generator`` so that a seed reproduces it."""
    grid_h, grid_w = native_grid(model, images01)
    return torch.rand(
        (images01.shape[0], grid_h, grid_w), generator=generator, device=images01.device, dtype=torch.float32
    )


@register("all_ones", "All-ones", ("vit", "cnn"), class_specific=False, control=True, requires=grid_network)
def all_ones(model, images01, classes, generator=None):
    """The constant map 1 on the native grid."""
    grid_h, grid_w = native_grid(model, images01)
    return torch.ones((images01.shape[0], grid_h, grid_w), device=images01.device, dtype=torch.float32)
