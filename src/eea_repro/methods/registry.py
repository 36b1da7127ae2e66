"""Registry of explanation-map methods: one entry per method, looked up by name from the workflow.

Every method has the same calling convention, so the map-generation rule, the metric engine and the report can treat
them uniformly: ``fn(model, images01, classes, generator) -> maps`` with maps on the model's native grid (ViT token
grid, CNN last feature grid), float32, shape (B, h, w). Adding a method is one function plus one ``@register`` line.

A method also names what it reads from a network (``requires``: raises ``ValueError`` with the reason when a timm
model lacks it), so that a configured method that cannot explain a configured model is refused before any job runs
(:mod:`eea_repro.preflight.compatibility`), on a network built on the meta device.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from eea_repro.models.network import FAMILIES
from eea_repro.workflow.names import EEA_LABELS


@dataclass(frozen=True)
class Method:
    """A registered map method and what the workflow needs to know about it."""

    name: str
    label: str
    families: tuple[str, ...]
    class_specific: bool
    fn: Callable
    control: bool = False  # a floor map (noise, constant), not an explanation: never "best", no cost worth measuring
    requires: Callable | None = None  # requires(net, spec) raises ValueError if the method cannot read the network
    seeded: bool = False  # draws from the job's seed: an image's map depends on its place in the job's batches


METHODS: dict[str, Method] = {}


def register(name: str, label: str, families: tuple[str, ...], class_specific: bool, control: bool = False,
             requires: Callable | None = None, seeded: bool = False) -> Callable:
    """Decorator adding ``fn`` to :data:`METHODS` under ``name``; the function itself is returned unchanged."""
    unknown = [family for family in families if family not in FAMILIES]
    if unknown:
        raise ValueError(f"method {name!r}: unknown model families {unknown}; expected some of {FAMILIES}")

    def add(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        METHODS[name] = Method(name, label, tuple(families), class_specific, fn, control, requires, seeded)
        return fn

    return add


def methods_for_family(family: str) -> list[str]:
    """Names of the methods that can explain a model of this family, in registration order."""
    return [name for name, method in METHODS.items() if family in method.families]


def control_methods() -> set[str]:
    """Names of the control maps (random, constant): sanity floors, left out of "best" and of cost measurements."""
    return {name for name, method in METHODS.items() if method.control}


def compute_maps(
    name: str, model, images01: torch.Tensor, classes: torch.Tensor, seed: int | None = None
) -> torch.Tensor:
    """Maps of method ``name`` for a batch: (B, h, w) float32 on the images' device.

    ``seed`` makes stochastic methods (the random control) reproducible per call; the generator lives on the images'
    device so that no host round trip is needed.
    """
    method = METHODS.get(name)
    if method is None:
        raise ValueError(f"unknown map method {name!r}; registered methods: {', '.join(METHODS)}")
    if model.family not in method.families:
        allowed = ", ".join(methods_for_family(model.family))
        raise ValueError(f"map method {name!r} does not support model family {model.family!r}; use one of: {allowed}")
    if classes.shape != (images01.shape[0],):
        raise ValueError(f"classes must have shape ({images01.shape[0]},), got {tuple(classes.shape)}")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=images01.device)
        generator.manual_seed(seed)
    maps = method.fn(model, images01, classes.to(images01.device), generator)
    return maps.float()


@contextmanager
def enabled_autograd() -> Iterator[None]:
    """Let a gradient method build its graph even when the caller runs under ``no_grad`` or ``inference_mode``.

    Tensors the caller created in inference mode must be cloned inside this context before they enter the graph.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


def method_label(name: str) -> str:
    """The name a table or figure shows: the registry's label, or EEA's and pEEA's."""
    return EEA_LABELS.get(name) or METHODS[name].label
