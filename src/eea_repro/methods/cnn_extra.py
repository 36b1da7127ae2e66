"""The paper's other CNN baselines: Score-CAM, Ablation-CAM, LayerCAM, LIFT-CAM, Integrated Gradients and FullGrad.

The CAM methods work on the last stage's feature map (the output of ``forward_features``) and follow the semantics of
the implementations LTX ran (pytorch-grad-cam for Score-CAM, Ablation-CAM and LayerCAM; the LIFT-CAM authors' captum
DeepLift on the head; captum Integrated Gradients; the Idiap FullGrad reference), rewritten batched in torch so that
the whole computation stays on the model's device. IG and FullGrad are pixel attributions: they return (B, H, W) maps
at the input resolution, the CAMs (B, h, w) maps on the feature grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.methods.cnn import _features_and_gradients, _weighted_activation_map, feature_map_network, last_features
from eea_repro.models.memory import (inference_chunk, input_footprint, inputs_per_chunk, memory_budget,
                                     training_bytes)
from eea_repro.methods.registry import enabled_autograd, register

SCORECAM_CHUNK = 256  # masked images per forward pass of the whole network
SCORECAM_EPS = 1e-8  # pytorch-grad-cam's guard in the per-mask min-max
ABLATION_CHUNK = 512  # ablated feature-map copies per forward pass of the head
LIFTCAM_LINEARITY_RTOL = 1e-3  # how far DeepLIFT's summation-to-delta may miss before the head counts as non-linear
IG_STEPS = 50  # captum's default, which LTX used
IG_INTERNAL_BATCH_SIZE = 128  # interpolated images per forward/backward pass
FULLGRAD_EPS = 1e-6  # the Idiap reference's guard in the per-layer min-max


def _image_channel_pairs(batch: int, channels: int, chunk: int, device: torch.device):
    """Every (image, channel) pair, image-major, in slices of at most ``chunk`` pairs: (start, images, channels)."""
    image_index = torch.arange(batch, device=device).repeat_interleave(channels)
    channel_index = torch.arange(channels, device=device).repeat(batch)
    for start in range(0, batch * channels, chunk):
        yield start, image_index[start : start + chunk], channel_index[start : start + chunk]


@register("scorecam", "Score-CAM", ("cnn",), class_specific=True, requires=feature_map_network)
def scorecam(model, images01, classes, generator=None, chunk: int = SCORECAM_CHUNK):
    """Score-CAM as pytorch-grad-cam computes it: each channel, upsampled (align_corners=True) and min-max normalised,
    masks the *normalised* input; channel weights are the softmax over channels of the masked inputs' class logits.
    At most ``chunk`` masked images per forward pass, fewer where they would not fit (:mod:`.memory`)."""
    features = last_features(model, images01)
    batch, channels = features.shape[:2]
    chunk = inference_chunk(model.net, chunk, images01.shape[-1], images01.device)
    with torch.no_grad():
        normalized = model.normalize(images01)
        class_logits = torch.empty(batch * channels, device=features.device, dtype=torch.float32)
        for start, image_index, channel_index in _image_channel_pairs(batch, channels, chunk, features.device):
            activation = features[image_index, channel_index][:, None].float()
            upsampled = F.interpolate(activation, size=normalized.shape[-2:], mode="bilinear", align_corners=True)
            low = upsampled.amin(dim=(2, 3), keepdim=True)
            high = upsampled.amax(dim=(2, 3), keepdim=True)
            masks = (upsampled - low) / (high - low + SCORECAM_EPS)
            logits = model.net(normalized[image_index] * masks)
            class_logits[start : start + len(image_index)] = logits.gather(1, classes[image_index, None])[:, 0].float()
        weights = class_logits.view(batch, channels).softmax(dim=1)
    return _weighted_activation_map(weights, features.float())


@register("ablationcam", "Ablation-CAM", ("cnn",), class_specific=True, requires=feature_map_network)
def ablationcam(model, images01, classes, generator=None, chunk: int = ABLATION_CHUNK):
    """Ablation-CAM as pytorch-grad-cam computes it: channel k's weight is the relative drop (y - y_k) / y of the class
    logit when channel k of the last feature map is zeroed. Only the head is rerun, on copies of the features."""
    features = last_features(model, images01)
    batch, channels = features.shape[:2]
    with torch.no_grad():
        class_logit = model.net.forward_head(features).gather(1, classes[:, None]).float()
        ablated_logits = torch.empty(batch * channels, device=features.device, dtype=torch.float32)
        for start, image_index, channel_index in _image_channel_pairs(batch, channels, chunk, features.device):
            copies = features[image_index]  # advanced indexing copies
            copies[torch.arange(len(image_index), device=features.device), channel_index] = 0
            logits = model.net.forward_head(copies).gather(1, classes[image_index, None])[:, 0]
            ablated_logits[start : start + len(image_index)] = logits.float()
        weights = (class_logit - ablated_logits.view(batch, channels)) / class_logit
    return _weighted_activation_map(weights, features.float())


@register("layercam", "LayerCAM", ("cnn",), class_specific=True, requires=feature_map_network)
def layercam(model, images01, classes, generator=None):
    """LayerCAM (Jiang et al.): every position keeps its own weight, the positive part of the class-logit gradient."""
    features, gradients = _features_and_gradients(model, images01, classes)
    return (gradients.clamp(min=0) * features).sum(dim=1).clamp(min=0)


class HeadOnly(nn.Module):
    """A timm network's ``forward_head`` as a module of its own, so that captum can attribute to the features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(features)


def liftcam_channel_contributions(model, images01, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-stage features (B, C, h, w) and their DeepLIFT contributions (zero reference) to the class logit.

    On a linear head (global average pool + fc: ResNet, EfficientNet) DeepLIFT's rescale rule is exact and equals
    gradient x input, i.e. A_kij * W_ck / (h w); the head runs in float32 and the summation-to-delta check confirms the
    head is linear. A head that is not (ConvNeXt's norm after the pool) is attributed by captum's DeepLift on the head
    module, as the LIFT-CAM authors did for every head.
    """
    features = last_features(model, images01).float()
    with enabled_autograd(), torch.autocast(device_type=features.device.type, enabled=False):
        features = features.clone().requires_grad_(True)
        class_logit = model.net.forward_head(features).gather(1, classes[:, None])[:, 0]
        (gradients,) = torch.autograd.grad(class_logit.sum(), features)
        with torch.no_grad():
            reference_logit = model.net.forward_head(torch.zeros_like(features)).gather(1, classes[:, None])[:, 0]
    features = features.detach()
    contributions = features * gradients
    delta = class_logit.detach() - reference_logit
    mismatch = (contributions.sum(dim=(1, 2, 3)) - delta).abs()
    scale = contributions.abs().sum(dim=(1, 2, 3)) + delta.abs()
    if (mismatch > LIFTCAM_LINEARITY_RTOL * scale + 1e-6).any():  # not linear: DeepLift proper
        from captum.attr import DeepLift

        with enabled_autograd(), torch.autocast(device_type=features.device.type, enabled=False):
            contributions = DeepLift(HeadOnly(model.net)).attribute(
                features.clone().requires_grad_(True), baselines=torch.zeros_like(features), target=classes)
        contributions = contributions.detach()
    return features, contributions


@register("liftcam", "LIFT-CAM", ("cnn",), class_specific=True, requires=feature_map_network)
def liftcam(model, images01, classes, generator=None):
    """LIFT-CAM (Jung & Oh): channel weights are the channels' summed DeepLIFT contributions to the class logit."""
    features, contributions = liftcam_channel_contributions(model, images01, classes)
    return _weighted_activation_map(contributions.sum(dim=(2, 3)), features)


def integrated_gradients_attributions(
    model, images01, classes, n_steps: int = IG_STEPS, internal_batch_size: int = IG_INTERNAL_BATCH_SIZE
) -> torch.Tensor:
    """captum Integrated Gradients of the class logit in normalised input space, zero baseline: (B, 3, H, W); at most
    ``internal_batch_size`` interpolated images per pass, fewer where they would not fit (:mod:`.memory`)."""
    from captum.attr import IntegratedGradients  # only this method needs captum

    footprint = input_footprint(model.net, images01.shape[-1], images01.device)
    internal_batch_size = inputs_per_chunk(internal_batch_size, training_bytes(footprint),
                                           memory_budget(images01.device))
    with enabled_autograd():
        inputs = model.normalize(images01.detach().clone())
        attributions = IntegratedGradients(model.net).attribute(
            inputs,
            baselines=torch.zeros_like(inputs),
            target=classes,
            n_steps=n_steps,
            # captum needs two interpolation steps per chunk at least; below that it warns and enlarges the chunk itself
            internal_batch_size=max(internal_batch_size, 2 * inputs.shape[0]),
        )
    return attributions.detach().float()


@register("integrated_gradients", "IG", ("cnn",), class_specific=True, requires=feature_map_network)
def integrated_gradients(model, images01, classes, generator=None):
    """Integrated Gradients as LTX used it: the channel mean of the attributions, at the input resolution."""
    return integrated_gradients_attributions(model, images01, classes).mean(dim=1)


def _effective_bias(module: nn.Module) -> torch.Tensor:
    """The bias a layer adds; for eval-mode batch norm, (x - m) w / s + b = x w / s + (b - m w / s)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.running_mean is None:
            raise ValueError("FullGrad needs batch norm with running statistics (eval mode)")
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = -module.running_mean * scale
        return shift if module.bias is None else shift + module.bias
    return module.bias


@dataclass(frozen=True)
class BiasSite:
    """Where FullGrad reads a biased layer's output, and how that output is laid out."""

    layer: nn.Module
    site: nn.Module  # the layer, or for a norm with a built-in activation (timm's BatchNormAct2d) that activation,
    #                  whose input is the norm's output before the non-linearity
    at_input: bool
    channels_last: bool  # Linear and plain LayerNorm act on the last dimension (ConvNeXt's NHWC blocks)


def bias_sites(net: nn.Module) -> list[BiasSite]:
    """The layers whose bias-gradients complete FullGrad's decomposition, in module order, for any timm CNN: biased
    convolutions and linear layers, and batch / layer / group norms (timm's norm + activation layers included).
    Other normalisation layers are refused with one line naming them."""
    from timm.layers import LayerNorm2d, LayerNormAct2d

    sites = []
    for module in net.modules():
        norm = isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))
        if not norm and "norm" in type(module).__name__.lower() and any(
                True for _ in module.parameters(recurse=False)):
            raise ValueError(f"FullGrad: unsupported normalisation layer {type(module).__name__} "
                             f"in {type(net).__name__}")
        batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        biased = getattr(module, "bias", None) is not None
        if not (batch_norm or (biased and (norm or isinstance(module, (nn.Conv2d, nn.Linear))))):
            continue
        act = getattr(module, "act", None) if norm else None
        channels_last = isinstance(module, nn.Linear) or (
            isinstance(module, nn.LayerNorm) and not isinstance(module, (LayerNorm2d, LayerNormAct2d)))
        sites.append(BiasSite(module, act if act is not None else module, act is not None, channels_last))
    return sites


def full_gradient_decomposition(model, images01, classes) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """FullGrad's decomposition of each image's class logit (Srinivas & Fleuret, on the normalised input x):
    input-gradient x x, (B, 3, H, W), and per biased layer (module order) bias x bias-gradient, (B, C, h, w) for
    layers with a spatial output, (B, K) for the classifier. For a ReLU network in eval mode all terms sum to the
    logit exactly.

    The bias-gradient is the gradient with respect to the layer's output, read by a tensor hook; such a hook receives
    the gradient of the value before any in-place change (timm ResNets add the shortcut and apply ReLU in place).
    """
    sites = bias_sites(model.net)
    output_gradients: list[torch.Tensor | None] = [None] * len(sites)

    def recorder(index: int):
        def store(gradient: torch.Tensor) -> None:
            output_gradients[index] = gradient

        def on_output(module: nn.Module, args, output: torch.Tensor) -> None:
            output.register_hook(store)  # returning nothing keeps the module's output unchanged

        def on_input(module: nn.Module, args) -> None:
            args[0].register_hook(store)

        return on_input if sites[index].at_input else on_output

    with enabled_autograd():
        inputs = model.normalize(images01.detach().clone()).requires_grad_(True)
        handles = [site.site.register_forward_pre_hook(recorder(index)) if site.at_input
                   else site.site.register_forward_hook(recorder(index)) for index, site in enumerate(sites)]
        try:
            logits = model.net(inputs)
        finally:
            for handle in handles:
                handle.remove()
        (input_gradient,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), inputs)
    bias_terms = []
    for site, gradient in zip(sites, output_gradients):
        if gradient is None:
            raise ValueError(f"FullGrad: layer {type(site.layer).__name__} took no part in the class logit")
        if site.channels_last:  # (B, ..., C) -> (B, C, ...)
            gradient = gradient.movedim(-1, 1)
        bias = _effective_bias(site.layer).detach().float()
        bias_terms.append(gradient.float() * bias.view(1, -1, *([1] * (gradient.ndim - 2))))
    return (input_gradient * inputs).detach().float(), bias_terms


def _rescale_per_image(tensor: torch.Tensor) -> torch.Tensor:
    """|tensor| min-max normalised jointly over all channels and positions, per image (the reference's post-process)."""
    magnitude = tensor.abs()
    magnitude = magnitude - magnitude.flatten(1).amin(dim=1).view(-1, *([1] * (tensor.ndim - 1)))
    return magnitude / (magnitude.flatten(1).amax(dim=1).view(-1, *([1] * (tensor.ndim - 1))) + FULLGRAD_EPS)


def _fullgrad_network(net, spec) -> None:
    feature_map_network(net, spec)
    bias_sites(net)


@register("fullgrad", "FullGrad", ("cnn",), class_specific=True, requires=_fullgrad_network)
def fullgrad(model, images01, classes, generator=None):
    """FullGrad saliency as in the Idiap reference: the rescaled |input-gradient x input| plus, for every conv or
    batch-norm layer, its rescaled |bias x bias-gradient| upsampled (bilinear, align_corners=True), summed over
    channels.

    Upsampling is linear and identical for every channel, so channels are summed before upsampling (same result).
    """
    input_term, bias_terms = full_gradient_decomposition(model, images01, classes)
    size = input_term.shape[-2:]
    saliency = _rescale_per_image(input_term).sum(dim=1)
    for term in bias_terms:
        if term.ndim != 4:
            continue  # the classifier's bias has no spatial extent and is left out of the map
        layer_map = _rescale_per_image(term).sum(dim=1, keepdim=True)
        saliency = saliency + F.interpolate(layer_map, size=size, mode="bilinear", align_corners=True)[:, 0]
    return saliency
