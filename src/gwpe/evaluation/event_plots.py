"""Figures of a real event's data: the noise ASD per detector, the whitened strain (with a template), and a
constant-Q time-frequency image that shows the chirp. Each function returns a matplotlib Figure (Agg)."""

from __future__ import annotations

import numpy as np

from gwpe.errors import InputError

Q = 8.0  # constant-Q image: cycles per tile at each frequency (gwpy's omega scans use Q ~ 4-64; 8 suits BBH chirps)
ENERGY_MAX = 25.0  # colour scale top of the normalised energy (the usual omega-scan range 0-25)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def asd_figure(
    frequencies: np.ndarray,
    psd: np.ndarray,
    detectors: list[str],
    design: np.ndarray | None = None,
    design_label: str = "aLIGO design (aLIGOZeroDetHighPower)",
    f_range: tuple[float, float] = (10, 512),
):
    """Log-log amplitude spectral density sqrt(S_n(f)) of each detector (D, F) over ``f_range``, with the
    ``design`` PSD (F,) dashed when given."""
    plt = _pyplot()
    rows = np.atleast_2d(np.asarray(psd, dtype=float))
    frequencies = np.asarray(frequencies, dtype=float)
    band = (frequencies >= f_range[0]) & (frequencies <= f_range[1])
    fig, axis = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for detector, row in zip(detectors, rows):
        axis.loglog(frequencies[band], np.sqrt(row[band]), lw=0.8, label=detector)
    if design is not None:
        shown = band & np.isfinite(design)
        axis.loglog(frequencies[shown], np.sqrt(np.asarray(design)[shown]), "k--", lw=1.2, label=design_label)
    axis.set_xlim(*f_range)
    axis.set_xlabel("frequency [Hz]")
    axis.set_ylabel("ASD [strain/√Hz]")
    axis.set_title("Noise amplitude spectral density")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    return fig


def whitened_figure(
    times: np.ndarray,
    whitened: np.ndarray,
    detectors: list[str],
    span: tuple[float, float] = (-0.3, 0.1),
    templates: np.ndarray | None = None,
    template_label: str = "maximum-likelihood waveform",
    bandpass: tuple[float, float] | None = None,
    title: str | None = None,
    *,
    rate: float | None = None,
):
    """One panel per detector: whitened strain (D, L) against ``times`` [s from the event] within ``span``, with
    ``templates`` (D, L), whitened the same way, overlaid. ``bandpass`` = (f_lo, f_hi) filters data and templates
    alike with a zero-phase 4th-order Butterworth (``sosfiltfilt`` at ``rate``) for display only."""
    plt = _pyplot()
    data = np.atleast_2d(np.asarray(whitened, dtype=float))
    models = None if templates is None else np.atleast_2d(np.asarray(templates, dtype=float))
    if bandpass is not None:
        if rate is None:
            raise InputError(f"bandpass={bandpass} without rate; allowed: pass rate= (the sample rate in Hz)")
        from scipy.signal import butter, sosfiltfilt

        sos = butter(4, bandpass, btype="bandpass", fs=rate, output="sos")
        data = sosfiltfilt(sos, data, axis=-1)  # the whole series, so the filter's edge transients stay out of span
        models = None if models is None else sosfiltfilt(sos, models, axis=-1)
    times = np.asarray(times, dtype=float)
    shown = (times >= span[0]) & (times <= span[1])
    fig, axes = plt.subplots(len(data), 1, figsize=(9, 2.4 * len(data) + 0.6), sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    for d, (axis, detector) in enumerate(zip(axes, detectors)):
        axis.plot(times[shown], data[d, shown], color="0.45", lw=0.7, label=f"{detector} data")
        if models is not None:
            axis.plot(times[shown], models[d, shown], color="C3", lw=1.3, label=template_label)
        axis.set_ylabel(f"{detector} whitened [σ]")
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlim(*span)
    axes[-1].set_xlabel("time from the event [s]")
    band = f", {bandpass[0]:g}-{bandpass[1]:g} Hz band-pass for display" if bandpass is not None else ""
    fig.suptitle(title or f"Whitened strain{band}")
    return fig


def constant_q_energy(whitened: np.ndarray, rate: float, frequencies: np.ndarray, q: float = Q) -> np.ndarray:
    """(F, L) normalised energy of a whitened series (L,): for each frequency f0 the band around f0 is cut with a
    bi-square window (1 - (f - f0)^2 / w^2)^2 of half-width w = f0 sqrt(11) / q (so the time resolution scales as
    q / f0, a Q-transform as in gwpy's omega scans), |inverse FFT|^2 of the positive-frequency band gives the
    energy at each sample, divided by its median over time (Gaussian noise: median 1)."""
    n = len(whitened)
    spectrum = np.fft.fft(whitened)
    bins = np.fft.fftfreq(n, 1.0 / rate)
    energy = np.empty((len(frequencies), n))
    for i, f0 in enumerate(frequencies):
        width = f0 * np.sqrt(11.0) / q
        window = np.clip(1.0 - ((bins - f0) / width) ** 2, 0.0, None) ** 2 * (bins > 0)
        energy[i] = np.abs(np.fft.ifft(spectrum * window)) ** 2
    return energy / np.median(energy, axis=-1, keepdims=True)


def time_frequency_figure(
    whitened: np.ndarray,
    rate: float,
    detectors: list[str],
    t0: float,
    span: tuple[float, float] = (-1.0, 0.5),
    f_range: tuple[float, float] = (20, 500),
):
    """Per detector, the constant-Q normalised energy (``constant_q_energy``) of the whitened data (D, L) around the
    event at ``t0`` s from the first sample, over ``span`` s and ``f_range`` Hz (capped at 0.9 Nyquist) on a log
    frequency axis: a compact binary shows as a chirp rising to the merger. Energy is computed on ``span`` padded
    by 1 s, so the edges of the band filters stay out of view."""
    plt = _pyplot()
    data = np.atleast_2d(np.asarray(whitened, dtype=float))
    f_top = min(f_range[1], 0.9 * rate / 2)
    if not 0 < f_range[0] < f_top:
        raise InputError(f"f_range {f_range} Hz; allowed: 0 < f_lo < f_hi <= 0.9 Nyquist ({0.45 * rate:g} Hz)")
    first = max(0, int(np.floor((t0 + span[0] - 1.0) * rate)))
    stop = min(data.shape[-1], int(np.ceil((t0 + span[1] + 1.0) * rate)))
    if stop - first < 2:
        raise InputError(f"t0 = {t0} s; allowed: inside the {data.shape[-1] / rate:g} s of data")
    frequencies = np.geomspace(f_range[0], f_top, 160)
    times = (first + np.arange(stop - first)) / rate - t0
    shown = (times >= span[0]) & (times <= span[1])
    step = max(1, int(shown.sum() // 1200))  # at most ~1200 image columns
    columns = np.flatnonzero(shown)[::step]
    fig, axes = plt.subplots(len(data), 1, figsize=(9, 2.8 * len(data) + 0.6), sharex=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    for axis, detector, row in zip(axes, detectors, data):
        energy = constant_q_energy(row[first:stop], rate, frequencies)
        image = axis.pcolormesh(
            times[columns], frequencies, energy[:, columns], shading="nearest", vmin=0, vmax=ENERGY_MAX, cmap="viridis"
        )
        axis.set_yscale("log")
        axis.set_ylim(f_range[0], f_top)
        axis.set_ylabel(f"{detector} frequency [Hz]")
    axes[-1].set_xlim(*span)
    axes[-1].set_xlabel("time from the event [s]")
    fig.colorbar(image, ax=list(axes), label="normalised energy")
    fig.suptitle(f"Constant-Q (Q = {Q:g}) energy of the whitened strain")
    return fig
