"""Any timm classifier: every CNN method on EfficientNet, ConvNeXt and ResNet, every ViT method on vit_* and deit_*
models (random weights), the explainer and the sanity layers on them, and one-line config errors for what cannot
work, before any job runs."""

from __future__ import annotations

import pytest
import torch

from eea_repro.preflight.compatibility import check_models
from eea_repro.workflow.config import ConfigError, load_config
from eea_repro.explainer.network import MaskExplainer
from eea_repro.methods import METHODS, compute_maps, methods_for_family
from eea_repro.methods.cnn_extra import bias_sites, full_gradient_decomposition
from eea_repro.models.network import ExplainedModel, ModelSpec, create_network
from eea_repro.sanity.randomization import cascading, randomization_layers, untouched_parameters

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CNNS = {
    "efficientnet": ModelSpec("efficientnet_lite0", "cnn", 64, *IMAGENET),
    "convnext": ModelSpec("convnext_atto", "cnn", 64, *IMAGENET, {"conv_mlp": False}),  # channels-last blocks
    "resnet": ModelSpec("resnet18", "cnn", 64, *IMAGENET, {"channels": [8, 16, 32, 64], "stem_width": 8}),
}
VITS = {
    "vit": ModelSpec("vit_tiny_patch16_224", "vit", 64, (0.5,) * 3, (0.5,) * 3, {"depth": 2}),
    "deit": ModelSpec("deit_tiny_patch16_224", "vit", 64, *IMAGENET, {"depth": 2}),
}
NUM_CLASSES = 5


def _model(spec: ModelSpec, seed: int = 0) -> ExplainedModel:
    torch.manual_seed(seed)
    net = create_network(spec, NUM_CLASSES)
    with torch.no_grad():  # non-trivial BN statistics, as a trained network has
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return ExplainedModel(net, spec).eval().requires_grad_(False)


def _images(count: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(1))


def _check_maps(spec: ModelSpec, method: str) -> None:
    model = _model(spec)
    images = _images()
    maps = {k: compute_maps(method, model, images, torch.tensor([k, k]), seed=0) for k in (1, 3)}
    assert maps[1].ndim == 3 and maps[1].shape[0] == 2 and torch.isfinite(maps[1]).all(), method
    if METHODS[method].class_specific:
        assert not torch.allclose(maps[1], maps[3]), f"{method}: the same map for two classes"
    else:
        assert torch.equal(maps[1], maps[3])


@pytest.mark.parametrize("method", methods_for_family("cnn"))
@pytest.mark.parametrize("architecture", list(CNNS))
def test_every_cnn_method_on_efficientnet_convnext_and_resnet(architecture, method):
    _check_maps(CNNS[architecture], method)


@pytest.mark.parametrize("method", methods_for_family("vit"))
@pytest.mark.parametrize("architecture", list(VITS))
def test_every_vit_method_on_vit_and_deit(architecture, method):
    _check_maps(VITS[architecture], method)


@pytest.mark.parametrize("architecture", ["efficientnet", "convnext"])
def test_fullgrad_reads_norm_layers_with_built_in_activations_and_nhwc_blocks(architecture):
    """EfficientNet's BatchNormAct2d (bias-gradient before its SiLU) and ConvNeXt's channels-last LayerNorm / Linear
    blocks: every bias term is a per-image (B, C, h, w) map or the classifier's (B, K)."""
    model = _model(CNNS[architecture])
    sites = bias_sites(model.net)
    kinds = {type(site.layer).__name__ for site in sites}
    if architecture == "efficientnet":
        assert "BatchNormAct2d" in kinds and any(site.at_input for site in sites)
    else:
        assert {"LayerNorm", "LayerNorm2d", "Linear"} <= kinds and any(site.channels_last for site in sites)
    input_term, bias_terms = full_gradient_decomposition(model, _images(), torch.tensor([0, 1]))
    assert len(bias_terms) == len(sites)
    for site, term in zip(sites, bias_terms):
        channels = site.layer.num_features if hasattr(site.layer, "num_features") else None
        assert term.shape[0] == 2 and term.ndim in (2, 4) and torch.isfinite(term).all()
        if channels is not None and term.ndim == 4:
            assert term.shape[1] == channels


@pytest.mark.parametrize("architecture", list(CNNS))
def test_explainer_and_sanity_layers_on_any_cnn(architecture):
    spec = CNNS[architecture]
    model = _model(spec)
    explainer = MaskExplainer(spec, model.net.state_dict(), NUM_CLASSES)
    masks = explainer(_images())
    assert masks.ndim == 3 and ((masks > 0) & (masks < 1)).all()
    stages, blocks = (randomization_layers(model, "cnn", which) for which in ("stage", "block"))
    assert 3 <= len(stages) < len(blocks)
    stem_and_head = untouched_parameters(model, stages)
    assert any("stem" in name or "conv1" in name for name in stem_and_head)
    with torch.no_grad():  # off their init values (norm weights start at 1), as trained weights are
        for parameter in model.parameters():
            parameter.add_(0.1)
    full = cascading(model, len(stages) + 2, stages, seed=1)
    assert not any(torch.equal(a, b) for a, b in zip(model.parameters(), full.parameters()))


def _config(repo, **models) -> dict:
    config = load_config(repo / "config/ci.yaml")
    config["models"] = {name: {"family": family, "label": name, "timm_name": timm_name, "timm_kwargs": kwargs,
                               "input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3,
                               "checkpoint": {"source": "train"}, "train": {"epochs": 1, "lr": 0.1, "batch_size": 8,
                                                                             "weight_decay": 0.0}}
                        for name, (family, timm_name, kwargs) in models.items()}
    config["data_randomization"]["models"] = {}
    return config


def test_every_preset_model_passes_the_checks(repo):
    for preset in ("config.yaml", "config/ci.yaml", "config/paper.yaml"):
        check_models(load_config(repo / preset))


@pytest.mark.parametrize(("models", "message"), [
    ({"typo": ("cnn", "resnet18_typo", {})},
     "config key 'models.typo.timm_name': unknown timm model 'resnet18_typo'; did you mean resnet18"),
    ({"swapped": ("cnn", "vit_tiny_patch16_224", {"depth": 1})},
     "config key 'models.swapped': method 'eea' (methods.cnn) cannot explain 'vit_tiny_patch16_224': "),
    ({"swapped": ("vit", "resnet18", {})},
     "config key 'models.swapped.family': 'vit', but timm model 'resnet18' is not a vision transformer"),
    ({"swapped": ("vit", "mixer_s16_224", {})},  # takes an img_size, has no attention blocks
     "config key 'models.swapped': method 'eea' (methods.vit) cannot explain 'mixer_s16_224': "),
])
def test_config_errors_name_the_key_before_any_job(repo, models, message):
    with pytest.raises(ConfigError) as error:
        check_models(_config(repo, **models))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_method_that_cannot_read_a_model_is_refused_by_name(repo):
    config = _config(repo, distilled=("vit", "deit_tiny_distilled_patch16_224", {"depth": 1}))
    config["methods"]["vit"] = ["gae", "transformer_attribution"]
    with pytest.raises(ConfigError, match="method 'transformer_attribution' .* cannot explain "
                                          "'deit_tiny_distilled_patch16_224': .*distilled"):
        check_models(config)
    config["methods"]["vit"] = ["gae", "rollout"]  # read the class token's row: fine on a distilled ViT
    check_models(config)


def test_sanity_layers_are_only_looked_up_for_models_that_run_them(repo, monkeypatch):
    import eea_repro.sanity.randomization

    def no_layers(net, family, which):
        raise ValueError(f"{type(net).__name__} has no layers")

    monkeypatch.setattr(eea_repro.sanity.randomization, "randomization_layers", no_layers)
    config = _config(repo, effnet=("cnn", "efficientnet_lite0", {}))
    config["sanity"]["modes"] = []
    check_models(config)  # no sanity checks: their layers are not looked up
    config["sanity"]["modes"] = ["cascading"]
    with pytest.raises(ConfigError, match=r"'models.effnet': the sanity checks \(sanity.layers.cnn: stage\) cannot "
                                          "find its layers: EfficientNet has no layers"):
        check_models(config)
