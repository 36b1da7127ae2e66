"""Per-image similarity of two explanation maps, as in the sanity checks of Adebayo et al. (2018).

Every function takes two stacks of maps ``(N, h, w)`` (native resolution is fine: the two stacks are first brought
to a common size, by default the larger of the two, or ``size`` when given, with bilinear upsampling as in
:func:`eea_repro.metrics.normalize_maps`) and returns one value per image, a float array of length N.

Constant maps carry no ranking, so Spearman and the HOG correlation are undefined for them (scipy returns NaN). We use
one convention for both: two maps that are both constant are identical orderings (value 1), one constant map against
a non-constant one shares no ordering (value 0). A map with NaN/inf gives NaN.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from skimage.feature import hog
from skimage.metrics import structural_similarity

from .metrics import normalize_maps

# HOG: 8 x 8 cells over the (upsampled) map whatever its size, 9 orientations, 2 x 2 cells per block (skimage's
# default block and orientation counts). Cells sized to the map keep the descriptor's layout the same for a 48-pixel
# test map and a 224-pixel ImageNet map; maps are upsampled to the model's input size before this.
HOG_CELLS_PER_SIDE = 8
HOG_ORIENTATIONS = 9
HOG_CELLS_PER_BLOCK = (2, 2)


def _common_size(a, b, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    a = torch.as_tensor(np.asarray(a, dtype=np.float32))
    b = torch.as_tensor(np.asarray(b, dtype=np.float32))
    if a.dim() != 3 or b.dim() != 3 or len(a) != len(b):
        raise ValueError(f"expected two (N, h, w) stacks of the same N, got {tuple(a.shape)} and {tuple(b.shape)}")
    if size is None:
        size = max(a.shape[-1], a.shape[-2], b.shape[-1], b.shape[-2])

    def resize(maps):
        if maps.shape[-2:] == (size, size):
            return maps
        return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    return resize(a).numpy(), resize(b).numpy()


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


def spearman_per_image(a, b, size: int | None = None, absolute: bool = False) -> np.ndarray:
    """Spearman ρ per image (ties get average ranks, as ``scipy.stats.spearmanr``), batched over images.

    ``absolute`` compares |a| with |b| (Adebayo et al. report both).
    """
    a, b = _common_size(a, b, size)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    ranks_a = rankdata(np.where(finite[:, None], a, 0.0), axis=1)
    ranks_b = rankdata(np.where(finite[:, None], b, 0.0), axis=1)
    return np.where(finite, _row_correlation(ranks_a, ranks_b), np.nan)


def ssim_per_image(a, b, size: int | None = None) -> np.ndarray:
    """SSIM (scikit-image ``structural_similarity``, 7 x 7 window) of the min-max normalised maps.

    Both maps are normalised per image to [0, 1] (a constant map becomes all ones, as in the metrics), hence
    ``data_range=1``; the window shrinks to the largest odd size that fits a smaller map.
    """
    a, b = _common_size(a, b, size)
    side = a.shape[-1]
    a, _, _ = normalize_maps(a, side)
    b, _, _ = normalize_maps(b, side)
    window = min(7, side if side % 2 else side - 1)
    scores = np.full(len(a), np.nan)
    for i, (x, y) in enumerate(zip(a.numpy(), b.numpy())):
        if np.isfinite(x).all() and np.isfinite(y).all():
            scores[i] = structural_similarity(x, y, data_range=1.0, win_size=window)
    return scores


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
    a, b = _common_size(a, b, size)
    side = a.shape[-1]
    a, _, _ = normalize_maps(a, side)
    b, _, _ = normalize_maps(b, side)
    a, b = a.numpy(), b.numpy()
    finite = np.isfinite(a).reshape(len(a), -1).all(axis=1) & np.isfinite(b).reshape(len(b), -1).all(axis=1)
    fa = hog_features(np.where(finite[:, None, None], a, 0.0))
    fb = hog_features(np.where(finite[:, None, None], b, 0.0))
    return np.where(finite, _row_correlation(fa, fb), np.nan)
