"""Class-activation maps for timm CNNs, on the last stage's feature map (the output of ``forward_features``).

The explained logits are recomputed from those features with ``forward_head``, so the gradients only flow through the
head. One backward pass of the summed per-image class logits gives every image its own gradient (eval mode).
"""

from __future__ import annotations

import torch

from eea_repro.methods.registry import enabled_autograd, register

GRADCAM_PP_EPS = 1e-6  # keeps Grad-CAM++'s alpha finite where the gradient vanishes (as pytorch-grad-cam does)


def feature_map_network(net, spec) -> None:
    """What the CNN methods read: timm's ``forward_features`` giving a (B, C, h, w) map, and ``forward_head``
    recomputing the logits from it. Checked with one forward (on the meta device before any job runs)."""
    name = type(net).__name__
    if not (hasattr(net, "forward_features") and hasattr(net, "forward_head")):
        raise ValueError(f"{name} has no timm forward_features / forward_head")
    device = next(net.parameters()).device
    shape = net.forward_features(torch.zeros(1, 3, spec.input_size, spec.input_size, device=device)).shape
    if len(shape) != 4:
        raise ValueError(f"{name}: forward_features gives {tuple(shape)}, not a (B, C, h, w) feature map")


def last_features(model, images01: torch.Tensor) -> torch.Tensor:
    """The last stage's feature map (B, C, h, w) of the explained CNN, without gradients."""
    with torch.no_grad():
        features = model.net.forward_features(model.normalize(images01))
    if features.ndim != 4:
        name = type(model.net).__name__
        raise ValueError(f"{name}: expected (B, C, h, w) features, got shape {tuple(features.shape)}")
    return features


def _features_and_gradients(model, images01: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-stage features and the gradient of each image's class logit with respect to them, both float32."""
    with enabled_autograd():
        features = last_features(model, images01.detach().clone()).requires_grad_(True)
        logits = model.net.forward_head(features)
        (gradients,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), features)
    return features.detach().float(), gradients.float()


def _weighted_activation_map(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """ReLU of the channel-weighted sum of the feature maps: (B, C) x (B, C, h, w) -> (B, h, w)."""
    return (weights[:, :, None, None] * features).sum(dim=1).clamp(min=0)


@register("gradcam", "GC", ("cnn",), class_specific=True, requires=feature_map_network)
def gradcam(model, images01, classes, generator=None):
    """Grad-CAM (Selvaraju et al.): channel weights are the spatially averaged gradients of the class logit."""
    features, gradients = _features_and_gradients(model, images01, classes)
    return _weighted_activation_map(gradients.mean(dim=(2, 3)), features)


@register("gradcam_pp", "GC++", ("cnn",), class_specific=True, requires=feature_map_network)
def gradcam_plus_plus(model, images01, classes, generator=None):
    """Grad-CAM++ (Chattopadhay et al., eq. 19) in its closed form on the logit gradients g:
    alpha = g^2 / (2 g^2 + sum_xy(A) g^3), channel weight = sum_xy alpha * ReLU(g)."""
    features, gradients = _features_and_gradients(model, images01, classes)
    squared = gradients.pow(2)
    activation_sums = features.sum(dim=(2, 3), keepdim=True)
    alpha = squared / (2 * squared + activation_sums * squared * gradients + GRADCAM_PP_EPS)
    weights = (alpha * gradients.clamp(min=0)).sum(dim=(2, 3))
    return _weighted_activation_map(weights, features)
