"""How many inputs one pass through a network may hold, from the network's measured footprint per input.

Every large pass of a job goes through a network in chunks of a configured count: Score-CAM's masked images, IG's
interpolation steps, the metric engine's perturbed images, a training batch of the explainer. On the embedded models
a chunk is a few hundred MB; on EfficientNet-Lite2 at 224 px, IG's 128 steps kept about 17 GB of activations for
their backward pass and the explainer's validation (256 perturbed images) 3.8 GB. The footprint of one input (what
its forward pass keeps alive) is measured once per network and input size by a forward pass of one blank image (on
the meta device too, where it costs no memory), and a chunk is the configured count or what fits in the memory
budget, whichever is smaller: small networks keep their chunks (and their bits), large ones are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Per pass of a job on a CPU. A job's passes of different shapes (training batches, then validation forwards) leave
# heap fragments that the next pass cannot reuse, so a job holds more than one budget: at 1 GiB two jobs on a 2-core
# laptop stay within 8 GB. It costs no speed: on EfficientNet-Lite2 at 224 px (two threads) the explainer's
# training and validation took 19.8 s at 1 GiB, 21.7 s at 2 GiB and 26.8 s unbounded (3.6, 6.3 and 10.5 GB).
CPU_BUDGET_BYTES = 2**30
GPU_BUDGET_SHARE = 0.25  # of the device's memory, per job: GPUs are fast only with large chunks


@dataclass(frozen=True)
class Footprint:
    """Bytes one input of a square image keeps in the network: every leaf module's output (what autograd saves for the
    backward pass), the largest one (an inference pass holds about three of that size at its peak: Score-CAM on
    EfficientNet-Lite2 took 13.5 MB per masked image, 2.9 times its largest output) and the image itself."""

    retained: int
    largest: int
    image: int


def input_footprint(net: nn.Module, size: int, device: torch.device) -> Footprint:
    """The network's :class:`Footprint` at ``size`` x ``size`` pixels, measured once and kept on the network."""
    kept = getattr(net, "_eea_footprints", None)
    if kept is None:
        kept = {}
        net._eea_footprints = kept
    if size not in kept:
        outputs = []

        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                outputs.append(output.numel() * output.element_size())

        leaves = [module for module in net.modules() if not list(module.children())]
        hooks = [module.register_forward_hook(record) for module in leaves]
        try:
            parameter = next(net.parameters(), None)
            probe = torch.zeros(1, 3, size, size, device=device,
                                dtype=torch.float32 if parameter is None else parameter.dtype)
            with torch.no_grad():
                net(probe)
        finally:
            for hook in hooks:
                hook.remove()
        kept[size] = Footprint(sum(outputs), max(outputs, default=0), probe.numel() * probe.element_size())
    return kept[size]


def inference_bytes(footprint: Footprint) -> int:
    """Bytes one input takes in a forward pass without autograd."""
    return footprint.image + 3 * footprint.largest


def training_bytes(footprint: Footprint) -> int:
    """Bytes one input takes in a forward pass whose activations autograd keeps for the backward pass."""
    return footprint.retained + footprint.image


def inference_chunk(model, count: int, size: int, device: torch.device) -> int:
    """``count`` inputs of ``size`` pixels per forward pass of ``model`` without autograd, or fewer where they would
    not fit in the budget; a callable that is not a module keeps ``count``."""
    net = getattr(model, "_orig_mod", model)  # a torch.compile'd model: measure the module it wraps
    if not isinstance(net, nn.Module):
        return count
    return inputs_per_chunk(count, inference_bytes(input_footprint(net, size, device)), memory_budget(device))


def gradient_chunk(model: nn.Module, count: int, size: int, device: torch.device) -> int:
    """``count`` inputs of ``size`` pixels per pass of ``model`` whose backward pass needs every activation (gradient
    map methods), or fewer where they would not fit in the budget."""
    return inputs_per_chunk(count, training_bytes(input_footprint(model, size, device)), memory_budget(device))


def memory_budget(device: torch.device) -> int:
    """Bytes a map job's chunk may take on ``device``."""
    if device.type == "cuda":
        return int(GPU_BUDGET_SHARE * torch.cuda.get_device_properties(device).total_memory)
    return CPU_BUDGET_BYTES


def inputs_per_chunk(cap: int, bytes_per_input: int, budget: int) -> int:
    """``cap`` inputs, or fewer when they would not fit in ``budget`` (one at least)."""
    return max(1, min(cap, budget // max(1, bytes_per_input)))
