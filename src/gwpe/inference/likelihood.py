"""Batched whitened Gaussian likelihood for the strain datasets.

Whitened data y = h(theta) + n with n ~ N(0, 1) per sample (``gwpe.waveforms.whitening``) give
log L(theta | y) = -1/2 ||y - h(theta)||^2 - (D L / 2) log(2 pi), summed over detectors and samples.
Templates for a batch of theta are generated serially or on a pool of worker processes.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from gwpe.waveforms.strain import StrainGenerator


def _templates(generator: StrainGenerator, names: list[str], thetas: np.ndarray) -> np.ndarray:
    return generator.batch(thetas, names, dtype=np.float64)[0]


class WhitenedGaussianLikelihood:
    """log L for batches of parameter vectors (columns named by ``names``; others take FIXED values)."""

    def __init__(self, generator: StrainGenerator, names: list[str], observation: np.ndarray, workers: int = 0):
        self.generator = generator
        self.names = list(names)
        self.observation = np.asarray(observation, dtype=np.float64)
        expected = (generator.setup.n_channels, generator.setup.n_samples)
        if self.observation.shape != expected:
            raise ValueError(f"observation shape {self.observation.shape} does not match the dataset's {expected} (detectors, samples)")
        self.normalisation = -0.5 * self.observation.size * np.log(2.0 * np.pi)
        self.pool = ProcessPoolExecutor(workers) if workers > 0 else None
        self.workers = workers

    def templates(self, thetas: np.ndarray) -> np.ndarray:
        thetas = np.atleast_2d(thetas)
        if self.pool is None or len(thetas) < 2 * self.workers:
            return _templates(self.generator, self.names, thetas)
        parts = np.array_split(thetas, self.workers)
        return np.concatenate(list(self.pool.map(_templates, [self.generator] * len(parts), [self.names] * len(parts), parts)))

    def __call__(self, thetas: np.ndarray) -> np.ndarray:
        residual = self.observation[None] - self.templates(thetas)
        return -0.5 * np.sum(residual**2, axis=(1, 2)) + self.normalisation

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
