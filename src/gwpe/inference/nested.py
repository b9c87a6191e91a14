"""Nested sampling with dynesty (Speagle 2020) on gwpe's own likelihood: the outside sampler of the likelihood checks.

dynesty samples the unit cube; ``prior_transform`` maps it onto the dataset prior exactly
(``gwpe.waveforms.priors``), with a bijection rather than ``sample_prior``'s "draw two, sort" so the mass
posterior stays one mode on the cube:

- (m1, m2) uniform on the triangle m_min <= m2 <= m1 <= m_max: p(m1) ∝ m1 - m_min, so
  m1 = m_min + (m_max - m_min) sqrt(u1), then m2 uniform on [m_min, m1];
- d_L volumetric (p ∝ d^2): d = (u (d_max^3 - d_min^3) + d_min^3)^(1/3);
- cos theta_jn and sin dec uniform on [-1, 1]; every other parameter uniform on its range.

The image of the cube is the normalised prior of ``log_prior_density``, so dynesty's log Z is the same evidence
gwpe's importance samplers estimate (``log L + log_prior_density``), not one up to a constant.

Settings follow bilby's dynesty defaults for compact-binary runs: bounding by multiple ellipsoids, a live point
replaced by random-slice moves (``rslice``, 3 + D slices: dynesty's default, the sampler bilby users pick for
D < 20 once ``unif`` rejection gets inefficient) or a fixed-length random walk (``rwalk``), stopping when the
remaining evidence estimate is below dlogz = 0.1, the phase periodic (bilby marks phi0, ra and psi periodic
boundaries). dynesty's ``logzerr`` is its statistical error from the live points' prior-volume shrinkage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gwpe.errors import ConfigError
from gwpe.waveforms.priors import prior_bounds

PERIODIC = ("phi0", "ra", "psi")
SAMPLES = ("rslice", "rwalk", "slice", "unif")


def prior_transform(prior, names: list[str], cube: np.ndarray) -> np.ndarray:
    """(..., P) unit-cube points -> the same points of the prior of ``names`` (module doc); exact, one-to-one."""
    cube = np.asarray(cube, dtype=float)
    out = np.empty_like(cube)
    col = {name: cube[..., k] for k, name in enumerate(names)}
    if ("m1" in col) != ("m2" in col):
        raise ConfigError(f"parameters {names}: m1 and m2 are drawn together; allowed: both or neither")
    for k, name in enumerate(names):
        u = col[name]
        if name == "m1":
            out[..., k] = prior.mass_min + (prior.mass_max - prior.mass_min) * np.sqrt(u)
        elif name == "m2":
            m1 = prior.mass_min + (prior.mass_max - prior.mass_min) * np.sqrt(col["m1"])
            out[..., k] = prior.mass_min + (m1 - prior.mass_min) * u
        elif name == "dL":
            lo, hi = prior.distance_min**3, prior.distance_max**3
            out[..., k] = (u * (hi - lo) + lo) ** (1.0 / 3.0)
        elif name == "theta_jn":
            out[..., k] = np.arccos(1.0 - 2.0 * u)
        elif name == "dec":
            out[..., k] = np.arcsin(2.0 * u - 1.0)
        else:
            low, high = prior_bounds(prior, name)
            out[..., k] = low + (high - low) * u
    return out


@dataclass
class NestedResult:
    """dynesty's log Z ± logzerr, its weighted draws (physical), equal-weight draws, calls and wall time."""

    log_evidence: float
    standard_error: float
    samples: np.ndarray  # (n, P) dead + final live points, physical
    weights: np.ndarray  # (n,) normalised posterior weights
    equal_samples: np.ndarray  # (m, P) resampled to equal weights
    log_likelihood: np.ndarray  # (n,) at ``samples``
    evaluations: int
    iterations: int
    seconds: float
    information: float  # H, nats: the prior-to-posterior KL divergence (sets the run length ~ nlive H)
    settings: dict

    @property
    def effective_samples(self) -> float:
        return float(1.0 / np.square(self.weights).sum())


def nested_sample(
    log_likelihood,
    prior,
    names: list[str],
    nlive: int = 1000,
    sample: str = "rslice",
    dlogz: float = 0.1,
    seed: int = 0,
    walks: int | None = None,
    slices: int | None = None,
    maxcall: int | None = None,
) -> NestedResult:
    """dynesty ``NestedSampler`` (bound ``multi``) on ``log_likelihood`` ((n, P) -> (n,), e.g. a
    ``WhitenedGaussianLikelihood``) under the prior of ``names``; one likelihood call per point, as dynesty calls it."""
    try:
        import dynesty
        from dynesty.utils import resample_equal
    except ImportError as error:  # pragma: no cover - a dependency of gwpe
        raise ConfigError(
            "the outside sampler needs dynesty; allowed: `pip install dynesty` (a gwpe dependency)"
        ) from error
    if sample not in SAMPLES:
        raise ConfigError(f"dynesty sample = {sample!r}; allowed: {', '.join(SAMPLES)}")
    names = list(names)
    periodic = [k for k, name in enumerate(names) if name in PERIODIC] or None
    calls = 0

    def loglike(theta: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        return float(log_likelihood(theta[None])[0])

    def transform(u: np.ndarray) -> np.ndarray:
        return prior_transform(prior, names, u)

    sampler = dynesty.NestedSampler(
        loglike,
        transform,
        len(names),
        nlive=nlive,
        bound="multi",
        sample=sample,
        periodic=periodic,
        walks=walks,
        slices=slices,
        rstate=np.random.default_rng(seed),
    )
    began = time.perf_counter()
    sampler.run_nested(dlogz=dlogz, maxcall=maxcall, print_progress=False)
    seconds = time.perf_counter() - began
    results = sampler.results
    log_weights = results.logwt - results.logz[-1]
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    equal = resample_equal(results.samples, weights, rstate=np.random.default_rng(seed + 1))
    return NestedResult(
        float(results.logz[-1]),
        float(results.logzerr[-1]),
        np.asarray(results.samples),
        weights,
        np.asarray(equal),
        np.asarray(results.logl),
        int(calls),
        int(results.niter),
        seconds,
        float(results.information[-1]),
        {"nlive": nlive, "sample": sample, "bound": "multi", "dlogz": dlogz, "walks": walks, "slices": slices},
    )


def weighted_std(samples: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(P,) standard deviations of (n, P) draws with optional weights."""
    samples = np.asarray(samples, dtype=float)
    weights = np.full(len(samples), 1.0 / len(samples)) if weights is None else np.asarray(weights) / np.sum(weights)
    mean = weights @ samples
    return np.sqrt(weights @ np.square(samples - mean))


def std_ratios(
    a: np.ndarray,
    b: np.ndarray,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
    boots: int = 200,
    seed: int = 0,
    effective_a: float | None = None,
    effective_b: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(sd_a / sd_b, bootstrap standard error) per column of two (weighted) sample sets. Each bootstrap redraws
    every set with replacement, ``effective_*`` draws of it (its ESS for correlated chains: an i.i.d. bootstrap of
    a chain's every state would understate the error), the weights as probabilities."""
    rng = np.random.default_rng(seed)
    ratio = weighted_std(a, weights_a) / weighted_std(b, weights_b)

    def redraw(x, w, effective):
        p = None if w is None else np.asarray(w) / np.sum(w)
        size = int(effective) if effective else (len(x) if p is None else int(1.0 / np.square(p).sum()))
        return x[rng.choice(len(x), size=max(2, size), p=p)]

    boot = np.array(
        [
            weighted_std(redraw(a, weights_a, effective_a)) / weighted_std(redraw(b, weights_b, effective_b))
            for _ in range(boots)
        ]
    )
    return ratio, boot.std(axis=0, ddof=1)
