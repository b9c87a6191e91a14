"""KL and Jensen-Shannon divergences (nats) between the 1-D marginals of two sample sets.

Each marginal density is a Gaussian KDE (scipy, Scott's bandwidth) evaluated on a common grid spanning both
sample sets plus three bandwidths, renormalised with the trapezoid rule, so p and q share one support:

    KL(p || q) = ∫ p log(p / q),    JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2,  m = (p + q) / 2,  0 <= JS <= log 2.

A set with a single distinct value becomes a spike one grid step wide. Densities are floored at 1e-300 before the logarithm. Both sets are smoothed alike, so the boundary leakage
of a KDE (phi0 at 0 and 2 pi, a prior edge) cancels to first order in the comparison. Domain-free.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

GRID_POINTS = 512
MAX_KDE_SAMPLES = 20_000  # KDE cost is samples x grid; more samples change JS below 1e-4 nat here


def _density(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    if np.ptp(samples) == 0:  # one distinct value (an importance-sampled set with ESS ~ 1): a spike one grid step wide
        density = stats.norm.pdf(grid, samples[0], grid[1] - grid[0])
    else:
        density = stats.gaussian_kde(samples)(grid)
    return density / np.trapezoid(density, grid)


def _kl(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    p, q = np.maximum(p, 1e-300), np.maximum(q, 1e-300)
    return float(np.trapezoid(p * np.log(p / q), grid))


def marginal_divergences(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(KL(a || b), JS(a, b)) per column of sample arrays a (n, P) and b (m, P); nats."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sample sets have {a.shape[1]} and {b.shape[1]} parameters; they must match")
    rng = np.random.default_rng(seed)
    a = a[rng.permutation(len(a))[:MAX_KDE_SAMPLES]]
    b = b[rng.permutation(len(b))[:MAX_KDE_SAMPLES]]
    kl, js = np.empty(a.shape[1]), np.empty(a.shape[1])
    for j in range(a.shape[1]):
        both = np.concatenate([a[:, j], b[:, j]])
        pad = 3.0 * both.std() * len(both) ** (-0.2)
        grid = np.linspace(both.min() - pad, both.max() + pad, GRID_POINTS)
        p, q = _density(a[:, j], grid), _density(b[:, j], grid)
        m = 0.5 * (p + q)
        kl[j] = _kl(p, q, grid)
        js[j] = 0.5 * _kl(p, m, grid) + 0.5 * _kl(q, m, grid)
    return kl, js
