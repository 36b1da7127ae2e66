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


# ITU-R BT.709 luma, as scikit-image's rgb2gray
_GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)


@register("edges", "Edges (no model)", ("vit", "cnn"), class_specific=False, control=True)
def edge_map(model, images01, classes, generator=None):
    """The no-information control (Binder et al., CVPR 2023): the Sobel gradient magnitude of the grey image at input
    resolution, scikit-image's ``filters.sobel`` (edge-replicated borders). It follows the image's edges, which is
    what many maps look like, but never reads the model, so it must fail every test of sensitivity to the model."""
    weights = torch.tensor(_GREY_WEIGHTS, device=images01.device, dtype=images01.dtype).view(1, 3, 1, 1)
    grey = torch.nn.functional.pad((images01 * weights).sum(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    smooth = torch.tensor([1.0, 2.0, 1.0], device=images01.device, dtype=images01.dtype) / 4
    edge = torch.tensor([1.0, 0.0, -1.0], device=images01.device, dtype=images01.dtype)
    kernels = torch.stack([torch.outer(edge, smooth), torch.outer(smooth, edge)]).unsqueeze(1)  # d/dy, d/dx
    gradients = torch.nn.functional.conv2d(grey, kernels.flip(-1, -2))  # a convolution, as scipy's, not a correlation
    return (gradients.square().sum(dim=1) / 2).sqrt().float()
