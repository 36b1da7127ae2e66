"""The extra CNN baselines against independent computations: pytorch-grad-cam (Score-CAM, Ablation-CAM, LayerCAM,
FullGrad's bias-gradients), captum DeepLift on the head (LIFT-CAM), a hand-written Gauss-Legendre IG, and the
completeness of IG and of FullGrad's decomposition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eea_repro.methods import METHODS, compute_maps, methods_for_family
from eea_repro.methods.cnn_extra import (
    HeadOnly,
    full_gradient_decomposition,
    integrated_gradients_attributions,
    liftcam_channel_contributions,
)
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network

NUM_CLASSES = 6
INPUT_SIZE = 128
SPEC = ModelSpec(
    "resnet18", "cnn", INPUT_SIZE, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
    {"channels": (8, 16, 32, 64), "stem_width": 8},
)  # last feature map 64 x 4 x 4
FEATURE_GRID = (4, 4)
CAM_METHODS = ["scorecam", "ablationcam", "layercam", "liftcam"]
PIXEL_METHODS = ["integrated_gradients", "fullgrad"]
NEW_METHODS = CAM_METHODS + PIXEL_METHODS


def _model(seed: int) -> ExplainedModel:
    torch.manual_seed(seed)
    model = ExplainedModel(create_network(SPEC, num_classes=NUM_CLASSES), SPEC).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that the folded FullGrad biases are not just beta
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model


@pytest.fixture(scope="module")
def model() -> ExplainedModel:
    return _model(1)


def _images(count: int, seed: int = 2, size: int = INPUT_SIZE) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=generator)


def _expected_shape(name: str, batch: int) -> tuple[int, ...]:
    return (batch, INPUT_SIZE, INPUT_SIZE) if name in PIXEL_METHODS else (batch, *FEATURE_GRID)


def test_registry_entries():
    labels = {name: METHODS[name].label for name in NEW_METHODS}
    assert labels == {
        "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM", "layercam": "LayerCAM", "liftcam": "LIFT-CAM",
        "integrated_gradients": "IG", "fullgrad": "FullGrad",
    }
    assert set(NEW_METHODS) <= set(methods_for_family("cnn"))
    assert not set(NEW_METHODS) & set(methods_for_family("vit"))
    assert all(METHODS[name].class_specific for name in NEW_METHODS)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_maps_are_float32_finite_and_a_batch_equals_single_calls(model, name):
    images, classes = _images(3), torch.tensor([0, 3, 5])

    maps = compute_maps(name, model, images, classes)

    assert maps.shape == _expected_shape(name, 3)
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    singles = torch.cat([compute_maps(name, model, images[i : i + 1], classes[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(maps, singles, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_maps_depend_on_the_explained_class(model, name):
    explained = 4  # classes; fewer than all keeps the 50-step IG cheap
    per_class = compute_maps(name, model, _images(1).expand(explained, -1, -1, -1), torch.arange(explained))
    informative = [m for m in per_class if m.abs().max() > 0]  # ReLU can zero out a class's whole map
    assert len(informative) >= 3
    for i, first in enumerate(informative):
        for second in informative[i + 1 :]:
            assert not torch.allclose(first, second, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("name", ["scorecam", "ablationcam"])
def test_chunking_does_not_change_the_maps(model, name):
    images, classes = _images(2), torch.tensor([1, 4])
    uneven = METHODS[name].fn(model, images, classes, chunk=7)  # 2 x 64 pairs: chunks split images mid-way
    torch.testing.assert_close(uneven, compute_maps(name, model, images, classes), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "layercam", "liftcam", "fullgrad"])
def test_maps_stay_float32_and_close_under_bf16_autocast(model, name):
    images, classes = _images(2, seed=9), model(_images(2, seed=9)).argmax(dim=1)
    reference = compute_maps(name, model, images, classes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = compute_maps(name, model, images, classes)
    assert low_precision.dtype == torch.float32 and torch.isfinite(low_precision).all()
    correlation = torch.corrcoef(torch.stack([reference.flatten(), low_precision.flatten()]))[0, 1]
    assert correlation > 0.95, (name, float(correlation))


# --- CAMs: pytorch-grad-cam as the oracle, compared on the native feature grid -----------------------------------


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "layercam"])
def test_cams_equal_pytorch_grad_cam(model, name):
    from pytorch_grad_cam import AblationCAM, LayerCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = _images(2, seed=6)
    classes = model(images).argmax(dim=1)
    normalized = model.normalize(images)
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    layer = model.net.layer4
    oracle_class = {"scorecam": ScoreCAM, "ablationcam": AblationCAM, "layercam": LayerCAM}[name]
    with oracle_class(model=model.net, target_layers=[layer]) as oracle:
        # the recording half of the oracle's __call__ (its own resize/normalise half is not needed on the native grid)
        outputs = oracle.activations_and_grads(normalized)
        sum(target(output) for target, output in zip(targets, outputs)).backward()
        activations = oracle.activations_and_grads.activations[0].numpy()
        gradients = oracle.activations_and_grads.gradients[0].numpy()
        oracle_native = np.maximum(oracle.get_cam_image(normalized, layer, targets, activations, gradients, False), 0)
    if name == "ablationcam":
        assert activations.min() == 0  # pytorch-grad-cam ablates by zeroing only when the activations reach 0

    ours = compute_maps(name, model, images, classes).numpy()

    assert (ours.max(axis=(1, 2)) > ours.min(axis=(1, 2))).all()
    np.testing.assert_allclose(ours, oracle_native, rtol=1e-4, atol=1e-6 * np.abs(oracle_native).max())


# --- LIFT-CAM: captum DeepLift on the head ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
def test_liftcam_equals_captum_deeplift_on_the_head(model):
    from captum.attr import DeepLift

    images = _images(3, seed=7)
    classes = model(images).argmax(dim=1)  # positive logits: maps not clamped to zero
    with torch.no_grad():
        features = model.net.forward_features(model.normalize(images))
    contributions = DeepLift(HeadOnly(model.net)).attribute(
        features.clone().requires_grad_(True), baselines=torch.zeros_like(features), target=classes
    ).detach()
    weights = contributions.sum(dim=(2, 3))
    expected = (weights[:, :, None, None] * features).sum(dim=1).clamp(min=0)

    _, ours_contributions = liftcam_channel_contributions(model, images, classes)
    ours = compute_maps("liftcam", model, images, classes)

    torch.testing.assert_close(ours_contributions, contributions, atol=1e-7, rtol=1e-5)
    assert (expected.flatten(1).amax(dim=1) > 0).all()
    torch.testing.assert_close(ours, expected, atol=1e-7, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks")
def test_liftcam_on_a_nonlinear_head_is_captums_deeplift():
    """No closed form there (ConvNeXt's head normalises after the pool): captum's DeepLift on the head, as the
    LIFT-CAM authors computed it for every head."""
    from captum.attr import DeepLift

    model = _model(5)
    linear_head = model.net.forward_head
    model.net.head_act = nn.Tanh()  # a module of the network: DeepLift's rescale rule applies to it
    model.net.forward_head = lambda features, pre_logits=False: model.net.head_act(linear_head(features))
    images, classes = _images(2, seed=3), torch.tensor([0, 2])
    with torch.no_grad():
        features = model.net.forward_features(model.normalize(images))
    expected = DeepLift(HeadOnly(model.net)).attribute(
        features.clone().requires_grad_(True), baselines=torch.zeros_like(features), target=classes).detach()
    _, contributions = liftcam_channel_contributions(model, images, classes)
    torch.testing.assert_close(contributions, expected)
    assert not torch.allclose(contributions, features * torch.autograd.functional.jacobian(
        lambda f: model.net.forward_head(f).gather(1, classes[:, None]).sum(), features))  # not gradient x input


# --- Integrated Gradients -------------------------------------------------------------------------------------


def _class_logit(model: ExplainedModel, normalized: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return model.net(normalized).gather(1, classes[:, None])[:, 0]


def test_integrated_gradients_equal_a_hand_written_gauss_legendre_integral(model):
    images, classes = _images(2, seed=8, size=64), torch.tensor([1, 4])  # the network is fully convolutional
    steps = 50
    nodes, node_weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1] -> alphas on [0, 1]
    alphas, alpha_weights = (nodes + 1) / 2, node_weights / 2
    normalized = model.normalize(images)
    path_gradient = torch.zeros_like(normalized)
    for alpha, weight in zip(alphas, alpha_weights):
        point = (float(alpha) * normalized).requires_grad_(True)
        (gradient,) = torch.autograd.grad(_class_logit(model, point, classes).sum(), point)
        path_gradient += float(weight) * gradient
    expected = path_gradient * normalized

    attributions = integrated_gradients_attributions(model, images, classes, n_steps=steps, internal_batch_size=16)
    maps = compute_maps("integrated_gradients", model, images, classes)

    torch.testing.assert_close(attributions, expected, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(maps, expected.mean(dim=1), atol=1e-6, rtol=1e-4)


def test_integrated_gradients_are_complete(model):
    images = _images(3, seed=10, size=64)
    classes = model(images).argmax(dim=1)
    normalized = model.normalize(images)
    with torch.no_grad():
        expected = _class_logit(model, normalized, classes) - _class_logit(model, torch.zeros_like(normalized), classes)

    total = integrated_gradients_attributions(model, images, classes, n_steps=50).sum(dim=(1, 2, 3))

    assert (expected.abs() > 0.05).all()
    torch.testing.assert_close(total, expected, atol=0.0, rtol=0.03)


# --- FullGrad ------------------------------------------------------------------------------------------------------


def test_fullgrad_decomposition_is_complete(model):
    """input-gradient . x + sum of bias . bias-gradient = class logit, for a ReLU network with eval-mode batch norm."""
    images, classes = _images(3, seed=11), torch.tensor([0, 2, 5])
    with torch.no_grad():
        logits = _class_logit(model, model.normalize(images), classes)

    input_term, bias_terms = full_gradient_decomposition(model, images, classes)
    total = input_term.sum(dim=(1, 2, 3)) + sum(term.flatten(1).sum(dim=1) for term in bias_terms)

    biased = [m for m in model.net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and m.bias is not None]
    assert sum(term.ndim == 4 for term in bias_terms) == len(biased) and bias_terms[-1].ndim == 2
    assert input_term.shape == images.shape
    torch.testing.assert_close(total, logits, atol=1e-5, rtol=1e-4)


def _idiap_rescale(tensor: np.ndarray) -> np.ndarray:
    """The Idiap reference's post-processing of a layer's tensor, per image: |x|, then min-max over all its entries."""
    magnitude = np.abs(tensor)
    magnitude = magnitude - magnitude.reshape(len(tensor), -1).min(axis=1)[:, None, None, None]
    return magnitude / (magnitude.reshape(len(tensor), -1).max(axis=1)[:, None, None, None] + 1e-6)


def test_fullgrad_map_from_pytorch_grad_cam_bias_gradients(model):
    """Bias-gradients recorded by pytorch-grad-cam's FullGrad hooks (folded BN biases from its own code), the input
    gradient from plain autograd, post-processed the way the Idiap reference does, give our map."""
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = _images(2, seed=12)
    classes = model(images).argmax(dim=1)
    normalized = model.normalize(images)
    with FullGrad(model=model.net, target_layers=[]) as oracle:
        oracle(input_tensor=normalized, targets=[ClassifierOutputTarget(int(c)) for c in classes])
        layer_gradients = [g.numpy() for g in oracle.activations_and_grads.gradients]
        biases = oracle.bias_data
    point = normalized.clone().requires_grad_(True)
    logits = _class_logit(model, point, classes)
    (input_gradient,) = torch.autograd.grad(logits.sum(), point)
    input_term = (input_gradient * normalized).numpy()
    bias_terms = [gradient * bias[None, :, None, None] for gradient, bias in zip(layer_gradients, biases)]
    classifier_bias = model.net.fc.bias[classes].detach().numpy()
    total = input_term.sum(axis=(1, 2, 3)) + sum(t.sum(axis=(1, 2, 3)) for t in bias_terms) + classifier_bias
    np.testing.assert_allclose(total, logits.detach().numpy(), rtol=1e-4, atol=1e-5)  # the oracle's terms are complete

    expected = _idiap_rescale(input_term).sum(axis=1)
    for term in bias_terms:
        upsampled = F.interpolate(
            torch.from_numpy(_idiap_rescale(term)), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=True
        )
        expected = expected + upsampled.numpy().sum(axis=1)

    ours = compute_maps("fullgrad", model, images, classes).numpy()

    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_a_chunk_is_the_methods_own_count_or_what_fits_in_the_budget():
    from eea_repro.models.memory import inputs_per_chunk

    assert inputs_per_chunk(256, bytes_per_input=1_000, budget=10**9) == 256  # a small network keeps its chunk
    assert inputs_per_chunk(256, bytes_per_input=10**7, budget=10**9) == 100
    assert inputs_per_chunk(256, bytes_per_input=10**10, budget=10**9) == 1  # one input at least


def test_the_footprint_is_every_leaf_output_of_one_input_measured_once(model):
    from eea_repro.models.memory import input_footprint

    outputs = []
    hooks = [module.register_forward_hook(lambda m, i, o: outputs.append(o.numel() * 4))
             for module in model.net.modules() if not list(module.children())]
    with torch.no_grad():
        model.net(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    for hook in hooks:
        hook.remove()
    footprint = input_footprint(model.net, INPUT_SIZE, torch.device("cpu"))
    assert (footprint.retained, footprint.largest) == (sum(outputs), max(outputs))
    assert footprint.image == 3 * INPUT_SIZE**2 * 4
    calls = []
    probe = model.net.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    assert input_footprint(model.net, INPUT_SIZE, torch.device("cpu")) == footprint and calls == []  # kept
    probe.remove()


@pytest.mark.parametrize("name", ["scorecam", "integrated_gradients"])
def test_a_tight_memory_budget_shrinks_the_chunks_not_the_maps(model, monkeypatch, name):
    from eea_repro.models import memory

    images, classes = _images(2), torch.tensor([1, 4])
    roomy = compute_maps(name, model, images, classes)
    sizes = []
    probe = model.net.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    footprint = memory.input_footprint(model.net, INPUT_SIZE, torch.device("cpu"))
    per_input = footprint.retained + footprint.image if name == "integrated_gradients" else (
        footprint.image + 3 * footprint.largest)
    monkeypatch.setattr(memory, "CPU_BUDGET_BYTES", 5 * per_input)
    tight = compute_maps(name, model, images, classes)
    probe.remove()
    # Score-CAM: 5 masked images per pass; IG: captum runs whole steps of every image, 5 // 2 steps of 2 images
    assert max(sizes) == {"scorecam": 5, "integrated_gradients": (5 // len(images)) * len(images)}[name]
    torch.testing.assert_close(tight, roomy, rtol=1e-4, atol=1e-5)
