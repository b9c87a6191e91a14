"""One interface for h22 backends: (q, s1z, s2z) and a time grid t/M in, complex r h22 / M out.

Conventions shared by every backend (so datasets from different backends are interchangeable):
- geometric units, q = m1/m2 >= 1, aligned spins s1z, s2z;
- t = 0 at the peak of |h22|;
- the overall phase is fixed so that arg h22(t = 0) = 0. A constant phase of the (2,2) mode is an orbital
  phase shift, i.e. a convention; fixing it at the peak makes the product independent of the backend's
  starting frequency and reference phase.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from gwpe.errors import WaveformError


def describe(q: float, s1z: float, s2z: float) -> str:
    """``(q=..., s1z=..., s2z=...)`` to 6 significant digits, for error messages."""
    return f"(q={q:.6g}, s1z={s1z:.6g}, s2z={s2z:.6g})"


def check_time_grid(times: np.ndarray, what: str = "time grid") -> None:
    """Fail unless ``times`` is finite and strictly increasing."""
    times = np.asarray(times)
    if times.ndim != 1 or len(times) < 2:
        raise WaveformError(f"{what} must be a 1-D array of at least 2 samples, got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise WaveformError(f"{what} contains NaN/inf")
    steps = np.diff(times)
    if np.any(steps <= 0):
        k = int(np.argmax(steps <= 0))
        raise WaveformError(
            f"{what} is not strictly increasing at index {k}: t[{k}]={times[k]!r}, t[{k + 1}]={times[k + 1]!r}"
        )


def check_waveform(h: np.ndarray, q: float, s1z: float, s2z: float, backend: str) -> np.ndarray:
    """Fail, naming the parameters, when a waveform holds NaN or inf samples."""
    bad = ~np.isfinite(h)
    if np.any(bad):
        raise WaveformError(
            f"{backend} produced {int(bad.sum())} NaN/inf samples for {describe(q, s1z, s2z)} "
            f"(first at index {int(np.argmax(bad))})"
        )
    return h


def fix_peak_phase(h: np.ndarray, phase_at_peak: float) -> np.ndarray:
    """Rotate h22 so that its phase at t = 0 is zero."""
    return h * np.exp(-1j * phase_at_peak)


class H22Backend(ABC):
    """Produces h22 on a given grid; implementations must be picklable (they travel to Dask workers)."""

    name: str

    @abstractmethod
    def version(self) -> str:
        """Version string of the underlying waveform code (stored as provenance)."""

    @abstractmethod
    def _h22(self, q: float, s1z: float, s2z: float, times: np.ndarray) -> np.ndarray:
        """Complex r h22/M at ``times`` (t/M, peak at 0, phase 0 at the peak)."""

    def h22(self, q: float, s1z: float, s2z: float, times: np.ndarray, checked_times: bool = False) -> np.ndarray:
        if not checked_times:
            check_time_grid(times)
        h = self._h22(float(q), float(s1z), float(s2z), np.asarray(times, dtype=np.float64))
        return check_waveform(h, q, s1z, s2z, self.name)

    def batch(self, params: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(N, 3) parameters -> float32 (N, 2, L) with channels (Re, Im)."""
        check_time_grid(times)
        out = np.empty((len(params), 2, len(times)), dtype=np.float32)
        for i, (q, s1z, s2z) in enumerate(params):
            h = self.h22(q, s1z, s2z, times, checked_times=True)
            out[i, 0] = h.real
            out[i, 1] = h.imag
        return out
