"""models/bootstrap.py: intervals hold their point estimate, narrow with more users, and paired differences of a
ranker with itself are exactly zero."""

import numpy as np
import pytest

from models.bootstrap import Bootstrap


def bernoulli(n, p, seed):
    return (np.random.default_rng(seed).random(n) < p).astype(np.float64)


def test_interval_contains_the_point_and_shrinks_with_more_users():
    widths = []
    for n in (100, 1_000, 10_000):
        values = np.stack([bernoulli(n, 0.3, 1), np.random.default_rng(2).random(n)], axis=1)
        for iv, column in zip(Bootstrap(n, n_resamples=500, seed=0).intervals(values), values.T):
            assert iv["point"] == pytest.approx(column.mean(), rel=1e-12)
            assert iv["lo"] <= iv["point"] <= iv["hi"]
        widths.append(Bootstrap(n, n_resamples=500, seed=0).interval(values[:, 0]))
    spans = [w["hi"] - w["lo"] for w in widths]
    # The standard error falls as 1/sqrt(n): each 10x more users narrows the interval about 3.2x.
    assert spans[0] > 2.5 * spans[1] > 2.5 * 2.5 * spans[2] > 0


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    covered = 0
    for trial in range(200):
        iv = Bootstrap(400, n_resamples=300, seed=trial).interval(bernoulli(400, 0.2, 1000 + trial))
        covered += iv["lo"] <= 0.2 <= iv["hi"]
    assert 0.88 <= covered / 200 <= 0.99


def test_same_seed_same_resamples_and_other_seed_other_resamples():
    values = bernoulli(300, 0.5, 3)
    assert Bootstrap(300, 200, seed=7).interval(values) == Bootstrap(300, 200, seed=7).interval(values)
    assert Bootstrap(300, 200, seed=7).interval(values) != Bootstrap(300, 200, seed=8).interval(values)


def test_difference_of_a_ranker_with_itself_is_exactly_zero():
    a = np.random.default_rng(4).random((250, 3))
    for d in Bootstrap(250, 400, seed=0).differences(a, a.copy()):
        assert (d["point"], d["lo"], d["hi"]) == (0.0, 0.0, 0.0)
        assert (d["rel_point"], d["rel_lo"], d["rel_hi"]) == (0.0, 0.0, 0.0)


def test_paired_difference_is_narrower_than_the_marginal_intervals_suggest():
    rng = np.random.default_rng(5)
    user_effect = rng.random(500)  # users differ a lot; the model adds a small constant gain to each
    base, model = user_effect, user_effect + 0.01 + 0.001 * rng.standard_normal(500)
    boot = Bootstrap(500, 1000, seed=0)
    d = boot.difference(model, base)
    assert d["lo"] > 0.009 and d["hi"] < 0.011  # clearly positive, though the marginal intervals overlap
    m, b = boot.interval(model), boot.interval(base)
    assert m["lo"] < b["hi"]
    assert d["rel_point"] == pytest.approx(model.mean() / base.mean() - 1)
    assert d["rel_lo"] <= d["rel_point"] <= d["rel_hi"]


def test_relative_difference_is_null_when_the_denominator_can_be_zero():
    base = np.zeros(50)
    base[0] = 1.0  # positive mean, but resamples without user 0 have mean 0
    d = Bootstrap(50, 500, seed=0).difference(np.ones(50), base)
    assert d["rel_point"] == pytest.approx(49.0)
    assert d["rel_lo"] is None and d["rel_hi"] is None
    zero = Bootstrap(50, 100, seed=0).difference(np.ones(50), np.zeros(50))
    assert zero["rel_point"] is None and zero["point"] == 1.0


def test_large_populations_are_resampled_in_chunks_with_the_same_result():
    import models.bootstrap as bootstrap

    values = np.random.default_rng(6).random(3000)
    whole = Bootstrap(3000, 64, seed=1).means(values)
    old = bootstrap.COUNTS_CELLS_PER_CHUNK
    bootstrap.COUNTS_CELLS_PER_CHUNK = 3000 * 5  # 5 resamples per chunk
    try:
        chunked = Bootstrap(3000, 64, seed=1).means(values)
    finally:
        bootstrap.COUNTS_CELLS_PER_CHUNK = old
    assert chunked.shape == (64,)
    assert np.all((chunked > 0.45) & (chunked < 0.55)) and np.all((whole > 0.45) & (whole < 0.55))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least one user"):
        Bootstrap(0)
    with pytest.raises(ValueError, match="at least one resample"):
        Bootstrap(10, n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        Bootstrap(10, confidence=1.0)
