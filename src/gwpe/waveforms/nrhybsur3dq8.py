"""NRHybSur3dq8 (Varma et al. 2019) through gwsurrogate: the backend of Khan, Huerta & Das.

Evaluated directly on the grid (``times=``, ``f_low=0``, dimensionless units, mode (2,2) only). The
surrogate puts t = 0 at the peak of the *total* amplitude of all modes; gwpe's convention is the peak of
|h22|, so the h22 peak is located on a 0.01 M grid around t = 0 (refined by a parabola) and the grid is
shifted by it. The phase is then fixed to zero at the peak, as for every backend.

The ~213 MB data file is never downloaded here: gwsurrogate's ``LoadSurrogate('NRHybSur3dq8')`` would try
to, so the file is looked up first (``h22.surrogate_path``, then $GWPE_NRHYBSUR3DQ8, then gwsurrogate's
download folder) and a missing file fails at once with instructions.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gwpe.errors import SurrogateNotFoundError
from gwpe.waveforms.base import H22Backend, fix_peak_phase

ENV_VAR = "GWPE_NRHYBSUR3DQ8"
FILE_NAME = "NRHybSur3dq8.h5"
FETCH_HINT = (
    "on a machine with internet run: python -c \"import gwsurrogate; gwsurrogate.catalog.pull('NRHybSur3dq8')\" "
    f"(~213 MB), copy {FILE_NAME} here and set h22.surrogate_path or ${ENV_VAR} to it"
)


def _default_location() -> Path | None:
    try:
        from gwsurrogate import catalog

        return Path(catalog.download_path()) / FILE_NAME
    except Exception:  # gwsurrogate missing or broken: only explicit paths count
        return None


def find_surrogate_file(path: str | None = None) -> Path:
    """The NRHybSur3dq8 data file, or SurrogateNotFoundError saying how to fetch it."""
    candidates = [Path(p).expanduser() for p in (path, os.environ.get(ENV_VAR)) if p]
    if not candidates:
        default = _default_location()
        candidates = [default] if default else []
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = ", ".join(str(c) for c in candidates) or "(no location configured)"
    raise SurrogateNotFoundError(f"NRHybSur3dq8 data file not found at {where}; {FETCH_HINT}")


_LOADED: dict[str, object] = {}


def _load(path: str):
    """Load once per process: every generation task unpickles a fresh backend, the model stays cached."""
    if path not in _LOADED:
        import gwsurrogate

        _LOADED[path] = gwsurrogate.LoadSurrogate(path)
    return _LOADED[path]


class NRHybSur3dq8Backend(H22Backend):
    """NRHybSur3dq8 h22 on the grid, shifted to the |h22| peak; the surrogate loads lazily, once per process."""

    name = "nrhybsur3dq8"

    def __init__(self, path: str | None = None):
        self.path = find_surrogate_file(path)
        self._surrogate = None

    def __getstate__(self):
        return {"path": self.path, "_surrogate": None}  # never ship the loaded model to workers

    def version(self) -> str:
        import gwsurrogate

        return f"gwsurrogate {gwsurrogate.__version__} ({self.path.name})"

    @property
    def surrogate(self):
        if self._surrogate is None:
            self._surrogate = _load(str(self.path))
        return self._surrogate

    def _evaluate(self, q: float, s1z: float, s2z: float, times: np.ndarray) -> np.ndarray:
        _, modes, _ = self.surrogate(
            q, [0.0, 0.0, s1z], [0.0, 0.0, s2z], times=times, f_low=0, mode_list=[(2, 2)], units="dimensionless"
        )
        return np.asarray(modes[(2, 2)])

    def h22_peak(self, q: float, s1z: float, s2z: float) -> tuple[float, float]:
        """Time of the |h22| maximum (parabola through the top three 0.01 M samples) and the phase there."""
        probe = np.linspace(-5.0, 5.0, 1001)
        h = self._evaluate(q, s1z, s2z, probe)
        amplitude = np.abs(h)
        k = int(np.clip(np.argmax(amplitude), 1, len(probe) - 2))
        a, b, c = amplitude[k - 1 : k + 2]
        curvature = a - 2 * b + c
        t_peak = float(probe[k] + (0.5 * (a - c) / curvature if curvature != 0 else 0.0) * (probe[1] - probe[0]))
        return t_peak, float(np.interp(t_peak, probe, np.unwrap(np.angle(h))))

    def _h22(self, q: float, s1z: float, s2z: float, times: np.ndarray) -> np.ndarray:
        t_peak, phase_at_peak = self.h22_peak(q, s1z, s2z)
        return fix_peak_phase(self._evaluate(q, s1z, s2z, times + t_peak), phase_at_peak)
