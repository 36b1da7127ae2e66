"""The EEA / LTX explainer: a mask-generating network trained against a frozen explained model.

The explainer is a copy of a classifier backbone (usually the explained model's own weights) with a small per-token
head that outputs a sigmoid mask at the backbone's native token grid. Training minimises
``CE(f(x * M), c) + lam * size(M)``: the mask must keep what the explained model needs to still predict ``c`` while
covering as little of the image as possible.

Two stages, as in the released code:

* :func:`pretraining.pretrain` fits one explainer on a training split (pEEA / pLTX) and keeps the epoch with the best
  validation POS AUC;
* :func:`finetuning.finetune_maps` restarts from the pretrained weights for every image, takes a few optimiser steps on that
  image alone and keeps the step whose map has the best POS AUC (EEA / LTX). All images of a chunk are optimised
  at once: the trainable parameters are stacked along a leading image dimension and ``torch.func.vmap`` runs the
  per-image losses and gradients in one batched call.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.metrics.engine import normalize_maps, pos_auc_per_image
from eea_repro.models.checkpoints import load_state_dict, save_state_dict
from eea_repro.models.memory import (inference_chunk, input_footprint, inputs_per_chunk, memory_budget,
                                     training_bytes)
from eea_repro.models.network import ModelSpec, create_network

SIZE_LOSSES = ("l1", "ltx")
VARIANTS = ("target", "predicted")

# Top-level timm modules that forward_features does not use (classifier path) or that the released code freezes
# (ViT embeddings). Unused parameters must be frozen: they would get no gradient in the reference loop but a zero
# gradient (hence weight decay) in the functional update, and the two would drift apart.
_CLASSIFIER_PATH = {"head", "head_drop", "fc", "fc_norm", "attn_pool", "global_pool"}
_VIT_EMBEDDINGS = {"patch_embed", "cls_token", "reg_token", "pos_embed"}


class MaskExplainer(nn.Module):
    """Backbone + per-token head mapping [0, 1] images to token masks in (0, 1).

    The explainer's architecture (``spec``) need not be the explained model's: it reads [0, 1] images, resizes them
    to its own input size and normalises them with its own mean/std, so any explainer can explain any model.
    """

    def __init__(self, spec: ModelSpec, backbone_state: dict[str, torch.Tensor] | None, num_classes: int):
        super().__init__()
        self.spec = spec
        self.family = spec.family
        self.backbone = create_network(spec, num_classes)
        if backbone_state is not None:
            _load_backbone(self.backbone, backbone_state)
        self.backbone.reset_classifier(0)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

        width = self.backbone.num_features
        frozen = set(_CLASSIFIER_PATH)
        if self.family == "vit":
            self.head = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
            for layer in (self.head[0], self.head[2]):  # HF post_init convention, as in the released explainer
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
            frozen |= _VIT_EMBEDDINGS
        else:
            self.head = nn.Conv2d(width, 1, kernel_size=1)
        for name, parameter in self.backbone.named_parameters():
            if name.split(".")[0] in frozen:
                parameter.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "MaskExplainer":
        """The released code runs the backbone in eval mode throughout: BN keeps its running stats, no dropout."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images01: torch.Tensor) -> torch.Tensor:
        size = self.spec.input_size
        if images01.shape[-2:] != (size, size):
            images01 = F.interpolate(images01, size=(size, size), mode="bilinear", align_corners=False)
        features = self.backbone.forward_features((images01 - self.mean) / self.std)
        if self.family == "vit":
            tokens = features[:, self.backbone.num_prefix_tokens :]
            logits = self.head(tokens).squeeze(-1).unflatten(1, tuple(self.backbone.patch_embed.grid_size))
        else:
            logits = self.head(features)[:, 0]
        return torch.sigmoid(logits)


def explainer_network(net: nn.Module, spec: ModelSpec) -> None:
    """What the explainer reads from its backbone: a token sequence on a fixed patch grid (ViT), or a (B, C, h, w)
    feature map (CNN); raises ValueError naming what is missing."""
    from eea_repro.methods.cnn import feature_map_network

    if spec.family == "cnn":
        feature_map_network(net, spec)
    elif not hasattr(getattr(net, "patch_embed", None), "grid_size") or not hasattr(net, "num_prefix_tokens"):
        raise ValueError(f"{type(net).__name__}: the ViT explainer needs a patch embedding with a fixed grid")


def _load_backbone(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every backbone weight; the classifier may be absent (it is dropped right after) but nothing else."""
    classifier = (getattr(net, "default_cfg", None) or {}).get("classifier") or ""
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (classifier and key.startswith(classifier + "."))]
    if missing or unexpected:
        raise ValueError(
            f"backbone state does not fit {type(net).__name__} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def trainable_parameters(explainer: nn.Module) -> dict[str, nn.Parameter]:
    return {name: parameter for name, parameter in explainer.named_parameters() if parameter.requires_grad}


def upsample_masks(token_masks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) -> (B, size, size), bilinear with align_corners=False: the interpolation the metric engine uses."""
    return F.interpolate(token_masks.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def size_penalty(token_masks: torch.Tensor, size_loss: str) -> torch.Tensor:
    """"l1": mean mask value. "ltx": the released BCE-with-logits(m, 0) on sigmoid outputs = mean softplus(m)."""
    if size_loss == "l1":
        return token_masks.mean()
    if size_loss == "ltx":
        return F.softplus(token_masks).mean()
    raise ValueError(f"size_loss {size_loss!r} is not one of {SIZE_LOSSES}")


def eea_loss(
    explained_model: nn.Module,
    token_masks: torch.Tensor,
    images01: torch.Tensor,
    classes: torch.Tensor,
    lam: float,
    size_loss: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (total, ce, size): CE of the explained model on the masked image plus lam times the mask size.

    The mask multiplies the [0, 1] image, so masked pixels are black; the explained model normalises internally.
    """
    masks = upsample_masks(token_masks, images01.shape[-1])
    logits = explained_model(images01 * masks.unsqueeze(1))
    ce = F.cross_entropy(logits.float(), classes)
    size = size_penalty(token_masks.float(), size_loss)
    return ce + lam * size, ce, size


def images_per_loss_pass(explainer: nn.Module, explained: nn.Module, count: int, size: int,
                         device: torch.device) -> int:
    """``count`` images per pass of :func:`eea_loss` under autograd (the explainer's and the explained model's
    activations both kept for the backward pass), or fewer where they would not fit in the memory budget."""
    per_image = (training_bytes(input_footprint(explainer, size, device))
                 + training_bytes(input_footprint(explained, size, device)))
    return inputs_per_chunk(count, per_image, memory_budget(device))


def freeze(explained: nn.Module) -> None:
    """Gradients flow *through* the explained model to the mask but never into its weights."""
    explained.eval()
    explained.requires_grad_(False)


@torch.no_grad()
def explain(explainer: MaskExplainer, images01: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """pEEA maps: the pretrained explainer's token masks (B, h, w), float32, on the images' device; ``batch_size``
    images per forward pass, fewer where they would not fit in the memory budget."""
    explainer.eval()
    device = next(explainer.parameters()).device
    batch_size = inference_chunk(explainer, batch_size, images01.shape[-1], device)
    chunks = [explainer(chunk.to(device)).float().to(images01.device) for chunk in images01.split(batch_size)]
    return torch.cat(chunks)


def selection_pos_auc(
    explained: nn.Module, images01: torch.Tensor, token_maps: torch.Tensor, classes: torch.Tensor, batch_size: int,
    ties: torch.Tensor | None = None, clean_hits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image POS AUC (float64) of token maps, scored as the metric engine scores stored maps (same upsampling,
    same pixel order with the images' tie permutations ``ties``); ``clean_hits`` as for ``pos_auc_per_image``."""
    normalized, _valid, _constant = normalize_maps(token_maps.detach().float(), images01.shape[-1])
    return pos_auc_per_image(explained, images01, normalized, classes, batch_size, ties=ties,
                             clean_hits=clean_hits).to(images01.device)


def check_names(size_loss: str, variant: str = "target") -> None:
    if size_loss not in SIZE_LOSSES:
        raise ValueError(f"size_loss {size_loss!r} is not one of {SIZE_LOSSES}")
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {VARIANTS}")


def is_better(candidate: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Strictly lower POS wins; a NaN score never replaces a map, but any score replaces a NaN best."""
    return (candidate < best) | (best.isnan() & ~candidate.isnan())


def save_explainer(explainer: MaskExplainer, path: str | Path) -> str:
    """Head and backbone in one safetensors file; returns its sha256."""
    return save_state_dict(explainer.state_dict(), path)


def load_explainer(spec: ModelSpec, path: str | Path, num_classes: int) -> MaskExplainer:
    explainer = MaskExplainer(spec, None, num_classes)
    explainer.load_state_dict(load_state_dict(path))
    return explainer.eval()
