"""Map methods: batching, class dependence, and agreement with independent computations.

ViT maps are checked against a hand-written forward pass of the same weights (attention recomputed from the qkv
weights, gradients taken on those tensors) aggregated with explicit numpy matrix products; CNN maps against
pytorch-grad-cam.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eea_repro.methods import METHODS, compute_maps, methods_for_family, register
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

NUM_CLASSES = 6
VIT_SPEC = ModelSpec(
    "vit_tiny_patch16_224", "vit", 32, (0.5,) * 3, (0.5,) * 3,
    {"patch_size": 8, "depth": 3, "embed_dim": 32, "num_heads": 2},
)  # 4x4 patch grid + CLS; 3 blocks so that rollout's product (from block 1) has two factors
CNN_SPEC = ModelSpec(
    "resnet18", "cnn", 128, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
    {"channels": (8, 16, 32, 64), "stem_width": 8},
)  # last feature map 4x4


def _model(spec: ModelSpec, seed: int) -> ExplainedModel:
    torch.manual_seed(seed)
    return ExplainedModel(create_network(spec, num_classes=NUM_CLASSES), spec).eval()


@pytest.fixture(scope="module")
def models() -> dict[str, ExplainedModel]:
    return {"vit": _model(VIT_SPEC, 0), "cnn": _model(CNN_SPEC, 1)}


def _images(model: ExplainedModel, count: int, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, model.input_size, model.input_size, generator=generator)


METHOD_FAMILY_PAIRS = [(name, family) for name, method in METHODS.items() for family in method.families]
PIXEL_RESOLUTION_METHODS = {"full_lrp", "integrated_gradients", "fullgrad", "edges"}  # input pixels, not a grid


@pytest.mark.parametrize(("name", "family"), METHOD_FAMILY_PAIRS)
def test_maps_are_batched_float32_on_the_native_grid(models, name, family):
    model = models[family]
    images = _images(model, 3)
    classes = torch.tensor([0, 3, 5])
    expected_grid = images.shape[-2:] if name in PIXEL_RESOLUTION_METHODS else (4, 4)

    maps = compute_maps(name, model, images, classes, seed=7)

    assert maps.shape == (3, *expected_grid)
    assert maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    if name == "random":
        assert torch.equal(maps, compute_maps(name, model, images, classes, seed=7))
        assert not torch.allclose(maps, compute_maps(name, model, images, classes, seed=8))
        assert 0 <= maps.min() and maps.max() < 1
        return
    singles = torch.cat([compute_maps(name, model, images[i : i + 1], classes[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(maps, singles, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "family"), METHOD_FAMILY_PAIRS)
def test_only_class_specific_methods_depend_on_the_class(models, name, family):
    model = models[family]
    images = _images(model, 3)
    if METHODS[name].class_specific:
        # one image explained for every class; ReLU/clamp zero out some classes' maps on random weights
        per_class = compute_maps(name, model, images[:1].expand(NUM_CLASSES, -1, -1, -1), torch.arange(NUM_CLASSES))
        informative = [m for m in per_class if m.abs().max() > 0]
        assert len(informative) >= 2
        for i, first in enumerate(informative):
            for second in informative[i + 1 :]:
                assert not torch.allclose(first, second, atol=1e-7, rtol=1e-4)
    else:
        first = compute_maps(name, model, images, torch.tensor([0, 1, 2]), seed=3)
        second = compute_maps(name, model, images, torch.tensor([4, 5, 3]), seed=3)
        assert torch.equal(first, second)


def test_method_lists_and_labels():
    vit_methods = {"raw_attention", "rollout", "gae", "attention_gradcam", "transformer_attribution", "partial_lrp",
                   "full_lrp", "random", "all_ones", "edges"}
    cnn_methods = {"gradcam", "gradcam_pp", "scorecam", "ablationcam", "layercam", "liftcam", "integrated_gradients",
                   "fullgrad", "random", "all_ones", "edges"}
    assert set(methods_for_family("vit")) == vit_methods
    assert set(methods_for_family("cnn")) == cnn_methods
    assert METHODS["gae"].label == "GAE" and METHODS["gradcam_pp"].label == "GC++"
    assert METHODS["gae"].class_specific and not METHODS["rollout"].class_specific


# --- ViT: hand-written forward pass and numpy aggregation -------------------------------------------------------


def _hand_vit_attention(model: ExplainedModel, images01: torch.Tensor, classes: torch.Tensor):
    """Re-run the timm ViT from its weights with plain tensor ops; return logits, attentions and their gradients."""
    net = model.net
    dim = net.embed_dim
    heads = net.blocks[0].attn.num_heads
    head_dim = dim // heads
    x = model.normalize(images01)
    tokens = F.conv2d(x, net.patch_embed.proj.weight, net.patch_embed.proj.bias, stride=net.patch_embed.patch_size)
    tokens = tokens.flatten(2).transpose(1, 2)
    batch, patches, _ = tokens.shape
    tokens = torch.cat([net.cls_token.expand(batch, -1, -1), tokens], dim=1) + net.pos_embed
    num_tokens = patches + 1
    attentions = []
    for block in net.blocks:
        normed = F.layer_norm(tokens, (dim,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = normed @ block.attn.qkv.weight.T + block.attn.qkv.bias
        q, k, v = (part.reshape(batch, num_tokens, heads, head_dim).transpose(1, 2) for part in qkv.split(dim, -1))
        attention = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5, dim=-1)
        attention.retain_grad()
        attentions.append(attention)
        mixed = (attention @ v).transpose(1, 2).reshape(batch, num_tokens, dim)
        tokens = tokens + mixed @ block.attn.proj.weight.T + block.attn.proj.bias
        normed = F.layer_norm(tokens, (dim,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
        hidden = F.gelu(normed @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
        tokens = tokens + hidden @ block.mlp.fc2.weight.T + block.mlp.fc2.bias
    tokens = F.layer_norm(tokens, (dim,), net.norm.weight, net.norm.bias, net.norm.eps)
    logits = tokens[:, 0] @ net.head.weight.T + net.head.bias
    logits[torch.arange(batch), classes].sum().backward()
    as_numpy = [a.detach().numpy().astype(np.float64) for a in attentions]
    grads_numpy = [a.grad.numpy().astype(np.float64) for a in attentions]
    return logits.detach(), as_numpy, grads_numpy


def test_vit_maps_match_hand_computed_attention_products(models):
    model = models["vit"]
    images = _images(model, 2, seed=5)
    classes = torch.tensor([0, 3])  # both give a non-zero (unclamped) Attn-GC map
    logits, attentions, gradients = _hand_vit_attention(model, images, classes)
    torch.testing.assert_close(logits, model(images).detach(), atol=1e-5, rtol=1e-5)  # the hand forward is the model
    num_tokens = attentions[0].shape[-1]
    identity = np.eye(num_tokens)

    expected = {name: [] for name in ("rollout", "gae", "raw_attention", "attention_gradcam")}
    for b in range(2):
        joint = None
        for attention in attentions[1:]:  # start_layer = 1
            step = attention[b].mean(axis=0) + identity
            step = step / step.sum(axis=1, keepdims=True)
            joint = step if joint is None else step @ joint
        expected["rollout"].append(joint[0, 1:])

        relevance = identity.copy()
        for attention, gradient in zip(attentions, gradients):
            relevance = relevance + np.maximum(gradient[b] * attention[b], 0).mean(axis=0) @ relevance
        expected["gae"].append(relevance[0, 1:])

        expected["raw_attention"].append(attentions[-1][b].mean(axis=0)[0, 1:])

        head_weights = gradients[-1][b, :, 0, 1:].mean(axis=1)
        cam = np.mean([head_weights[h] * attentions[-1][b, h, 0, 1:] for h in range(len(head_weights))], axis=0)
        expected["attention_gradcam"].append(np.maximum(cam, 0))

    assert all(np.ptp(row) > 0 for name in ("gae", "attention_gradcam") for row in expected[name])
    for name, rows in expected.items():
        ours = compute_maps(name, model, images, classes).numpy()
        np.testing.assert_allclose(ours, np.stack(rows).reshape(2, 4, 4), rtol=1e-4, atol=1e-7, err_msg=name)


def test_attention_recording_leaves_the_model_as_it_was(models):
    model = models["vit"]
    flags = [block.attn.fused_attn for block in model.net.blocks]
    compute_maps("gae", model, _images(model, 1), torch.tensor([0]))
    assert [block.attn.fused_attn for block in model.net.blocks] == flags
    assert all(not block.attn.attn_drop._forward_hooks for block in model.net.blocks)


@pytest.mark.parametrize(("name", "family"), [pair for pair in METHOD_FAMILY_PAIRS if METHODS[pair[0]].class_specific])
def test_gradient_methods_work_under_inference_mode_with_frozen_weights(name, family):
    """The workflow loads models with requires_grad=False and may call methods under inference_mode."""
    spec = VIT_SPEC if family == "vit" else CNN_SPEC
    model = _model(spec, 4)
    images, classes = _images(model, 2), torch.tensor([2, 3])
    reference = compute_maps(name, model, images, classes)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.inference_mode():
        frozen = compute_maps(name, model, images, classes)
    torch.testing.assert_close(frozen, reference)


def test_gradient_methods_keep_float32_maps_under_bf16_autocast(models):
    """Under bf16 autocast the forward runs in bf16 but the maps come back float32 and close to the fp32 ones."""
    for family, name in (("vit", "gae"), ("cnn", "gradcam_pp")):
        model = models[family]
        images, classes = _images(model, 2), torch.tensor([1, 4])
        reference = compute_maps(name, model, images, classes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_precision = compute_maps(name, model, images, classes)
        assert low_precision.dtype == torch.float32 and torch.isfinite(low_precision).all()
        correlation = torch.corrcoef(torch.stack([reference.flatten(), low_precision.flatten()]))[0, 1]
        assert correlation > 0.99, (name, float(correlation))


# --- CNN: pytorch-grad-cam as the oracle ------------------------------------------------------------------------


def _grad_cam_post_processing(native_maps: np.ndarray, size: int) -> np.ndarray:
    """What pytorch-grad-cam does to a layer's CAM: min-max, cv2 resize to the input, min-max again."""
    def min_max(image):
        image = image - image.min()
        return image / (1e-7 + image.max())

    return np.stack([min_max(cv2.resize(min_max(m), (size, size))) for m in native_maps.astype(np.float32)])


@pytest.mark.parametrize("name", ["gradcam", "gradcam_pp"])
def test_cnn_cams_equal_pytorch_grad_cam(models, name):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = models["cnn"]
    images = _images(model, 3, seed=6)
    classes = model(images).argmax(dim=1)
    oracle_class = {"gradcam": GradCAM, "gradcam_pp": GradCAMPlusPlus}[name]
    normalized = model.normalize(images)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    layer = model.net.layer4
    with oracle_class(model=model.net, target_layers=[layer]) as oracle:
        oracle_maps = oracle(input_tensor=normalized, targets=targets)
        activations = oracle.activations_and_grads.activations[0].numpy()
        gradients = oracle.activations_and_grads.gradients[0].numpy()
        oracle_native = np.maximum(oracle.get_cam_image(normalized, layer, targets, activations, gradients), 0)

    ours = compute_maps(name, model, images, classes).numpy()

    assert (ours.max(axis=(1, 2)) > 0).all() and (ours.min(axis=(1, 2)) < ours.max(axis=(1, 2))).all()
    np.testing.assert_allclose(ours, oracle_native, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_grad_cam_post_processing(ours, model.input_size), oracle_maps, atol=1e-4)


# --- registry errors --------------------------------------------------------------------------------------------


def test_compute_maps_rejects_unknown_methods_and_wrong_families(models):
    images, classes = _images(models["cnn"], 1), torch.tensor([0])
    with pytest.raises(ValueError, match="unknown map method 'no_such_method'") as unknown:
        compute_maps("no_such_method", models["cnn"], images, classes)
    with pytest.raises(ValueError, match="'gae' does not support model family 'cnn'") as wrong_family:
        compute_maps("gae", models["cnn"], images, classes)
    assert "gradcam" in str(wrong_family.value)
    for error in (unknown, wrong_family):
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="unknown model families"):
        register("bad", "Bad", ("rnn",), class_specific=False)
