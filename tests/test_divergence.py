"""The binned KDE behind every 1-D JS figure against scipy's exact kernel sum."""

import numpy as np
import pytest
from scipy import stats

from gwpe.evaluation import divergence
from gwpe.evaluation.divergence import GRID_POINTS, binned_kde, marginal_divergences


def sample_sets(rng):
    n = 6000
    bimodal = np.concatenate([rng.normal(-2.0, 0.3, n // 3), rng.normal(1.0, 1.0, n - n // 3)])
    return {
        "normal": (rng.normal(size=n), None),
        "bimodal": (bimodal, None),
        "student-t3": (rng.standard_t(3, size=n), None),
        "weighted": (rng.normal(size=n), rng.exponential(size=n) ** 2),
    }


@pytest.mark.parametrize("name", ["normal", "bimodal", "student-t3", "weighted"])
def test_binned_kde_matches_scipy(name):
    samples, weights = sample_sets(np.random.default_rng(1))[name]
    kde = stats.gaussian_kde(samples, weights=weights)
    bandwidth = float(np.sqrt(kde.covariance[0, 0]))
    grid = np.linspace(samples.min() - 3 * bandwidth, samples.max() + 3 * bandwidth, GRID_POINTS)
    exact = kde(grid)
    binned = binned_kde(samples, kde.weights, grid, bandwidth)
    assert np.max(np.abs(binned - exact)) < 1e-3 * exact.max(), name


def test_binned_js_equals_the_exact_kernel_sum_js(monkeypatch):
    rng = np.random.default_rng(2)
    a = np.column_stack([rng.normal(size=5000), rng.standard_t(3, size=5000), rng.uniform(0, np.pi, 5000)])
    b = np.column_stack([rng.normal(0.1, 1.1, 4000), rng.standard_t(4, size=4000), rng.uniform(0.3, np.pi, 4000)])
    weights = rng.exponential(size=5000)
    binned = marginal_divergences(a, b, weights_a=weights)
    monkeypatch.setattr(divergence, "MIN_BANDWIDTH_STEPS", np.inf)  # every density by scipy's kernel sum
    exact = marginal_divergences(a, b, weights_a=weights)
    assert np.all(exact[1] > 1e-3)  # the sets differ: the comparison is not of zeros
    np.testing.assert_allclose(binned[1], exact[1], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(binned[0], exact[0], rtol=1e-3, atol=1e-6)


def test_a_weighted_second_set_gives_the_symmetric_js():
    rng = np.random.default_rng(3)
    chains = rng.normal(size=(3000, 2))
    draws, weights = rng.normal(0.2, 1.3, size=(4000, 2)), rng.exponential(size=4000)
    forward = marginal_divergences(chains, draws, weights_b=weights)[1]
    backward = marginal_divergences(draws, chains, weights_a=weights)[1]
    assert np.all(forward > 1e-3)
    np.testing.assert_allclose(forward, backward, rtol=1e-9)
    with pytest.raises(ValueError, match="weights_b has shape"):
        marginal_divergences(chains, draws, weights_b=weights[:10])
