"""Detector noise PSD and whitening (Green et al. 2020, sec. III.A).

With h~ the continuous Fourier transform (h~ = dt * rfft(h)) and S_n the one-sided PSD, the whitened,
rescaled series is x = irfft(h~ / sqrt(S_n)) * sqrt(2 / dt). Stationary Gaussian noise with PSD S_n then
becomes N(0, 1) in every sample (in band), and ||x||_2 equals the optimal SNR
rho^2 = 4 df sum |h~|^2 / S_n. Bins below f_min get S_n = inf (zero weight).
"""

from __future__ import annotations

import numpy as np

PSDS = ("aLIGOZeroDetHighPower",)


def psd(name: str, frequencies: np.ndarray, f_min: float) -> np.ndarray:
    """One-sided PSD on ``frequencies`` [Hz^-1], infinite below ``f_min`` and at f = 0."""
    import lalsimulation

    if name not in PSDS:
        raise ValueError(f"unknown PSD {name!r}; allowed: {', '.join(PSDS)}")
    function = getattr(lalsimulation, f"SimNoisePSD{name}")
    values = np.full(len(frequencies), np.inf)
    band = frequencies >= f_min
    values[band] = [function(float(f)) for f in frequencies[band]]
    return values


def whiten_frequency_series(h_tilde: np.ndarray, psd_values: np.ndarray, dt: float, n: int) -> np.ndarray:
    """x = irfft(h~ / sqrt(S_n)) * sqrt(2/dt) on n samples (last axis)."""
    return np.fft.irfft(h_tilde / np.sqrt(psd_values), n=n, axis=-1) * np.sqrt(2.0 / dt)


def optimal_snr(h_tilde: np.ndarray, psd_values: np.ndarray, df: float) -> float:
    """rho = sqrt(4 df sum |h~|^2 / S_n) over the bins where S_n is finite."""
    return float(np.sqrt(4.0 * df * np.sum(np.abs(h_tilde) ** 2 / psd_values)))
