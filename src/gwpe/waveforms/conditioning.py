"""Conditioning of detector strain as a PE run does it: resampling, off-source Welch PSDs, PSD tables, whitening.

Conventions (``gwpe.waveforms.whitening``): S_n is the one-sided PSD [1/Hz], so white noise of variance sigma^2
at rate fs has S_n = 2 sigma^2 / fs (``scipy.signal.welch`` with ``scaling="density"``); whitening is
x = irfft(dt rfft(w d) / sqrt(S_n)) sqrt(2 / dt) with w a Tukey window, which turns stationary noise of PSD S_n
into N(0, 1) samples. S_n = inf marks a frequency bin with zero weight.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from gwpe.errors import InputError

MAX_RESAMPLING_FACTOR = 1000  # up and down of resample_poly; beyond this the polyphase filter is impractically long
AVERAGES = ("median", "mean")
PSD_FILE = "{detector}-psd.dat"


def resample(data: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    """(..., L) at ``rate_in`` -> (..., L * rate_out / rate_in) at ``rate_out`` along the last axis, by polyphase
    filtering (``scipy.signal.resample_poly``: its Kaiser low-pass removes what would alias above the new Nyquist)."""
    from scipy.signal import resample_poly

    if not (rate_in > 0 and rate_out > 0 and np.isfinite(rate_in) and np.isfinite(rate_out)):
        raise InputError(f"sample rates {rate_in!r} -> {rate_out!r} Hz; allowed: positive, finite rates")
    ratio = Fraction(rate_out / rate_in).limit_denominator(MAX_RESAMPLING_FACTOR)
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLING_FACTOR or abs(
        float(ratio) - rate_out / rate_in
    ) > 1e-9 * (rate_out / rate_in):
        raise InputError(
            f"resampling {rate_in:g} -> {rate_out:g} Hz; allowed: rates whose ratio is p/q with p, q <= "
            f"{MAX_RESAMPLING_FACTOR} (e.g. 4096 -> 1024 or 2048 Hz)"
        )
    data = np.asarray(data, dtype=float)
    if ratio == 1:
        return data.copy()
    return resample_poly(data, ratio.numerator, ratio.denominator, axis=-1)


def median_bias(n: int) -> float:
    """E[median] / E[mean] of n exponential periodogram values (Allen et al. 2012, FINDCHIRP, app. B), as in
    ``scipy.signal.welch``: 1 + sum_{i=1}^{(n-1)//2} (1 / (2i + 1) - 1 / (2i)); -> ln 2 for large n."""
    even = 2 * np.arange(1.0, (n - 1) // 2 + 1)
    return float(1 + np.sum(1.0 / (even + 1) - 1.0 / even))


def welch_psd(
    data: np.ndarray,
    rate: float,
    segment: float,
    overlap: float = 0.5,
    window: str = "hann",
    average: str = "median",
    pieces: list[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies (F,), one-sided PSD (D, F)) of (D, L) or (L,) strain by Welch's method: ``segment`` s windowed
    segments overlapping by the fraction ``overlap``, taken inside each (first, stop) sample range of ``pieces``
    only (default: the whole series), so no segment straddles a gap; pieces shorter than a segment are skipped.
    The periodograms of all pieces are averaged together, the median divided by its bias as scipy's welch does."""
    from scipy.signal import spectrogram

    data = np.atleast_2d(np.asarray(data, dtype=float))
    length = data.shape[-1]
    if average not in AVERAGES:
        raise InputError(f"PSD average {average!r}; allowed: {', '.join(AVERAGES)}")
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"PSD segment overlap {overlap!r}; allowed: a fraction in [0, 1)")
    nperseg = int(round(segment * rate))
    if nperseg < 2:
        raise InputError(f"PSD segment {segment!r} s; allowed: at least 2 samples at {rate:g} Hz")
    noverlap = int(round(overlap * nperseg))
    pieces = [(0, length)] if pieces is None else [(max(0, int(a)), min(length, int(b))) for a, b in pieces]
    used = [(a, b) for a, b in pieces if b - a >= nperseg]
    if not used:
        longest = max((b - a for a, b in pieces), default=0) / rate
        raise InputError(
            f"PSD segment {segment:g} s; allowed: at most the longest stretch of (off-source) data, {longest:g} s "
            "(shorten the segment or load a longer stretch of strain)"
        )
    periodograms = []
    for first, stop in used:
        frequencies, _, power = spectrogram(
            data[:, first:stop],
            fs=rate,
            window=window,
            nperseg=nperseg,
            noverlap=noverlap,
            detrend="constant",
            scaling="density",
            mode="psd",
            axis=-1,
        )
        periodograms.append(power)  # (D, F, segments)
    power = np.concatenate(periodograms, axis=-1)
    if average == "median":
        return frequencies, np.median(power, axis=-1) / median_bias(power.shape[-1])
    return frequencies, power.mean(axis=-1)


def off_source_pieces(
    n_samples: int, rate: float, exclude: list[tuple[float, float]], margin: float = 0.0
) -> list[tuple[int, int]]:
    """(first, stop) sample ranges of [0, n_samples) outside every excluded (start, stop) interval [s from the
    first sample], each widened by ``margin`` s on both sides (rounded outwards to whole samples); empty ranges
    dropped."""
    cuts = sorted(
        (max(0, int(np.floor((a - margin) * rate))), min(n_samples, int(np.ceil((b + margin) * rate))))
        for a, b in exclude
    )
    pieces, first = [], 0
    for lo, hi in cuts:
        if lo > first:
            pieces.append((first, lo))
        first = max(first, hi)
    if first < n_samples:
        pieces.append((first, n_samples))
    return pieces


def interpolate_psd(
    frequencies: np.ndarray, psd: np.ndarray, target: np.ndarray, f_min: float, f_max: float | None = None
) -> np.ndarray:
    """A (D, F) or (F,) PSD table on ``target`` frequencies: linear interpolation of log S_n (PSDs span decades),
    +inf (zero weight) at f = 0, below ``f_min``, outside the table and above ``f_max`` when given; zero or
    infinite table values count as unknown (inf next to them)."""
    frequencies = np.asarray(frequencies, dtype=float)
    table = np.asarray(psd, dtype=float)
    target = np.asarray(target, dtype=float)
    if table.shape[-1] != len(frequencies) or not np.all(np.diff(frequencies) > 0):
        raise InputError(
            f"PSD table of shape {table.shape} on {len(frequencies)} frequencies; allowed: one value per frequency, "
            "frequencies strictly increasing"
        )
    rows = np.atleast_2d(table)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(rows > 0, rows, np.inf))
        values = np.exp(np.stack([np.interp(target, frequencies, row) for row in logs]))
    outside = (target <= 0) | (target < f_min) | (target < frequencies[0]) | (target > frequencies[-1])
    if f_max is not None:
        outside |= target > f_max
    values[:, outside] = np.inf
    values[np.isnan(values)] = np.inf  # interpolated between a known and an infinite value
    return values if table.ndim == 2 else values[0]


def whiten(data: np.ndarray, rate: float, psd_values: np.ndarray, taper: float = 0.1) -> np.ndarray:
    """Raw strain (D, L) -> whitened: a Tukey window with ``taper`` s cosine ends (the FFT sees no jump at the
    edges), then x = irfft(dt rfft(d) / sqrt(S_n)) sqrt(2 / dt) with ``psd_values`` (D, F) or (F,) on
    ``np.fft.rfftfreq(L, 1 / rate)``."""
    from scipy.signal.windows import tukey

    from gwpe.waveforms.whitening import whiten_frequency_series

    data = np.asarray(data, dtype=float)
    n = data.shape[-1]
    psd_values = np.asarray(psd_values, dtype=float)
    if psd_values.shape[-1] != n // 2 + 1:
        raise InputError(
            f"PSD of {psd_values.shape[-1]} frequencies for {n} samples; allowed: {n // 2 + 1} values on "
            f"np.fft.rfftfreq({n}, 1/{rate:g}) (use interpolate_psd)"
        )
    dt = 1.0 / rate
    window = tukey(n, alpha=min(1.0, 2 * taper / (n * dt)))
    return whiten_frequency_series(dt * np.fft.rfft(data * window, axis=-1), psd_values, dt, n)


def write_psd_files(folder: str | Path, frequencies: np.ndarray, psd: np.ndarray, detectors: list[str]) -> list[Path]:
    """``{det}-psd.dat`` per detector in ``folder``: two columns, frequency [Hz] and one-sided PSD [1/Hz], the
    ASCII format bilby (``PowerSpectralDensity(psd_file=...)``, a ``psd_dict`` entry) and LALInference read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = np.atleast_2d(np.asarray(psd, dtype=float))
    if len(rows) != len(detectors):
        raise InputError(f"{len(rows)} PSD rows for detectors {detectors}; allowed: one row per detector")
    paths = []
    for detector, row in zip(detectors, rows):
        path = folder / PSD_FILE.format(detector=detector)
        header = (
            f"{detector} one-sided noise PSD (gwpe): frequency [Hz], PSD [1/Hz]; "
            "the two-column format bilby and LALInference take as a PSD file"
        )
        np.savetxt(path, np.column_stack([frequencies, row]), fmt="%.17g", header=header)
        paths.append(path)
    return paths


def read_psd_files(paths: str | Path | list, detectors: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies (F,), PSD (D, F)) from two-column PSD files: a folder holding ``{det}-psd.dat`` or one path per
    detector; every file must list the same frequencies."""
    if isinstance(paths, (str, Path)):
        paths = [Path(paths) / PSD_FILE.format(detector=d) for d in detectors]
    paths = [Path(p) for p in paths]
    if len(paths) != len(detectors):
        raise InputError(f"{len(paths)} PSD files for detectors {detectors}; allowed: one file per detector")
    frequencies, rows = None, []
    for path in paths:
        try:
            table = np.loadtxt(path, ndmin=2)
        except (OSError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(
                f"PSD file {path}: {reason}; allowed: two columns, frequency [Hz] and PSD [1/Hz] (gwpe event prepare)"
            ) from error
        if table.shape[1] != 2:
            raise InputError(f"PSD file {path} has {table.shape[1]} columns; allowed: 2 (frequency [Hz], PSD [1/Hz])")
        if frequencies is None:
            frequencies = table[:, 0]
        elif len(table) != len(frequencies) or not np.allclose(table[:, 0], frequencies, rtol=1e-12, atol=0):
            raise InputError(
                f"PSD file {path}: its frequencies differ from {paths[0]}'s; allowed: the same frequency column in "
                "every detector's file"
            )
        rows.append(table[:, 1])
    return frequencies, np.stack(rows)
