"""Per-image similarity of two explanation maps, as in the sanity checks of Adebayo et al. (2018).

Every function takes two stacks of maps ``(N, h, w)`` (native resolution is fine: the two stacks are first brought
to a common size, by default the larger of the two, or ``size`` when given, with bilinear upsampling as in
:func:`eea_repro.metrics.engine.normalize_maps`) and returns one value per image, a float array of length N. The
``stack_*`` functions take two :class:`MapStack` at the same size instead, so that a reference stack compared with
many others is prepared once.

Constant maps carry no ranking, so Spearman and the HOG correlation are undefined for them (scipy returns NaN). We use
one convention for both: two maps that are both constant are identical orderings (value 1), one constant map against
a non-constant one shares no ordering (value 0). A map with NaN/inf gives NaN.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from skimage.feature import hog
from skimage.metrics import structural_similarity

from eea_repro.metrics.engine import normalize_maps

# HOG: 8 x 8 cells over the (upsampled) map whatever its size, 9 orientations, 2 x 2 cells per block (skimage's
# default block and orientation counts). Cells sized to the map keep the descriptor's layout the same for a 48-pixel
# test map and a 224-pixel ImageNet map; maps are upsampled to the model's input size before this.
HOG_CELLS_PER_SIDE = 8
HOG_ORIENTATIONS = 9
HOG_CELLS_PER_BLOCK = (2, 2)


def resize_maps(maps, size: int) -> np.ndarray:
    """A (N, h, w) stack as float32 at ``size`` x ``size`` (bilinear upsampling, as the metrics read maps)."""
    maps = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    if maps.dim() != 3:
        raise ValueError(f"expected an (N, h, w) stack of maps, got shape {tuple(maps.shape)}")
    if maps.shape[-2:] != (size, size):
        maps = F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return maps.numpy()


def _common_size(a, b, size: int | None) -> tuple[MapStack, MapStack]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 3 or b.ndim != 3 or len(a) != len(b):
        raise ValueError(f"expected two (N, h, w) stacks of the same N, got {a.shape} and {b.shape}")
    if size is None:
        size = max(a.shape[-1], a.shape[-2], b.shape[-1], b.shape[-2])
    return MapStack(resize_maps(a, size)), MapStack(resize_maps(b, size))


class MapStack:
    """One stack of square maps at the comparison size, with what the similarities read from it (ranks, min-max
    normalised maps, HOG descriptors), each computed on first use and kept.

    A reference compared with many stacks (the original maps against every sanity level) is then ranked, normalised
    and described once. Every quantity is per map, so a row does not depend on the stack it is compared with; a pair
    in which either map is not finite gets NaN from the comparison functions.
    """

    def __init__(self, maps: np.ndarray):
        self.maps = maps

    @classmethod
    def at_size(cls, maps, size: int) -> MapStack:
        return cls(resize_maps(maps, size))

    def __len__(self) -> int:
        return len(self.maps)

    @cached_property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.maps).reshape(len(self), -1).all(axis=1)

    def _ranks(self, values: np.ndarray) -> np.ndarray:
        return rankdata(np.where(self.finite[:, None], values.reshape(len(self), -1), 0.0), axis=1)

    @cached_property
    def ranks(self) -> np.ndarray:
        return self._ranks(self.maps)

    @cached_property
    def abs_ranks(self) -> np.ndarray:
        return self._ranks(np.abs(self.maps))

    @cached_property
    def normalized(self) -> np.ndarray:
        return normalize_maps(self.maps, self.maps.shape[-1])[0].numpy()

    @cached_property
    def normalized_finite(self) -> np.ndarray:
        return np.isfinite(self.normalized).reshape(len(self), -1).all(axis=1)

    @cached_property
    def hog(self) -> np.ndarray:
        return hog_features(np.where(self.normalized_finite[:, None, None], self.normalized, 0.0))


def _row_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x with the same row of y, with the constant-row convention above."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    sx = np.sqrt((x * x).sum(axis=1))
    sy = np.sqrt((y * y).sum(axis=1))
    # a row is constant when its spread is rounding noise relative to its values
    const_x = sx <= 1e-12 * np.maximum(1.0, np.abs(x).max(axis=1, initial=0.0)) * np.sqrt(x.shape[1])
    const_y = sy <= 1e-12 * np.maximum(1.0, np.abs(y).max(axis=1, initial=0.0)) * np.sqrt(y.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (x * y).sum(axis=1) / (sx * sy)
    rho = np.where(const_x & const_y, 1.0, np.where(const_x | const_y, 0.0, rho))
    invalid = ~(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1))
    return np.where(invalid, np.nan, np.clip(rho, -1.0, 1.0))


def stack_spearman(a: MapStack, b: MapStack, absolute: bool = False) -> np.ndarray:
    """Spearman ρ per image of two stacks at the same size (``absolute`` compares |a| with |b|)."""
    if absolute:
        return np.where(a.finite & b.finite, _row_correlation(a.abs_ranks, b.abs_ranks), np.nan)
    return np.where(a.finite & b.finite, _row_correlation(a.ranks, b.ranks), np.nan)


def stack_ssim(a: MapStack, b: MapStack) -> np.ndarray:
    """SSIM per image of two stacks at the same size (see :func:`ssim_per_image`)."""
    side = a.maps.shape[-1]
    window = min(7, side if side % 2 else side - 1)
    scores = np.full(len(a), np.nan)
    for i in np.flatnonzero(a.normalized_finite & b.normalized_finite):
        scores[i] = structural_similarity(a.normalized[i], b.normalized[i], data_range=1.0, win_size=window)
    return scores


def stack_hog_similarity(a: MapStack, b: MapStack) -> np.ndarray:
    """HOG correlation per image of two stacks at the same size (see :func:`hog_similarity_per_image`)."""
    return np.where(a.normalized_finite & b.normalized_finite, _row_correlation(a.hog, b.hog), np.nan)


def spearman_per_image(a, b, size: int | None = None, absolute: bool = False) -> np.ndarray:
    """Spearman ρ per image (ties get average ranks, as ``scipy.stats.spearmanr``), batched over images.

    ``absolute`` compares |a| with |b| (Adebayo et al. report both).
    """
    return stack_spearman(*_common_size(a, b, size), absolute=absolute)


def ssim_per_image(a, b, size: int | None = None) -> np.ndarray:
    """SSIM (scikit-image ``structural_similarity``, 7 x 7 window) of the min-max normalised maps.

    Both maps are normalised per image to [0, 1] (a constant map becomes all ones, as in the metrics), hence
    ``data_range=1``; the window shrinks to the largest odd size that fits a smaller map.
    """
    return stack_ssim(*_common_size(a, b, size))


def hog_features(maps: np.ndarray) -> np.ndarray:
    """HOG descriptors (one row per map) of square maps, with the cell layout documented above."""
    side = maps.shape[-1]
    cell = max(1, side // HOG_CELLS_PER_SIDE)
    return np.stack([
        hog(m, orientations=HOG_ORIENTATIONS, pixels_per_cell=(cell, cell), cells_per_block=HOG_CELLS_PER_BLOCK,
            feature_vector=True)
        for m in maps
    ])


def hog_similarity_per_image(a, b, size: int | None = None) -> np.ndarray:
    """Pearson correlation of the HOG features of the two min-max normalised maps (Adebayo et al.)."""
    return stack_hog_similarity(*_common_size(a, b, size))
