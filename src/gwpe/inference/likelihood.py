"""Batched whitened Gaussian likelihood of one strain observation (Green, Gair & Messenger 2020, eq. 2).

Strain is whitened so that detector noise is N(0, 1) per sample (``gwpe.data.strain``). For data x (D, L)
and the noise-free whitened template h(theta) from the dataset's own generator (IMRPhenomPv2 via
lalsimulation, the same pad, PSD, window and detector projection),

    log L(theta) = -1/2 sum_{d,t} (x_dt - h_dt(theta))^2 - (D L / 2) log(2 pi).

The log posterior adds the dataset prior (``gwpe.waveforms.priors.log_prior_density``) and skips the
template outside the prior's support. Templates cost one waveform call each (~1 ms on one core); a batch
is split over ``workers`` processes, which is how emcee's vectorised ensemble moves use every core.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gwpe.waveforms.priors import log_prior_density
from gwpe.waveforms.strain import StrainGenerator

_WORKER_LIKELIHOOD: "WhitenedGaussianLikelihood | None" = None


def _start_worker(likelihood: "WhitenedGaussianLikelihood") -> None:
    global _WORKER_LIKELIHOOD
    _WORKER_LIKELIHOOD = likelihood


def _worker_call(method: str, params: np.ndarray) -> np.ndarray:
    return getattr(_WORKER_LIKELIHOOD, method)(params)


class WhitenedGaussianLikelihood:
    """log L (``__call__``) and log posterior of (n, P) parameter batches given one whitened observation.

    Columns are named by ``names``; parameters not named take ``gwpe.waveforms.priors.FIXED`` values."""

    def __init__(
        self, generator: StrainGenerator, names: list[str], observation: np.ndarray, prior=None, workers: int = 0
    ):
        self.generator = generator
        self.names = list(names)
        expected = (generator.setup.n_channels, generator.setup.n_samples)
        self.data = np.asarray(observation, dtype=np.float64)
        if self.data.shape != expected:
            raise ValueError(
                f"observation shape {self.data.shape} does not match the dataset's {expected} (detectors, samples)"
            )
        self.prior = prior
        self.workers = int(workers)
        self.evaluations = 0
        self._pool = None
        self._normaliser = -0.5 * self.data.size * np.log(2.0 * np.pi)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}  # a worker gets the likelihood without the pool

    def _map(self, method: str, params: np.ndarray) -> np.ndarray:
        """``getattr(self, method)(params)``, the rows split over ``workers`` processes. Only the per-row results
        travel back (a log L, or five inner products), not the (n, D, L) templates."""
        if self.workers <= 1 or len(params) < 2 * self.workers:
            return getattr(self, method)(params)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, initializer=_start_worker, initargs=(self,))
        parts = np.array_split(params, self.workers)
        return np.concatenate(list(self._pool.map(_worker_call, [method] * len(parts), parts)))

    @property
    def generator_names(self) -> list[str]:
        """The generator's columns for a row of ``names`` (``_generator_params``)."""
        return self.names

    def _generator_params(self, params: np.ndarray) -> np.ndarray:
        return params

    def _templates(self, params: np.ndarray, quadrature: bool = False) -> np.ndarray:
        """Whitened templates of ``params`` rows in this process: (n, D, L), or (n, 2, D, L) in quadrature."""
        params, names = self._generator_params(params), self.generator_names
        if quadrature:
            return self.generator.quadrature_templates(params, names)
        return self.generator.templates(params, names)

    def _local_log_likelihood(self, params: np.ndarray) -> np.ndarray:
        residual = self.data - self._templates(params)
        return -0.5 * np.square(residual).sum(axis=(-2, -1)) + self._normaliser

    def log_likelihood(self, params: np.ndarray) -> np.ndarray:
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        self.evaluations += len(params)
        return self._map("_local_log_likelihood", params)

    __call__ = log_likelihood

    def log_posterior(self, params: np.ndarray) -> np.ndarray:
        """log prior + log L (unnormalised); -inf outside the prior, where no template is computed."""
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        out = log_prior_density(self.prior, self.names, params) if self.prior is not None else np.zeros(len(params))
        inside = np.isfinite(out)
        if inside.any():
            out[inside] += self.log_likelihood(params[inside])
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "WhitenedGaussianLikelihood":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def template_settings(likelihood: WhitenedGaussianLikelihood) -> dict:
    """The waveform/whitening settings that move log Z (issue 26), for metrics and HDF5 attributes: the long
    segment's length and the window's place in it, the hard low-frequency cut of the PSD, the sample rate."""
    setup = likelihood.generator.setup
    return {
        "segment_seconds": setup.segment,
        "pad_seconds": setup.pad,
        "f_min": setup.f_min,
        "f_min_cut": "hard",  # S_n = inf below f_min: no taper
        "sample_rate": setup.sample_rate,
    }


def segment_shift(
    likelihood: WhitenedGaussianLikelihood, posterior: np.ndarray, seconds: float, draws: int = 2000, seed: int = 0
) -> dict:
    """log Z(templates on ``seconds``) - log Z(this likelihood's segment) by reweighting posterior draws (n, P):
    Z' / Z = E_posterior[L' / L], exact in expectation, with its standard error; ``draws`` of them at most, chosen
    at random. The evidence's systematic error from the segment length, measured at no sampler cost."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(seed)
    posterior = np.atleast_2d(posterior)
    rows = posterior[rng.permutation(len(posterior))[:draws]]
    longer = type(likelihood).__new__(type(likelihood))
    longer.__dict__.update(likelihood.__getstate__())
    longer.generator = StrainGenerator(likelihood.generator.setup.with_segment(seconds))
    try:
        log_ratio = longer.log_likelihood(rows) - likelihood.log_likelihood(rows)
    finally:
        longer.close()
    shift = float(logsumexp(log_ratio) - np.log(len(log_ratio)))
    relative = np.exp(log_ratio - shift)
    return {
        "segment_seconds": likelihood.generator.setup.segment,
        "compared_with_seconds": longer.generator.setup.segment,
        "log_z_shift": shift,
        "standard_error": float(relative.std(ddof=1) / np.sqrt(len(relative))),
        "draws": len(rows),
        "max_abs_log_likelihood_change": float(np.max(np.abs(log_ratio))),
    }


PHASE_GRID = 1024  # points of 2 phi0 on [0, 2 pi): spacing 0.006 rad, against a width 1/SNR (0.04 rad at SNR 25)


def quadrature_products(data: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(n, 5) inner products a = <x, h_0>, b = <x, h_1>, A = <h_0, h_0>, B = <h_1, h_1>, C = <h_0, h_1> of data
    x (D, L) and quadrature templates (n, 2, D, L), summed over detectors and samples."""
    h0, h1 = templates[:, 0], templates[:, 1]
    return np.stack(
        [
            np.einsum("dl,ndl->n", data, h0),
            np.einsum("dl,ndl->n", data, h1),
            np.einsum("ndl,ndl->n", h0, h0),
            np.einsum("ndl,ndl->n", h1, h1),
            np.einsum("ndl,ndl->n", h0, h1),
        ],
        axis=1,
    )


def phase_grid_terms(products: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y), each (n, G): <x, h(phi0)> and <h(phi0), h(phi0)> on the grid of 2 phi0 with cos, sin (G,), from
    ``quadrature_products``: X = a cos + b sin, Y = A cos^2 + B sin^2 + 2 C sin cos."""
    a, b, big_a, big_b, big_c = (products[:, k, None] for k in range(5))
    return a * cos + b * sin, big_a * cos**2 + big_b * sin**2 + 2 * big_c * sin * cos


class PhaseMarginalisedLikelihood(WhitenedGaussianLikelihood):
    """log L marginalised over phi0 with its uniform prior, for (2, 2)-only signals (bilby's phase marginalisation,
    in the whitened time domain). With h(phi0) = cos(2 phi0) h_0 + sin(2 phi0) h_1
    (``StrainGenerator.quadrature_templates``), a = <x, h_0>, b = <x, h_1>, A = <h_0, h_0>, B = <h_1, h_1>,
    C = <h_0, h_1>:

        log L(phi0) = -|x|^2 / 2 + a cos 2phi0 + b sin 2phi0 - (A cos^2 + B sin^2 + 2 C sin cos)(2 phi0) / 2 + const,

    averaged over 2 phi0 on a uniform grid of ``PHASE_GRID`` points (exact to rounding for this smooth periodic
    integrand; no equal-norm assumption A = B, C = 0 that the Bessel-function form makes, since the window cuts
    the two quadratures differently). ``names`` must not include phi0.

    A consequence used by the samplers: psi -> psi + pi/2 flips the sign of both antenna patterns, which is
    phi0 -> phi0 + pi/2, so the phase-marginalised likelihood has period pi/2 in psi
    (``gwpe.inference.coordinates`` folds it)."""

    marginalised = ("phi0",)

    def __init__(self, generator, names, observation, prior=None, workers: int = 0, phase_grid: int = PHASE_GRID):
        clash = [p for p in self.marginalised if p in names]
        if clash:
            raise ValueError(f"parameters {names}: {clash} marginalised; allowed: the others")
        super().__init__(generator, names, observation, prior, workers)
        angle = np.linspace(0.0, 2.0 * np.pi, int(phase_grid), endpoint=False)
        self._cos, self._sin = np.cos(angle), np.sin(angle)
        self._data_norm = -0.5 * np.square(self.data).sum()

    def _local_products(self, params: np.ndarray, chunk: int = 16) -> np.ndarray:
        params = np.atleast_2d(params)
        return np.concatenate(  # in chunks: (n, 2, D, 4 L) irfft buffers would not stay in cache
            [
                quadrature_products(self.data, self._templates(params[k : k + chunk], quadrature=True))
                for k in range(0, len(params), chunk)
            ]
        )

    def products(self, params: np.ndarray) -> np.ndarray:
        """(n, 5) ``quadrature_products`` of the rows, computed in the workers."""
        return self._map("_local_products", np.atleast_2d(np.asarray(params, dtype=np.float64)))

    def _local_log_likelihood(self, params: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        x, y = phase_grid_terms(self._local_products(params), self._cos, self._sin)
        return logsumexp(x - 0.5 * y, axis=1) - np.log(len(self._cos)) + self._data_norm + self._normaliser


def draw_cells(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One flat index per row of (n, ...) unnormalised log weights, drawn with probability exp(log w)."""
    flat = log_weights.reshape(len(log_weights), -1)
    cdf = np.cumsum(np.exp(flat - flat.max(axis=1, keepdims=True)), axis=1)
    u = rng.uniform(size=len(cdf)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), flat.shape[1] - 1)


def phase_from_cells(index: np.ndarray, grid: int, rng: np.random.Generator) -> np.ndarray:
    """phi0 in [0, 2 pi) from cells of the 2 phi0 grid, jittered within the cell, + pi with probability 1/2."""
    two_phi = (index + rng.uniform(size=len(index)) - 0.5) * 2 * np.pi / grid
    return np.mod(0.5 * two_phi + np.pi * rng.integers(0, 2, len(index)), 2 * np.pi)


DISTANCE_GRID = 200  # log-spaced d_L points: spacing 1.2 % over a decade, against a width ~1/SNR (4 % at SNR 25)
JOINT_PHASE_GRID = 512  # 2 phi0 points with the distance grid: trapezoid error ~exp(-2 pi^2 (512 / (2 pi SNR))^2)


class DistanceMarginalisedLikelihood(PhaseMarginalisedLikelihood):
    """log L marginalised over phi0 and d_L with their priors (uniform; volumetric, p(d) ∝ d^2 on the prior's
    [d_min, d_max]): bilby's distance + phase marginalisation, in the whitened time domain.

    The templates are computed once at d_ref = d_min; at distance d they scale by u = d_ref / d, so with
    X(phi0), Y(phi0) of ``phase_grid_terms``

        log L(phi0, d) = u X(phi0) - u^2 Y(phi0) / 2 - |x|^2 / 2 + const,

    summed over a grid of ``JOINT_PHASE_GRID`` phases (uniform, periodic: the trapezoid rule converges
    exponentially) times ``DISTANCE_GRID`` log-spaced distances (trapezoid in ln d with the prior weights
    d^3 Δln d, normalised to one). Sampling the rest then no longer has to cross the d_L-inclination ridge.
    ``distance_phase_posterior`` draws (d_L, phi0) back from p(d_L, phi0 | theta, x); ``grid_error`` measures the
    two grids' error at given rows by doubling both."""

    marginalised = ("phi0", "dL")

    def __init__(
        self,
        generator,
        names,
        observation,
        prior,
        workers: int = 0,
        phase_grid: int = JOINT_PHASE_GRID,
        distance_grid: int = DISTANCE_GRID,
    ):
        if prior is None:
            raise ValueError("distance marginalisation needs the prior's d_L range; allowed: a strain prior")
        super().__init__(generator, names, observation, prior, workers, phase_grid)
        self.reference_distance = float(prior.distance_min)
        self._set_distance_grid(int(distance_grid))

    def _set_distance_grid(self, points: int) -> None:
        low, high = self.prior.distance_min, self.prior.distance_max
        log_d = np.linspace(np.log(low), np.log(high), points)
        weight = np.exp(3.0 * log_d)  # d^2 dd = d^3 d(ln d)
        weight[[0, -1]] *= 0.5  # trapezoid ends
        self.distances = np.exp(log_d)
        self._log_distance_weight = np.log(weight / weight.sum())
        self._u = self.reference_distance / self.distances

    @property
    def generator_names(self) -> list[str]:
        return [*self.names, "dL"]

    def _generator_params(self, params: np.ndarray) -> np.ndarray:
        params = np.atleast_2d(params)
        return np.concatenate([params, np.full((len(params), 1), self.reference_distance)], axis=1)

    def joint_terms(self, products: np.ndarray, chunk: int = 8):
        """Yields (rows, log L on the (phase, distance) grid (n, G_phi, G_d) + log prior weight, no constant)."""
        u, half_u2 = self._u, -0.5 * self._u**2
        for start in range(0, len(products), chunk):  # chunks small enough to stay in cache
            x, y = phase_grid_terms(products[start : start + chunk], self._cos, self._sin)
            yield slice(start, start + chunk), x[:, :, None] * u + y[:, :, None] * half_u2 + self._log_distance_weight

    def _marginal(self, products: np.ndarray) -> np.ndarray:
        out = np.empty(len(products))
        for rows, grid in self.joint_terms(products):
            top = grid.max(axis=(1, 2))
            out[rows] = top + np.log(np.exp(grid - top[:, None, None]).sum(axis=(1, 2)))
        return out - np.log(len(self._cos)) + self._data_norm + self._normaliser

    def _local_log_likelihood(self, params: np.ndarray) -> np.ndarray:
        return self._marginal(self._local_products(params))

    def distance_phase_posterior(self, params: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(d_L, phi0) drawn from p(d_L, phi0 | theta, x) per row: a grid cell by its weight, jittered within it."""
        products = self.products(params)
        index = np.empty(len(products), dtype=np.int64)
        for rows, grid in self.joint_terms(products):
            index[rows] = draw_cells(grid, rng)
        phase_index, distance_index = np.divmod(index, len(self.distances))
        step = np.log(self.distances[1] / self.distances[0])
        jitter = np.clip(distance_index + rng.uniform(-0.5, 0.5, len(index)), 0, len(self.distances) - 1)
        distance = self.distances[0] * np.exp(step * jitter)
        return distance, phase_from_cells(phase_index, len(self._cos), rng)

    def maximum_likelihood(self, params: np.ndarray) -> tuple[int, float, float, float, np.ndarray]:
        """(row, d_L, phi0, log L - log L(h = 0), whitened template (D, L)) of the best of the rows, maximised over
        phi0 on the grid and over d_L in closed form (u* = X / Y, kept inside the prior's range)."""
        params = np.atleast_2d(params)
        x, y = phase_grid_terms(self.products(params), self._cos, self._sin)
        u = np.clip(x / y, self._u.min(), self._u.max())
        ratio = u * x - 0.5 * u**2 * y
        row, k = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        pair = self._templates(params[row : row + 1], quadrature=True)[0]
        template = u[row, k] * (self._cos[k] * pair[0] + self._sin[k] * pair[1])
        phi0 = float(np.mod(np.pi * k / len(self._cos), np.pi))
        return int(row), float(self.reference_distance / u[row, k]), phi0, float(ratio[row, k]), template

    def grid_error(self, params: np.ndarray) -> float:
        """max |log L(grids) - log L(both grids doubled)| over the rows: the marginalisation's numerical error."""
        products = self.products(params)
        coarse = self._marginal(products)
        phase, points = len(self._cos), len(self.distances)
        angle = np.linspace(0.0, 2.0 * np.pi, 2 * phase, endpoint=False)
        saved = self._cos, self._sin
        try:
            self._cos, self._sin = np.cos(angle), np.sin(angle)
            self._set_distance_grid(2 * points - 1)
            fine = self._marginal(products)
        finally:
            self._cos, self._sin = saved
            self._set_distance_grid(points)
        return float(np.max(np.abs(coarse - fine)))
