"""The field's repaired parameter-randomization scores (Hedström et al., "Sanity Checks Revisited", TMLR 2024), next
to the paper's cascading and independent tests, batched over images (and noise samples) on the device.

- **Efficient MPRT** (eMPRT): the relative rise of a map's discrete entropy from the original model to the fully
  randomized one, per image; a map that follows the model becomes noisier (more complex) when the model is random, so
  higher is better. The entropy is Quantus's ``discrete_entropy``: a histogram of the map's values in 100 equal bins
  between its minimum and maximum, and the Shannon entropy (natural log) of the bin frequencies.
- **Smooth MPRT** (sMPRT): each map, on the original and on every randomized model, is the mean of the maps of
  ``samples`` copies of the image, all but one with Gaussian noise of σ = ``noise`` x the image's value range, which
  takes out the maps' noise before they are compared (the same comparison as the cascading test).

Where this module departs from Quantus on purpose, the tests show it: a constant map has entropy 0 and its eMPRT is 0
(no rise; Quantus divides 0 by 0), and sMPRT's noise is added to the [0, 1] image before the model normalises it
(Quantus adds it in whatever space the model takes), so that σ means the same for every model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ENTROPY_BINS = 100  # Quantus's discrete_entropy default
SMOOTH_SAMPLES = 50  # Quantus's SmoothMPRT defaults
SMOOTH_NOISE = 0.1


def _histogram_counts(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts (B, bins) of each row of ``values`` (B, N) in ``bins`` equal bins between the row's minimum and maximum,
    as numpy.histogram places values: edges built as numpy builds them, in the values' precision (float32 maps get
    float32 edges), the right edge of the last bin included."""
    if values.dtype not in (torch.float32, torch.float64):
        values = values.double()
    low, high = values.min(dim=1, keepdim=True).values, values.max(dim=1, keepdim=True).values
    constant = high == low
    low, high = torch.where(constant, low - 0.5, low), torch.where(constant, high + 0.5, high)  # numpy's widening
    steps = torch.arange(bins + 1, device=values.device, dtype=values.dtype)
    edges = steps * ((high - low) / bins) + low  # numpy.linspace: arange x step + start, then the exact end
    edges[:, -1:] = high
    estimate = (values.double() - low.double()) * (bins / (high.double() - low.double()))
    index = estimate.to(torch.int64).clamp_(0, bins - 1)
    index -= (values < edges.gather(1, index)).to(torch.int64)  # numpy's corrections of the estimate
    index += ((values >= edges.gather(1, index + 1)) & (index != bins - 1)).to(torch.int64)
    counts = torch.zeros(values.shape[0], bins, device=values.device, dtype=torch.float64)
    return counts.scatter_add_(1, index, torch.ones_like(values, dtype=torch.float64))


def discrete_entropy(maps: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """Per map (B, ...) -> (B,) float64: the Shannon entropy (nats) of the histogram of the map's values."""
    counts = _histogram_counts(maps.flatten(1), bins)
    frequencies = counts / counts.sum(dim=1, keepdim=True)
    return -(frequencies * torch.log(torch.where(frequencies > 0, frequencies, 1.0))).sum(dim=1)


def relative_rise(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(after - before) / before per image, float64; 0 where both are 0 (no rise), NaN where only ``before`` is 0
    (a rise from nothing has no relative size)."""
    before, after = before.double(), after.double()
    return torch.where(before > 0, (after - before) / before, torch.where(after > 0, torch.nan, 0.0))


def efficient_mprt(original: torch.Tensor, randomized: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """eMPRT per image (B,) float64: (H(randomized map) - H(original map)) / H(original map). Two constant maps give
    0 (no rise); a constant original with a varying randomized map has no relative rise (NaN)."""
    return relative_rise(discrete_entropy(original, bins), discrete_entropy(randomized, bins))


def image_noise(seed: int, positions, copies: int, shape, device=None) -> torch.Tensor:
    """Standard normal draws (copies, B, *shape) for the images at ``positions`` of the sanity sample, each image's
    from its own generator (seeded by ``seed`` and its position), so that an image gets the same noisy copies on every
    randomized model and in whichever job or batch it is explained."""
    draws = [torch.randn((copies, *shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + int(position)))
             for position in positions]
    return torch.stack(draws, dim=1).to(device)


def smoothed_maps(explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images01: torch.Tensor,
                  noise: torch.Tensor, noise_level: float = SMOOTH_NOISE, chunk: int = 64) -> torch.Tensor:
    """sMPRT's maps (B, h, w): the mean over ``noise.shape[0]`` noisy copies and the clean image of the maps that
    ``explain(copies, rows)`` makes, ``rows`` being the index in ``images01`` of each copy's image (its class, its tie
    order).

    ``noise`` (S, B, C, H, W) holds standard normal draws (:func:`image_noise`); copy s of image b is
    ``image_b + noise[s, b] * noise_level * range_b``, range_b being the image's max - min. The noisy copies come first
    and the clean image last, as in Quantus, and go through ``explain`` ``chunk`` at a time.
    """
    low, high = images01.flatten(1).aminmax(dim=1)
    spread = high - low
    sigma = (noise_level * spread).view(1, -1, *([1] * (images01.dim() - 1)))
    copies = torch.cat([(images01.unsqueeze(0) + noise * sigma).flatten(0, 1), images01])
    rows = torch.arange(images01.shape[0], device=images01.device).repeat(noise.shape[0] + 1)
    maps = torch.cat([explain(part, part_rows) for part, part_rows in zip(copies.split(chunk), rows.split(chunk))])
    return maps.view(noise.shape[0] + 1, images01.shape[0], *maps.shape[1:]).mean(dim=0)
