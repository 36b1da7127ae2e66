"""How many model inputs one pass of a map method may hold, from the explained network's measured footprint.

Score-CAM's masked images and IG's interpolation steps go through the network in chunks of a fixed count. On the
embedded models a chunk is a few hundred MB; on EfficientNet-Lite2 at 224 px, IG's 128 steps keep about 17 GB of
activations for their backward pass. The footprint of one input (what its forward pass keeps alive) is measured once
per network and input size by a forward pass of one blank image, and a chunk is the method's own count or what fits
in the memory budget, whichever is smaller: small networks keep their chunks (and their bits), large ones are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

CPU_BUDGET_BYTES = 2 * 2**30  # per map job: two jobs on a 2-core laptop stay well within 8 GB
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
            with torch.no_grad():
                net(torch.zeros(1, 3, size, size, device=device))
        finally:
            for hook in hooks:
                hook.remove()
        kept[size] = Footprint(sum(outputs), max(outputs, default=0), 3 * size * size * 4)
    return kept[size]


def memory_budget(device: torch.device) -> int:
    """Bytes a map job's chunk may take on ``device``."""
    if device.type == "cuda":
        return int(GPU_BUDGET_SHARE * torch.cuda.get_device_properties(device).total_memory)
    return CPU_BUDGET_BYTES


def inputs_per_chunk(cap: int, bytes_per_input: int, budget: int) -> int:
    """``cap`` inputs, or fewer when they would not fit in ``budget`` (one at least)."""
    return max(1, min(cap, budget // max(1, bytes_per_input)))
