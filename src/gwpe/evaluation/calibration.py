"""Posterior calibration from held-out injections: p–p test, KS p-values, credible-interval widths.

For injection i with true value theta_i and posterior samples {theta_i^(k)}, the credible level of the truth
is r_i = (1/K) sum_k [theta_i^(k) < theta_i]. A calibrated posterior makes r uniform on [0, 1] for every
parameter (Green, Gair & Messenger sec. III C, Fig. 5): the p–p plot is the empirical CDF of r against the
diagonal, and each parameter's KS p-value tests uniformity (``scipy.stats.kstest``). Calibration alone
does not mean the posterior is useful (the prior is calibrated too), so the median width of the central
90 % interval is reported as a fraction of the prior range next to it. Domain-free: arrays of any
parameters; ``gwpe.physics.chirp_mass`` derives chirp-mass samples from (m1, m2) where a caller needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def credible_levels(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """r = fraction of samples below the truth; samples (N, K, P), truth (N, P) -> (N, P)."""
    samples, truth = np.asarray(samples), np.asarray(truth)
    if samples.ndim != 3 or truth.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(f"samples must be (N, K, P) and truth (N, P); got {samples.shape} and {truth.shape}")
    return (samples < truth[:, None, :]).mean(axis=1)


def ks_pvalues(levels: np.ndarray) -> np.ndarray:
    """KS p-value of uniformity of each column of credible levels (N, P) -> (P,)."""
    return np.array([stats.kstest(levels[:, j], "uniform").pvalue for j in range(levels.shape[1])])


def interval_widths(samples: np.ndarray, probability: float = 0.9) -> np.ndarray:
    """Width of the central ``probability`` interval per injection and parameter: (N, K, P) -> (N, P)."""
    tail = (1.0 - probability) / 2.0
    low, high = np.quantile(np.asarray(samples), [tail, 1.0 - tail], axis=1)
    return high - low


@dataclass(frozen=True)
class Calibration:
    """p–p test of N injections over P parameters: credible levels, KS p-values, 90 % widths / prior range."""

    parameters: tuple[str, ...]
    levels: np.ndarray  # (N, P) credible level of each truth
    ks_pvalue: np.ndarray  # (P,)
    width_fraction: np.ndarray  # (P,) median 90 % interval width / prior range

    def summary(self) -> dict:
        return {
            "n_injections": int(self.levels.shape[0]),
            "ks_pvalue": {p: float(v) for p, v in zip(self.parameters, self.ks_pvalue)},
            "min_ks_pvalue": float(self.ks_pvalue.min()),
            "width90_over_prior": {p: float(v) for p, v in zip(self.parameters, self.width_fraction)},
        }


def calibrate(samples: np.ndarray, truth: np.ndarray, parameters, prior_ranges: np.ndarray) -> Calibration:
    """p–p levels, KS p-values and median 90 % widths over ``prior_ranges`` (P,) for (N, K, P) samples."""
    levels = credible_levels(samples, truth)
    widths = np.median(interval_widths(samples), axis=0) / np.asarray(prior_ranges, dtype=float)
    return Calibration(tuple(parameters), levels, ks_pvalues(levels), widths)


def pp_plot(calibration: Calibration, title: str = ""):
    """The p–p figure: empirical CDF of credible levels per parameter, with the diagonal and the 3-sigma band
    of a uniform sample of the same size; the legend carries each KS p-value."""
    import matplotlib.pyplot as plt

    n = calibration.levels.shape[0]
    grid = np.linspace(0.0, 1.0, 201)
    band = 3.0 * np.sqrt(grid * (1.0 - grid) / n)
    figure, axis = plt.subplots(figsize=(5.0, 5.0))
    axis.fill_between(grid, grid - band, grid + band, color="0.85", label="3σ, uniform")
    axis.plot(grid, grid, color="k", lw=0.8)
    for j, name in enumerate(calibration.parameters):
        levels = np.sort(calibration.levels[:, j])
        axis.plot(levels, np.arange(1, n + 1) / n, lw=1.2, label=f"{name} (KS p = {calibration.ks_pvalue[j]:.2f})")
    axis.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="credible level p",
        ylabel="fraction of injections with level ≤ p",
        title=title or f"p–p plot, {n} injections",
    )
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure
