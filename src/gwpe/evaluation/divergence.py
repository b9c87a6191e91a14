"""KL and Jensen-Shannon divergences (nats) between the 1-D marginals of two sample sets.

Each marginal density is a Gaussian KDE (scipy) evaluated on a common grid spanning both sample sets plus
three bandwidths, renormalised with the trapezoid rule, so p and q share one support. Both sets of a pair are
smoothed with one kernel: the wider of their two Scott bandwidths (each from its own, or for weighted draws
its effective, sample size). With each set's own bandwidth, two samples of one distribution differ by their
smoothing alone: on the demo's strain-5d phi0 posterior, which has sharp dips between its modes, 5,000
importance-weighted draws (ESS 3,200) against 24,000 flow-MCMC states gave JS 0.011 nat from the bandwidths
(0.39 and 0.26 rad) and 0.002 with one kernel.

    KL(p || q) = ∫ p log(p / q),    JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2,  m = (p + q) / 2,  0 <= JS <= log 2.

The KDE is evaluated by linear binning onto a grid 4x finer than the comparison grid and one direct convolution with
the whole Gaussian kernel (Wand & Jones 1995, ch. 3): O(n + G^2) instead of scipy's O(n G), 85x faster for
20,000 draws (measured). Linear binning keeps each draw's mean, so the error is second order: a draw split t : 1 - t
between grid points a step s apart changes its kernel at distance D by t (1 - t) (s / h)^2 ((D / h)^2 - 1) / 2
relative, small where the density is not negligible (D of a few h; s <= h / 4). The kernel is not cut and the sum
is direct (an FFT's round-off floor would replace the far tails that KL reads). JS and KL agree with scipy's exact
sum to 1e-3 relative on normal, bimodal, Student-t and weighted sets (``tests/test_divergence.py``); a kernel
narrower than 4 fine steps falls back to scipy's sum.

A set with a single distinct value becomes a spike one grid step wide. Densities are floored at 1e-300 before the
logarithm. Both sets are smoothed alike, so the boundary leakage
of a KDE (phi0 at 0 and 2 pi, a prior edge) cancels to first order in the comparison. Domain-free.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

GRID_POINTS = 512
MAX_KDE_SAMPLES = 20_000  # more samples change JS below 1e-4 nat here
FINE = 4  # fine-grid steps per comparison-grid step for the binned KDE
MIN_BANDWIDTH_STEPS = 4.0  # binned only when the bandwidth spans this many fine steps


def _kde(samples: np.ndarray, weights: np.ndarray | None = None):
    """scipy's Gaussian KDE with Scott's bandwidth (from the effective sample size when weighted); None for a
    set with one distinct value."""
    return None if np.ptp(samples) == 0 else stats.gaussian_kde(samples, weights=weights)


def _bandwidth(kde) -> float:
    return 0.0 if kde is None else float(np.sqrt(kde.covariance[0, 0]))


def _density(kde, samples: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    if kde is None:  # one distinct value (an importance-sampled set with ESS ~ 1): a spike one grid step wide
        density = stats.norm.pdf(grid, samples[0], grid[1] - grid[0])
    elif bandwidth >= MIN_BANDWIDTH_STEPS * (grid[1] - grid[0]) / FINE:
        density = binned_kde(samples, kde.weights, grid, bandwidth)
    else:
        kde.set_bandwidth(bandwidth / float(np.sqrt(kde.covariance[0, 0])) * kde.factor)
        density = kde(grid)
    return density / np.trapezoid(density, grid)


def binned_kde(samples: np.ndarray, weights: np.ndarray, grid: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian KDE sum_i w_i N(x; x_i, h^2) / sum_i w_i at the points of the uniform ``grid``, which must
    contain every sample: linear binning onto a grid ``FINE`` times finer, then one direct convolution with the
    uncut kernel."""
    if samples.min() < grid[0] or samples.max() > grid[-1]:
        raise ValueError(
            f"samples span [{samples.min():g}, {samples.max():g}]; allowed: inside the grid [{grid[0]:g}, {grid[-1]:g}]"
        )
    fine_step = (grid[1] - grid[0]) / FINE
    size = (len(grid) - 1) * FINE + 1
    position = (samples - grid[0]) / fine_step
    left = np.clip(np.floor(position).astype(np.int64), 0, size - 2)
    right_share = position - left
    counts = np.bincount(left, weights * (1.0 - right_share), minlength=size)
    counts += np.bincount(left + 1, weights * right_share, minlength=size)
    offsets = np.arange(-(size - 1), size) * fine_step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2) / (np.sqrt(2.0 * np.pi) * bandwidth)
    return np.convolve(counts, kernel, mode="valid")[::FINE] / weights.sum()


def _kl(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    p, q = np.maximum(p, 1e-300), np.maximum(q, 1e-300)
    return float(np.trapezoid(p * np.log(p / q), grid))


def _subset(x: np.ndarray, weights: np.ndarray | None, rng, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """At most ``MAX_KDE_SAMPLES`` rows of x at random, with their weights; rows that carry no weight dropped
    (they would only stretch the grid: a nested sampler's early dead points lie across the whole prior)."""
    if weights is not None and np.shape(weights) != (len(x),):
        raise ValueError(f"{name} has shape {np.shape(weights)}; allowed: ({len(x)},), one weight per row")
    keep = rng.permutation(len(x))[:MAX_KDE_SAMPLES]
    x = x[keep]
    if weights is None:
        return x, None
    weights = np.asarray(weights, dtype=float)[keep]
    kept = weights > 1e-12 * weights.sum()
    return x[kept], weights[kept]


def marginal_divergences(
    a: np.ndarray,
    b: np.ndarray,
    seed: int = 0,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(KL(a || b), JS(a, b)) per column of sample arrays a (n, P) and b (m, P); nats.

    ``weights_a`` (n,), ``weights_b`` (m,): a weighted set (importance-sampling or nested-sampling draws with their
    weights), smoothed as such (scipy's weighted KDE, bandwidth from the effective sample size). Resampling it
    first would add multinomial noise and duplicates that a KDE with the bandwidth of n distinct draws
    under-smooths (measured on the demo injection: phi0 JS 0.009 resampled against 0.002 weighted)."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sample sets have {a.shape[1]} and {b.shape[1]} parameters; they must match")
    rng = np.random.default_rng(seed)
    a, weights_a = _subset(a, weights_a, rng, "weights_a")
    b, weights_b = _subset(b, weights_b, rng, "weights_b")
    kl, js = np.empty(a.shape[1]), np.empty(a.shape[1])
    for j in range(a.shape[1]):
        both = np.concatenate([a[:, j], b[:, j]])
        pad = 3.0 * both.std() * len(both) ** (-0.2)
        grid = np.linspace(both.min() - pad, both.max() + pad, GRID_POINTS)
        kde_a, kde_b = _kde(a[:, j], weights_a), _kde(b[:, j], weights_b)
        bandwidth = max(_bandwidth(kde_a), _bandwidth(kde_b))
        p, q = _density(kde_a, a[:, j], grid, bandwidth), _density(kde_b, b[:, j], grid, bandwidth)
        m = 0.5 * (p + q)
        kl[j] = _kl(p, q, grid)
        js[j] = 0.5 * _kl(p, m, grid) + 0.5 * _kl(q, m, grid)
    return kl, js
