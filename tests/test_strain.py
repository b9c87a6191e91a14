"""Strain engine physics: whitening, SNR, t_c placement, priors, detector projection, likelihood."""

import lal
import numpy as np
import pytest
from scipy import signal, stats

from gwpe.config import StrainConfig, StrainDatasetConfig, StrainPriorConfig, load_config
from gwpe.data.strain import dataset_config, draw_parameters
from gwpe.inference.likelihood import WhitenedGaussianLikelihood
from gwpe.waveforms.priors import sample_prior, volumetric_distance_cdf
from gwpe.waveforms.strain import StrainGenerator, StrainSetup, antenna_response, as_theta
from gwpe.waveforms.whitening import optimal_snr, whiten_frequency_series

from conftest import REPO

FIVE_D = ["m1", "m2", "phi0", "tc", "dL"]


def generator(detectors=(), **dataset) -> StrainGenerator:
    config = StrainDatasetConfig(
        parameters=FIVE_D if not detectors else FIVE_D + ["ra", "dec", "psi"],
        n_signals=10,
        detectors=list(detectors),
        **dataset,
    )
    return StrainGenerator(StrainSetup.build(StrainConfig(), config))


def test_whitened_coloured_noise_is_unit_variance_in_band():
    setup = generator().setup
    rng = np.random.default_rng(0)
    f, s_n = setup.frequencies, setup.psd_values
    band = np.isfinite(s_n)
    t_long = setup.n_long * setup.dt
    trials = []
    for _ in range(20):
        # coloured noise with one-sided PSD S_n: E|n~(f)|^2 = T S_n / 2 (continuous-FT normalisation)
        n_tilde = np.zeros(len(f), complex)
        n_tilde[band] = np.sqrt(t_long * s_n[band] / 4.0) * (
            rng.standard_normal(band.sum()) + 1j * rng.standard_normal(band.sum())
        )
        x = whiten_frequency_series(n_tilde, s_n, setup.dt, setup.n_long)
        trials.append(np.var(x))
    band_fraction = band.sum() / (len(f) - 1)  # white noise confined to the band keeps this fraction of its power
    assert np.mean(trials) / band_fraction == pytest.approx(1.0, abs=0.01)


def test_norm_of_whitened_signal_is_the_optimal_snr():
    gen = generator()
    theta = as_theta(FIVE_D, [60.0, 40.0, 1.0, 0.75, 1500.0])
    series = gen.detector_frequency_series(theta)[0]
    x = gen.long_segment(theta)[0]
    expected = optimal_snr(series, gen.setup.psd_values, gen.setup.df)
    assert np.linalg.norm(x) == pytest.approx(expected, rel=1e-6)
    window, snr = gen.whitened(theta)
    assert np.linalg.norm(window) == pytest.approx(snr, rel=2e-3)  # the window keeps all but the early inspiral
    assert 10 < snr < 60


def test_merger_lands_at_tc_and_nothing_wraps_around():
    gen = generator()
    s = gen.setup
    t = np.arange(s.n_long) * s.dt - s.pad  # long-segment time, window = [0, 1) s
    peaks = []
    for tc in (0.65, 0.75, 0.85):
        theta = as_theta(FIVE_D, [35.0, 35.0, 0.0, tc, 1000.0])  # lightest binary: longest inspiral (~0.7 s)
        x = gen.long_segment(theta)[0]
        peaks.append(t[np.argmax(np.abs(signal.hilbert(x)))] - tc)  # envelope peak
        energy = x**2 / np.sum(x**2)
        assert energy[(t >= 0) & (t < 1)].sum() > 0.995  # the window holds the signal
        assert energy[t > tc + 0.3].sum() < 1e-3  # only the f_min cut's Gibbs floor after the ringdown...
        late = (t > tc + 0.1) & (t < 1.0)
        assert np.abs(x[late]).max() < 0.01 * np.abs(x).max()  # ...and no wrapped-around inspiral in the window
        window, _ = gen.whitened(theta)
        np.testing.assert_array_equal(window[0], x[(t >= -s.dt / 2) & (t < 1 - s.dt / 2)].astype(window.dtype))
    # the whole signal moves with t_c; the peak sits at IMRPhenomPv2's own coalescence time, ms from t_c
    assert max(peaks) - min(peaks) <= 2.01 * s.dt
    assert abs(np.mean(peaks)) < 0.015


def test_prior_samples_respect_bounds_and_volumetric_distance():
    prior = StrainPriorConfig()
    names = ["m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn", "ra", "dec", "psi"]
    x = sample_prior(prior, names, 20000, np.random.default_rng(3))
    col = dict(zip(names, x.T))
    assert np.all(col["m1"] >= col["m2"]) and col["m2"].min() >= 35 and col["m1"].max() <= 80
    assert (
        col["tc"].min() >= 0.65 and col["tc"].max() <= 0.85 and 0 <= col["phi0"].min() and col["phi0"].max() < 2 * np.pi
    )
    assert np.abs(col["chi1z"]).max() <= 1 and 0 <= col["theta_jn"].min() and col["theta_jn"].max() <= np.pi
    assert stats.kstest(col["dL"], lambda d: volumetric_distance_cdf(d, 1000.0, 3000.0)).pvalue > 0.01
    assert stats.kstest(col["dL"], stats.uniform(1000, 2000).cdf).pvalue < 1e-6  # and not uniform
    assert stats.kstest(np.cos(col["theta_jn"]), stats.uniform(-1, 2).cdf).pvalue > 0.01
    assert stats.kstest(np.sin(col["dec"]), stats.uniform(-1, 2).cdf).pvalue > 0.01


def zenith(detector: str, gps: float) -> tuple[float, float]:
    site = lal.cached_detector_by_prefix[detector]
    x, y, z = site.location
    gmst = lal.GreenwichMeanSiderealTime(lal.LIGOTimeGPS(gps))
    return float(np.arctan2(y, x) + gmst), float(np.arcsin(z / np.linalg.norm(site.location)))


@pytest.mark.parametrize("detector", ["H1", "L1"])
def test_antenna_response_for_hand_picked_skies(detector):
    gps = 1126259462.0
    radius = np.linalg.norm(lal.cached_detector_by_prefix[detector].location)
    ra, dec = zenith(detector, gps)
    f_plus, f_cross, delay = antenna_response(detector, ra, dec, 0.3, gps)
    assert f_plus**2 + f_cross**2 == pytest.approx(1.0, abs=1e-3)  # overhead: full response of a 90-degree L
    assert delay == pytest.approx(-radius / lal.C_SI, rel=1e-6)  # arrives one Earth radius early
    _, _, nadir_delay = antenna_response(detector, ra + np.pi, -dec, 0.3, gps)
    assert nadir_delay == pytest.approx(radius / lal.C_SI, rel=1e-6)
    # polarisation is spin-2: psi -> psi + pi/4 turns (F+, Fx) into (Fx, -F+), psi -> psi + pi/2 flips both
    quarter = antenna_response(detector, ra, dec, 0.3 + np.pi / 4, gps)
    assert quarter[0] == pytest.approx(f_cross, abs=1e-9) and quarter[1] == pytest.approx(-f_plus, abs=1e-9)
    half = antenna_response(detector, ra, dec, 0.3 + np.pi / 2, gps)
    assert half[0] == pytest.approx(-f_plus, abs=1e-9) and half[1] == pytest.approx(-f_cross, abs=1e-9)


def test_two_detector_projection_uses_lal_patterns_and_delays():
    gen = generator(detectors=("H1", "L1"))
    theta = as_theta(FIVE_D + ["ra", "dec", "psi"], [50.0, 40.0, 0.4, 0.7, 1200.0, 1.3, -0.4, 0.9])
    plus, cross = gen.polarisations(theta)
    series = gen.detector_frequency_series(theta)
    s = gen.setup
    for k, detector in enumerate(("H1", "L1")):
        site = lal.cached_detector_by_prefix[detector]
        gps = lal.LIGOTimeGPS(s.reference_gps)
        fp, fc = lal.ComputeDetAMResponse(site.response, 1.3, -0.4, 0.9, lal.GreenwichMeanSiderealTime(gps))
        delay = lal.TimeDelayFromEarthCenter(site.location, 1.3, -0.4, gps)
        expected = (fp * plus + fc * cross) * np.exp(-2j * np.pi * s.frequencies * (s.pad + 0.7 + delay))
        np.testing.assert_allclose(series[k], expected, rtol=1e-12, atol=1e-40)
    x, snr = gen.whitened(theta)
    assert x.shape == (2, 1024)
    per_detector = [optimal_snr(channel, s.psd_values, s.df) for channel in series]
    assert snr == pytest.approx(np.hypot(*per_detector), rel=1e-12)  # network SNR
    assert np.linalg.norm(x, axis=1) == pytest.approx(per_detector, rel=5e-3)


def test_likelihood_peaks_at_the_injection_for_a_noise_free_signal():
    gen = generator()
    truth = np.array([55.0, 42.0, 2.0, 0.74, 1400.0])
    observation, _ = gen.whitened(as_theta(FIVE_D, truth))
    likelihood = WhitenedGaussianLikelihood(gen, FIVE_D, observation)
    grid = np.array(
        [
            truth + np.array([dm1, 0.0, 0.0, dtc, dd])
            for dm1 in (-1.5, 0, 1.5)
            for dtc in (-0.004, 0, 0.004)
            for dd in (-150, 0, 150)
        ]
    )
    log_l = likelihood(grid)
    assert np.argmax(log_l) == len(grid) // 2 and np.all(np.isfinite(log_l))
    assert log_l.max() == pytest.approx(-0.5 * observation.size * np.log(2 * np.pi), abs=1e-6)
    pooled = WhitenedGaussianLikelihood(gen, FIVE_D, observation, workers=2)
    try:
        np.testing.assert_allclose(pooled(grid), log_l, rtol=1e-12)  # templates from worker processes
    finally:
        pooled.close()
    with pytest.raises(ValueError, match=r"observation shape \(2, 1024\) does not match the dataset's \(1, 1024\)"):
        WhitenedGaussianLikelihood(gen, FIVE_D, np.zeros((2, 1024)))


def test_default_profile_median_snr_matches_the_paper():
    config = load_config(REPO / "params.yaml")
    for name, paper_median in (("strain-5d", 25.8), ("strain-8d", 17.2)):
        dataset = dataset_config(config, name)
        gen = StrainGenerator(StrainSetup.build(config.strain, dataset))
        params = draw_parameters(dataset)[:600]
        snr = np.array([gen.whitened(as_theta(list(dataset.parameters), row))[1] for row in params])
        assert np.median(snr) == pytest.approx(paper_median, rel=0.10)


def test_log_posterior_adds_the_prior_and_skips_templates_outside_it():
    gen = generator()
    truth = np.array([55.0, 42.0, 2.0, 0.74, 1400.0])
    observation, _ = gen.whitened(as_theta(FIVE_D, truth))
    prior = StrainPriorConfig()
    likelihood = WhitenedGaussianLikelihood(gen, FIVE_D, observation, prior=prior)
    outside = truth.copy()
    outside[1] = 60.0  # m2 > m1
    out = likelihood.log_posterior(np.stack([truth, outside]))
    assert likelihood.evaluations == 1 and np.isneginf(out[1])
    # normalised prior, by hand: masses on the triangle of area 45^2 / 2, phi0 over 2 pi, tc over 0.2 s, and
    # p(dL) = 3 dL^2 / (3000^3 - 1000^3)
    log_prior = (
        -np.log(0.5 * 45.0**2) - np.log(2 * np.pi) - np.log(0.2) + np.log(3 * 1400.0**2 / (3000.0**3 - 1000.0**3))
    )
    assert out[0] == pytest.approx(likelihood(truth[None])[0] + log_prior, abs=1e-9)


def test_strain_is_invariant_under_phi0_plus_pi_which_phase_flip_relies_on():
    gen = generator()
    theta = np.array([62.0, 41.0, 0.4, 0.74, 1500.0])
    flipped = theta.copy()
    flipped[2] += np.pi
    a, b = gen.templates(np.stack([theta, flipped]), FIVE_D)
    np.testing.assert_allclose(a, b, atol=1e-9 * np.abs(a).max())
    quarter = theta.copy()
    quarter[2] += np.pi / 2  # a quarter turn is a sign flip of the (2, 2) mode: the symmetry is pi, not pi / 2
    np.testing.assert_allclose(gen.templates(quarter[None], FIVE_D)[0], -a, atol=1e-9 * np.abs(a).max())
