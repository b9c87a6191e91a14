"""Priors of the strain datasets (Green et al. 2020, eqs. 22 and sec. IV; two-detector extension).

- m1, m2 uniform in [mass_min, mass_max] with m1 >= m2 (uniform on the triangle: draw two, sort);
- d_L volumetric, p(d) ~ d^2 on [distance_min, distance_max]: d = (u (d_max^3 - d_min^3) + d_min^3)^(1/3);
- t_c uniform in [tc_min, tc_max] s; phi0 uniform in [0, 2 pi);
- chi1z, chi2z uniform in [-chi_max, chi_max]; theta_jn with cos theta_jn uniform in [-1, 1];
- sky isotropic (ra uniform in [0, 2 pi), sin dec uniform in [-1, 1]); polarisation psi uniform in [0, pi).
Parameters not listed for a dataset keep fixed values (spins 0, theta_jn 0, sky overhead-free defaults).
"""

from __future__ import annotations

import numpy as np

from gwpe.config import StrainPriorConfig

PARAMETERS = ("m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn", "ra", "dec", "psi")
FIXED = {
    "phi0": 0.0,
    "tc": 0.75,
    "dL": 2000.0,
    "chi1z": 0.0,
    "chi2z": 0.0,
    "theta_jn": 0.0,
    "ra": 0.0,
    "dec": 0.0,
    "psi": 0.0,
}


def sample_prior(prior: StrainPriorConfig, names: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, len(names)) samples, columns in the order of ``names``."""
    columns: dict[str, np.ndarray] = {}
    masses = rng.uniform(prior.mass_min, prior.mass_max, size=(n, 2))
    columns["m1"], columns["m2"] = masses.max(axis=1), masses.min(axis=1)
    lo, hi = prior.distance_min**3, prior.distance_max**3
    columns["dL"] = (rng.uniform(0.0, 1.0, n) * (hi - lo) + lo) ** (1.0 / 3.0)
    columns["tc"] = rng.uniform(prior.tc_min, prior.tc_max, n)
    columns["phi0"] = rng.uniform(0.0, 2.0 * np.pi, n)
    columns["chi1z"] = rng.uniform(-prior.chi_max, prior.chi_max, n)
    columns["chi2z"] = rng.uniform(-prior.chi_max, prior.chi_max, n)
    columns["theta_jn"] = np.arccos(rng.uniform(-1.0, 1.0, n))
    columns["ra"] = rng.uniform(0.0, 2.0 * np.pi, n)
    columns["dec"] = np.arcsin(rng.uniform(-1.0, 1.0, n))
    columns["psi"] = rng.uniform(0.0, np.pi, n)
    return np.stack([columns[name] for name in names], axis=1)


def volumetric_distance_cdf(d, d_min: float, d_max: float):
    """P(d_L <= d) = (d^3 - d_min^3) / (d_max^3 - d_min^3)."""
    d = np.clip(np.asarray(d, dtype=float), d_min, d_max)
    return (d**3 - d_min**3) / (d_max**3 - d_min**3)


def log_prior_volume(prior: StrainPriorConfig, names: list[str]) -> float:
    """log of the normaliser of the unnormalised densities below, so log Z is an evidence, not up to a constant:
    the mass triangle m1 >= m2 has area (m_max - m_min)^2 / 2; ∫ d^2 dd = (d_max^3 - d_min^3) / 3; ∫ sin theta_jn = 2;
    ∫ cos dec = 2; the other parameters are uniform over their ranges."""
    lengths = {
        "tc": prior.tc_max - prior.tc_min,
        "phi0": 2 * np.pi,
        "chi1z": 2 * prior.chi_max,
        "chi2z": 2 * prior.chi_max,
        "theta_jn": 2.0,
        "ra": 2 * np.pi,
        "dec": 2.0,
        "psi": np.pi,
        "dL": (prior.distance_max**3 - prior.distance_min**3) / 3.0,
    }
    total = 0.0
    if "m1" in names and "m2" in names:
        total += np.log(0.5 * (prior.mass_max - prior.mass_min) ** 2)
    elif "m1" in names or "m2" in names:
        raise ValueError(f"parameters {names}: m1 and m2 are drawn together; allowed: both or neither")
    return float(total + sum(np.log(lengths[name]) for name in names if name not in ("m1", "m2")))


def log_prior_density(prior: StrainPriorConfig, names: list[str], theta: np.ndarray) -> np.ndarray:
    """Normalised log p(theta) for a batch (n, len(names)); -inf outside the support (``log_prior_volume``)."""
    theta = np.atleast_2d(theta)
    out = np.full(len(theta), -log_prior_volume(prior, names))
    col = {name: theta[:, i] for i, name in enumerate(names)}
    inside = np.ones(len(theta), dtype=bool)
    if "m1" in col and "m2" in col:
        inside &= (col["m1"] >= col["m2"]) & (col["m2"] >= prior.mass_min) & (col["m1"] <= prior.mass_max)
    if "dL" in col:
        inside &= (col["dL"] >= prior.distance_min) & (col["dL"] <= prior.distance_max)
        out += 2.0 * np.log(np.clip(col["dL"], 1e-300, None))
    if "tc" in col:
        inside &= (col["tc"] >= prior.tc_min) & (col["tc"] <= prior.tc_max)
    if "phi0" in col:
        inside &= (col["phi0"] >= 0) & (col["phi0"] <= 2 * np.pi)
    for spin in ("chi1z", "chi2z"):
        if spin in col:
            inside &= np.abs(col[spin]) <= prior.chi_max
    if "theta_jn" in col:
        inside &= (col["theta_jn"] >= 0) & (col["theta_jn"] <= np.pi)
        out += np.log(np.clip(np.sin(col["theta_jn"]), 1e-300, None))
    if "dec" in col:
        out += np.log(np.clip(np.cos(col["dec"]), 1e-300, None))
    return np.where(inside, out, -np.inf)


def prior_bounds(prior: StrainPriorConfig, name: str) -> tuple[float, float]:
    """(low, high) of a parameter's prior support; ``chirp_mass`` from the mass range (equal-mass corners)."""
    from gwpe.physics import chirp_mass

    bounds = {
        "m1": (prior.mass_min, prior.mass_max),
        "m2": (prior.mass_min, prior.mass_max),
        "dL": (prior.distance_min, prior.distance_max),
        "tc": (prior.tc_min, prior.tc_max),
        "phi0": (0.0, 2.0 * np.pi),
        "chi1z": (-prior.chi_max, prior.chi_max),
        "chi2z": (-prior.chi_max, prior.chi_max),
        "theta_jn": (0.0, np.pi),
        "ra": (0.0, 2.0 * np.pi),
        "dec": (-np.pi / 2, np.pi / 2),
        "psi": (0.0, np.pi),
        "chirp_mass": (
            float(chirp_mass(prior.mass_min, prior.mass_min)),
            float(chirp_mass(prior.mass_max, prior.mass_max)),
        ),
    }
    if name not in bounds:
        raise ValueError(f"parameter = {name!r}; allowed: {', '.join(bounds)}")
    return bounds[name]


def support_pieces(prior: StrainPriorConfig, names: list[str], periodic: tuple[str, ...] = ()) -> list[dict]:
    """The pieces of ``gwpe.models.flows.support.ParameterSupport`` that map R^F onto this prior's support:
    (m1, m2) together onto the triangle m_min <= m2 <= m1 <= m_max (chirp mass and mass ratio), every other
    parameter onto its interval ``prior_bounds`` (d_L through its volumetric CDF); parameters in ``periodic``
    (an angle the model wraps itself, the MAF's phi0) are only wrapped into their range."""
    pieces: list[dict] = []
    if "m1" in names and "m2" in names:
        pieces.append(
            {
                "kind": "mass_triangle",
                "index": [names.index("m1"), names.index("m2")],
                "low": float(prior.mass_min),
                "high": float(prior.mass_max),
            }
        )
    elif "m1" in names or "m2" in names:
        raise ValueError(f"parameters {names}: m1 and m2 are drawn together; allowed: both or neither")
    for k, name in enumerate(names):
        if name in ("m1", "m2"):
            continue
        low, high = prior_bounds(prior, name)
        if name in periodic:
            pieces.append({"kind": "periodic", "index": k, "low": float(low), "high": float(high)})
            continue
        piece = {"kind": "interval", "index": k, "low": float(low), "high": float(high)}
        if name == "dL":
            piece["power"] = 3.0  # the volumetric prior's CDF: the prior maps to N(0, 1) in the flow's coordinates
        pieces.append(piece)
    return pieces


def outside_prior_fraction(prior: StrainPriorConfig, names: list[str], samples: np.ndarray) -> float:
    """Fraction of ``samples`` (..., len(names)) outside the prior's support (``log_prior_density`` = -inf)."""
    flat = np.asarray(samples, dtype=float).reshape(-1, len(names))
    return float(np.mean(~np.isfinite(log_prior_density(prior, names, flat)))) if len(flat) else 0.0
