"""The coordinates samplers move in, for the strain posteriors: chirp mass, mass ratio and a folded phase.

- **Masses**: (M_c, nu = m2/m1) in the m1, m2 columns. The data measure the chirp mass best, so the posterior
  is a narrow, nearly straight ridge there instead of a curved banana in (m1, m2). The density carries the
  Jacobian |d(m1, m2)/d(M_c, nu)| = m1^2 / M_c (``gwpe.physics``).
- **Mass walls** (``mass_bounds`` = (m_min, m_max), ``sampling.mass_coordinates: probit``): at fixed M_c the
  prior's triangle m_min <= m2 <= m1 <= m_max is nu in [nu_min(M_c), 1], nu_min where m1 = m_max or m2 = m_min
  (``physics.ratio_range_at_chirp_mass``). With the bounds given, the nu column holds
  u = Phi^{-1}(s / 2) <= 0, s = (nu - nu_min(M_c)) / (1 - nu_min(M_c)) (a half probit; the M_c column is
  unchanged), so the lower wall goes to -infinity and a posterior piled against it becomes a Gaussian tail in u,
  which the samplers' flows represent; log |d nu / d u| = log(2 (1 - nu_min)) + log phi(u). The equal-mass wall
  stays at u = 0: the likelihood and prior are symmetric under m1 <-> m2, so the density meets it with zero
  slope, which a flow covers as it is, where the full probit (the NPE's map) turns it into a tail flows
  under-cover. Measured on the demo, adaptive IS: injection 0 (q up to 0.998) under the full probit had
  Pareto k 0.75 with one draw at q = 0.991 carrying 1.1 % of the weight (k 0.53, max 0.2 % in (M_c, nu));
  injection 1 (m1 piled against m1 = 80 Msun, 0.1 % quantile 66) in (M_c, nu) left the warm flow-MCMC
  unconverged (R-hat 1.019 after 320 loops) and the IS weights with one draw at 1.6 % in that tail.
- **Phase** (``fold_phase``): a signal carrying only the (2, 2) mode has h ∝ exp(2 i phi0) (checked for
  IMRPhenomPv2 to 1e-14), so L(phi0) = L(phi0 + pi) exactly and the posterior has two identical copies. The
  samplers move in one copy: phi0 folded into a window [c - pi/2, c + pi/2) of length pi, its walls
  where an annealed likelihood pilot finds the least mass (``walled_by_likelihood``), so the bulk is not
  cut by the fold: a flow cannot follow a density that stays high up to a wall. The folded density is
  p(phi0) + p(phi0 + pi) = 2 p(phi0): the log density adds log 2, which
  keeps the evidence Z = ∫ L pi dtheta unchanged. ``to_physical`` unfolds with phi0 + pi drawn with
  probability 1/2, which is exact for the symmetric posterior. Only for the (2, 2)-only strain datasets
  (no spins or inclination changing the mode content: every dataset here).
- **Phase along the time ridge** (``phase_slope`` k, ``time_anchor`` t0): the data fix the signal's phase at the
  frequencies that carry its SNR, not phi0 itself, so phi0 and t_c lie on a ridge phi0 ~ k (t_c - t0) + const with
  k ~ pi f_ref (bilby and DINGO sample the phase at a reference frequency for the same reason). The phase column
  holds phi0 - k (t_c - t0), folded as above; the shear has unit Jacobian. ``walled_by_likelihood`` measures k from
  the pilot (the slope that concentrates 2 (phi0 - k t_c) most). Measured on demo injection 0 against an
  independent importance sampler (multivariate-t proposal, Pareto k 0.42, Kish ESS 12,800): in plain phi0 the
  phase sd is 0.54 rad, 2.7 % of the mass lies within 0.4 rad of the fold, and t_c's left tail lives there;
  adaptive IS (Pareto k 0.78) and the warm flow-MCMC, whose flows under-cover that wall, read t_c's sd 6 % and
  4 % narrow. Sheared (k = 980 rad/s, f_ref ~ 312 Hz) the phase sd is 0.27 rad, the fold holds no mass and the
  phase's correlation with t_c drops from 0.80 to 0.12.
- **Polarisation** (``fold_polarisation``, for a likelihood marginalised over phi0): psi -> psi + pi/2 flips
  the sign of both antenna patterns, which phi0 -> phi0 + pi/2 undoes, so the phase-marginalised posterior has
  two identical copies in psi in [0, pi). The same fold applies with period pi/2: a window of length pi/2 walled
  where the pilot finds the least mass, log 2 added, psi + pi/2 drawn back with probability 1/2.
- **Sky** (``sky``, a ``gwpe.waveforms.sky_frame.SkyFrame``): (ra, dec) -> (kappa, phi) of the detector
  baseline, in the ra and dec columns, and t_c -> the arrival time at the first detector, in the t_c column
  (bilby's ``sky_frame`` and ``time_reference``). A two-detector sky posterior is a ring around the baseline;
  in these coordinates it is a band of nearly fixed kappa, and the arrival time no longer moves along it.
  The isotropic prior is uniform in (kappa, phi): log |d(ra, dec) / d(kappa, phi)| = -log cos(dec); the time
  shift has unit Jacobian. phi lives in a window of length 2 pi walled where the pilot finds the least mass.
  Measured on GW150914 in (ra, dec): adaptive IS and flow-MCMC disagreed on the arc's tail (sky mass at
  dec > -1.1: 22 % against 8 %, JS 0.031 in dec), with the IS weights' heaviest draws all there.
"""

from __future__ import annotations

import math

import numpy as np

from gwpe import physics

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def fold_needed(names: list[str]) -> bool:
    """True when ``names`` include phi0, whose posterior has two exact copies (module doc)."""
    return "phi0" in names


def phase_time_slope(phase: np.ndarray, times: np.ndarray, weights: np.ndarray, max_slope: float = 2000.0) -> float:
    """k maximising |sum w exp(2 i (phi0 - k t))| / sum w over a grid |k| <= ``max_slope`` rad/s (pi x 637 Hz),
    its step a tenth of a radian over the weighted t spread, then 10x finer around the best: the phase - time
    ridge of the module doc. 0 when no slope concentrates the phase more than none does."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    spread = math.sqrt(max(float(weights @ np.square(times - weights @ times)), 1e-30))
    step = min(0.1 / spread, max_slope / 10)
    best, length = 0.0, abs(np.sum(weights * np.exp(2j * phase)))
    centre, width = 0.0, max_slope
    for _ in range(2):  # a coarse grid, then a 10x finer one around its best
        grid = np.arange(centre - width, centre + width + step / 2, step)
        for chunk in np.array_split(grid, max(1, len(grid) // 256)):
            lengths = np.abs(np.exp(2j * (phase[None, :] - chunk[:, None] * times[None, :])) @ weights)
            if lengths.max() > length:
                best, length = float(chunk[int(np.argmax(lengths))]), float(lengths.max())
        centre, width, step = best, step, step / 10
    return best


class SamplerCoordinates:
    """u <-> theta maps and the density over u (module doc); identity for columns it does not touch."""

    def __init__(
        self,
        names: list[str],
        fold_phase: bool = False,
        phase_centre: float | None = None,
        fold_polarisation: bool = False,
        sky=None,
        azimuth_centre: float = math.pi,
        mass_bounds: tuple[float, float] | None = None,
        phase_slope: float = 0.0,
        time_anchor: float = 0.0,
    ):
        self.names = list(names)
        self.sky = sky if sky is not None and {"ra", "dec"} <= set(names) else None
        self.azimuth_centre = float(azimuth_centre)
        self.masses = (names.index("m1"), names.index("m2")) if {"m1", "m2"} <= set(names) else None
        self.mass_bounds = None if mass_bounds is None or self.masses is None else tuple(map(float, mass_bounds))
        if self.mass_bounds is not None and not 0 < self.mass_bounds[0] < self.mass_bounds[1]:
            raise ValueError(f"mass_bounds = {mass_bounds}; allowed: 0 < m_min < m_max")
        # the folded angle: phi0 (period pi), or psi (period pi/2) when phi0 is marginalised (module doc)
        self.phase, self.period, self.range = None, math.pi, 2.0 * math.pi
        if fold_phase and "phi0" in names:
            self.phase = names.index("phi0")
        elif fold_polarisation and "psi" in names and "phi0" not in names:
            self.phase, self.period, self.range = names.index("psi"), math.pi / 2, math.pi
        self.phase_centre = float(self.period / 2 if phase_centre is None else phase_centre)
        # the phase - time shear (module doc): phi0 only (psi's fold does not move with t_c)
        self.time = names.index("tc") if "tc" in names and self.phase is not None and self.period == math.pi else None
        self.phase_slope = float(phase_slope) if self.time is not None else 0.0
        self.time_anchor = float(time_anchor) if self.time is not None else 0.0

    @classmethod
    def centred_on(
        cls,
        names: list[str],
        theta: np.ndarray,
        fold_phase: bool = True,
        mass_bounds: tuple[float, float] | None = None,
    ) -> "SamplerCoordinates":
        """Coordinates whose phase window is centred on the circular mean of 2 phi0 over ``theta`` (n, P)."""
        centre = math.pi / 2
        if fold_phase and "phi0" in names:
            phase = 2.0 * np.asarray(theta)[:, names.index("phi0")]
            centre = 0.5 * math.atan2(np.sin(phase).mean(), np.cos(phase).mean())
        return cls(names, fold_phase, centre, mass_bounds=mass_bounds)

    @classmethod
    def walled_by_likelihood(
        cls,
        names: list[str],
        theta: np.ndarray,
        log_likelihood: np.ndarray,
        ess_fraction: float = 0.1,
        bins: int = 36,
        fold_polarisation: bool = False,
        sky=None,
        mass_bounds: tuple[float, float] | None = None,
    ) -> "SamplerCoordinates":
        """Coordinates whose phase walls sit where a pilot finds the least posterior mass.

        ``theta`` (n, P) are broad draws (prior or NPE) with their log likelihoods. They are weighted by
        L^beta, beta chosen so the weights keep ``ess_fraction`` x n effective samples (an annealed pilot: the
        data's phase structure, flattened enough to be seen with few draws); the weighted histogram of phi0
        mod pi, circularly smoothed, has its minimum where the wall goes. Measured on a strain-5d posterior
        that fills most of the window: walls placed by the circular mean of broad NPE draws (which carry no
        phase information) cut the mode, and an importance-sampling flow fitted there lost 10 % of the
        weight to single draws at the walls. With ``sky``, the azimuth's wall is placed the same way."""
        folded = cls(names, fold_phase=True, fold_polarisation=fold_polarisation, sky=sky, mass_bounds=mass_bounds)
        if folded.phase is None and folded.sky is None:
            return folded
        log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
        finite = np.isfinite(log_likelihood)
        theta, shifted = np.asarray(theta)[finite], log_likelihood[finite] - log_likelihood[finite].max()
        low, high = 0.0, 1.0
        for _ in range(40):  # bisection: ESS falls as beta grows
            beta = 0.5 * (low + high)
            w = np.exp(beta * shifted)
            low, high = (beta, high) if w.sum() ** 2 / (w**2).sum() >= ess_fraction * len(w) else (low, beta)
        weights = np.exp(low * shifted)

        slope, anchor = 0.0, 0.0
        if folded.time is not None:
            times = folded.from_physical(theta)[:, folded.time]  # arrival time at the first detector with a sky
            anchor = float(np.sum(weights * times) / weights.sum())
            slope = phase_time_slope(theta[:, folded.phase], times - anchor, weights)
            folded = cls(
                names,
                True,
                None,
                fold_polarisation,
                sky,
                mass_bounds=mass_bounds,
                phase_slope=slope,
                time_anchor=anchor,
            )

        def wall(angle: np.ndarray, period: float) -> float:
            counts, edges = np.histogram(np.mod(angle, period), bins, (0.0, period), weights=weights)
            smooth = 0.5 * counts + 0.25 * (np.roll(counts, 1) + np.roll(counts, -1))
            k = int(np.argmin(smooth))
            return 0.5 * (edges[k] + edges[k + 1])

        centre = None
        if folded.phase is not None:
            phase = theta[:, folded.phase]
            if folded.time is not None:
                phase = phase - slope * (folded.from_physical(theta)[:, folded.time] - anchor)
            centre = wall(phase, folded.period) + folded.period / 2
        azimuth = math.pi
        if folded.sky is not None:
            phi = folded.sky.to_frame(theta[:, names.index("ra")], theta[:, names.index("dec")])[1]
            azimuth = wall(phi, 2 * math.pi) + math.pi
        return cls(names, True, centre, fold_polarisation, folded.sky, azimuth, mass_bounds, slope, anchor)

    def settings(self) -> dict:
        """What ``SamplerCoordinates(names, fold_phase=True, **settings)`` needs to rebuild these coordinates."""
        return {
            "phase_centre": self.phase_centre,
            "mass_bounds": self.mass_bounds,
            "phase_slope": self.phase_slope,
            "time_anchor": self.time_anchor,
        }

    def _ratio_map(self, chirp: np.ndarray, value: np.ndarray, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
        """nu -> (u, log |du/dnu|) by the half probit (module doc), or u -> (nu, log |dnu/du|) with ``inverse``;
        log det -inf where M_c lies outside the triangle's chirp-mass range or nu / u outside their ranges."""
        from scipy.special import log_ndtr, ndtri

        low, high = self.mass_bounds
        chirp_low, chirp_high = physics.chirp_mass(low, low), physics.chirp_mass(high, high)
        inside = (chirp >= chirp_low) & (chirp <= chirp_high) & np.isfinite(value)
        nu_low = physics.ratio_range_at_chirp_mass(np.clip(chirp, chirp_low, chirp_high), low, high)
        width = np.clip(1.0 - nu_low, 1e-300, None)
        if inverse:
            inside &= value <= 0
            u = np.clip(value, -37.0, 0.0)  # below -37, s / 2 = Phi(u) underflows: the wall itself
            out = nu_low + width * 2.0 * np.exp(log_ndtr(u))
            log_det = math.log(2.0) + np.log(width) - 0.5 * u**2 - HALF_LOG_TWO_PI
        else:
            s = (value - nu_low) / width
            inside &= (s >= -1e-9) & (s <= 1 + 1e-9)  # on a wall (a prior edge) or an ulp past it: kept
            out = ndtri(np.clip(0.5 * s, 1e-300, 0.5))  # the m1 = m_max wall itself at u = -37
            log_det = -math.log(2.0) - np.log(width) + 0.5 * out**2 + HALF_LOG_TWO_PI
        # the way back stays finite (u beyond equal mass lands on it; the density says -inf): weighted sums over
        # draws with zero weight must not meet a NaN. The way in marks masses outside the triangle with NaN
        return (out if inverse else np.where(inside, out, np.nan)), np.where(inside, log_det, -np.inf)

    def fold(self, angle: np.ndarray) -> np.ndarray:
        low = self.phase_centre - self.period / 2
        return low + np.mod(angle - low, self.period)

    def fold_sampler(self, u: np.ndarray) -> np.ndarray:
        """Sampler coordinates with the phase wrapped into the window (for chains run with ``periodic``)."""
        u = np.array(u, dtype=np.float64, copy=True)
        if self.phase is not None:
            u[:, self.phase] = self.fold(u[:, self.phase])
        return u

    def to_physical(self, u: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """theta(u); the folded phase goes to [0, 2 pi) with + pi drawn with probability 1/2 (``rng``, else seed 0)."""
        theta = np.array(u, dtype=np.float64, copy=True)
        if self.sky is not None:
            ra, dec = self.names.index("ra"), self.names.index("dec")
            theta[:, ra], theta[:, dec] = self.sky.from_frame(u[:, dec], u[:, ra])
            if "tc" in self.names:
                theta[:, self.names.index("tc")] -= self.sky.first_delay(theta[:, ra], theta[:, dec])
        if self.masses is not None:
            i, j = self.masses
            nu = u[:, j] if self.mass_bounds is None else self._ratio_map(u[:, i], u[:, j], inverse=True)[0]
            with np.errstate(invalid="ignore", divide="ignore"):
                theta[:, i], theta[:, j] = physics.masses_from_chirp_mass(u[:, i], nu)
        if self.phase is not None:
            if self.time is not None:
                theta[:, self.phase] = u[:, self.phase] + self.phase_slope * (u[:, self.time] - self.time_anchor)
            rng = rng if rng is not None else np.random.default_rng(0)
            flip = rng.integers(0, 2, len(theta)) * self.period
            theta[:, self.phase] = np.mod(theta[:, self.phase] + flip, self.range)
        return theta

    @property
    def reported_names(self) -> list[str]:
        """The names of ``reported``'s columns."""
        return self.names + (["chirp_mass"] if self.masses is not None else [])

    def reported(self, u: np.ndarray) -> np.ndarray:
        """The columns whose spreads are reported and compared, for the samplers' sd-error targets: u with the
        (M_c, nu) columns back to (m1, m2) and the chirp mass appended. The rest stay the sampler's: the folded
        phase (the physical phi0 carries a random + pi, a spread no sampler controls) and the sky frame (ra wraps
        at 2 pi). In u the half probit stretches the mass-ratio tail: on demo injection 0 (flowmc.kernel_weight 0.3) one
        chain held 175 steps at u_nu = -3.1 (q 0.53), which put the nu column's sd error at 4.3 % where m1's and
        m2's were 1.0 and 0.7 %. Checked on the sampler's (M_c, nu), demo injection 1's adaptive IS met 1 % with m1's
        sd error at 1.8 %."""
        u = np.asarray(u, dtype=np.float64)
        if self.masses is None:
            return u.copy()
        i, j = self.masses
        nu = u[:, j] if self.mass_bounds is None else self._ratio_map(u[:, i], u[:, j], inverse=True)[0]
        columns = u.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[:, i], columns[:, j] = physics.masses_from_chirp_mass(u[:, i], nu)
        return np.column_stack([columns, u[:, i]])

    def from_physical(self, theta: np.ndarray) -> np.ndarray:
        u = np.array(theta, dtype=np.float64, copy=True)
        if self.masses is not None:
            i, j = self.masses
            u[:, i], u[:, j] = physics.chirp_mass(theta[:, i], theta[:, j]), theta[:, j] / theta[:, i]
            if self.mass_bounds is not None:  # outside the triangle: NaN, which every density reads as -inf
                u[:, j] = self._ratio_map(u[:, i], u[:, j], inverse=False)[0]
        if self.phase is not None:
            u[:, self.phase] = self.fold(u[:, self.phase])
        if self.sky is not None:
            ra, dec = self.names.index("ra"), self.names.index("dec")
            kappa, phi = self.sky.to_frame(theta[:, ra], theta[:, dec])
            if "tc" in self.names:
                u[:, self.names.index("tc")] += self.sky.first_delay(theta[:, ra], theta[:, dec])
            low = self.azimuth_centre - math.pi
            u[:, ra], u[:, dec] = low + np.mod(phi - low, 2 * math.pi), kappa
        if self.time is not None:  # the shear uses the sampler's time column (the first detector's, with a sky)
            u[:, self.phase] = self.fold(theta[:, self.phase] - self.phase_slope * (u[:, self.time] - self.time_anchor))
        return u

    def log_jacobian(self, u: np.ndarray) -> np.ndarray:
        """log |d theta / d u| (+ log 2 for the folded phase); -inf where nu is not in (0, 1], M_c <= 0
        (with ``mass_bounds``: u_nu > 0 or M_c outside the triangle's chirp-mass range) or phi0 is outside the
        window."""
        out = np.zeros(len(u))
        if self.masses is not None and self.mass_bounds is not None:
            i, j = self.masses
            nu, log_det = self._ratio_map(u[:, i], u[:, j], inverse=True)
            valid = np.isfinite(log_det)
            out = np.where(valid, out + log_det, -np.inf)
            out[valid] += physics.log_jacobian_masses_chirp_mass(u[valid, i], nu[valid])
        elif self.masses is not None:
            i, j = self.masses
            valid = (u[:, j] > 0) & (u[:, j] <= 1) & (u[:, i] > 0)
            out = np.where(valid, out, -np.inf)
            out[valid] += physics.log_jacobian_masses_chirp_mass(u[valid, i], u[valid, j])
        if self.phase is not None:
            offset = u[:, self.phase] - (self.phase_centre - self.period / 2)
            out = np.where((offset >= 0) & (offset < self.period), out + math.log(2.0), -np.inf)
        if self.sky is not None:
            phi, kappa = u[:, self.names.index("ra")], u[:, self.names.index("dec")]
            offset = phi - (self.azimuth_centre - math.pi)
            inside = (np.abs(kappa) < 1) & (offset >= 0) & (offset < 2 * math.pi)
            dec = self.sky.from_frame(np.where(inside, kappa, 0.0), phi)[1]
            out = np.where(inside, out - np.log(np.clip(np.cos(dec), 1e-300, None)), -np.inf)
        return out

    def log_density(self, log_posterior, periodic: bool = False):
        """log p(u) = log p(theta(u)) + log |d theta / d u|, evaluated only where the Jacobian is finite.

        ``periodic``: the folded phase is wrapped into the window first, so the density has period pi in it
        and no walls (for ensemble samplers, whose walkers then cross the fold; ``to_physical`` maps any
        value). Not a normalised density on the real line: for MCMC only, not for flows or evidence."""

        def density(u: np.ndarray) -> np.ndarray:
            u = np.atleast_2d(np.asarray(u, dtype=np.float64))
            if periodic:
                u = self.fold_sampler(u)
            out = self.log_jacobian(u)
            valid = np.isfinite(out)
            if valid.any():
                theta = self.to_physical(u[valid])  # phase flip irrelevant: L(phi0) = L(phi0 + pi)
                out[valid] += log_posterior(theta)
            return out

        return density
