"""p–p calibration: a calibrated Gaussian posterior passes, a miscalibrated one is flagged."""

import numpy as np
import pytest

from gwpe.evaluation.calibration import calibrate, credible_levels, interval_widths, pp_plot


def _injections(rng, n=400, k=500, shrink=1.0, shift=0.0):
    """Conjugate Gaussian model: theta ~ N(0, 1), x ~ N(theta, 0.5^2) -> posterior N(0.8 x, 0.2)."""
    theta = rng.normal(size=(n, 2))
    x = theta + 0.5 * rng.normal(size=(n, 2))
    mean, std = 0.8 * x + shift, np.sqrt(0.2) * shrink
    samples = mean[:, None, :] + std * rng.normal(size=(n, k, 2))
    return samples, theta


def test_calibrated_posterior_passes_and_miscalibrated_ones_are_flagged():
    rng = np.random.default_rng(0)
    good = calibrate(*_injections(rng), ["a", "b"], prior_ranges=[6.0, 6.0])
    assert good.ks_pvalue.min() > 0.01
    overconfident = calibrate(*_injections(rng, shrink=0.5), ["a", "b"], prior_ranges=[6.0, 6.0])
    biased = calibrate(*_injections(rng, shift=0.3), ["a", "b"], prior_ranges=[6.0, 6.0])
    assert overconfident.ks_pvalue.max() < 1e-3 and biased.ks_pvalue.max() < 1e-3
    # 90 % width of N(., 0.2): 2 * 1.6449 * sqrt(0.2) = 1.471, over a prior range of 6
    assert good.width_fraction == pytest.approx([1.471 / 6] * 2, rel=0.05)
    assert good.summary()["min_ks_pvalue"] == pytest.approx(good.ks_pvalue.min())
    pp_plot(good).savefig("/dev/null", format="png")


def test_credible_levels_by_hand_and_shape_errors():
    samples = np.array([[[0.0], [1.0], [2.0], [3.0]]])  # (1, 4, 1)
    assert credible_levels(samples, np.array([[2.5]])).item() == pytest.approx(0.75)
    assert interval_widths(np.linspace(0, 1, 1001).reshape(1, -1, 1)).item() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="samples must be"):
        credible_levels(np.zeros((3, 4)), np.zeros((3, 1)))
