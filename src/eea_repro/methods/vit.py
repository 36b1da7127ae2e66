"""Attention-based maps for timm Vision Transformers: Chefer et al.'s raw-attention, rollout, attention Grad-CAM and
GAE baselines, computed for a whole batch from forward hooks on timm's ``Attention`` (no re-implemented model).

All maps are read from the CLS token's row (index 0) over the patch tokens, on the token grid. Gradients come from
one backward pass of the summed per-image class logits: images are independent in eval mode, so each image gets its
own gradient.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from eea_repro.methods.registry import enabled_autograd, register

ROLLOUT_START_BLOCK = 1  # Chefer's rollout skips the first block's attention (start_layer=1)


def attention_network(net, spec) -> None:
    """What the attention maps read: timm blocks with a standard Attention module, a class token, a patch grid."""
    _checked_blocks(net)
    if not hasattr(getattr(net, "patch_embed", None), "grid_size"):
        raise ValueError(f"{type(net).__name__}: attention maps need a patch embedding with a fixed grid")


def _checked_blocks(net: nn.Module) -> list[nn.Module]:
    """The transformer blocks, after checking that the network has what the attention maps read."""
    blocks = list(getattr(net, "blocks", []))
    attentions = [getattr(block, "attn", None) for block in blocks]
    if not blocks or not all(hasattr(attn, "attn_drop") and hasattr(attn, "fused_attn") for attn in attentions):
        raise ValueError(f"{type(net).__name__}: attention maps need timm blocks with a standard Attention module")
    if getattr(net, "cls_token", None) is None:
        raise ValueError(f"{type(net).__name__}: attention maps read the CLS row, but this model has no class token")
    return blocks


@contextmanager
def recorded_attention(net: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect every block's post-softmax attention (B, heads, N, N), in block order, during forwards in the context.

    Fused attention never materialises the matrix, so it is switched off while recording and restored afterwards.
    The hook sits on ``attn_drop``, the identity in eval mode, whose output is therefore the softmax itself.
    """
    blocks = _checked_blocks(net)
    fused_flags = [block.attn.fused_attn for block in blocks]
    attentions: list[torch.Tensor] = []
    handles = []
    try:
        for block in blocks:
            block.attn.fused_attn = False
            handles.append(block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: attentions.append(out)))
        yield attentions
    finally:
        for handle in handles:
            handle.remove()
        for block, flag in zip(blocks, fused_flags):
            block.attn.fused_attn = flag


def _patch_tokens_on_grid(token_values: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """(B, N) values over all tokens -> (B, gh, gw) map over the patch tokens (prefix tokens dropped)."""
    grid_h, grid_w = net.patch_embed.grid_size
    patch_values = token_values[:, net.num_prefix_tokens :]
    if patch_values.shape[-1] != grid_h * grid_w:
        raise ValueError(f"{patch_values.shape[-1]} patch tokens do not fill the {grid_h}x{grid_w} patch grid")
    return patch_values.reshape(-1, grid_h, grid_w)


def _attention(model, images01: torch.Tensor) -> list[torch.Tensor]:
    """Every block's attention for the batch, in float32."""
    with torch.no_grad(), recorded_attention(model.net) as attentions:
        model(images01)
    return [attention.float() for attention in attentions]


def _attention_and_gradients(
    model, images01: torch.Tensor, classes: torch.Tensor, last_block_only: bool = False
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Attention of every block (or of the last one) and the gradient of each image's class logit with respect to it.

    The input is made to require gradients because the explained model's parameters usually do not.
    """
    with enabled_autograd(), recorded_attention(model.net) as attentions:
        logits = model(images01.detach().clone().requires_grad_(True))
        wanted = attentions[-1:] if last_block_only else list(attentions)
        gradients = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), wanted)
    return [attention.detach().float() for attention in wanted], [gradient.float() for gradient in gradients]


@register("raw_attention", "Raw-Attn", ("vit",), class_specific=False, requires=attention_network)
def raw_attention(model, images01, classes, generator=None):
    """Last block's attention from the CLS token, averaged over heads."""
    last_attention = _attention(model, images01)[-1]
    return _patch_tokens_on_grid(last_attention.mean(dim=1)[:, 0], model.net)


@register("rollout", "Rollout", ("vit",), class_specific=False, requires=attention_network)
def rollout(model, images01, classes, generator=None):
    """Attention rollout (Abnar & Zuidema): head-mean attention plus identity for the residual, row-normalised,
    multiplied from block ``ROLLOUT_START_BLOCK`` up to the last block."""
    attentions = _attention(model, images01)[ROLLOUT_START_BLOCK:]
    if not attentions:
        raise ValueError(f"rollout starts at block {ROLLOUT_START_BLOCK}, but the model has fewer blocks")
    num_tokens = attentions[0].shape[-1]
    identity = torch.eye(num_tokens, device=images01.device)
    joint = None
    with torch.autocast(images01.device.type, enabled=False):
        for attention in attentions:
            mixed = attention.mean(dim=1) + identity
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            joint = mixed if joint is None else mixed @ joint
    return _patch_tokens_on_grid(joint[:, 0], model.net)


@register("gae", "GAE", ("vit",), class_specific=True, requires=attention_network)
def generic_attention_explainability(model, images01, classes, generator=None):
    """Chefer et al. 2021b: relevance R = I updated per block by R += mean_h((grad A * A)^+) @ R."""
    attentions, gradients = _attention_and_gradients(model, images01, classes)
    batch, _, num_tokens, _ = attentions[0].shape
    relevance = torch.eye(num_tokens, device=images01.device).expand(batch, num_tokens, num_tokens)
    with torch.autocast(images01.device.type, enabled=False):
        for attention, gradient in zip(attentions, gradients):
            weighted = (gradient * attention).clamp(min=0).mean(dim=1)
            relevance = relevance + weighted @ relevance
    return _patch_tokens_on_grid(relevance[:, 0], model.net)


@register("attention_gradcam", "Attn-GC", ("vit",), class_specific=True, requires=attention_network)
def attention_gradcam(model, images01, classes, generator=None):
    """Grad-CAM on the last block's attention (Chefer's baseline): each head's CLS-row attention weighted by the mean
    gradient over that row's patch entries, averaged over heads and clamped at 0."""
    (attention,), (gradient,) = _attention_and_gradients(model, images01, classes, last_block_only=True)
    head_weights = gradient[:, :, 0, model.net.num_prefix_tokens :].mean(dim=-1, keepdim=True)
    cam = (head_weights * attention[:, :, 0]).mean(dim=1).clamp(min=0)
    return _patch_tokens_on_grid(cam, model.net)
