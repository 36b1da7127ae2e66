"""Which configured method can explain which configured model: decided before any job runs, for any timm classifier.

Every configured model is built on the meta device (no weights, no memory) and each method of its family checks what
it reads from the network (``Method.requires``: timm's Attention blocks and class token, a (B, C, h, w)
``forward_features``, FullGrad's normalisation layers, ...); EEA's explainer checks its backbone the same way, and the
sanity checks' layers are looked up for the models that run them. A problem is one :class:`ConfigError` line naming the
config key, the method and the model.
"""

from __future__ import annotations

import difflib

from eea_repro.workflow.config import ConfigError


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def check_models(config: dict) -> dict[str, dict[str, int]]:
    """Raise :class:`ConfigError` for the first configured model that timm does not know, or that a configured method
    (or the sanity checks) cannot read; else return each model's number of sanity-check layers per granularity run
    ({} without sanity modes), which the workflow's levels are counted from."""
    import timm
    import torch

    from eea_repro.explainer.network import explainer_network
    from eea_repro.methods import METHODS
    from eea_repro.models.network import ModelSpec, create_network
    from eea_repro.workflow.names import EEA_METHODS
    from eea_repro.sanity.runs import layer_kinds
    from eea_repro.sanity.randomization import randomization_layers

    layer_counts: dict[str, dict[str, int]] = {}
    for name, entry in config["models"].items():
        key = f"models.{name}"
        if not timm.is_model(entry["timm_name"]):
            close = difflib.get_close_matches(entry["timm_name"], timm.list_models(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"config key '{key}.timm_name': unknown timm model {entry['timm_name']!r}{hint}")
        spec = ModelSpec.from_config(entry)
        try:
            with torch.device("meta"):
                net = create_network(spec, num_classes=2).eval()
        except Exception as error:
            if spec.family == "vit" and "img_size" in str(error):  # the ViT family sets the input size this way
                raise ConfigError(f"config key '{key}.family': 'vit', but timm model {spec.timm_name!r} is not a "
                                  "vision transformer (it takes no img_size); use family: cnn") from None
            raise ConfigError(f"config key '{key}': timm cannot build {spec.timm_name!r} with timm_kwargs "
                              f"{spec.timm_kwargs}: {_reason(error)}") from None
        for method in config["methods"][spec.family]:
            requires = explainer_network if method in EEA_METHODS else METHODS[method].requires
            try:
                if requires is not None:
                    requires(net, spec)
            except Exception as error:
                raise ConfigError(f"config key '{key}': method {method!r} (methods.{spec.family}) cannot explain "
                                  f"{spec.timm_name!r}: {_reason(error)}") from None
        for which in layer_kinds(config["sanity"], spec.family) if config["sanity"]["modes"] else []:
            try:
                layer_counts.setdefault(name, {})[which] = len(randomization_layers(net, spec.family, which))
            except Exception as error:
                raise ConfigError(f"config key '{key}': the sanity checks (sanity.layers.{spec.family}: {which}) "
                                  f"cannot find its layers: {_reason(error)}") from None
    return layer_counts
