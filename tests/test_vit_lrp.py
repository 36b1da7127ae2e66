"""Chefer's LRP baselines on a tiny ViT: batching, class dependence, conservation, and an explicit numpy oracle.

The oracle re-runs the ViT from its weights in float64 and applies every relevance rule written out contribution
by contribution (``z_ji = x_i w_ji`` kept as an explicit array and normalised per output), not with the
ratio-times-matrix form the package uses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eea_repro.methods import METHODS, compute_maps
from eea_repro.methods.vit_lrp import (
    CHEFER_RULES,
    ORIGINAL_RULES,
    relevance_stage_totals,
    residual_relevance_product,
)
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

NUM_CLASSES = 5
LRP_METHODS = ("transformer_attribution", "partial_lrp", "full_lrp")
VIT_SPEC = ModelSpec(
    "vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
    {"patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2},
)  # 4x4 patch grid + CLS; 3 blocks so that T-Attr's product (from block 1) has two factors


def _model(spec: ModelSpec = VIT_SPEC, seed: int = 0) -> ExplainedModel:
    torch.manual_seed(seed)
    return ExplainedModel(create_network(spec, num_classes=NUM_CLASSES), spec).eval()


@pytest.fixture(scope="module")
def model() -> ExplainedModel:
    return _model()


def _images(count: int, seed: int = 2) -> torch.Tensor:
    return torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _expected_shape(name: str, count: int) -> tuple[int, ...]:
    return (count, 32, 32) if name == "full_lrp" else (count, 4, 4)


@pytest.mark.parametrize("name", LRP_METHODS)
def test_maps_are_finite_float32_and_batching_changes_nothing(model, name):
    images, classes = _images(3), torch.tensor([0, 2, 4])
    maps = compute_maps(name, model, images, classes)
    assert maps.shape == _expected_shape(name, 3) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.abs().amax(dim=(1, 2)).min() > 0
    singles = torch.cat([compute_maps(name, model, images[i : i + 1], classes[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(maps, singles, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", LRP_METHODS)
def test_maps_depend_on_the_explained_class(model, name):
    assert METHODS[name].class_specific
    maps = compute_maps(name, model, _images(1).expand(NUM_CLASSES, -1, -1, -1), torch.arange(NUM_CLASSES))
    for first in range(NUM_CLASSES):
        for second in range(first + 1, NUM_CLASSES):
            assert not torch.allclose(maps[first], maps[second], rtol=1e-3, atol=1e-8), (first, second)


# --- conservation ------------------------------------------------------------------------------------------------


def test_chefer_rules_conserve_the_class_relevance_through_every_block(model):
    """layers_ours: every rule conserves, so each stage down to the first block's input holds the one-hot's 1."""
    totals = relevance_stage_totals(model, _images(2), torch.tensor([1, 3]), CHEFER_RULES)
    ones = torch.ones(2)
    conserved = [stage for stage in totals if not stage.endswith(("_branch", "mlp_input", "attention_input"))]
    conserved = [stage for stage in conserved if stage not in ("patch_tokens", "pixels")]
    assert len(conserved) == 2 + 3 * 3  # logits, head input; per block: output, middle, input
    for stage in conserved:
        torch.testing.assert_close(totals[stage], ones, atol=2e-5, rtol=0, msg=stage)
    for block in range(3):  # inside a branch the share it got is kept, and the shares are not trivial
        for branch, branch_input in (("mlp_branch", "mlp_input"), ("attention_branch", "attention_input")):
            share = totals[f"block{block}.{branch}"]
            torch.testing.assert_close(totals[f"block{block}.{branch_input}"], share, atol=2e-6, rtol=1e-4)
            assert (share.abs() > 1e-3).all() and (share.abs() < 1).all()
    # the position embedding and the class token keep their shares; the z^B rule conserves the rest to the pixels
    assert (totals["patch_tokens"].abs() < 1).all()
    torch.testing.assert_close(totals["pixels"], totals["patch_tokens"], atol=1e-6, rtol=1e-4)


def test_original_rules_double_at_every_linear_and_conserve_elsewhere():
    """layers_lrp is not conservative: its Linear divides x+w+ and x-w- by their own sums, so each part receives
    the whole output relevance and every Linear doubles the total; residual adds (no renormalisation), the matrix
    products (halved per operand) and the z^B rule conserve. The MLP (fc2, fc1) therefore multiplies its branch by 4,
    and so does the attention branch (proj, qkv), while the residual share passes unchanged.

    Exception: an output whose x+w+ (or x-w-) part is empty (no positive input meets a positive weight) passes
    nothing for that part (Chefer's safe division by zero). With 32 features that happens for about 1 output in 200
    on random weights, so this test uses 64 features, where it practically never does."""
    wide_spec = ModelSpec(
        "vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
        {"patch_size": 8, "depth": 3, "embed_dim": 64, "num_heads": 2},
    )
    totals = relevance_stage_totals(_model(wide_spec, seed=1), _images(2), torch.tensor([1, 3]), ORIGINAL_RULES)

    def close(actual, expected, stage):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4, msg=stage)

    close(totals["head_input"], 2 * totals["logits"], "head")
    close(totals["block2.output"], totals["head_input"], "pooling")
    for block in range(3):
        stage = f"block{block}."
        close(totals[stage + "mlp_input"], 4 * totals[stage + "mlp_branch"], stage + "mlp")
        close(totals[stage + "middle"], totals[stage + "output"] - totals[stage + "mlp_branch"]
              + totals[stage + "mlp_input"], stage + "middle")
        close(totals[stage + "attention_input"], 4 * totals[stage + "attention_branch"], stage + "attention")
        close(totals[stage + "input"], totals[stage + "middle"] - totals[stage + "attention_branch"]
              + totals[stage + "attention_input"], stage + "input")
        if block:
            close(totals[f"block{block - 1}.output"], totals[stage + "input"], stage + "stream")
    assert not torch.allclose(totals["block0.input"], totals["logits"], atol=0.1)  # indeed not conserved
    close(totals["pixels"], totals["patch_tokens"], "z^B")


# --- explicit numpy oracle ---------------------------------------------------------------------------------------


def _hand_forward(model: ExplainedModel, images01: torch.Tensor, classes: torch.Tensor) -> dict:
    """The ViT re-run from its weights in float64: every tensor the rules read (numpy), the logits, the weights and
    the gradient of each image's class logit with respect to every block's attention."""
    net = model.net
    weights = {name: tensor.detach().double() for name, tensor in net.state_dict().items()}
    dim, heads = net.embed_dim, net.blocks[0].attn.num_heads
    patch = net.patch_embed.patch_size[0]
    image = ((images01.double() - model.mean.double()) / model.std.double()).requires_grad_(True)
    patches = F.conv2d(image, weights["patch_embed.proj.weight"], weights["patch_embed.proj.bias"], stride=patch)
    patches = patches.flatten(2).transpose(1, 2)
    batch = image.shape[0]
    tokens = torch.cat([weights["cls_token"].expand(batch, -1, -1), patches], dim=1)
    position = weights["pos_embed"].expand_as(tokens)
    x = tokens + position
    num_tokens = x.shape[1]

    def layer_norm(value, prefix):
        return F.layer_norm(value, (dim,), weights[prefix + ".weight"], weights[prefix + ".bias"], 1e-6)

    def linear(value, prefix):
        return value @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]

    record = {"image": image.detach(), "tokens": tokens, "position": position, "blocks": []}
    for index in range(len(net.blocks)):
        p = f"blocks.{index}."
        block = {"input": x}
        block["attention_input"] = layer_norm(x, p + "norm1")
        qkv = linear(block["attention_input"], p + "attn.qkv").reshape(batch, num_tokens, 3, heads, dim // heads)
        block["q"], block["k"], block["v"] = qkv.permute(2, 0, 3, 1, 4)
        attention = torch.softmax(block["q"] @ block["k"].transpose(-1, -2) * (dim // heads) ** -0.5, dim=-1)
        attention.retain_grad()
        block["attention"] = attention
        block["mixed"] = (attention @ block["v"]).transpose(1, 2).reshape(batch, num_tokens, dim)
        block["attention_branch"] = linear(block["mixed"], p + "attn.proj")
        block["middle"] = x = x + block["attention_branch"]
        block["mlp_input"] = layer_norm(x, p + "norm2")
        block["hidden"] = F.gelu(linear(block["mlp_input"], p + "mlp.fc1"))
        block["mlp_branch"] = linear(block["hidden"], p + "mlp.fc2")
        x = x + block["mlp_branch"]
        record["blocks"].append(block)
    record["head_input"] = layer_norm(x, "norm")[:, 0]
    logits = linear(record["head_input"], "head")
    logits.gather(1, classes[:, None]).sum().backward()
    gradients = [block["attention"].grad.numpy() for block in record["blocks"]]

    def as_numpy(value):
        return value.detach().numpy() if torch.is_tensor(value) else value

    record = {key: as_numpy(value) for key, value in record.items()}
    record["blocks"] = [{key: as_numpy(value) for key, value in block.items()} for block in record["blocks"]]
    return record, logits.detach(), weights, gradients


def _ratio(numerator, denominator):
    return np.where(denominator == 0, 0.0, numerator / np.where(denominator == 0, 1.0, denominator))


def _oracle_linear(x, weight, relevance, joint):
    """Explicit z+ rule: contributions (..., out, in); x+w+ and x-w- parts normalised jointly or separately."""
    contributions = x[..., None, :] * weight
    positive = np.where((x[..., None, :] > 0) & (weight > 0), contributions, 0.0)
    negative = np.where((x[..., None, :] < 0) & (weight < 0), contributions, 0.0)
    parts = [positive + negative] if joint else [positive, negative]
    return sum((_ratio(part, part.sum(-1, keepdims=True)) * relevance[..., None]).sum(-2) for part in parts)


def _oracle_add(a, b, relevance, renormalise):
    to_a, to_b = a * _ratio(relevance, a + b), b * _ratio(relevance, a + b)
    if renormalise:
        for i in range(a.shape[0]):
            sum_a, sum_b, total = to_a[i].sum(), to_b[i].sum(), relevance[i].sum()
            weight = abs(sum_a) + abs(sum_b)
            to_a[i] *= abs(sum_a) / weight * total / sum_a
            to_b[i] *= abs(sum_b) / weight * total / sum_b
    return to_a, to_b


def _oracle_relevance(record, weights, classes, joint: bool, renormalise: bool, num_classes: int):
    """Numpy LRP of the hand forward: attention relevance of every block and the pixel relevance. ``joint`` and
    ``renormalise`` select Chefer's layers_ours rules (both True) or layers_lrp rules (both False)."""
    w = {name: value.numpy() for name, value in weights.items()}
    relevance = np.eye(num_classes)[classes.numpy()]
    pooled = _oracle_linear(record["head_input"], w["head.weight"], relevance, joint)
    batch, num_tokens, dim = record["tokens"].shape
    relevance = np.zeros((batch, num_tokens, dim))
    relevance[:, 0] = pooled
    attention_relevance = {}
    for index in reversed(range(len(record["blocks"]))):
        t, p = record["blocks"][index], f"blocks.{index}."
        residual, branch = _oracle_add(t["middle"], t["mlp_branch"], relevance, renormalise)
        branch = _oracle_linear(t["hidden"], w[p + "mlp.fc2.weight"], branch, joint)
        relevance = residual + _oracle_linear(t["mlp_input"], w[p + "mlp.fc1.weight"], branch, joint)
        residual, branch = _oracle_add(t["input"], t["attention_branch"], relevance, renormalise)
        branch = _oracle_linear(t["mixed"], w[p + "attn.proj.weight"], branch, joint)
        heads = t["attention"].shape[1]
        branch = branch.reshape(batch, num_tokens, heads, -1).transpose(0, 2, 1, 3)  # (B, h, i, d)
        # A V: contributions c[b,h,i,d,j] = A_ij v_jd
        contributions = t["attention"][:, :, :, None, :] * t["v"].transpose(0, 1, 3, 2)[:, :, None]
        shares = _ratio(contributions, contributions.sum(-1, keepdims=True)) * branch[..., None] / 2
        to_attention, to_value = shares.sum(3), shares.sum(2).transpose(0, 1, 3, 2)
        attention_relevance[index] = to_attention
        # Q K^T: contributions c[b,h,i,j,d] = q_id k_jd
        contributions = t["q"][:, :, :, None, :] * t["k"][:, :, None, :, :]
        shares = _ratio(contributions, contributions.sum(-1, keepdims=True)) * to_attention[..., None] / 2
        to_query, to_key = shares.sum(3), shares.sum(2)
        qkv = np.stack([to_query, to_key, to_value], axis=2).transpose(0, 3, 2, 1, 4).reshape(batch, num_tokens, -1)
        relevance = residual + _oracle_linear(t["attention_input"], w[p + "attn.qkv.weight"], qkv, joint)

    to_tokens, _ = _oracle_add(record["tokens"], record["position"], relevance, renormalise)
    image = record["image"]
    channels, size = image.shape[1], image.shape[2]
    kernel = w["patch_embed.proj.weight"]
    patch, grid = kernel.shape[-1], size // kernel.shape[-1]
    flat_kernel = kernel.reshape(kernel.shape[0], -1)  # (D, c*kh*kw)
    as_patches = image.reshape(batch, channels, grid, patch, grid, patch).transpose(0, 2, 4, 1, 3, 5)
    as_patches = as_patches.reshape(batch, grid * grid, -1)
    pixels = []
    for b in range(batch):
        low, high = image[b].min(), image[b].max()
        contributions = (as_patches[b][:, None, :] * flat_kernel - low * np.maximum(flat_kernel, 0)
                         - high * np.minimum(flat_kernel, 0))  # (P, D, c*kh*kw), all >= 0
        shares = _ratio(contributions, contributions.sum(-1, keepdims=True)) * to_tokens[b, 1:, :, None]
        per_patch = shares.sum(1).reshape(grid, grid, channels, patch, patch)
        pixels.append(per_patch.transpose(2, 0, 3, 1, 4).reshape(channels, size, size).sum(0))
    return attention_relevance, np.stack(pixels)


def test_maps_match_an_explicit_numpy_lrp(model):
    images, classes = _images(2, seed=5), torch.tensor([1, 4])
    record, logits, weights, gradients = _hand_forward(model, images, classes)
    torch.testing.assert_close(logits.float(), model(images).detach(), atol=1e-5, rtol=1e-5)  # same model
    depth = len(record["blocks"])

    chefer_attention, _ = _oracle_relevance(record, weights, classes, True, True, NUM_CLASSES)
    original_attention, original_pixels = _oracle_relevance(record, weights, classes, False, False, NUM_CLASSES)
    expected_t_attr, expected_partial = [], []
    for b in range(2):
        joint = np.eye(record["tokens"].shape[1])
        for index in range(1, depth):  # Chefer's start_layer=1
            weighted = np.maximum(gradients[index][b] * chefer_attention[index][b], 0).mean(axis=0)
            joint = joint + weighted @ joint
        expected_t_attr.append(joint[0, 1:].reshape(4, 4))
        expected_partial.append(np.maximum(original_attention[depth - 1][b], 0).mean(axis=0)[0, 1:].reshape(4, 4))

    for name, expected in (
        ("transformer_attribution", np.stack(expected_t_attr)),
        ("partial_lrp", np.stack(expected_partial)),
        ("full_lrp", original_pixels),
    ):
        ours = compute_maps(name, model, images, classes).numpy()
        assert np.ptp(expected) > 0, name
        np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max(), err_msg=name)


# --- T-Attr's aggregation is GAE's ------------------------------------------------------------------------------


def test_the_aggregation_with_attention_in_place_of_relevance_is_gae(model):
    images, classes = _images(2, seed=6), torch.tensor([0, 2])
    record, _, _, gradients = _hand_forward(model, images, classes)
    attentions = [torch.from_numpy(block["attention"]) for block in record["blocks"]]
    joint = residual_relevance_product(attentions, [torch.from_numpy(gradient) for gradient in gradients])
    gae = compute_maps("gae", model, images, classes)
    torch.testing.assert_close(joint[:, 0, 1:].reshape(2, 4, 4).float(), gae, rtol=1e-4, atol=1e-7)


def test_the_aggregation_multiplies_later_blocks_on_the_left():
    generator = torch.Generator().manual_seed(0)
    weights = [torch.rand(2, 3, 4, 4, generator=generator) for _ in range(3)]
    gradients = [torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3)]
    joint = residual_relevance_product(weights, gradients).numpy()
    for b in range(2):
        steps = [np.eye(4) + np.maximum(g[b].numpy() * w[b].numpy(), 0).mean(0) for w, g in zip(weights, gradients)]
        np.testing.assert_allclose(joint[b], steps[2] @ steps[1] @ steps[0], rtol=1e-5)


# --- workflow conditions -----------------------------------------------------------------------------------------


def test_frozen_weights_inference_mode_and_bf16_autocast():
    """The workflow loads frozen models and may call methods under inference_mode or bf16 autocast."""
    model = _model(seed=3)
    images, classes = _images(2), torch.tensor([1, 4])
    references = {name: compute_maps(name, model, images, classes) for name in LRP_METHODS}
    fused_flags = [block.attn.fused_attn for block in model.net.blocks]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.inference_mode():
        for name in LRP_METHODS:
            torch.testing.assert_close(compute_maps(name, model, images, classes), references[name], msg=name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for name in ("transformer_attribution", "partial_lrp"):
            low_precision = compute_maps(name, model, images, classes)
            assert low_precision.dtype == torch.float32 and torch.isfinite(low_precision).all()
            correlation = torch.corrcoef(torch.stack([references[name].flatten(), low_precision.flatten()]))[0, 1]
            assert correlation > 0.9, (name, float(correlation))
    assert [block.attn.fused_attn for block in model.net.blocks] == fused_flags
    assert not any(module._forward_hooks for module in model.modules())


def test_a_vit_without_class_token_pooling_is_refused():
    spec = ModelSpec("vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
                     {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2, "global_pool": "avg"})
    with pytest.raises(ValueError, match="class token"):
        compute_maps("partial_lrp", _model(spec), _images(1), torch.tensor([0]))
