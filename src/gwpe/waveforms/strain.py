"""Whitened detector strain from IMRPhenomPv2 (Green et al. 2020, sec. III.A; two-detector extension).

For each parameter vector: the frequency-domain polarisations h+~, hx~ (lalsimulation, merger at t = 0)
are generated on a *long* segment, projected on each detector (antenna patterns F+, Fx and the arrival
delay from Earth's centre, from lal, at ``reference_gps``), shifted so the merger lands at t_c (+ delay)
inside the requested window, whitened with the PSD, and cropped to [0, duration). The PSD is the design
curve ``psd_name`` for every detector, or a measured one per detector (``psd_table``: the event profile's
off-source Welch estimate, log-linearly interpolated onto the segment's frequencies; zero weight beyond it).
The long segment starts ``pad`` seconds before the window, with pad = 1.5 x the Newtonian chirp time of the
lightest binary in the prior from f_min plus 0.5 s for the whitening filter, so no inspiral wraps around into the
window. Without detectors the output is the "+" polarisation alone (Green et al.).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from gwpe import physics
from gwpe.config import StrainConfig, StrainDatasetConfig
from gwpe.errors import WaveformError
from gwpe.waveforms.priors import FIXED
from gwpe.waveforms.whitening import optimal_snr, psd, whiten_frequency_series

FILTER_MARGIN = 0.5  # s of whitening-filter settling on each side of the window


def next_power_of_two(n: int) -> int:
    """Smallest power of two >= n (1 for n <= 1)."""
    return 1 << int(np.ceil(np.log2(max(n, 1))))


@dataclass(frozen=True)
class StrainSetup:
    """Sampling, PSD, detectors and long-segment layout of one strain dataset; ``build`` derives pad and n_long."""

    sample_rate: float
    duration: float
    f_min: float
    f_ref: float
    psd_name: str
    detectors: tuple[str, ...]
    reference_gps: float
    pad: float
    n_long: int
    approximant: str = "IMRPhenomPv2"
    psd_table: dict | None = field(default=None, compare=False, repr=False)  # {"frequencies": [...], det: [...]}
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, strain: StrainConfig, dataset: StrainDatasetConfig, psd_table: dict | None = None) -> "StrainSetup":
        """The setup of ``dataset``; ``psd_table`` (or the files in ``strain.psd_dir``) replace the design PSD."""
        if psd_table is None and strain.psd_dir is not None:
            psd_table = read_psd_table(strain.psd_dir, list(dataset.detectors))
        rate = dataset.sample_rate
        longest = float(physics.chirp_time_seconds(dataset.prior.mass_min, dataset.prior.mass_min, strain.f_min))
        pad = np.ceil((1.5 * longest + FILTER_MARGIN) * rate) / rate
        n_long = next_power_of_two(int(np.ceil((pad + dataset.duration + FILTER_MARGIN) * rate)))
        return cls(
            rate,
            dataset.duration,
            strain.f_min,
            strain.f_ref,
            strain.psd,
            tuple(dataset.detectors),
            strain.reference_gps,
            float(pad),
            n_long,
            strain.approximant,
            psd_table,
        )

    def with_segment(self, seconds: float | None) -> "StrainSetup":
        """This setup on a long segment of ``seconds`` (rounded up to a power of two of samples; None or no longer
        than today's: unchanged), the window centred in the extra length. The hard f_min cut of the whitening
        filter rings for seconds and wraps around a cyclic segment; a longer one moves the wrap away from the
        window (issue 26: log Z moves by 0.07-0.2 from 4 to 8 s on the demo)."""
        if seconds is None:
            return self
        n_long = next_power_of_two(int(np.ceil(seconds * self.sample_rate)))
        if n_long <= self.n_long:
            return self
        pad = self.pad + ((n_long - self.n_long) // 2) / self.sample_rate
        return dataclasses.replace(self, pad=float(pad), n_long=n_long, _cache={})

    @property
    def segment(self) -> float:
        """Seconds of the long segment templates are generated and whitened on."""
        return self.n_long / self.sample_rate

    @property
    def dt(self) -> float:
        return 1.0 / self.sample_rate

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_channels(self) -> int:
        return max(1, len(self.detectors))

    @property
    def df(self) -> float:
        return self.sample_rate / self.n_long

    @cached_property
    def frequencies(self) -> np.ndarray:
        return np.fft.rfftfreq(self.n_long, self.dt)

    @cached_property
    def psd_values(self) -> np.ndarray:
        """(F,) design PSD, or (D, F) measured per detector, on ``frequencies`` (inf where it has no weight)."""
        return psd_on(self.frequencies, self.f_min, self.psd_name, self.psd_table, self.detectors)

    def channel_psd(self, channel: int) -> np.ndarray:
        """The (F,) PSD of one output channel."""
        values = self.psd_values
        return values if values.ndim == 1 else values[channel]


def read_psd_table(folder: str, detectors: list[str]) -> dict:
    """``{"frequencies": [...], det: [...]}`` from ``{det}-psd.dat`` files (``gwpe event prepare`` writes them)."""
    from gwpe.waveforms.conditioning import read_psd_files

    frequencies, values = read_psd_files(folder, detectors)
    return {
        "frequencies": np.asarray(frequencies).tolist(),
        **{d: np.asarray(v).tolist() for d, v in zip(detectors, values)},
    }


def psd_on(frequencies: np.ndarray, f_min: float, name: str, table: dict | None, detectors) -> np.ndarray:
    """The PSD a dataset (or a package's data spec) whitens with, on ``frequencies``: the design curve ``name``
    (F,) or the measured ``table`` per detector (D, F), zero weight (inf) below f_min and beyond the table."""
    if table is None:
        return psd(name, frequencies, f_min)
    from gwpe.waveforms.conditioning import interpolate_psd

    rows = np.stack([np.asarray(table[d], dtype=float) for d in detectors])
    return interpolate_psd(np.asarray(table["frequencies"], dtype=float), rows, frequencies, f_min)


def antenna_response(detector: str, ra: float, dec: float, psi: float, gps: float) -> tuple[float, float, float]:
    """(F+, Fx, delay from Earth's centre [s]) of ``detector`` for a source at (ra, dec) with polarisation psi."""
    import lal

    site = lal.cached_detector_by_prefix[detector]
    time = lal.LIGOTimeGPS(gps)
    f_plus, f_cross = lal.ComputeDetAMResponse(site.response, ra, dec, psi, lal.GreenwichMeanSiderealTime(time))
    return float(f_plus), float(f_cross), float(lal.TimeDelayFromEarthCenter(site.location, ra, dec, time))


class StrainGenerator:
    """Whitened strain for parameter vectors; picklable (ships to Dask workers)."""

    def __init__(self, setup: StrainSetup):
        self.setup = setup

    def polarisations(self, theta: dict) -> tuple[np.ndarray, np.ndarray]:
        """h+~, hx~ on the long segment's rfft grid (merger at t = 0), continuous-FT normalisation."""
        import lal
        import lalsimulation as lalsim

        s = self.setup
        hp, hc = lalsim.SimInspiralChooseFDWaveform(
            theta["m1"] * lal.MSUN_SI,
            theta["m2"] * lal.MSUN_SI,
            0.0,
            0.0,
            theta["chi1z"],
            0.0,
            0.0,
            theta["chi2z"],
            theta["dL"] * 1e6 * lal.PC_SI,
            theta["theta_jn"],
            theta["phi0"],
            0.0,
            0.0,
            0.0,
            s.df,
            s.f_min,
            s.sample_rate / 2.0,
            s.f_ref,
            None,
            getattr(lalsim, s.approximant),
        )
        n = len(s.frequencies)
        plus, cross = np.zeros(n, complex), np.zeros(n, complex)
        k = min(n, hp.data.length)
        plus[:k], cross[:k] = hp.data.data[:k], hc.data.data[:k]
        return plus, cross

    def detector_frequency_series(self, theta: dict) -> np.ndarray:
        """(D, F) projected signals, merger moved to pad + t_c (+ detector delay) on the long segment."""
        s = self.setup
        plus, cross = self.polarisations(theta)
        channels = []
        for detector in s.detectors or (None,):
            if detector is None:
                f_plus, f_cross, delay = 1.0, 0.0, 0.0
            else:
                f_plus, f_cross, delay = antenna_response(
                    detector, theta["ra"], theta["dec"], theta["psi"], s.reference_gps
                )
            shift = np.exp(-2j * np.pi * s.frequencies * (s.pad + theta["tc"] + delay))
            channels.append((f_plus * plus + f_cross * cross) * shift)
        return np.stack(channels)

    def long_segment(self, theta: dict) -> np.ndarray:
        s = self.setup
        return whiten_frequency_series(self.detector_frequency_series(theta), s.psd_values, s.dt, s.n_long)

    def whitened(self, theta: dict) -> tuple[np.ndarray, float]:
        """((D, L) whitened strain in the window, network optimal SNR)."""
        s = self.setup
        series = self.detector_frequency_series(theta)
        start = int(round(s.pad * s.sample_rate))
        x = whiten_frequency_series(series, s.psd_values, s.dt, s.n_long)[:, start : start + s.n_samples]
        snr = float(np.sqrt(sum(optimal_snr(channel, s.channel_psd(k), s.df) ** 2 for k, channel in enumerate(series))))
        if not np.all(np.isfinite(x)):
            raise WaveformError(f"{s.approximant} produced NaN/inf for {format_theta(theta)}")
        return x, snr

    def templates(self, params: np.ndarray, names: list[str]) -> np.ndarray:
        """(n, P) parameters -> float64 (n, D, L) whitened noise-free signals in the window (no SNR, no checks).

        The likelihood's template path: one waveform call per row, then whitening and cropping batched."""
        s = self.setup
        series = np.stack([self.detector_frequency_series(as_theta(names, row)) for row in np.atleast_2d(params)])
        start = int(round(s.pad * s.sample_rate))
        return whiten_frequency_series(series, s.psd_values, s.dt, s.n_long)[..., start : start + s.n_samples]

    def quadrature_templates(self, params: np.ndarray, names: list[str]) -> np.ndarray:
        """(n, P) parameters (phi0 ignored) -> float64 (n, 2, D, L): the whitened templates at phi0 = 0 and pi/4.

        A (2, 2)-only signal has h~(phi0) = h~(0) exp(2 i phi0) (checked for IMRPhenomPv2 with aligned spins and
        any inclination to 3e-15), so h(phi0) = cos(2 phi0) h(0) + sin(2 phi0) h(pi/4) in the time domain too:
        one waveform call gives the template at every phase (``PhaseMarginalisedLikelihood``)."""
        s = self.setup
        rows = []
        for row in np.atleast_2d(params):
            theta = {**as_theta(names, row), "phi0": 0.0}
            series = self.detector_frequency_series(theta)
            rows.append(np.stack([series, 1j * series]))
        start = int(round(s.pad * s.sample_rate))
        return whiten_frequency_series(np.stack(rows), s.psd_values, s.dt, s.n_long)[..., start : start + s.n_samples]

    def batch(self, params: np.ndarray, names: list[str], dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """(n, P) parameters -> ((n, D, L) whitened strain, float64 (n,) network optimal SNR)."""
        s = self.setup
        out = np.empty((len(params), s.n_channels, s.n_samples), dtype=dtype)
        snr = np.empty(len(params))
        for i, row in enumerate(params):
            out[i], snr[i] = self.whitened(as_theta(names, row))
        return out, snr


def as_theta(names: list[str], row: np.ndarray) -> dict:
    """Parameter dict of one row: ``FIXED`` with the ``names`` columns replaced by ``row``."""
    return {**FIXED, **{name: float(value) for name, value in zip(names, row)}}


def format_theta(theta: dict) -> str:
    """``(name=value, ...)`` to 6 significant digits, for error messages."""
    return "(" + ", ".join(f"{k}={v:.6g}" for k, v in theta.items()) + ")"
