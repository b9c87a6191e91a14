"""Phase- and distance-marginalised likelihoods against brute-force integrals of the full likelihood."""

import numpy as np
import pytest
from scipy import integrate

from gwpe.config import StrainConfig, StrainDatasetConfig, StrainPriorConfig
from gwpe.inference.coordinates import SamplerCoordinates
from gwpe.inference.likelihood import (
    DistanceMarginalisedLikelihood,
    PhaseMarginalisedLikelihood,
    WhitenedGaussianLikelihood,
)
from gwpe.waveforms.strain import StrainGenerator, StrainSetup, as_theta

NAMES = ["m1", "m2", "phi0", "tc", "dL", "theta_jn", "ra", "dec", "psi"]
SAMPLED = ["m1", "m2", "tc", "theta_jn", "ra", "dec", "psi"]  # phi0 and dL marginalised
PRIOR = StrainPriorConfig(distance_min=300.0, distance_max=3000.0)


@pytest.fixture(scope="module")
def setup():
    dataset = StrainDatasetConfig(parameters=NAMES, n_signals=10, detectors=["H1", "L1"], prior=PRIOR)
    gen = StrainGenerator(StrainSetup.build(StrainConfig(), dataset))
    truth = np.array([52.0, 40.0, 1.1, 0.75, 450.0, 1.45, 1.3, -0.6, 0.4])
    signal, snr = gen.whitened(as_theta(NAMES, truth))
    observation = signal + np.random.default_rng(3).standard_normal(signal.shape)
    return gen, truth, observation, snr


def brute_force(gen, observation, row: np.ndarray, phases: int = 256) -> tuple[float, np.ndarray, np.ndarray]:
    """(log L marginalised over phi0 and d_L, X, Y) by full templates at d_ref = d_min, one waveform call per
    phi0 (no quadrature trick), and scipy's adaptive quadrature over d_L for each phase."""
    phi = np.linspace(0.0, np.pi, phases, endpoint=False)  # h(phi0 + pi) = h(phi0): half the circle suffices
    full = np.empty((phases, len(NAMES)))
    for k, name in enumerate(NAMES):
        full[:, k] = dict(zip(SAMPLED, row)).get(name, 0.0)
    full[:, NAMES.index("phi0")], full[:, NAMES.index("dL")] = phi, PRIOR.distance_min
    templates = gen.templates(full, NAMES)
    x = np.einsum("dl,ndl->n", observation, templates)
    y = np.einsum("ndl,ndl->n", templates, templates)
    low, high = PRIOR.distance_min, PRIOR.distance_max
    norm = (high**3 - low**3) / 3.0
    shift = np.max(np.maximum(x**2 / (2 * y), 0))  # keeps exp() in range; added back below
    values = []
    for xj, yj in zip(x, y):

        def integrand(d, xj=xj, yj=yj):
            u = low / d
            return d**2 / norm * np.exp(u * xj - 0.5 * u * u * yj - shift)

        values.append(integrate.quad(integrand, low, high, limit=400, epsabs=0, epsrel=1e-10)[0])
    constant = -0.5 * np.square(observation).sum() - 0.5 * observation.size * np.log(2 * np.pi)
    return float(np.log(np.mean(values)) + shift + constant), x, y


def test_distance_and_phase_marginal_matches_brute_force_integrals(setup):
    gen, truth, observation, snr = setup
    assert 15 < snr < 40
    rows = np.array([truth[[NAMES.index(p) for p in SAMPLED]], [50.0, 41.0, 0.7502, 1.5, 1.3, -0.6, 0.4]])
    with DistanceMarginalisedLikelihood(gen, SAMPLED, observation, PRIOR, workers=2) as pooled:
        marginal = pooled(rows)  # computed in the worker processes
        error = pooled.grid_error(rows)
    local = DistanceMarginalisedLikelihood(gen, SAMPLED, observation, PRIOR)
    np.testing.assert_allclose(local(rows), marginal, rtol=0, atol=1e-9)
    for row, value in zip(rows, marginal):
        expected, _, _ = brute_force(gen, observation, row)
        assert value == pytest.approx(expected, abs=1e-3)
    assert error < 1e-3
    with pytest.raises(ValueError, match=r"\['dL'\] marginalised"):
        DistanceMarginalisedLikelihood(gen, SAMPLED + ["dL"], observation, PRIOR)


def test_phase_marginal_matches_the_full_likelihood_averaged_over_phi0(setup):
    gen, truth, observation, _ = setup
    names = [p for p in NAMES if p != "phi0"]
    row = truth[[NAMES.index(p) for p in names]]
    phi = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    full = np.repeat(truth[None], len(phi), 0)
    full[:, NAMES.index("phi0")] = phi
    log_l = WhitenedGaussianLikelihood(gen, NAMES, observation)(full)
    expected = np.log(np.mean(np.exp(log_l - log_l.max()))) + log_l.max()
    assert PhaseMarginalisedLikelihood(gen, names, observation)(row[None])[0] == pytest.approx(expected, abs=1e-6)


def test_phase_marginal_has_period_pi_over_two_in_psi_and_coordinates_fold_it(setup):
    gen, truth, observation, _ = setup
    likelihood = DistanceMarginalisedLikelihood(gen, SAMPLED, observation, PRIOR)
    row = truth[[NAMES.index(p) for p in SAMPLED]]
    turned = row.copy()
    turned[-1] += np.pi / 2
    a, b = likelihood(np.stack([row, turned]))
    assert a == pytest.approx(b, abs=1e-8)
    off = row.copy()
    off[-1] += np.pi / 4  # not a symmetry of an inclined binary: the likelihood must see it
    assert likelihood(off[None])[0] < a - 1.0

    coordinates = SamplerCoordinates(SAMPLED, fold_polarisation=True, phase_centre=1.0)
    assert coordinates.period == pytest.approx(np.pi / 2)
    u = coordinates.from_physical(np.stack([row, turned]))
    assert u[0, -1] == pytest.approx(u[1, -1]) and 1.0 - np.pi / 4 <= u[0, -1] < 1.0 + np.pi / 4
    physical = coordinates.to_physical(np.repeat(u[:1], 4000, 0), np.random.default_rng(0))[:, -1]
    assert set(np.round(np.unique(physical), 9)) == {round(row[-1], 9), round(row[-1] + np.pi / 2, 9)}
    assert np.mean(physical > row[-1] + 0.1) == pytest.approx(0.5, abs=0.03)
    assert coordinates.log_jacobian(u[:1])[0] > 0  # masses' Jacobian plus log 2 for the folded copy
    assert SamplerCoordinates(NAMES, fold_polarisation=True).period == pytest.approx(np.pi)  # phi0 sampled: no psi fold


def test_distance_and_phase_draws_follow_their_conditional_and_the_maximum_fits_the_truth(setup):
    gen, truth, observation, snr = setup
    likelihood = DistanceMarginalisedLikelihood(gen, SAMPLED, observation, PRIOR)
    row = truth[[NAMES.index(p) for p in SAMPLED]]
    distance, phase = likelihood.distance_phase_posterior(np.repeat(row[None], 4000, 0), np.random.default_rng(1))
    # the conditional mean of d_L by quadrature over the brute-force phase grid
    _, x, y = brute_force(gen, observation, row)
    low, high = PRIOR.distance_min, PRIOR.distance_max
    shift = np.max(x**2 / (2 * y))
    grid = np.linspace(low, high, 20001)
    u = low / grid
    density = (grid**2 * np.exp(u[None] * x[:, None] - 0.5 * u[None] ** 2 * y[:, None] - shift)).sum(axis=0)
    mean = np.sum(grid * density) / np.sum(density)
    sd = np.sqrt(np.sum((grid - mean) ** 2 * density) / np.sum(density))
    assert np.mean(distance) == pytest.approx(mean, abs=4 * sd / np.sqrt(len(distance)) + 1.0)
    assert np.std(distance) == pytest.approx(sd, rel=0.1)
    assert np.all((distance >= low) & (distance <= high)) and np.all((phase >= 0) & (phase < 2 * np.pi))
    # phi0 is known modulo pi: the draws cluster around the truth's phase or its copy + pi
    offset = np.angle(np.exp(2j * (phase - truth[NAMES.index("phi0")])))
    assert np.median(np.abs(offset)) < 0.5

    noise_free, _ = gen.whitened(as_theta(NAMES, truth))
    best = DistanceMarginalisedLikelihood(gen, SAMPLED, noise_free, PRIOR)
    _, d_best, phi_best, ratio, template = best.maximum_likelihood(row[None])
    assert d_best == pytest.approx(truth[NAMES.index("dL")], rel=1e-3)
    assert ratio == pytest.approx(0.5 * np.square(noise_free).sum(), rel=1e-4)  # log L ratio = SNR^2 / 2
    overlap = np.sum(template * noise_free) / np.sqrt(np.sum(template**2) * np.sum(noise_free**2))
    assert overlap > 0.9999 and np.linalg.norm(template) == pytest.approx(np.linalg.norm(noise_free), rel=1e-3)
    assert np.mod(phi_best - truth[NAMES.index("phi0")] + 0.01, np.pi) < 0.02


def test_sky_frame_coordinates_round_trip_and_carry_the_jacobian_of_the_ring():
    import lal

    from gwpe.waveforms.sky_frame import SkyFrame

    gps = 1126259462.4
    sky = SkyFrame.build(["H1", "L1"], gps)
    names = ["m1", "m2", "tc", "ra", "dec"]
    rng = np.random.default_rng(4)
    theta = np.column_stack(
        [
            rng.uniform(45, 55, 6),
            rng.uniform(30, 40, 6),
            rng.uniform(0.7, 0.8, 6),
            rng.uniform(0, 6.2, 6),
            np.arcsin(rng.uniform(-0.95, 0.95, 6)),
        ]
    )
    coordinates = SamplerCoordinates(names, sky=sky, azimuth_centre=2.0)
    u = coordinates.from_physical(theta)
    np.testing.assert_allclose(coordinates.to_physical(u), theta, atol=1e-9)
    assert np.all((u[:, 3] >= 2.0 - np.pi) & (u[:, 3] < 2.0 + np.pi)) and np.all(np.abs(u[:, 4]) < 1)
    # the t_c column holds the arrival time at H1 (lal's delay from the Earth's centre)
    for row, sampled in zip(theta, u):
        delay = lal.TimeDelayFromEarthCenter(lal.cached_detector_by_prefix["H1"].location, row[3], row[4], gps)
        assert sampled[2] == pytest.approx(row[2] + delay, abs=1e-12)
    # kappa fixes the H1-L1 delay: -kappa |b| / c
    h1, l1 = (np.array(lal.cached_detector_by_prefix[d].location) for d in ("H1", "L1"))
    delay = lal.ArrivalTimeDiff(h1, l1, theta[0, 3], theta[0, 4], lal.LIGOTimeGPS(gps))
    assert delay == pytest.approx(-u[0, 4] * np.linalg.norm(h1 - l1) / lal.C_SI, abs=1e-12)
    # log |d theta / d u| against central differences of to_physical
    step = 1e-6
    for point in u:
        jacobian = np.empty((5, 5))
        for k in range(5):
            up, down = point.copy(), point.copy()
            up[k] += step
            down[k] -= step
            jacobian[:, k] = (coordinates.to_physical(up[None]) - coordinates.to_physical(down[None]))[0] / (2 * step)
        assert coordinates.log_jacobian(point[None])[0] == pytest.approx(np.log(abs(np.linalg.det(jacobian))), abs=1e-5)
    outside = u[:1].copy()
    outside[0, 4] = 1.2  # |kappa| > 1
    assert np.isneginf(coordinates.log_jacobian(outside)[0])
