"""The one total order of a map's pixels that all four perturbation tests (POS, NEG, DEL, INS) read.

Pixels are ranked by normalised map value, most relevant first. Maps often have plateaus (Grad-CAM's ReLU zeros,
thresholded or constant maps), so the order also needs a tie rule, and the rule decides which part of a plateau goes
first:

* ``random`` (default): ties follow a seeded random permutation of the pixels, one per image, derived from the run's
  seed and the image id. Every method sees the same permutation for the same image, reruns are byte-identical, and a
  plateau is removed in no particular spatial order.
* ``raster``: ties go to the lower row-major pixel index (a stable sort, as the released code). A plateau is then
  removed top rows first, so part of a NEG or INS score measures what is at the top of the photo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eea_repro.metrics.names import TIE_RULE_TEXT

TIE_RULES = tuple(TIE_RULE_TEXT)


def image_tie_permutation(seed: int, image_id: str, num_pixels: int) -> np.ndarray:
    """The tie permutation of one image: pixel indices in the order in which equal values are taken."""
    digest = int.from_bytes(hashlib.sha256(image_id.encode()).digest()[:16], "little")
    return np.random.default_rng([seed, digest]).permutation(num_pixels)


@dataclass(frozen=True)
class TieBreak:
    """How equal map values are ordered (``rule``, one of :data:`TIE_RULES`), seeded by the run's ``seed``."""

    rule: str = "random"
    seed: int = 0

    def __post_init__(self):
        if self.rule not in TIE_RULES:
            raise ValueError(f"tie rule {self.rule!r} is not one of {TIE_RULES}")

    def permutations(self, image_ids: Sequence[str], num_pixels: int, device=None) -> Tensor | None:
        """(B, N) tie permutations of these images; None for ``raster`` (the identity, left implicit).

        One O(N) shuffle per image id, done once per image per job and shared by every method scored there.
        """
        if self.rule == "raster":
            return None
        stacked = np.stack([image_tie_permutation(self.seed, str(image_id), num_pixels) for image_id in image_ids])
        return torch.from_numpy(stacked).to(device)


def pixel_ranks(maps01: Tensor, tie_permutations: Tensor | None = None) -> Tensor:
    """(B, N) int32 rank of every pixel in its map's total order: 0 = most relevant.

    Descending value; equal values keep the order of ``tie_permutations`` (B, N) (pixel indices, first taken first),
    or raster order when it is None. Visiting the pixels in tie order and then sorting stably by value does exactly
    that in two batched gathers and one sort.
    """
    flat = maps01.flatten(1)
    if tie_permutations is None:
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    else:
        tie_permutations = tie_permutations.to(flat.device, torch.long)
        if tie_permutations.shape != flat.shape:
            raise ValueError(f"tie permutations {tuple(tie_permutations.shape)} do not match maps {tuple(flat.shape)}")
        by_value = torch.sort(flat.gather(1, tie_permutations), dim=1, descending=True, stable=True).indices
        order = tie_permutations.gather(1, by_value)
    positions = torch.arange(flat.shape[1], device=flat.device, dtype=torch.int32).expand_as(flat)
    return torch.empty_like(order, dtype=torch.int32).scatter_(1, order, positions)


def scoring_ties(scoring: dict, image_ids, size: int, device=None) -> torch.Tensor | None:
    """The tie permutations of these images under the run's tie rule, for POS scores outside the metric jobs (EEA's
    step selection, the explainer's validation): ``scoring`` = {"batch_size", "tie_break", "seed"}."""
    return TieBreak(scoring["tie_break"], scoring["seed"]).permutations(image_ids, size * size, device)
