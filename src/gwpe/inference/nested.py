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

``masses="chirp_mass_ratio"`` (the default where both masses are free) samples the masses the way bilby users do,
in chirp mass and nu = m2/m1, because in (m1, m2) the posterior is a thin curved ridge of near-constant M_c
(correlation -0.97 on the demo's injections) that slice moves cross badly. Measured (benchmarks/nested_coordinates.py,
8 seeds, nlive 150): log Z scatters by 0.38 in (m1, m2) against a stated 0.27, and by 0.16 in (M_c, nu). On the
demo's injections 0 and 1 (nlive 1,000, 2-4 seeds) both coordinates still read 0.08-0.20 above three independent
importance samplers, never below (docs/samplers.md).

The cube maps to M_c uniform on [M_c(m_min, m_min), M_c(m_max, m_max)] and nu uniform on [nu_min(M_c), 1]
(``physics.ratio_range_at_chirp_mass``: the triangle's edge at that M_c), a bijection onto the same support; the
mass prior is then restored in the likelihood, log L' = log L + log p(m1, m2) + log |d(m1, m2)/d(M_c, nu)| - log
q(M_c, nu) with p = 2 / (m_max - m_min)^2 and q = 1 / ((M_c,max - M_c,min)(1 - nu_min(M_c))), so that the integral
of L' over the cube, dynesty's Z, is the evidence under gwpe's prior exactly (bilby's ``UniformInComponents*``
priors put the same factor in the prior).
Draws are returned as (m1, m2).

How a live point is replaced: ``sample="auto"`` (the default) is dynesty's own rule by dimension
(``dynesty_method``): ``unif`` below 10 dimensions, uniform draws inside multiple bounding ellipsoids whose
enlargement is set by bootstrap (5 resamplings), so a new live point shares nothing with the one it replaces. bilby
users pick random-slice moves (``rslice``, 3 + D slices) or random walks (``rwalk``) for compact binaries, where D
is larger; both start a short Markov chain from a live point. On the demo's 5-D injections every set of rslice runs
read log Z high (five sets of 2-4 runs, 0.08-0.21 above three independent importance samplers, never below; 3x the
slices did not remove it) and m1's sd differed by 8-17 % between two runs, while two ``unif`` runs on injection 0
read -1480.675 and -1480.842 (+- 0.14; adaptive IS -1480.771 +- 0.006) with sds within 2.2 % of each other, at 3x
the calls (2.08M against ~0.7M; docs/samplers.md). Bounding by multiple ellipsoids, stopping when the remaining
evidence estimate is below dlogz = 0.1, the phase periodic (bilby marks phi0, ra and psi periodic boundaries).
dynesty's ``logzerr`` is its statistical error from the live points' prior-volume shrinkage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gwpe.errors import ConfigError
from gwpe.waveforms.priors import prior_bounds

PERIODIC = ("phi0", "ra", "psi")
SAMPLES = ("auto", "unif", "rslice", "rwalk", "slice")
MASSES = ("components", "chirp_mass_ratio")


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


class ChirpMassRatioCube:
    """The unit cube -> (M_c, nu) on the component-mass triangle (module doc), and back to (m1, m2) with
    the log prior ratio log p(m1, m2) + log |d(m1, m2)/d(M_c, nu)| - log q(M_c, nu) the likelihood carries."""

    def __init__(self, prior, names: list[str]):
        from gwpe.physics import chirp_mass

        if "m1" not in names or "m2" not in names:
            raise ConfigError(f"parameters {names}: chirp_mass_ratio needs m1 and m2; allowed: masses='components'")
        self.prior, self.names = prior, list(names)
        self.m1, self.m2 = self.names.index("m1"), self.names.index("m2")
        self.chirp_low = float(chirp_mass(prior.mass_min, prior.mass_min))
        self.chirp_high = float(chirp_mass(prior.mass_max, prior.mass_max))
        self.log_mass_prior = np.log(2.0) - 2.0 * np.log(prior.mass_max - prior.mass_min)

    def transform(self, cube: np.ndarray) -> np.ndarray:
        """(..., P) cube -> (..., P) points dynesty carries: M_c in the m1 slot, the cube coordinate of nu in the
        m2 slot (``physical`` maps it onto [nu_min(M_c), 1], so nu_min's Newton solve runs once per point), the
        rest as ``prior_transform``."""
        cube = np.asarray(cube, dtype=float)
        out = prior_transform(self.prior, self.names, cube)
        out[..., self.m1] = self.chirp_low + (self.chirp_high - self.chirp_low) * cube[..., self.m1]
        out[..., self.m2] = cube[..., self.m2]
        return out

    def physical(self, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(theta with (m1, m2) in their slots, log prior ratio) of points from ``transform``."""
        from gwpe.physics import log_jacobian_masses_chirp_mass, masses_from_chirp_mass, ratio_range_at_chirp_mass

        carried = np.asarray(carried, dtype=float)
        chirp = carried[..., self.m1]
        low = ratio_range_at_chirp_mass(chirp, self.prior.mass_min, self.prior.mass_max)
        nu = low + (1.0 - low) * carried[..., self.m2]
        theta = carried.copy()
        theta[..., self.m1], theta[..., self.m2] = masses_from_chirp_mass(chirp, nu)
        log_q = -np.log(self.chirp_high - self.chirp_low) - np.log(np.clip(1.0 - low, 1e-300, None))
        return theta, self.log_mass_prior + log_jacobian_masses_chirp_mass(chirp, nu) - log_q


def dynesty_method(dimensions: int) -> str:
    """dynesty's own ``sample="auto"`` rule: ``unif`` below 10 dimensions, ``rwalk`` up to 20, ``rslice`` above
    (``dynesty.dynesty._get_internal_sampler``, 3.1), named here so results record the method that ran."""
    return "unif" if dimensions < 10 else "rwalk" if dimensions <= 20 else "rslice"


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
    sample: str = "auto",
    dlogz: float = 0.1,
    seed: int = 0,
    walks: int | None = None,
    slices: int | None = None,
    maxcall: int | None = None,
    masses: str | None = None,
    progress: bool = False,
) -> NestedResult:
    """dynesty ``NestedSampler`` (bound ``multi``) on ``log_likelihood`` ((n, P) -> (n,), e.g. a
    ``WhitenedGaussianLikelihood``) under the prior of ``names``; one likelihood call per point, as dynesty calls it.
    ``masses``: the mass coordinates dynesty moves in (module doc), by default ``chirp_mass_ratio`` where ``names``
    hold m1 and m2; draws come back as ``names`` either way. ``progress``: dynesty's own status line on stderr
    (iterations, calls, log Z and the remaining dlogz against its stop at ``dlogz``)."""
    try:
        import dynesty
        from dynesty.utils import resample_equal
    except ImportError as error:  # pragma: no cover - a dependency of gwpe
        raise ConfigError(
            "the outside sampler needs dynesty; allowed: `pip install dynesty` (a gwpe dependency)"
        ) from error
    if sample not in SAMPLES:
        raise ConfigError(f"dynesty sample = {sample!r}; allowed: {', '.join(SAMPLES)}")
    sample = dynesty_method(len(names)) if sample == "auto" else sample
    if masses is None:
        masses = "chirp_mass_ratio" if "m1" in names and "m2" in names else "components"
    if masses not in MASSES:
        raise ConfigError(f"dynesty masses = {masses!r}; allowed: {', '.join(MASSES)}")
    names = list(names)
    periodic = [k for k, name in enumerate(names) if name in PERIODIC] or None
    calls = 0
    cube = ChirpMassRatioCube(prior, names) if masses == "chirp_mass_ratio" else None

    def loglike(theta: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        if cube is None:
            return float(log_likelihood(theta[None])[0])
        theta, log_ratio = cube.physical(theta[None])
        return float(log_likelihood(theta)[0] + log_ratio[0])

    def transform(u: np.ndarray) -> np.ndarray:
        return prior_transform(prior, names, u) if cube is None else cube.transform(u)

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
    sampler.run_nested(dlogz=dlogz, maxcall=maxcall, print_progress=progress)
    seconds = time.perf_counter() - began
    results = sampler.results
    log_weights = results.logwt - results.logz[-1]
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    samples, log_like = np.asarray(results.samples), np.asarray(results.logl)
    if cube is not None:  # back to (m1, m2), the likelihood without the prior ratio it carried
        samples, log_ratio = cube.physical(samples)
        log_like = log_like - log_ratio
    equal = resample_equal(samples, weights, rstate=np.random.default_rng(seed + 1))
    return NestedResult(
        float(results.logz[-1]),
        float(results.logzerr[-1]),
        samples,
        weights,
        np.asarray(equal),
        log_like,
        int(calls),
        int(results.niter),
        seconds,
        float(results.information[-1]),
        {
            "nlive": nlive,
            "sample": sample,
            "bound": "multi",
            "dlogz": dlogz,
            "walks": walks,
            "slices": slices,
            "masses": masses,
        },
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
