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
    as numpy.histogram places values: float64 edges built as numpy builds them, right edge of the last bin included."""
    values = values.double()
    low, high = values.min(dim=1, keepdim=True).values, values.max(dim=1, keepdim=True).values
    constant = high == low
    low, high = torch.where(constant, low - 0.5, low), torch.where(constant, high + 0.5, high)  # numpy's widening
    steps = torch.arange(bins + 1, device=values.device, dtype=torch.float64)
    edges = steps * ((high - low) / bins) + low
    edges[:, -1:] = high
    index = ((values - low) * (bins / (high - low))).to(torch.int64).clamp_(0, bins - 1)
    index -= (values < edges.gather(1, index)).to(torch.int64)  # numpy's corrections of the float estimate
    index += ((values >= edges.gather(1, index + 1)) & (index != bins - 1)).to(torch.int64)
    counts = torch.zeros(values.shape[0], bins, device=values.device, dtype=torch.float64)
    return counts.scatter_add_(1, index, torch.ones_like(values))


def discrete_entropy(maps: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """Per map (B, ...) -> (B,) float64: the Shannon entropy (nats) of the histogram of the map's values."""
    counts = _histogram_counts(maps.flatten(1), bins)
    frequencies = counts / counts.sum(dim=1, keepdim=True)
    return -(frequencies * torch.log(torch.where(frequencies > 0, frequencies, 1.0))).sum(dim=1)


def efficient_mprt(original: torch.Tensor, randomized: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """eMPRT per image (B,) float64: (H(randomized map) - H(original map)) / H(original map). Two constant maps give
    0 (no rise); a constant original with a varying randomized map has no relative rise (NaN)."""
    before, after = discrete_entropy(original, bins), discrete_entropy(randomized, bins)
    rise = (after - before) / before
    return torch.where(before > 0, rise, torch.where(after > 0, torch.nan, 0.0))


def smoothed_maps(explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images01: torch.Tensor,
                  classes: torch.Tensor, noise: torch.Tensor, noise_level: float = SMOOTH_NOISE,
                  chunk: int = 64) -> torch.Tensor:
    """sMPRT's maps (B, h, w): the mean over ``noise.shape[0]`` noisy copies and the clean image of the maps that
    ``explain(images, classes)`` makes.

    ``noise`` (S, B, C, H, W) holds standard normal draws (the caller's seeded generator, so that every randomized
    model sees the same noisy images); copy s of image b is ``image_b + noise[s, b] * noise_level * range_b``, range_b
    being the image's max - min. The noisy copies come first and the clean image last, as in Quantus, and go through
    ``explain`` ``chunk`` at a time.
    """
    low, high = images01.flatten(1).aminmax(dim=1)
    spread = high - low
    sigma = (noise_level * spread).view(1, -1, *([1] * (images01.dim() - 1)))
    copies = torch.cat([(images01.unsqueeze(0) + noise * sigma).flatten(0, 1), images01])
    copy_classes = classes.repeat(noise.shape[0] + 1)
    maps = torch.cat([explain(part, part_classes)
                      for part, part_classes in zip(copies.split(chunk), copy_classes.split(chunk))])
    return maps.view(noise.shape[0] + 1, images01.shape[0], *maps.shape[1:]).mean(dim=0)
