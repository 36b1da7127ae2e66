"""Statistics over seed replicates: a claim's uncertainty from training seeds as well as from images.

A bootstrap over the images of one training run says nothing of the seed: a one-bit change early in training acts like
another seed and can move a verdict. With ``replicates: N`` every seeded stage runs once per seed and every seed scores
the same images, a crossed design (seeds x images). Its interval is the wider of two:

* the crossed ("pigeonhole") bootstrap (Owen, Ann. Appl. Stat. 2007): seeds and images resampled independently, the
  statistic computed on every combination of the drawn rows and columns; with few seeds it understates the seed
  variance by about (S - 1) / S, hence
* a t-interval over the per-seed statistics (S - 1 degrees of freedom), which with 2 or 3 seeds is wide on purpose.

The variance split (two-way random effects, one value per cell: the method of moments) says how much of the spread is
between seeds against between images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ONE_SEED = "one seed: seed variance not measured"
REPLICATE_FOLDER = "replicate-{replicate}"  # replicate r > 0 of a seeded stage writes under results/replicate-r/


def replicate_seed(seed: int, replicate: int) -> int:
    """The training / sampling seed of one replicate: the run's own seed for replicate 0 (so ``replicates: 1`` is the
    run as before), else a hash of (seed, replicate) below 2**31, leaving room for the offsets jobs add to it (epochs,
    image positions) without landing on another replicate's seeds."""
    if replicate == 0:
        return seed
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0] >> 1)


def in_replicate(path: str, replicate) -> str:
    """``path`` (under results/) as replicate ``replicate`` writes it: unchanged for replicate 0."""
    if str(replicate) == "0":
        return path
    if not path.startswith("results/"):
        raise ValueError(f"{path}: a replicate's files live under results/")
    return "results/" + REPLICATE_FOLDER.format(replicate=replicate) + path[len("results"):]


def crossed_replicates(values: np.ndarray, n_boot: int, seed: int, statistic=np.mean) -> np.ndarray:
    """``statistic`` of ``n_boot`` crossed resamples of a seeds x images array: seeds and images drawn independently,
    with replacement, and every drawn seed scored on every drawn image."""
    values = np.asarray(values, dtype=np.float64)
    n_seeds, n_images = values.shape
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        rows, columns = rng.integers(0, n_seeds, n_seeds), rng.integers(0, n_images, n_images)
        replicates[b] = statistic(values[np.ix_(rows, columns)], axis=None)
    return replicates


def crossed_bootstrap(values: np.ndarray, n_boot: int, confidence: float, seed: int,
                      statistic=np.mean) -> tuple[float, float, float]:
    """``statistic`` of a seeds x images array and its percentile interval under the crossed bootstrap."""
    estimate = float(statistic(np.asarray(values, dtype=np.float64), axis=None))
    replicates = crossed_replicates(values, n_boot, seed, statistic)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return estimate, float(low), float(high)


def seed_t_interval(values: np.ndarray, confidence: float, statistic=np.mean) -> tuple[float, float, float]:
    """The mean of the per-seed statistics and its t-interval (needs two seeds or more)."""
    per_seed = statistic(np.asarray(values, dtype=np.float64), axis=1)
    if len(per_seed) < 2:
        raise ValueError("a t-interval over seeds needs at least two seeds")
    centre = float(per_seed.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(per_seed) - 1) * per_seed.std(ddof=1) / math.sqrt(len(per_seed)))
    return centre, centre - half, centre + half


def variance_split(values: np.ndarray) -> dict[str, float]:
    """Variance components of a seeds x images array (seed, image, residual), method of moments, negatives at 0."""
    values = np.asarray(values, dtype=np.float64)
    n_seeds, n_images = values.shape
    grand = values.mean()
    seed_means, image_means = values.mean(axis=1), values.mean(axis=0)
    residual = values - seed_means[:, None] - image_means[None, :] + grand
    ms_seed = n_images * np.sum((seed_means - grand) ** 2) / max(n_seeds - 1, 1)
    ms_image = n_seeds * np.sum((image_means - grand) ** 2) / max(n_images - 1, 1)
    ms_residual = np.sum(residual ** 2) / max((n_seeds - 1) * (n_images - 1), 1)
    return {"seed": max(0.0, (ms_seed - ms_residual) / n_images),
            "image": max(0.0, (ms_image - ms_residual) / n_seeds),
            "residual": float(ms_residual)}


@dataclass(frozen=True)
class PooledInterval:
    value: float
    low: float
    high: float
    decided_by: str  # which interval was the wider: "crossed bootstrap", "t over seeds", or "images" (one seed)
    seed_share: float | None  # between-seed variance / (between-seed + between-image); None with one seed
    note: str


def pooled_interval(values: np.ndarray, n_boot: int, confidence: float, seed: int,
                    statistic=np.mean) -> PooledInterval:
    """A claim's interval over seeds and images: the wider of the crossed bootstrap and the t-interval."""
    values = np.asarray(values, dtype=np.float64)
    value, low, high = crossed_bootstrap(values, n_boot, confidence, seed, statistic)
    if values.shape[0] == 1:
        return PooledInterval(value, low, high, "images", None, ONE_SEED)
    _, t_low, t_high = seed_t_interval(values, confidence, statistic)
    components = variance_split(values[:, np.isfinite(values).all(axis=0)])  # the images every seed scored
    between = components["seed"] + components["image"]
    share = components["seed"] / between if between > 0 else 0.0
    note = (f"{values.shape[0]} seeds: {100 * share:.0f} % of the between-seed and between-image variance is "
            f"between seeds; crossed bootstrap [{low:.3g}, {high:.3g}], t over seeds [{t_low:.3g}, {t_high:.3g}]")
    if t_high - t_low > high - low:
        return PooledInterval(value, t_low, t_high, "t over seeds", share, note)
    return PooledInterval(value, low, high, "crossed bootstrap", share, note)


def seed_fragile(per_seed_verdicts: list[str]) -> bool:
    """Whether a claim's per-seed verdicts disagree (one seed alone could have told another story)."""
    return len(set(per_seed_verdicts)) > 1
