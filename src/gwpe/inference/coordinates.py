"""The coordinates samplers move in, for the strain posteriors: chirp mass, mass ratio and a folded phase.

- **Masses**: (M_c, nu = m2/m1) in the m1, m2 columns. The data measure the chirp mass best, so the posterior
  is a narrow, nearly straight ridge there instead of a curved banana in (m1, m2). The density carries the
  Jacobian |d(m1, m2)/d(M_c, nu)| = m1^2 / M_c (``gwpe.physics``).
- **Phase** (``fold_phase``): a signal carrying only the (2, 2) mode has h ∝ exp(2 i phi0) (checked for
  IMRPhenomPv2 to 1e-14), so L(phi0) = L(phi0 + pi) exactly and the posterior has two identical copies. The
  samplers move in one copy: phi0 folded into a window [c - pi/2, c + pi/2) of length pi, with c the
  circular mean of 2 phi0 / 2 over the start points, so the bulk sits mid-window instead of being cut by
  the fold. The folded density is p(phi0) + p(phi0 + pi) = 2 p(phi0): the log density adds log 2, which
  keeps the evidence Z = ∫ L pi dtheta unchanged. ``to_physical`` unfolds with phi0 + pi drawn with
  probability 1/2, which is exact for the symmetric posterior. Only for the (2, 2)-only strain datasets
  (no spins or inclination changing the mode content: every dataset here).
"""

from __future__ import annotations

import math

import numpy as np

from gwpe import physics


class SamplerCoordinates:
    """u <-> theta maps and the density over u (module doc); identity for columns it does not touch."""

    def __init__(self, names: list[str], fold_phase: bool = False, phase_centre: float = math.pi / 2):
        self.names = list(names)
        self.masses = (names.index("m1"), names.index("m2")) if {"m1", "m2"} <= set(names) else None
        self.phase = names.index("phi0") if fold_phase and "phi0" in names else None
        self.phase_centre = float(phase_centre)

    @classmethod
    def centred_on(cls, names: list[str], theta: np.ndarray, fold_phase: bool = True) -> "SamplerCoordinates":
        """Coordinates whose phase window is centred on the circular mean of 2 phi0 over ``theta`` (n, P)."""
        centre = math.pi / 2
        if fold_phase and "phi0" in names:
            phase = 2.0 * np.asarray(theta)[:, names.index("phi0")]
            centre = 0.5 * math.atan2(np.sin(phase).mean(), np.cos(phase).mean())
        return cls(names, fold_phase, centre)

    def fold(self, phi0: np.ndarray) -> np.ndarray:
        low = self.phase_centre - math.pi / 2
        return low + np.mod(phi0 - low, math.pi)

    def to_physical(self, u: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """theta(u); the folded phase goes to [0, 2 pi) with + pi drawn with probability 1/2 (``rng``, else seed 0)."""
        theta = np.array(u, dtype=np.float64, copy=True)
        if self.masses is not None:
            i, j = self.masses
            with np.errstate(invalid="ignore", divide="ignore"):
                theta[:, i], theta[:, j] = physics.masses_from_chirp_mass(u[:, i], u[:, j])
        if self.phase is not None:
            rng = rng if rng is not None else np.random.default_rng(0)
            flip = rng.integers(0, 2, len(theta)) * math.pi
            theta[:, self.phase] = np.mod(theta[:, self.phase] + flip, 2.0 * math.pi)
        return theta

    def from_physical(self, theta: np.ndarray) -> np.ndarray:
        u = np.array(theta, dtype=np.float64, copy=True)
        if self.masses is not None:
            i, j = self.masses
            u[:, i], u[:, j] = physics.chirp_mass(theta[:, i], theta[:, j]), theta[:, j] / theta[:, i]
        if self.phase is not None:
            u[:, self.phase] = self.fold(u[:, self.phase])
        return u

    def log_jacobian(self, u: np.ndarray) -> np.ndarray:
        """log |d theta / d u| (+ log 2 for the folded phase); -inf where nu is not in (0, 1], M_c <= 0 or phi0 is outside the window."""
        out = np.zeros(len(u))
        if self.masses is not None:
            i, j = self.masses
            valid = (u[:, j] > 0) & (u[:, j] <= 1) & (u[:, i] > 0)
            out[~valid] = -np.inf
            out[valid] = physics.log_jacobian_masses_chirp_mass(u[valid, i], u[valid, j])
        if self.phase is not None:
            offset = u[:, self.phase] - (self.phase_centre - math.pi / 2)
            out = np.where((offset >= 0) & (offset < math.pi), out + math.log(2.0), -np.inf)
        return out

    def log_density(self, log_posterior):
        """log p(u) = log p(theta(u)) + log |d theta / d u|, evaluated only where the Jacobian is finite."""
        def density(u: np.ndarray) -> np.ndarray:
            u = np.atleast_2d(np.asarray(u, dtype=np.float64))
            out = self.log_jacobian(u)
            valid = np.isfinite(out)
            if valid.any():
                theta = self.to_physical(u[valid])  # phase flip irrelevant: L(phi0) = L(phi0 + pi)
                out[valid] += log_posterior(theta)
            return out

        return density
