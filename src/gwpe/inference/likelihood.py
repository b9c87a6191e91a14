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

_WORKER_GENERATOR: StrainGenerator | None = None


def _start_worker(generator: StrainGenerator) -> None:
    global _WORKER_GENERATOR
    _WORKER_GENERATOR = generator


def _worker_templates(params: np.ndarray, names: list[str]) -> np.ndarray:
    return _WORKER_GENERATOR.templates(params, names)


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

    def _templates(self, params: np.ndarray) -> np.ndarray:
        if self.workers <= 1 or len(params) < 2 * self.workers:
            return self.generator.templates(params, self.names)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, initializer=_start_worker, initargs=(self.generator,))
        parts = np.array_split(params, self.workers)
        return np.concatenate(list(self._pool.map(_worker_templates, parts, [self.names] * len(parts))))

    def log_likelihood(self, params: np.ndarray) -> np.ndarray:
        params = np.atleast_2d(np.asarray(params, dtype=np.float64))
        self.evaluations += len(params)
        residual = self.data - self._templates(params)
        return -0.5 * np.square(residual).sum(axis=(-2, -1)) + self._normaliser

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
