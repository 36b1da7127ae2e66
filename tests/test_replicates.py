"""Seed-replicate statistics against independent computations on synthetic seeds x images data."""

import numpy as np
import pytest

from eea_repro.workflow.replicates import (ONE_SEED, crossed_replicates, pooled_interval, seed_fragile, seed_t_interval,
                                  variance_split)


def crossed_data(n_seeds, n_images, seed_sd, image_sd, residual_sd, rng_seed=0):
    """value[s, i] = 1 + a_s + b_i + e_si with the given standard deviations."""
    rng = np.random.default_rng(rng_seed)
    return (1.0 + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, image_sd, (1, n_images))
            + rng.normal(0, residual_sd, (n_seeds, n_images)))


def test_the_crossed_bootstrap_variance_of_the_mean_matches_its_exact_value():
    """For the mean, the crossed bootstrap's variance given the data is exactly s_a^2 / S + s_b^2 / N + s_e^2 / (S N),
    with the sample's own seed, image and residual effects (population variances): resampled 4,000 times, the
    replicates' variance must agree with it within Monte Carlo error."""
    values = crossed_data(6, 50, seed_sd=1.0, image_sd=0.7, residual_sd=0.4)
    n_seeds, n_images = values.shape
    seed_effects = values.mean(axis=1) - values.mean()
    image_effects = values.mean(axis=0) - values.mean()
    residual = values - values.mean(axis=1, keepdims=True) - values.mean(axis=0, keepdims=True) + values.mean()
    exact = (np.mean(seed_effects ** 2) / n_seeds + np.mean(image_effects ** 2) / n_images
             + np.mean(residual ** 2) / (n_seeds * n_images))
    replicates = crossed_replicates(values, 4000, seed=1)
    assert replicates.var() == pytest.approx(exact, rel=0.06)
    assert replicates.mean() == pytest.approx(values.mean(), abs=3 * np.sqrt(exact / 4000) + 1e-12)


@pytest.mark.parametrize(("n_seeds", "quantile"), [(2, 12.71), (3, 4.30), (5, 2.78), (10, 2.26)])
def test_the_t_interval_over_seeds_uses_the_t_quantile(n_seeds, quantile):
    values = crossed_data(n_seeds, 30, seed_sd=1.0, image_sd=0.5, residual_sd=0.2, rng_seed=n_seeds)
    per_seed = values.mean(axis=1)
    centre, low, high = seed_t_interval(values, 0.95)
    assert centre == pytest.approx(per_seed.mean())
    half = per_seed.std(ddof=1) / np.sqrt(n_seeds) * quantile  # the published two-sided 95 % quantiles
    assert (high - low) / 2 == pytest.approx(half, rel=0.002)
    with pytest.raises(ValueError, match="two seeds"):
        seed_t_interval(values[:1], 0.95)


def test_the_variance_split_recovers_known_components():
    exact = np.add.outer(np.array([0.0, 2.0, -1.0, 3.0]), np.array([0.5, -0.5, 1.5, 0.0, -1.5]))
    split = variance_split(exact)  # no residual: the components are the effects' sample variances
    assert split["seed"] == pytest.approx(np.var([0.0, 2.0, -1.0, 3.0], ddof=1))
    assert split["image"] == pytest.approx(np.var([0.5, -0.5, 1.5, 0.0, -1.5], ddof=1))
    assert split["residual"] == pytest.approx(0.0, abs=1e-12)
    large = variance_split(crossed_data(300, 300, seed_sd=2.0, image_sd=1.0, residual_sd=0.5, rng_seed=3))
    assert large["seed"] == pytest.approx(4.0, rel=0.2) and large["image"] == pytest.approx(1.0, rel=0.2)
    assert large["residual"] == pytest.approx(0.25, rel=0.05)


def test_the_wider_interval_decides_and_one_seed_says_so():
    few = crossed_data(2, 100, seed_sd=0.0, image_sd=0.3, residual_sd=0.1) + np.array([[-1.0], [1.0]])
    pooled = pooled_interval(few, 500, 0.95, seed=0)
    assert pooled.decided_by == "t over seeds"  # 12.71 x the seed spread: far wider than the bootstrap's
    assert (pooled.low, pooled.high) == pytest.approx(seed_t_interval(few, 0.95)[1:])
    assert pooled.seed_share > 0.8 and "2 seeds" in pooled.note
    many = crossed_data(12, 40, seed_sd=0.01, image_sd=1.0, residual_sd=0.1)
    assert pooled_interval(many, 500, 0.95, seed=0).decided_by == "crossed bootstrap"
    single = pooled_interval(few[:1], 500, 0.95, seed=0)
    assert single.note == ONE_SEED and single.seed_share is None and single.low < single.value < single.high


def test_disagreeing_per_seed_verdicts_are_seed_fragile():
    assert seed_fragile(["reproduced", "inconclusive", "reproduced"])
    assert not seed_fragile(["reproduced", "reproduced"])


def test_replicate_seeds_keep_the_runs_seed_first_and_differ_after_it():
    from eea_repro.workflow.replicates import in_replicate, replicate_seed

    assert replicate_seed(7, 0) == 7  # replicates: 1 is the run as before
    seeds = [replicate_seed(7, r) for r in range(1, 50)] + [replicate_seed(8, r) for r in range(1, 50)]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2 ** 31 for s in seeds)
    assert replicate_seed(7, 3) == replicate_seed(7, 3)
    assert in_replicate("results/maps/m/target/eea/shard-0.npz", 0) == "results/maps/m/target/eea/shard-0.npz"
    assert in_replicate("results/maps/m/target/eea/shard-0.npz", 2) == "results/replicate-2/maps/m/target/eea/shard-0.npz"
    with pytest.raises(ValueError, match="under results/"):
        in_replicate("logs/x.log", 1)
