"""The sky in the frame of a two-detector baseline (bilby's ``sky_frame="H1L1"``): a ring becomes a line.

Two detectors measure the arrival-time difference, dt = -(r_1 - r_2) . n / c, for a source in direction n: the
sky posterior is a ring of fixed angle zeta to the baseline b = r_1 - r_2, spread in the azimuth phi around
it. With kappa = cos(zeta) and phi (e_1, e_2 perpendicular to b, fixed in the Earth),

    n = kappa b^ + sqrt(1 - kappa^2) (cos(phi) e_1 + sin(phi) e_2),
    ra = atan2(n_y, n_x) + GMST(t),    dec = asin(n_z)        (n in Earth-fixed coordinates).

The map is a rotation of the sphere, so the isotropic prior dOmega = cos(dec) d ra d dec = d kappa d phi is
uniform in (kappa, phi), and |d(ra, dec) / d(kappa, phi)| = 1 / cos(dec). The merger time at the first
detector, t_1 = t_c - r_1 . n / c, is what the data fix; at fixed t_1 the geocentric t_c moves along the ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SkyFrame:
    """Earth-fixed geometry of a detector pair at one GPS time (``build``)."""

    baseline: np.ndarray  # b^, unit vector from the second detector to the first
    e1: np.ndarray
    e2: np.ndarray
    first: np.ndarray  # r_1 / c, seconds
    gmst: float  # Greenwich mean sidereal time, rad

    @classmethod
    def build(cls, detectors: tuple[str, str] | list[str], gps: float) -> "SkyFrame":
        import lal

        if len(detectors) < 2:
            raise ValueError(f"detectors {list(detectors)}: a sky frame needs two; allowed: e.g. ['H1', 'L1']")
        r1, r2 = (np.asarray(lal.cached_detector_by_prefix[d].location, dtype=np.float64) for d in detectors[:2])
        b = (r1 - r2) / np.linalg.norm(r1 - r2)
        e1 = np.cross(b, [0.0, 0.0, 1.0])
        e1 /= np.linalg.norm(e1)
        return cls(b, e1, np.cross(b, e1), r1 / lal.C_SI, float(lal.GreenwichMeanSiderealTime(lal.LIGOTimeGPS(gps))))

    def direction(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """(n, 3) Earth-fixed unit vectors towards (ra, dec)."""
        longitude = np.asarray(ra) - self.gmst
        return np.stack([np.cos(dec) * np.cos(longitude), np.cos(dec) * np.sin(longitude), np.sin(dec)], axis=-1)

    def to_frame(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(kappa, phi in [0, 2 pi)) of (ra, dec)."""
        n = self.direction(ra, dec)
        return n @ self.baseline, np.mod(np.arctan2(n @ self.e2, n @ self.e1), 2 * np.pi)

    def from_frame(self, kappa: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ra in [0, 2 pi), dec) of (kappa, phi); kappa must lie in [-1, 1]."""
        kappa = np.asarray(kappa, dtype=np.float64)
        across = np.sqrt(np.clip(1.0 - kappa**2, 0.0, None))[..., None]
        n = kappa[..., None] * self.baseline + across * (
            np.cos(phi)[..., None] * self.e1 + np.sin(phi)[..., None] * self.e2
        )
        dec = np.arcsin(np.clip(n[..., 2], -1.0, 1.0))
        return np.mod(np.arctan2(n[..., 1], n[..., 0]) + self.gmst, 2 * np.pi), dec

    def first_delay(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Arrival time at the first detector minus at the Earth's centre, -r_1 . n / c (lal's convention)."""
        return -(self.direction(ra, dec) @ self.first)
