"""Conditioning of real-event strain (gwpe.waveforms.conditioning), its loading (gwpe.data.gwosc) and its figures
(gwpe.evaluation.event_plots), on synthetic coloured noise and on the shipped GW150914 GWOSC files."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.signal
from scipy.stats import binom

from gwpe.data.gwosc import EventStrain, find_local, load_event_strain, read_gwosc_file
from gwpe.errors import InputError
from gwpe.evaluation.event_plots import asd_figure, time_frequency_figure, whitened_figure
from gwpe.waveforms.conditioning import (
    interpolate_psd,
    median_bias,
    off_source_pieces,
    read_psd_files,
    resample,
    welch_psd,
    whiten,
    write_psd_files,
)

GWOSC_DIR = Path(__file__).parents[1] / "data" / "gwosc"
GPS = 1126259462.4  # GW150914
FILE_START = 1126259446
OFFLINE = "http://127.0.0.1:9"  # the discard port: connection refused at once
RATE = 1024.0
SECONDS = 64


def true_psd(f: np.ndarray) -> np.ndarray:
    """A smooth one-sided PSD [1/Hz] shaped like a detector's: a steep low-frequency wall, a floor, a rise."""
    return 1e-46 * (1.0 + (40.0 / (f + 1.0)) ** 4 + (f / 150.0) ** 2)


def coloured_noise(seed: int, n: int = int(SECONDS * RATE), rate: float = RATE) -> np.ndarray:
    """(n,) Gaussian noise of one-sided PSD true_psd: unit-variance white noise has PSD 2 / rate, so its rfft
    scaled by sqrt(S(f) rate / 2) has PSD S(f) (circular, hence exactly stationary)."""
    white = np.random.default_rng(seed).normal(size=n)
    scale = np.sqrt(true_psd(np.fft.rfftfreq(n, 1.0 / rate)) * rate / 2.0)
    return np.fft.irfft(np.fft.rfft(white) * scale, n)


def write_losc(path: Path, data: np.ndarray, rate: float, start: float, detector: str) -> Path:
    """A file in GWOSC's LOSC HDF5 layout."""
    with h5py.File(path, "w") as handle:
        handle.create_dataset("strain/Strain", data=data).attrs["Xspacing"] = 1.0 / rate
        handle["meta/GPSstart"] = start
        handle["meta/Detector"] = detector.encode()
    return path


# -- PSD estimation ----------------------------------------------------------------------------------------------


def test_welch_psd_recovers_a_known_coloured_noise_psd():
    """64 s at 1024 Hz, 4 s Hann segments overlapping by 50 %: N = (64 - 4) / 2 + 1 = 31 periodograms. Each is
    S(f) E with E ~ Exp(1) (Hann segments at 50 % overlap are nearly independent), so the median is the 16th of 31
    order statistics: P(median <= x) = P(Binomial(31, 1 - e^-x) >= 16), whose median is ln 2. The estimate divides
    by bias(31) = 0.701, so the ratio estimate / S over bins has median ln 2 / bias(31) = 0.978 (the estimator's
    distribution is right-skewed; its mean is 1), checked within 3 %, and 99 % of bins lie inside the estimator's
    0.5 %-99.5 % quantiles [0.47, 1.78] (derived below from N): we require 95 % of the 20-400 Hz bins there."""
    noise = coloured_noise(0)
    frequencies, estimate = welch_psd(noise, RATE, 4.0)
    assert estimate.shape == (1, int(4 * RATE) // 2 + 1)
    band = (frequencies >= 20) & (frequencies <= 400)
    ratio = estimate[0, band] / true_psd(frequencies[band])

    n = int((SECONDS - 4) / 2) + 1
    bias = median_bias(n)
    assert abs(np.median(ratio) / (np.log(2) / bias) - 1) < 0.03
    assert abs(np.mean(ratio) - 1) < 0.03

    def quantile(p):  # of median(E_1..E_n) / bias, E_i ~ Exp(1)
        x = np.linspace(0.01, 5, 20000)
        cdf = binom.sf(n // 2, n, 1 - np.exp(-x))
        return np.interp(p, cdf, x) / bias

    low, high = quantile(0.005), quantile(0.995)
    assert 0.46 < low < 0.48 and 1.77 < high < 1.8
    assert np.mean((ratio >= low) & (ratio <= high)) >= 0.95


def test_welch_psd_equals_scipy_welch_on_one_piece():
    data = np.stack([coloured_noise(1, 20000), coloured_noise(2, 20000)])
    for average in ("median", "mean"):
        frequencies, ours = welch_psd(data, RATE, 2.0, overlap=0.5, average=average)
        reference_f, reference = scipy.signal.welch(
            data, fs=RATE, window="hann", nperseg=2048, noverlap=1024, average=average, axis=-1
        )
        np.testing.assert_array_equal(frequencies, reference_f)
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=0)


def test_welch_psd_pieces_leave_out_the_excluded_interval():
    """A glitch 10^6 times the noise inside the excluded interval changes nothing: no segment reaches into it."""
    clean = coloured_noise(3)
    glitch = clean.copy()
    centre = int(30 * RATE)
    glitch[centre - 50 : centre + 50] += 1e6 * clean.std() * np.hanning(100)
    pieces = off_source_pieces(len(clean), RATE, [(29.5, 30.5)], margin=1.0)
    assert pieces == [(0, int(28.5 * RATE)), (int(31.5 * RATE), len(clean))]
    _, with_glitch = welch_psd(glitch, RATE, 4.0, pieces=pieces)
    _, without = welch_psd(clean, RATE, 4.0, pieces=pieces)
    np.testing.assert_array_equal(with_glitch, without)
    _, whole = welch_psd(glitch, RATE, 4.0, average="mean")  # segments over the whole series do see the glitch
    assert np.median(whole / without) > 100


def test_off_source_pieces_merge_clip_and_drop_empty_ranges():
    assert off_source_pieces(100, 10.0, [(2, 3), (2.5, 4), (9.5, 20)], margin=0.1) == [(0, 19), (41, 94)]
    assert off_source_pieces(100, 10.0, []) == [(0, 100)]
    assert off_source_pieces(100, 10.0, [(-1, 11)]) == []


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"segment": 40.0, "pieces": [(0, 10 * 1024), (20 * 1024, 50 * 1024)]}, "segment 40 s"),
        ({"segment": 4.0, "overlap": 1.0}, "overlap 1.0"),
        ({"segment": 4.0, "average": "mode"}, "average 'mode'"),
    ],
)
def test_welch_psd_bad_settings_are_one_line_input_errors(kwargs, named):
    with pytest.raises(InputError) as error:
        welch_psd(np.zeros(SECONDS * 1024), RATE, **kwargs)
    assert named in str(error.value) and "allowed" in str(error.value) and "\n" not in str(error.value)


# -- resampling, interpolation, whitening, PSD files ------------------------------------------------------------


def test_resample_keeps_the_band_and_suppresses_what_would_alias():
    t = np.arange(int(8 * 4096)) / 4096
    inside = resample(np.sin(2 * np.pi * 100 * t), 4096, 1024)
    above = resample(np.sin(2 * np.pi * 700 * t), 4096, 1024)  # would alias to 324 Hz
    assert inside.shape == above.shape == (8 * 1024,)
    middle = slice(512, -512)  # away from the filter's edge transients
    amplitude = np.sqrt(2 * np.mean(inside[middle] ** 2))
    assert abs(amplitude - 1) < 0.01
    assert 20 * np.log10(np.sqrt(2 * np.mean(above[middle] ** 2))) < -40
    assert resample(np.ones((2, 3, 4096)), 4096, 2048).shape == (2, 3, 2048)
    with pytest.raises(InputError, match="allowed: positive"):
        resample(np.ones(8), 0, 1024)
    with pytest.raises(InputError, match="p/q"):
        resample(np.ones(8), 4096, 1024 * np.pi)


def test_interpolate_psd_is_exact_at_table_points_and_infinite_outside():
    frequencies = np.arange(0, 512.25, 0.25)
    table = np.stack([true_psd(frequencies), 2 * true_psd(frequencies)])
    exact = interpolate_psd(frequencies, table, frequencies, f_min=20.0)
    band = frequencies >= 20
    np.testing.assert_allclose(exact[:, band], table[:, band], rtol=1e-12)
    assert np.all(np.isinf(exact[:, ~band]))
    target = np.array([0.0, 10.0, 19.99, 20.0, 100.1, 512.0, 512.5, 600.0])
    values = interpolate_psd(frequencies, table[0], target, f_min=20.0)
    assert values.shape == (len(target),)
    assert np.all(np.isinf(values[[0, 1, 2, 6, 7]]))  # f = 0, below f_min, beyond the table
    lo, hi = true_psd(np.array([100.0, 100.25]))
    np.testing.assert_allclose(values[4], np.exp(np.log(lo) + 0.4 * (np.log(hi) - np.log(lo))), rtol=1e-12)
    assert np.isinf(interpolate_psd(frequencies, table, target, 20.0, f_max=300.0)[:, 5]).all()


def test_whitening_with_the_true_psd_gives_unit_variance():
    noise = np.stack([coloured_noise(4), coloured_noise(5)])
    n = noise.shape[-1]
    white = whiten(noise, RATE, true_psd(np.fft.rfftfreq(n, 1 / RATE)), taper=0.1)
    edge = int(0.5 * RATE)  # well past the 0.1 s tapers
    variance = white[:, edge:-edge].var(axis=-1)
    assert np.all(np.abs(variance - 1) < 0.05), variance
    with pytest.raises(InputError, match="np.fft.rfftfreq"):
        whiten(noise, RATE, np.ones(10))


def test_psd_files_round_trip(tmp_path):
    frequencies = np.arange(0, 512.25, 0.25)
    table = np.stack([true_psd(frequencies), 3 * true_psd(frequencies)])
    paths = write_psd_files(tmp_path, frequencies, table, ["H1", "L1"])
    assert [p.name for p in paths] == ["H1-psd.dat", "L1-psd.dat"]
    assert paths[0].read_text().startswith("#") and "bilby" in paths[0].read_text().splitlines()[0]
    for source in (tmp_path, paths):
        read_f, read_psd = read_psd_files(source, ["H1", "L1"])
        np.testing.assert_array_equal(read_f, frequencies)
        np.testing.assert_array_equal(read_psd, table)
    write_psd_files(tmp_path / "other", frequencies[:-1], table[1:, :-1], ["L1"])
    with pytest.raises(InputError, match="frequencies differ"):
        read_psd_files([paths[0], tmp_path / "other" / "L1-psd.dat"], ["H1", "L1"])
    with pytest.raises(InputError, match="PSD file"):
        read_psd_files(tmp_path / "missing", ["H1"])


# -- strain from GWOSC files -------------------------------------------------------------------------------------


def test_load_event_strain_from_the_shipped_files():
    strain = load_event_strain("GW150914", GPS, ["H1", "L1"], 8.0, 4.0, GWOSC_DIR, source="local")
    assert isinstance(strain, EventStrain)
    assert strain.detectors == ["H1", "L1"] and strain.source == "local" and strain.sample_rate == 4096
    assert strain.data.shape == (2, 12 * 4096) and strain.data.dtype == np.float64
    first = int(round((GPS - 8.0 - FILE_START) * 4096))
    assert strain.start_time == FILE_START + first / 4096 and abs(strain.start_time - (GPS - 8)) <= 0.5 / 4096
    assert [Path(f).name[:5] for f in strain.files] == ["H-H1_", "L-L1_"]
    for row, path in zip(strain.data, strain.files):
        data, rate, start, detector = read_gwosc_file(path)
        assert (rate, start) == (4096.0, FILE_START) and len(data) == 32 * 4096
        np.testing.assert_array_equal(row, data[first : first + 12 * 4096])
    # the whole file, to the last sample
    whole = load_event_strain("GW150914", GPS, ["L1"], GPS - FILE_START, FILE_START + 32 - GPS, GWOSC_DIR, "local")
    assert whole.data.shape == (1, 32 * 4096) and whole.start_time == FILE_START


def test_find_local_reads_the_span_from_the_file(tmp_path):
    assert find_local(GWOSC_DIR, ["H1", "L1"], GPS - 16, GPS + 15) is not None
    assert find_local(GWOSC_DIR, ["H1", "L1"], GPS - 17, GPS) is None  # before the files start
    assert find_local(GWOSC_DIR, ["H1", "V1"], GPS - 1, GPS) is None
    # the name promises 32 s, the file holds 1 s
    write_losc(tmp_path / "H-H1_LOSC_4_V2-1126259446-32.hdf5", np.zeros(4096), 4096, FILE_START, "H1")
    assert find_local(tmp_path, ["H1"], GPS - 1, GPS) is None


def test_bad_files_are_one_line_input_errors(tmp_path):
    (tmp_path / "H-H1_junk.hdf5").write_text("not hdf5")
    with pytest.raises(InputError) as error:
        read_gwosc_file(tmp_path / "H-H1_junk.hdf5")
    assert "H-H1_junk.hdf5" in str(error.value) and "strain/Strain" in str(error.value)
    assert "\n" not in str(error.value)

    gap = np.zeros(8 * 4096)
    gap[5 * 4096 + 7] = np.nan
    write_losc(tmp_path / "L-L1_GWOSC_4KHZ_R1-1126259456-8.hdf5", gap, 4096, 1126259456, "L1")
    with pytest.raises(InputError, match=r"L-L1_GWOSC_4KHZ_R1-1126259456-8.hdf5: sample 20487 \(GPS 1126259461"):
        load_event_strain("GW150914", GPS, ["L1"], 4.0, 1.0, tmp_path, source="local")

    folder = tmp_path / "rates"
    folder.mkdir()
    write_losc(folder / "H-H1_A-1126259456-8.hdf5", np.zeros(8 * 4096), 4096, 1126259456, "H1")
    write_losc(folder / "L-L1_A-1126259456-8.hdf5", np.zeros(8 * 16384), 16384, 1126259456, "L1")
    with pytest.raises(InputError, match="one rate for every detector"):
        load_event_strain("GW150914", GPS, ["H1", "L1"], 1.0, 1.0, folder, source="local")


def test_offline_without_a_local_copy_fails_fast_in_one_line(tmp_path):
    started = time.monotonic()
    with pytest.raises(InputError) as error:
        load_event_strain("GW150914", GPS, ["H1", "L1"], 16.4, 15.5, tmp_path, source="auto", host=OFFLINE, timeout=5)
    assert time.monotonic() - started < 15
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("event GW150914: no local copy in ")
    assert "GWOSC is unreachable (" in message and "gwosc.org is reachable" in message
    assert "https://gwosc.org/eventapi/html/GWTC-1-confident/GW150914/" in message and str(tmp_path) in message
    assert not list(tmp_path.iterdir())  # nothing half-downloaded

    with pytest.raises(InputError) as error:
        load_event_strain("GW150914", GPS, ["H1", "L1"], 16.4, 15.5, tmp_path, source="local", host=OFFLINE)
    assert "no local copy" in str(error.value) and "\n" not in str(error.value)

    with pytest.raises(InputError) as error:  # no GPS time and no way to ask for it
        load_event_strain("GW150914", None, ["H1", "L1"], 16.4, 15.5, tmp_path, host=OFFLINE, timeout=5)
    assert "GPS time" in str(error.value) and "\n" not in str(error.value)
    assert time.monotonic() - started < 15

    with pytest.raises(InputError, match="strain source 'nas'; allowed: auto, local, gwosc"):
        load_event_strain("GW150914", GPS, ["H1"], 1.0, 1.0, tmp_path, source="nas")


# -- figures on the real, conditioned GW150914 data --------------------------------------------------------------


@pytest.fixture(scope="module")
def gw150914():
    """GW150914 as a PE run conditions it: 1024 Hz, off-source median PSD (4 s segments, the 3 s around the event
    left out), whitened with it."""
    strain = load_event_strain("GW150914", GPS, ["H1", "L1"], 16.4, 15.5, GWOSC_DIR, source="local")
    raw = resample(strain.data, strain.sample_rate, RATE)
    t0 = GPS - strain.start_time
    pieces = off_source_pieces(raw.shape[-1], RATE, [(t0 - 2.0, t0 + 1.0)], margin=0.5)
    frequencies, psd = welch_psd(raw, RATE, 4.0, pieces=pieces)
    values = interpolate_psd(frequencies, psd, np.fft.rfftfreq(raw.shape[-1], 1 / RATE), f_min=20.0)
    return {"t0": t0, "frequencies": frequencies, "psd": psd, "whitened": whiten(raw, RATE, values)}


def test_gw150914_is_whitened_to_unit_variance_off_source(gw150914):
    white = gw150914["whitened"]
    edge = int(RATE)
    variance = white[:, edge : int((gw150914["t0"] - 2) * RATE)].var(axis=-1)
    # real noise, 20 Hz high-pass (1 - 20/512 of the band carries weight): close to, not exactly, 1
    assert np.all((variance > 0.85) & (variance < 1.15)), variance


def test_event_figures_build_on_gw150914(gw150914):
    import matplotlib.pyplot as plt

    from gwpe.waveforms.whitening import psd as design_psd

    detectors = ["H1", "L1"]
    frequencies, psd = gw150914["frequencies"], gw150914["psd"]
    white, t0 = gw150914["whitened"], gw150914["t0"]
    times = np.arange(white.shape[-1]) / RATE - t0

    asd = asd_figure(frequencies, psd, detectors, design=design_psd("aLIGOZeroDetHighPower", frequencies, 10.0))
    (axis,) = asd.axes
    assert axis.get_xscale() == axis.get_yscale() == "log" and len(axis.get_lines()) == 3
    assert "Hz" in axis.get_xlabel() and "√Hz" in axis.get_ylabel()

    template = np.where(np.abs(times) < 0.05, np.sin(2 * np.pi * 150 * times), 0.0)
    whitened = whitened_figure(
        times, white, detectors, templates=np.stack([template, template]), rate=RATE, bandpass=(30.0, 350.0)
    )
    assert len(whitened.axes) == 2 and all(len(a.get_lines()) == 2 for a in whitened.axes)
    assert whitened.axes[-1].get_xlim() == (-0.3, 0.1)
    with pytest.raises(InputError, match="rate"):
        whitened_figure(times, white, detectors, bandpass=(30.0, 350.0))

    scan = time_frequency_figure(white, RATE, detectors, t0)
    assert len(scan.axes) == 3  # one image per detector and the colour bar
    assert all(a.get_yscale() == "log" for a in scan.axes[:2])
    for figure in (asd, whitened, scan):
        plt.close(figure)
