"""Parameter-randomization sanity checks (Adebayo et al. 2018; the seed's Section 3, Figs. 2-5).

A *layer* is a list of parameter names of the explained model (see :func:`randomization_layers`), ordered bottom to
top. Randomization levels count from the top, as the seed's figures:

- cascading, x = k: the last k - 1 layers are re-initialised (x = 1 is the original model, x = L + 1 all layers), and
  a last level x = L + 2 re-initialises everything no layer holds too (embeddings, CLS token, final norm and head of a
  ViT, the MLPs when the layers are attention weights; stem and classifier of a CNN): Adebayo et al.'s full
  randomization, so the curve ends at a fully random network;
- independent, x = i: only layer i - 1 counted from the top (the (i-1)-th last) is re-initialised, so cascading and
  independent agree at x = 2.
- bottom-up cascading, x = k (Hedström et al., TMLR 2024): the first k - 1 layers counted from the input are
  re-initialised, and x = L + 2 is cascading's last level, the fully random network.

Re-initialisation is seeded per layer (the same layer gets the same new weights in both modes) and is either the
module's own ``reset_parameters()`` (``module``: Linear/Conv get PyTorch's default Kaiming-uniform init, norm layers
become the identity, BN running statistics are kept; parameters no module re-initialises, such as a ViT's CLS token
and position embeddings, get N(0, σ)) or N(0, σ) for every randomized parameter (``normal``). Only the named
parameters change; the original model is never modified.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from eea_repro.sanity.runs import parse_setting

LAYER_CHOICES = {"vit": ("attention", "block"), "cnn": ("stage", "block")}
REINIT_CHOICES = ("module", "normal")


def _network(model: nn.Module) -> tuple[nn.Module, str]:
    """The bare timm network and the prefix of its parameter names inside ``model``."""
    return (model.net, "net.") if hasattr(model, "net") else (model, "")


def randomization_layers(model: nn.Module, family: str, which: str) -> list[list[str]]:
    """Parameter names of each randomizable layer of ``model``, ordered bottom -> top, for any timm classifier.

    The units are timm's own parameter groups (``group_matcher``, the grouping timm uses for layer-wise learning
    rates): the first group is the stem (embeddings), the last the head, and the ones between are the layers. CNN:
    ``stage`` = the coarse groups (a ResNet's layer1..layer4, an EfficientNet's blocks.0..6, a ConvNeXt's stages),
    ``block`` = the fine ones (each residual / inverted-residual block). ViT: one layer per transformer block;
    ``attention`` = the block's attention parameters (qkv + proj, the seed's choice), ``block`` = all of it. The stem
    and the head are not layers here (the seed counts the ViT's 12 blocks); the last cascading level adds them.
    """
    from timm.models import group_parameters

    if which not in LAYER_CHOICES.get(family, ()):
        raise ValueError(f"layers {which!r} is not one of {LAYER_CHOICES.get(family)} for family {family!r}")
    net, prefix = _network(model)
    if not hasattr(net, "group_matcher"):
        raise ValueError(f"{type(net).__name__} has no timm group_matcher(), so its layers cannot be found")
    groups = list(group_parameters(net, net.group_matcher(coarse=which == "stage")).values())[1:-1]
    if which == "attention":
        groups = [[name for name in group if ".attn." in name] for group in groups]
    layers = [[prefix + name for name in group] for group in groups if group]
    if not layers:
        raise ValueError(f"{type(net).__name__}: timm's parameter groups hold no layer between stem and head")
    return layers


def _layer_seed(seed: int, layer: int) -> int:
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0])


def untouched_parameters(model: nn.Module, layers: list[list[str]]) -> list[str]:
    """The parameter names of ``model`` that no layer holds: what only the full-randomization level re-initialises."""
    held = {name for layer in layers for name in layer}
    return [name for name, _ in model.named_parameters() if name not in held]


@torch.no_grad()
def _reinitialise(model: nn.Module, names: list[str], *, reinit: str, std: float, seed: int) -> None:
    """Overwrite the named parameters of ``model`` in place (the caller's copy) with seeded fresh values on the CPU."""
    if reinit not in REINIT_CHOICES:
        raise ValueError(f"reinit {reinit!r} is not one of {REINIT_CHOICES}")
    parameters = dict(model.named_parameters())
    owners: dict[str, list[str]] = {}
    for name in names:
        owner, leaf = name.rsplit(".", 1)
        owners.setdefault(owner, []).append(leaf)
    drawn = []  # parameters that get N(0, std): all of them under "normal", the ones no module resets under "module"
    for j, (owner, leaves) in enumerate(owners.items()):
        module = model.get_submodule(owner)
        if reinit == "normal" or not hasattr(module, "reset_parameters"):
            drawn += [f"{owner}.{leaf}" for leaf in leaves]
            continue
        fresh = copy.deepcopy(module).cpu()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + j)
            fresh.reset_parameters()
        for leaf in leaves:
            parameters[f"{owner}.{leaf}"].copy_(getattr(fresh, leaf))
    generator = torch.Generator().manual_seed(seed)
    drawn = set(drawn)
    for name in (name for name in names if name in drawn):
        target = parameters[name]
        target.copy_(torch.randn(target.shape, generator=generator) * std)


def randomized_model(model: nn.Module, layers: list[list[str]], indices, *, reinit: str = "module",
                     std: float = 0.02, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the layers at ``indices`` (bottom -> top numbering) re-initialised."""
    copied = copy.deepcopy(model)
    for index in indices:
        _reinitialise(copied, layers[index], reinit=reinit, std=std, seed=_layer_seed(seed, index))
    return copied


def cascading(model: nn.Module, k: int, layers: list[list[str]], **reinit) -> nn.Module:
    """Cascading level x = k: the last k - 1 layers re-initialised (k = 1 the original weights, k = L + 1 all layers,
    k = L + 2 every parameter of the network)."""
    if not 1 <= k <= len(layers) + 2:
        raise ValueError(f"cascading level {k} is outside 1..{len(layers) + 2}")
    if k == len(layers) + 2:
        return randomized_model(model, [*layers, untouched_parameters(model, layers)], range(len(layers) + 1),
                                **reinit)
    return randomized_model(model, layers, range(len(layers) - (k - 1), len(layers)), **reinit)


def bottom_up(model: nn.Module, k: int, layers: list[list[str]], **reinit) -> nn.Module:
    """Bottom-up cascading level x = k (Hedström et al. 2024's order): the first k - 1 layers counted from the input
    re-initialised (k = 1 the original weights, k = L + 1 all layers, k = L + 2 every parameter of the network, the
    same model as cascading's last level). Randomizing from the input up leaves no intact lower layer whose
    activations the top of the network would still pass on."""
    if not 1 <= k <= len(layers) + 2:
        raise ValueError(f"bottom-up level {k} is outside 1..{len(layers) + 2}")
    if k == len(layers) + 2:
        return cascading(model, k, layers, **reinit)
    return randomized_model(model, layers, range(k - 1), **reinit)


def independent(model: nn.Module, i: int, layers: list[list[str]], **reinit) -> nn.Module:
    """Independent level x = i: only layer i - 1 counted from the top re-initialised (i = 1 the original weights)."""
    if not 1 <= i <= len(layers) + 1:
        raise ValueError(f"independent level {i} is outside 1..{len(layers) + 1}")
    return randomized_model(model, layers, [len(layers) - (i - 1)] if i > 1 else [], **reinit)


def settings_model(model: nn.Module, setting: str, layers: list[list[str]], sanity_cfg: dict, seed: int) -> nn.Module:
    mode, _, level = parse_setting(setting)
    if mode is None:
        return model
    step = {"cascading": cascading, "independent": independent, "bottom_up": bottom_up, "smooth": bottom_up}[mode]
    return step(model, level, layers, reinit=sanity_cfg["reinit"], std=sanity_cfg["reinit_std"], seed=seed)
