"""Binary-black-hole physics formulas used across gwpe, in one place.

Conventions: mass ratio q = m1/m2 >= 1 (Khan, Huerta & Das), total mass M = m1 + m2, geometric units
G = c = 1 so times are in M and r*h/M is dimensionless.
"""

from __future__ import annotations

import numpy as np

# CODATA/IAU values as used by LAL (lal.MTSUN_SI, lal.MRSUN_SI, lal.PC_SI); duplicated here so the
# formulas are importable without lalsuite and testable against hand-computed numbers.
MTSUN_SI = 4.925490947641267e-06  # G Msun / c^3 [s]
MRSUN_SI = 1476.6250380501247  # G Msun / c^2 [m]
PC_SI = 3.085677581491367e16  # parsec [m]


def component_masses(q, total_mass):
    """m1 = M q/(1+q), m2 = M/(1+q) for q = m1/m2 >= 1."""
    q = np.asarray(q, dtype=float)
    return total_mass * q / (1.0 + q), total_mass / (1.0 + q)


def symmetric_mass_ratio(q):
    """eta = m1 m2 / M^2 = q / (1+q)^2; 1/4 at q = 1."""
    q = np.asarray(q, dtype=float)
    return q / (1.0 + q) ** 2


def newtonian_chirp_time_to_frequency(chirp_time, q):
    """Starting frequency M f of a signal whose Newtonian (0PN) time to coalescence is ``chirp_time`` (in M).

    Inverts the leading-order chirp time tau_0 = 5 M / (256 eta) (pi M f)^(-8/3) (Sathyaprakash &
    Dhurandhar 1991): M f = (1/pi) (256 eta tau / (5 M))^(-3/8). It underestimates the true duration of
    unequal-mass anti-aligned binaries, so callers check coverage and lower f if needed.
    """
    eta = symmetric_mass_ratio(q)
    return (1.0 / np.pi) * (256.0 * eta * np.asarray(chirp_time, dtype=float) / 5.0) ** (-3.0 / 8.0)


def seconds_per_M(total_mass_msun):
    """Time unit: 1 M = M * G Msun / c^3 seconds."""
    return total_mass_msun * MTSUN_SI


def strain_to_geometric(total_mass_msun, distance_m):
    """Factor turning dimensionless strain h at distance R into r h / M: R / (M G Msun / c^2)."""
    return distance_m / (total_mass_msun * MRSUN_SI)


def _array(x):
    """torch tensors as they are (gradients kept), anything else as a float numpy array."""
    if type(x).__module__.startswith("torch"):
        return x
    return np.asarray(x, dtype=float)


def _log(x):
    return x.log() if type(x).__module__.startswith("torch") else np.log(x)


def chirp_mass(m1, m2):
    """M_c = (m1 m2)^(3/5) / (m1 + m2)^(1/5) (numpy or torch)."""
    m1, m2 = _array(m1), _array(m2)
    return (m1 * m2) ** 0.6 / (m1 + m2) ** 0.2


def mass_ratio(m1, m2):
    """q = m2 / m1 <= 1 for m1 >= m2 (LVK result files; the WaveNet's q = m1/m2 >= 1 is its inverse)."""
    return _array(m2) / _array(m1)


def effective_spin(m1, m2, chi1z, chi2z):
    """chi_eff = (m1 chi1z + m2 chi2z) / (m1 + m2): the mass-weighted aligned spin (Ajith et al. 2011)."""
    m1, m2 = _array(m1), _array(m2)
    return (m1 * _array(chi1z) + m2 * _array(chi2z)) / (m1 + m2)


def masses_from_chirp_mass(chirp_mass, small_mass_ratio):
    """(m1, m2) from M_c and nu = m2/m1 in (0, 1]: m1 = M_c (1 + nu)^(1/5) nu^(-3/5), m2 = nu m1 (numpy or torch)."""
    chirp_mass, nu = _array(chirp_mass), _array(small_mass_ratio)
    m1 = chirp_mass * (1.0 + nu) ** 0.2 * nu ** (-0.6)
    return m1, nu * m1


def log_jacobian_masses_chirp_mass(chirp_mass, small_mass_ratio):
    """log |d(m1, m2)/d(M_c, nu)| = log(m1^2 / M_c), nu = m2/m1: densities over (M_c, nu) are p(m1, m2) m1^2 / M_c."""
    m1, _ = masses_from_chirp_mass(chirp_mass, small_mass_ratio)
    return 2.0 * _log(m1) - _log(_array(chirp_mass))


def ratio_range_at_chirp_mass(chirp_mass, mass_min, mass_max, iterations: int = 8):
    """Lowest nu = m2/m1 of m_min <= m2 <= m1 <= m_max at fixed M_c (the highest is 1): at fixed M_c,
    m1 = M_c (1 + nu)^(1/5) nu^(-3/5) falls and m2 = M_c (1 + nu)^(1/5) nu^(2/5) rises with nu, so the bound is
    the larger of the roots of m1(nu) = m_max and m2(nu) = m_min, clipped to [m_min / m_max, 1]. In t = log nu
    both are log M_c + log(1 + e^t) / 5 + c t = log m with c = -3/5 or 2/5: slopes between -3/5 and -2/5 or
    2/5 and 3/5, so Newton's method from the equal-mass-free guess converges to float64 in ~5 steps
    (``iterations``; a bisection needed 60, the cost of every flow draw). numpy or torch; no gradient needed."""
    chirp_mass = _array(chirp_mass)
    is_numpy = isinstance(chirp_mass, np.ndarray)
    log, exp = (np.log, np.exp) if is_numpy else (lambda x: x.log(), lambda x: x.exp())
    log_chirp = log(chirp_mass)
    # both roots in one array, (2, ...): half the elementwise calls, which dominate for the one-point batches of
    # nested sampling
    shape = (2,) + (1,) * log_chirp.ndim
    power_values, log_mass_values = [-0.6, 0.4], [np.log(mass_max), np.log(mass_min)]
    if is_numpy:
        power, log_mass = np.reshape(power_values, shape), np.reshape(log_mass_values, shape)
    else:
        import torch

        power = torch.tensor(power_values, dtype=log_chirp.dtype, device=log_chirp.device).reshape(shape)
        log_mass = torch.tensor(log_mass_values, dtype=log_chirp.dtype, device=log_chirp.device).reshape(shape)
    t = (log_mass - log_chirp) / power  # the roots without the (1 + nu)^(1/5) factor
    for _ in range(iterations):
        share = 1.0 / (1.0 + exp(-t))  # e^t / (1 + e^t)
        residual = log_chirp + 0.2 * log(1.0 + exp(t)) + power * t - log_mass
        t = t - residual / (0.2 * share + power)
    roots = exp(t)
    low = np.maximum(roots[0], roots[1]) if is_numpy else __import__("torch").maximum(roots[0], roots[1])
    return low.clip(mass_min / mass_max, 1.0) if is_numpy else low.clamp(mass_min / mass_max, 1.0)


def chirp_time_seconds(m1_msun, m2_msun, f_low):
    """Leading-order time to coalescence from frequency f_low [Hz]: tau_0 = 5/256 (pi f)^(-8/3) (G M_c/c^3)^(-5/3)."""
    mc_seconds = chirp_mass(m1_msun, m2_msun) * MTSUN_SI
    return 5.0 / 256.0 * (np.pi * f_low) ** (-8.0 / 3.0) * mc_seconds ** (-5.0 / 3.0)


def chirp_mass_over_total(q):
    """M_c / M = eta^(3/5)."""
    return symmetric_mass_ratio(q) ** 0.6


def sigma_eff(q, s1z, s2z):
    """Effective spin sigma_eff = (m1 s1z + m2 s2z)/M = (q s1z + s2z)/(1 + q) (Khan, Huerta & Das eq. 3).

    Like the other spin formulas below: floats, numpy arrays or torch tensors (gradients kept).
    """
    return (q * s1z + s2z) / (1.0 + q)


def spin_weights(q):
    """sigma_1 = 1 + 3/(4q), sigma_2 = 1 + 3q/4 of the Hamiltonian effective spin (Khan, Huerta & Das eq. 2)."""
    return 1.0 + 0.75 / q, 1.0 + 0.75 * q


def hamiltonian_effective_spin(q, s1z, s2z):
    """S_eff = sigma_1 s1z + sigma_2 s2z (Khan, Huerta & Das eq. 2, after Damour 2001)."""
    w1, w2 = spin_weights(q)
    return w1 * s1z + w2 * s2z


def hamiltonian_spin_range(q):
    """sigma_1 + sigma_2 = 2 + 3/(4q) + 3q/4: the largest |S_eff| per unit spin magnitude at mass ratio q.

    S_eff / (sigma_1 + sigma_2) is a weighted mean of s1z and s2z (weights sigma_i / (sigma_1 + sigma_2)), bounded by
    the largest |s_iz| at every q, as sigma_eff is; 3.5 at q = 1, 8.09375 at q = 8.
    """
    w1, w2 = spin_weights(q)
    return w1 + w2


def spin_system_determinant(q):
    """det [sigma_1, sigma_2; q/(1+q), 1/(1+q)] = (sigma_1 - q sigma_2)/(1 + q) of eqs. (2)-(3); 0 at q = 1.

    1/|det| is the factor by which errors in (S_eff, sigma_eff) grow into the individual spins.
    """
    return (1.0 + 0.75 / q - q * (1.0 + 0.75 * q)) / (1.0 + q)


SPIN_SOLVE_SINGULAR_TOLERANCE = 1e-3


def solve_spins(q, s_eff, sig_eff, singular_tolerance: float = SPIN_SOLVE_SINGULAR_TOLERANCE):
    """Individual spins from (q, S_eff, sigma_eff) by solving eqs. (2) and (3) of Khan, Huerta & Das.

    [sigma_1, sigma_2; q/(1+q), 1/(1+q)] (s1z, s2z) = (S_eff, sigma_eff); the determinant
    (sigma_1 - q sigma_2)/(1 + q) vanishes at q = 1, where both equations constrain only s1z + s2z (the
    components are interchangeable). Where |det| < ``singular_tolerance`` (|q - 1| below ~1.4e-3) the
    symmetric solution s1z = s2z = sigma_eff is returned: the minimum-norm split of the measured
    s1z + s2z = 2 sigma_eff, which a GW researcher reads as "individual spins not identifiable".
    Works on arrays; numpy or torch inputs (torch keeps gradients).
    """
    try:
        import torch

        is_torch = isinstance(q, torch.Tensor)
    except ImportError:  # pragma: no cover
        is_torch = False
    lib = torch if is_torch else np
    if not is_torch:
        q, s_eff, sig_eff = (np.asarray(x, dtype=float) for x in (q, s_eff, sig_eff))
    w1, w2 = 1.0 + 0.75 / q, 1.0 + 0.75 * q
    det = spin_system_determinant(q)
    singular = lib.abs(det) < singular_tolerance
    safe = lib.where(singular, lib.ones_like(det), det)
    s1 = (s_eff / (1.0 + q) - w2 * sig_eff) / safe
    s2 = (w1 * sig_eff - q / (1.0 + q) * s_eff) / safe
    return lib.where(singular, sig_eff, s1), lib.where(singular, sig_eff, s2)
