"""Chefer et al.'s LRP-based ViT baselines (T-Attr, partial LRP, full LRP), re-implemented for timm ViTs and batches.

Chefer's code swaps every layer for a relevance-aware copy and runs at batch size 1. Here one real forward of the
timm net is recorded with hooks, and the relevance is then pushed down by closed-form rules that act per image, so a
whole batch goes through at once. The rules are Chefer's (``modules/layers_ours.py`` for T-Attr,
``modules/layers_lrp.py`` for partial and full LRP):

- Linear: z+ rule without bias, ``R_in = x+ (W+^T s+) + x- (W-^T s-)``; "ours" divides both parts by their joint sum
  (conserving), "orig" divides each part by its own sum (each Linear then doubles the total relevance).
- Residual add: gradient x input, ``R_a = a R / (a + b)``; "ours" then rescales each branch so that its total is its
  |sum| share of the incoming total (conserving even when a branch sum is negative).
- Matrix products Q K^T and A V: gradient x input for both operands, each half of it (conserving).
- LayerNorm, softmax, GELU, dropout, LayerScale and class-token pooling pass relevance through unchanged.
- Patch embedding (full LRP only): z^B rule bounded by each image's min and max of the normalised input.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.methods.registry import enabled_autograd, register
from eea_repro.methods.vit import _checked_blocks, _patch_tokens_on_grid, recorded_attention

T_ATTR_START_BLOCK = 1  # Chefer's T-Attr product starts at block 1 (start_layer=1)
STABILISER = 1e-9  # Chefer's safe_divide offset


@dataclass(frozen=True)
class LrpRules:
    """Where Chefer's two rule sets differ (see the module docstring)."""

    renormalise_residuals: bool
    joint_linear_denominator: bool


CHEFER_RULES = LrpRules(renormalise_residuals=True, joint_linear_denominator=True)  # layers_ours: T-Attr
ORIGINAL_RULES = LrpRules(renormalise_residuals=False, joint_linear_denominator=False)  # layers_lrp: (partial) LRP


@dataclass
class _BlockTensors:
    """What one block's relevance rules read from the recorded forward, all (B, N, ·) or (B, heads, N, ·)."""

    block_input: torch.Tensor
    attention_input: torch.Tensor  # norm1 output, the input of qkv
    query: torch.Tensor  # after q_norm, before the softmax scale
    key: torch.Tensor
    value: torch.Tensor
    attention: torch.Tensor  # post-softmax probabilities
    mixed: torch.Tensor  # attention @ value with heads merged, the input of proj
    attention_branch: torch.Tensor  # what the residual adds after attention
    middle: torch.Tensor  # the residual stream between attention and MLP
    mlp_input: torch.Tensor  # norm2 output, the input of fc1
    hidden: torch.Tensor  # the input of fc2
    mlp_branch: torch.Tensor


@dataclass
class _RecordedForward:
    logits: torch.Tensor
    blocks: dict[int, _BlockTensors]  # only the blocks the relevance pass will reach
    head_input: torch.Tensor  # (B, D), the pooled class token after the final norm
    image: torch.Tensor  # normalised input of the patch embedding
    embedded: torch.Tensor  # tokens + position embedding, the input of the first block's residual stream
    attention_gradients: dict[int, torch.Tensor]


@dataclass
class _Relevance:
    attention: dict[int, torch.Tensor]  # R^A (B, heads, N, N) per propagated block
    pixels: torch.Tensor | None  # (B, H, W), summed over channels
    stage_totals: dict[str, torch.Tensor]  # per-image total relevance (B,) after each stage


def _check_supported(net: nn.Module, to_pixels: bool) -> list[nn.Module]:
    """The blocks, after checking that the net is a class-token ViT whose every op has a rule here."""
    blocks = _checked_blocks(net)
    name = type(net).__name__
    pooling = getattr(net, "global_pool", None)
    if pooling != "token" or getattr(net, "attn_pool", None) is not None:
        raise ValueError(f"{name}: LRP starts from the class token, but the net pools with {pooling!r}")
    if not isinstance(getattr(net, "head", None), nn.Linear) or getattr(net, "head_dist", None) is not None:
        raise ValueError(f"{name}: LRP needs a single Linear classifier head (a distilled ViT averages two)")
    for block in blocks:
        mlp_layers = [getattr(getattr(block, "mlp", None), layer, None) for layer in ("fc1", "fc2")]
        if getattr(block.attn, "gate", None) is not None or not all(isinstance(x, nn.Linear) for x in mlp_layers):
            raise ValueError(f"{name}: LRP supports plain attention and two-layer MLP blocks only")
    from timm.layers import PatchEmbed  # here: jobs that only read method names skip timm's import

    if to_pixels and (
        not isinstance(net.patch_embed, PatchEmbed) or net.pos_embed is None or net.no_embed_class
        or net.dynamic_img_size
    ):
        raise ValueError(f"{name}: pixel LRP needs a convolutional patch embedding and a fixed position embedding "
                         "added to every token")
    return blocks


@contextmanager
def _recorded_tensors(net: nn.Module, lowest_block: int) -> Iterator[tuple[dict, dict[int, dict]]]:
    """Forward hooks that keep (detached) the inputs and outputs the relevance rules read.

    Yields the net-level store and one store per block from ``lowest_block`` up; both fill during forwards.
    """
    net_store: dict[str, torch.Tensor] = {}
    block_stores: dict[int, dict[str, torch.Tensor]] = {}

    def keep(store: dict, key: str, of_input: bool):
        def hook(_module, args, output):
            store[key] = (args[0] if of_input else output).detach()

        return hook

    def keep_value(store: dict, attn: nn.Module):
        def hook(_module, args, output):
            batch, tokens, _ = output.shape
            store["value"] = output.detach().reshape(batch, tokens, 3, attn.num_heads, -1)[:, :, 2].transpose(1, 2)

        return hook

    hooks = [
        (net.patch_embed.proj, keep(net_store, "image", of_input=True)),
        (net.norm_pre, keep(net_store, "embedded", of_input=True)),
        (net.head, keep(net_store, "head_input", of_input=True)),
    ]
    for index, block in enumerate(net.blocks):
        if index < lowest_block:
            continue
        store = block_stores.setdefault(index, {})
        hooks += [
            (block, keep(store, "block_input", of_input=True)),
            (block.attn.qkv, keep(store, "attention_input", of_input=True)),
            (block.attn.qkv, keep_value(store, block.attn)),
            (block.attn.q_norm, keep(store, "query", of_input=False)),
            (block.attn.k_norm, keep(store, "key", of_input=False)),
            (block.attn.proj, keep(store, "mixed", of_input=True)),
            (block.drop_path1, keep(store, "attention_branch", of_input=False)),
            (block.norm2, keep(store, "middle", of_input=True)),
            (block.mlp.fc1, keep(store, "mlp_input", of_input=True)),
            (block.mlp.fc2, keep(store, "hidden", of_input=True)),
            (block.drop_path2, keep(store, "mlp_branch", of_input=False)),
        ]
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        yield net_store, block_stores
    finally:
        for handle in handles:
            handle.remove()


def _record_forward(
    model, images01: torch.Tensor, classes: torch.Tensor, lowest_block: int, gradient_blocks: range | None
) -> _RecordedForward:
    """One real forward of the explained model with every tensor the rules need, in float32.

    With ``gradient_blocks``, also the gradient of each image's class logit with respect to those blocks' attention
    (one backward for the batch: images are independent in eval mode). The input is made to require gradients
    because the explained model's parameters usually do not.
    """
    net = model.net
    with ExitStack() as stack:
        if gradient_blocks is None:
            stack.enter_context(torch.no_grad())
            inputs = images01
        else:
            stack.enter_context(enabled_autograd())
            inputs = images01.detach().clone().requires_grad_(True)
        attentions = stack.enter_context(recorded_attention(net))
        net_store, block_stores = stack.enter_context(_recorded_tensors(net, lowest_block))
        logits = model(inputs)
        gradients = {}
        if gradient_blocks is not None:
            chosen = logits.gather(1, classes[:, None]).sum()
            wanted = [attentions[index] for index in gradient_blocks]
            gradients = dict(zip(gradient_blocks, torch.autograd.grad(chosen, wanted)))
    blocks = {
        index: _BlockTensors(
            **{key: value.float() for key, value in store.items()}, attention=attentions[index].detach().float()
        )
        for index, store in block_stores.items()
    }
    return _RecordedForward(
        logits=logits.detach().float(),
        blocks=blocks,
        head_input=net_store["head_input"].float(),
        image=net_store["image"].float(),
        embedded=net_store["embedded"].float(),
        attention_gradients={index: gradient.float() for index, gradient in gradients.items()},
    )


# --- relevance rules ---------------------------------------------------------------------------------------------


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Chefer's safe_divide: the denominator is offset by 1e-9, and nothing flows where it is exactly zero."""
    return torch.where(denominator == 0, 0.0, numerator / (denominator + STABILISER))


def _per_image_sum(tensor: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B, 1, ..., 1): the total of each image, shaped to broadcast back."""
    return tensor.flatten(1).sum(dim=1).view(-1, *([1] * (tensor.dim() - 1)))


def _linear_relevance(inputs: torch.Tensor, weight: torch.Tensor, relevance: torch.Tensor, rules: LrpRules):
    """z+ rule (alpha=1, beta=0) for ``inputs @ weight.T``: positive contributions x+w+ and x-w- share the relevance."""
    positive_inputs, negative_inputs = inputs.clamp(min=0), inputs.clamp(max=0)
    positive_weight, negative_weight = weight.clamp(min=0), weight.clamp(max=0)
    positive_z = F.linear(positive_inputs, positive_weight)
    negative_z = F.linear(negative_inputs, negative_weight)
    if rules.joint_linear_denominator:
        positive_share = negative_share = _divide(relevance, positive_z + negative_z)
    else:
        positive_share, negative_share = _divide(relevance, positive_z), _divide(relevance, negative_z)
    return positive_inputs * (positive_share @ positive_weight) + negative_inputs * (negative_share @ negative_weight)


def _residual_relevance(residual: torch.Tensor, branch: torch.Tensor, relevance: torch.Tensor, rules: LrpRules):
    """Split the relevance of ``residual + branch`` between the two summands (gradient x input)."""
    share = _divide(relevance, residual + branch)
    to_residual, to_branch = residual * share, branch * share
    if rules.renormalise_residuals:
        residual_total, branch_total = _per_image_sum(to_residual), _per_image_sum(to_branch)
        magnitude = residual_total.abs() + branch_total.abs()
        incoming = _per_image_sum(relevance)
        to_residual = to_residual * _divide(_divide(residual_total.abs(), magnitude) * incoming, residual_total)
        to_branch = to_branch * _divide(_divide(branch_total.abs(), magnitude) * incoming, branch_total)
    return to_residual, to_branch


def _matmul_relevance(left: torch.Tensor, right: torch.Tensor, relevance: torch.Tensor):
    """Gradient x input for ``left @ right``, halved so that the two operands together keep the total."""
    share = _divide(relevance, left @ right)
    return left * (share @ right.transpose(-1, -2)) / 2, right * (left.transpose(-1, -2) @ share) / 2


def _bounded_input_relevance(image: torch.Tensor, conv: nn.Conv2d, relevance: torch.Tensor) -> torch.Tensor:
    """z^B rule for the first convolution: inputs bounded by the image's own min and max (Chefer, per image)."""
    low = image.amin(dim=(1, 2, 3), keepdim=True).expand_as(image)
    high = image.amax(dim=(1, 2, 3), keepdim=True).expand_as(image)
    positive_weight, negative_weight = conv.weight.float().clamp(min=0), conv.weight.float().clamp(max=0)
    geometry = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    z = (
        F.conv2d(image, conv.weight.float(), **geometry)
        - F.conv2d(low, positive_weight, **geometry)
        - F.conv2d(high, negative_weight, **geometry)
    )
    share = _divide(relevance, z)

    def spread(weight: torch.Tensor) -> torch.Tensor:
        return torch.nn.grad.conv2d_input(image.shape, weight, share, **geometry)

    return image * spread(conv.weight.float()) - low * spread(positive_weight) - high * spread(negative_weight)


# --- the relevance pass ------------------------------------------------------------------------------------------


def _propagate(
    net: nn.Module, recorded: _RecordedForward, classes: torch.Tensor, rules: LrpRules, lowest_block: int,
    to_pixels: bool,
) -> _Relevance:
    """Push each image's one-hot class relevance from the logits down to block ``lowest_block`` (and the pixels)."""
    totals: dict[str, torch.Tensor] = {}

    def note(stage: str, relevance: torch.Tensor) -> None:
        totals[stage] = relevance.flatten(1).sum(dim=1)

    relevance = F.one_hot(classes, recorded.logits.shape[1]).float()
    note("logits", relevance)
    pooled = _linear_relevance(recorded.head_input, net.head.weight.float(), relevance, rules)
    note("head_input", pooled)
    batch, num_tokens, _ = recorded.embedded.shape
    relevance = pooled.new_zeros(batch, num_tokens, pooled.shape[-1])
    relevance[:, 0] = pooled  # class-token pooling and the final norm pass relevance through

    attention_relevance = {}
    for index in reversed(range(lowest_block, len(net.blocks))):
        block, tensors = net.blocks[index], recorded.blocks[index]
        note(f"block{index}.output", relevance)
        residual, branch = _residual_relevance(tensors.middle, tensors.mlp_branch, relevance, rules)
        note(f"block{index}.mlp_branch", branch)
        branch = _linear_relevance(tensors.hidden, block.mlp.fc2.weight.float(), branch, rules)
        branch = _linear_relevance(tensors.mlp_input, block.mlp.fc1.weight.float(), branch, rules)
        note(f"block{index}.mlp_input", branch)
        relevance = residual + branch  # the stream fed both the residual and norm2
        note(f"block{index}.middle", relevance)

        residual, branch = _residual_relevance(tensors.block_input, tensors.attention_branch, relevance, rules)
        note(f"block{index}.attention_branch", branch)
        branch = _linear_relevance(tensors.mixed, block.attn.proj.weight.float(), branch, rules)
        heads = tensors.attention.shape[1]
        branch = branch.reshape(batch, num_tokens, heads, -1).transpose(1, 2)
        to_attention, to_value = _matmul_relevance(tensors.attention, tensors.value, branch)
        attention_relevance[index] = to_attention
        to_query, to_key_transposed = _matmul_relevance(tensors.query, tensors.key.transpose(-1, -2), to_attention)
        qkv_relevance = torch.stack([to_query, to_key_transposed.transpose(-1, -2), to_value], dim=2)
        qkv_relevance = qkv_relevance.permute(0, 3, 2, 1, 4).reshape(batch, num_tokens, -1)
        branch = _linear_relevance(tensors.attention_input, block.attn.qkv.weight.float(), qkv_relevance, rules)
        note(f"block{index}.attention_input", branch)
        relevance = residual + branch
        note(f"block{index}.input", relevance)

    pixels = None
    if to_pixels:
        position = net.pos_embed.float().expand_as(recorded.embedded)
        tokens, _ = _residual_relevance(recorded.embedded - position, position, relevance, rules)
        patch_relevance = tokens[:, net.num_prefix_tokens :]  # prefix tokens and the position embedding stop here
        note("patch_tokens", patch_relevance)
        grid_h, grid_w = net.patch_embed.grid_size
        patch_relevance = patch_relevance.transpose(1, 2).reshape(batch, -1, grid_h, grid_w)
        pixels = _bounded_input_relevance(recorded.image, net.patch_embed.proj, patch_relevance).sum(dim=1)
        note("pixels", pixels)
    return _Relevance(attention_relevance, pixels, totals)


def _relevance(
    model, images01: torch.Tensor, classes: torch.Tensor, rules: LrpRules, lowest_block: int, to_pixels: bool,
    gradient_blocks: range | None = None,
) -> tuple[_RecordedForward, _Relevance]:
    net = model.net
    num_blocks = len(_check_supported(net, to_pixels))
    if not 0 <= lowest_block < num_blocks:
        raise ValueError(f"relevance down to block {lowest_block} needs more than the model's {num_blocks} blocks")
    recorded = _record_forward(model, images01, classes, lowest_block, gradient_blocks)
    with torch.no_grad(), torch.autocast(images01.device.type, enabled=False):
        return recorded, _propagate(net, recorded, classes, rules, lowest_block, to_pixels)


def relevance_stage_totals(
    model, images01: torch.Tensor, classes: torch.Tensor, rules: LrpRules = CHEFER_RULES
) -> dict[str, torch.Tensor]:
    """Per-image total relevance (B,) after every stage of the full pass, from "logits" down to "pixels".

    Stages per block ``i``: ``block{i}.output``, ``.mlp_branch`` (the MLP's share of the second residual),
    ``.mlp_input``, ``.middle``, ``.attention_branch``, ``.attention_input``, ``.input``; then ``patch_tokens``.
    """
    _, relevance = _relevance(model, images01, classes, rules, lowest_block=0, to_pixels=True)
    return relevance.stage_totals


def residual_relevance_product(weights: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """Chefer's aggregation (T-Attr; GAE when the weights are the attention itself): R = prod_b (I + mean_h
    ((grad_b * W_b)^+)), later blocks on the left, no row normalisation. Returns (B, N, N)."""
    batch, _, num_tokens, _ = weights[0].shape
    identity = torch.eye(num_tokens, device=weights[0].device, dtype=weights[0].dtype)
    relevance = identity.expand(batch, num_tokens, num_tokens)
    for weight, gradient in zip(weights, gradients):
        relevance = relevance + (gradient * weight).clamp(min=0).mean(dim=1) @ relevance
    return relevance


# --- registered methods ------------------------------------------------------------------------------------------


def _token_relevance_network(net, spec) -> None:
    _check_supported(net, to_pixels=False)


def _pixel_relevance_network(net, spec) -> None:
    _check_supported(net, to_pixels=True)


@register("transformer_attribution", "T-Attr", ("vit",), class_specific=True, requires=_token_relevance_network)
def transformer_attribution(model, images01, classes, generator=None):
    """Chefer et al. 2021: attention relevance (layers_ours rules) weighted by the attention gradient, aggregated
    over the blocks from ``T_ATTR_START_BLOCK``; class-token row over the patches."""
    blocks = range(T_ATTR_START_BLOCK, len(_checked_blocks(model.net)))
    recorded, relevance = _relevance(
        model, images01, classes, CHEFER_RULES, T_ATTR_START_BLOCK, to_pixels=False, gradient_blocks=blocks
    )
    with torch.autocast(images01.device.type, enabled=False):
        joint = residual_relevance_product(
            [relevance.attention[index] for index in blocks], [recorded.attention_gradients[index] for index in blocks]
        )
    return _patch_tokens_on_grid(joint[:, 0], model.net)


@register("partial_lrp", "Partial LRP", ("vit",), class_specific=True, requires=_token_relevance_network)
def partial_lrp(model, images01, classes, generator=None):
    """The last block's attention relevance (layers_lrp rules), clamped at 0 and averaged over heads."""
    last = len(_checked_blocks(model.net)) - 1
    _, relevance = _relevance(model, images01, classes, ORIGINAL_RULES, last, to_pixels=False)
    return _patch_tokens_on_grid(relevance.attention[last].clamp(min=0).mean(dim=1)[:, 0], model.net)


@register("full_lrp", "LRP", ("vit",), class_specific=True, requires=_pixel_relevance_network)
def full_lrp(model, images01, classes, generator=None):
    """Relevance (layers_lrp rules) down to the input pixels, summed over channels: a (B, H, W) map at input size."""
    _, relevance = _relevance(model, images01, classes, ORIGINAL_RULES, lowest_block=0, to_pixels=True)
    return relevance.pixels
