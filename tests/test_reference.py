"""Reference-posterior pieces: emcee wrapper, R-hat, (M_c, m2/m1) coordinates, marginal divergences."""

import numpy as np
from scipy import stats
import pytest

from gwpe import physics
from gwpe.evaluation.divergence import marginal_divergences
from gwpe.inference.reference import gelman_rubin, injection_start, run_emcee
from gwpe.inference.coordinates import SamplerCoordinates


def test_emcee_recovers_a_correlated_gaussian_within_monte_carlo_error():
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    precision = np.linalg.inv(cov)

    def log_density(x):
        d = x - mean
        return -0.5 * np.einsum("ni,ij,nj->n", d, precision, d)

    start = mean + 0.01 * np.random.default_rng(1).standard_normal((16, 3))
    result = run_emcee(log_density, start, steps=2500, burn=500, seed=3, progress=False)
    n_eff = result.effective_samples()
    assert n_eff > 300 and result.converged and np.all(result.rhat < 1.1)
    standard_error = np.sqrt(np.diag(cov) / n_eff)
    assert np.all(np.abs(result.samples.mean(0) - mean) < 4 * standard_error)
    np.testing.assert_allclose(np.cov(result.samples.T), cov, atol=0.15)
    assert result.evaluations == 16 * 2501


def test_emcee_returns_the_walkers_own_positions_beside_the_folded_samples():
    """``fold`` maps the chain for R-hat and the samples; the walkers' own positions stay available (a density on
    the mirrored space is evaluated at those, not at their folded images)."""

    def fold(x):
        return np.column_stack([-np.abs(x[:, 0]), x[:, 1:]])

    start = np.random.default_rng(2).standard_normal((8, 2))
    result = run_emcee(lambda x: -0.5 * (x**2).sum(1), start, steps=1500, burn=300, seed=4, progress=False, fold=fold)
    assert result.walker_samples.shape == result.samples.shape
    np.testing.assert_array_equal(result.samples, fold(result.walker_samples))
    assert np.mean(result.walker_samples[:, 0] > 0) > 0.3 and np.all(result.samples[:, 0] <= 0)
    assert abs(result.samples[:, 0].mean() + np.sqrt(2 / np.pi)) < 0.15  # the half normal's mean


def test_emcee_moves_keep_a_standard_normal_unit_wide_at_any_scale():
    # emcee 3.1.6's DESnookerMove (in the mix before) reads sd 0.95 here at scale 1 and 0.85 alone: a biased move
    for scale in (1.0, 10.0):
        result = run_emcee(
            lambda x, s=scale: -0.5 * ((x / s) ** 2).sum(1),
            scale * np.random.default_rng(0).standard_normal((16, 5)),
            steps=12_000,
            burn=2_000,
            seed=1,
            progress=False,
        )
        sd = result.samples.std(0) / scale
        assert np.all(np.abs(sd - 1.0) < 0.025), f"scale {scale}: sd {sd}"


def test_emcee_rejects_burn_beyond_steps_and_too_few_walkers():
    with pytest.raises(ValueError, match="burn = 10; allowed: 0 <= burn < steps = 10"):
        run_emcee(lambda x: -x.sum(1), np.zeros((8, 2)), steps=10, burn=10, progress=False)
    with pytest.raises(ValueError, match="walkers = 3; allowed: >= 2 x 2 parameters"):
        run_emcee(lambda x: -x.sum(1), np.zeros((3, 2)), steps=10, burn=1, progress=False)


def test_gelman_rubin_is_one_for_identical_chains_and_large_for_separated_ones():
    rng = np.random.default_rng(0)
    mixed = rng.standard_normal((2000, 8, 1))
    assert gelman_rubin(mixed)[0] == pytest.approx(1.0, abs=0.01)
    separated = mixed + np.arange(8)[None, :, None] * 3.0
    assert gelman_rubin(separated)[0] > 3.0


def test_injection_start_puts_half_the_walkers_at_phi0_plus_pi_inside_the_support():
    names = ["m1", "m2", "phi0", "tc", "dL"]
    truth = np.array([50.0, 40.0, 6.2, 0.75, 2000.0])
    inside = lambda x: np.where(x[:, 2] < 2 * np.pi, 0.0, -np.inf)  # noqa: E731
    start = injection_start(truth, names, 10, inside, seed=0)
    assert start.shape == (10, 5) and np.all(start[:, 2] < 2 * np.pi)
    near_truth = np.abs(np.angle(np.exp(1j * (start[:, 2] - truth[2])))) < 0.3
    near_flip = np.abs(np.angle(np.exp(1j * (start[:, 2] - truth[2] - np.pi)))) < 0.3
    assert near_truth.sum() == 5 and near_flip.sum() == 5


def test_chirp_mass_coordinates_invert_and_carry_the_jacobian():
    # hand-computed: equal masses of 30 Msun have M_c = 30 x 2^(-1/5) = 26.11652
    # and |d(m1,m2)/d(M_c,nu)| = 900 / 26.11652
    m1, m2 = physics.masses_from_chirp_mass(30.0 * 2**-0.2, 1.0)
    assert (float(m1), float(m2)) == pytest.approx((30.0, 30.0), rel=1e-12)
    assert np.exp(physics.log_jacobian_masses_chirp_mass(26.116517, 1.0)) == pytest.approx(900 / 26.116517, rel=1e-6)
    # against a finite-difference determinant away from equal masses
    mc, nu, h = 35.0, 0.6, 1e-6
    d_mc = (
        np.array(physics.masses_from_chirp_mass(mc + h, nu)) - np.array(physics.masses_from_chirp_mass(mc - h, nu))
    ) / (2 * h)
    d_nu = (
        np.array(physics.masses_from_chirp_mass(mc, nu + h)) - np.array(physics.masses_from_chirp_mass(mc, nu - h))
    ) / (2 * h)
    assert abs(d_mc[0] * d_nu[1] - d_mc[1] * d_nu[0]) == pytest.approx(
        np.exp(physics.log_jacobian_masses_chirp_mass(mc, nu)), rel=1e-6
    )
    names = ["m1", "m2", "tc"]
    coordinates = SamplerCoordinates(names)
    theta = np.array([[60.0, 40.0, 0.7], [45.0, 44.0, 0.8]])
    np.testing.assert_allclose(coordinates.to_physical(coordinates.from_physical(theta)), theta, rtol=1e-12)
    density = coordinates.log_density(lambda t: np.zeros(len(t)))
    u = np.array([[30.0, 0.5, 0.7], [30.0, 1.2, 0.7], [30.0, -0.1, 0.7]])
    out = density(u)
    assert np.isfinite(out[0]) and np.all(np.isneginf(out[1:]))  # nu outside (0, 1] has no density


def test_probit_mass_coordinates_send_the_lower_mass_wall_to_infinity_and_keep_the_density_normalised():
    low, high = 35.0, 80.0
    coordinates = SamplerCoordinates(["m1", "m2", "tc"], mass_bounds=(low, high))
    theta = np.array([[60.0, 40.0, 0.7], [79.9, 79.0, 0.8], [79.999, 35.001, 0.8], [50.0, 50.0, 0.8]])
    u = coordinates.from_physical(theta)
    np.testing.assert_allclose(u[:, 0], physics.chirp_mass(theta[:, 0], theta[:, 1]))  # M_c unchanged
    assert u[3, 1] == 0.0 and np.all(u[:3, 1] < 0) and u[2, 1] < -3  # equal mass at 0, m1 = m_max far below
    np.testing.assert_allclose(coordinates.to_physical(u), theta, rtol=1e-10)
    # log |d theta / d u| against central differences, and the uniform prior on the triangle pulled back to u
    # integrates to 1 (importance sampling from M_c uniform on its range times a half-normal in u_nu)
    rng = np.random.default_rng(0)
    chirp_low, chirp_high = physics.chirp_mass(low, low), physics.chirp_mass(high, high)
    n = 100_000
    u = np.column_stack([rng.uniform(chirp_low, chirp_high, n), -np.abs(rng.standard_normal(n)), np.full(n, 0.7)])
    step, jacobian = 1e-6, np.empty((50, 2, 2))
    for k in range(2):
        shift = np.zeros(3)
        shift[k] = step
        forward, backward = coordinates.to_physical(u[:50] + shift), coordinates.to_physical(u[:50] - shift)
        jacobian[:, :, k] = (forward - backward)[:, :2] / (2 * step)
    np.testing.assert_allclose(coordinates.log_jacobian(u[:50]), np.log(np.abs(np.linalg.det(jacobian))), atol=1e-5)
    log_proposal = -np.log(chirp_high - chirp_low) + np.log(2.0) - 0.5 * u[:, 1] ** 2 - 0.5 * np.log(2 * np.pi)
    uniform = coordinates.log_density(lambda t: np.full(len(t), -np.log(0.5 * (high - low) ** 2)))
    ratio = np.exp(uniform(u) - log_proposal)
    assert ratio.mean() == pytest.approx(1.0, abs=4 * ratio.std() / np.sqrt(n)) and 4 * ratio.std() / np.sqrt(n) < 0.01
    # no lower wall: however far below, u maps inside the triangle with a finite density; u_nu > 0 lies beyond
    # equal mass and has none, and so do masses outside the triangle (NaN in u)
    deep = np.array([[50.0, -30.0, 0.7], [35.0, -30.0, 0.7]])
    far = coordinates.to_physical(deep)
    assert np.all((far[:, 1] >= low - 1e-9) & (far[:, 0] <= high + 1e-9) & (far[:, 1] <= far[:, 0]))
    beyond = np.array([[50.0, 0.1, 0.7]])  # past equal mass: no density, but finite masses (zero-weight draws)
    assert np.all(np.isfinite(uniform(deep))) and np.isneginf(uniform(beyond)[0])
    assert np.all(np.isfinite(coordinates.to_physical(beyond)))
    outside = coordinates.from_physical(np.array([[81.0, 40.0, 0.7]]))
    assert np.isnan(outside[0, 1]) and np.isneginf(uniform(outside)[0])
    with pytest.raises(ValueError, match=r"mass_bounds = \(80.0, 35.0\); allowed: 0 < m_min < m_max"):
        SamplerCoordinates(["m1", "m2"], mass_bounds=(80.0, 35.0))


def test_reported_columns_are_the_masses_and_chirp_mass_with_the_folded_phase_kept():
    coordinates = SamplerCoordinates(
        ["m1", "m2", "phi0", "tc"], fold_phase=True, phase_centre=1.0, mass_bounds=(35.0, 80.0), phase_slope=900.0
    )
    theta = np.array([[60.0, 40.0, 2.9, 0.70], [50.0, 50.0, 0.2, 0.72]])
    u = coordinates.from_physical(theta)
    reported = coordinates.reported(u)
    assert coordinates.reported_names == ["m1", "m2", "phi0", "tc", "chirp_mass"] and reported.shape == (2, 5)
    np.testing.assert_allclose(reported[:, :2], theta[:, :2], rtol=1e-10)  # back to the component masses
    # chirp mass by hand: (m1 m2)^(3/5) / (m1 + m2)^(1/5)
    np.testing.assert_allclose(reported[:, 4], [2400.0**0.6 / 100.0**0.2, 2500.0**0.6 / 100.0**0.2], rtol=1e-12)
    # the phase and time stay the sampler's: folded into the window, no random + pi
    np.testing.assert_array_equal(reported[:, 2:4], u[:, 2:4])
    assert np.all(np.abs(reported[:, 2] - 1.0) <= np.pi / 2)
    no_masses = SamplerCoordinates(["tc", "dL"])
    assert no_masses.reported_names == ["tc", "dL"]
    np.testing.assert_array_equal(no_masses.reported(np.array([[0.7, 400.0]])), [[0.7, 400.0]])


def test_folded_phase_window_keeps_the_mass_of_both_copies():
    names = ["phi0", "tc"]
    theta = np.array([[0.1, 0.7], [0.1 + np.pi, 0.7], [3.0, 0.7]])
    coordinates = SamplerCoordinates.centred_on(
        names, theta[:2]
    )  # circular mean of 2 phi0 = 0.2 -> window [0.1 - pi/2, 0.1 + pi/2)
    assert coordinates.phase_centre == pytest.approx(0.1)
    u = coordinates.from_physical(theta)
    assert u[0, 0] == pytest.approx(0.1) and u[1, 0] == pytest.approx(0.1) and u[2, 0] == pytest.approx(3.0 - np.pi)
    density = coordinates.log_density(lambda t: np.zeros(len(t)))
    assert density(u) == pytest.approx(np.full(3, np.log(2.0)))  # p(phi0) + p(phi0 + pi) = 2 p(phi0)
    assert np.isneginf(density(np.array([[0.1 + np.pi / 2 + 1e-9, 0.7]])))[0]
    back = coordinates.to_physical(np.repeat(u[:1], 4000, axis=0), np.random.default_rng(0))[:, 0]
    assert set(np.round(back, 9)) == {0.1, round(0.1 + np.pi, 9)} and abs(np.mean(back > 1) - 0.5) < 0.03


def test_marginal_divergences_match_the_gaussian_kl_and_vanish_for_the_same_distribution():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20_000, 2))
    b = np.column_stack([rng.standard_normal(20_000) + 1.0, rng.standard_normal(20_000)])
    kl, js = marginal_divergences(a, b)
    assert kl[0] == pytest.approx(0.5, abs=0.04)  # KL(N(0,1) || N(1,1)) = 1/2
    assert js[1] < 2e-3 and js[0] == pytest.approx(0.1114, abs=0.01) and np.all(js <= np.log(2))  # quadrature: 0.1114
    with pytest.raises(ValueError, match="2 and 3 parameters"):
        marginal_divergences(a, rng.standard_normal((10, 3)))


def test_marginal_divergences_smooth_both_sets_alike():
    # a sharply bimodal marginal: 2,000 draws against 40,000 of the same distribution, and importance-weighted
    # draws of a broad proposal against exact ones; each set's own Scott bandwidth reads JS 0.03 for the first pair
    rng = np.random.default_rng(5)

    def bimodal(n):
        return (rng.choice([-2.0, 2.0], n) + 0.25 * rng.standard_normal(n))[:, None]

    _, js = marginal_divergences(bimodal(2000), bimodal(40_000))
    assert js[0] < 3e-3, js
    broad = 3.0 * rng.standard_normal(40_000)
    log_w = np.logaddexp(stats.norm.logpdf(broad, -2, 0.25), stats.norm.logpdf(broad, 2, 0.25)) - stats.norm.logpdf(
        broad, 0, 3
    )
    weights = np.exp(log_w - log_w.max())
    _, weighted = marginal_divergences(broad[:, None], bimodal(40_000), weights_a=weights / weights.sum())
    _, unweighted = marginal_divergences(broad[:, None], bimodal(40_000))
    assert weighted[0] < 3e-3 and unweighted[0] > 0.1, (weighted, unweighted)
    with pytest.raises(ValueError, match="weights_a has shape"):
        marginal_divergences(broad[:, None], bimodal(10), weights_a=weights[:5])


def test_prior_density_is_normalised_over_its_support():
    # Monte Carlo over the bounding box: E_box[p] x box volume = 1 when p integrates to one
    from gwpe.config import StrainPriorConfig
    from gwpe.waveforms.priors import log_prior_density, prior_bounds

    prior = StrainPriorConfig()
    names = ["m1", "m2", "phi0", "tc", "dL", "theta_jn"]
    rng = np.random.default_rng(1)
    bounds = np.array([prior_bounds(prior, name) for name in names])
    box = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.uniform(size=(400_000, len(names)))
    integral = np.exp(log_prior_density(prior, names, box)).mean() * np.prod(bounds[:, 1] - bounds[:, 0])
    assert integral == pytest.approx(1.0, abs=0.01)


def test_marginal_divergence_of_a_single_repeated_value_is_near_the_maximum():
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((5000, 1))
    _, js = marginal_divergences(np.full((5000, 1), 0.3), spread)
    assert 0.5 < js[0] <= np.log(2)


def test_phase_walls_go_where_the_likelihood_pilot_finds_no_mass():
    rng = np.random.default_rng(3)
    names = ["phi0", "tc"]
    theta = np.column_stack([rng.uniform(0, 2 * np.pi, 4000), np.full(4000, 0.7)])
    log_l = 40.0 * np.cos(2.0 * (theta[:, 0] - 0.3))  # (2, 2)-mode copies at 0.3 and 0.3 + pi
    coordinates = SamplerCoordinates.walled_by_likelihood(names, theta, log_l)
    wall = coordinates.phase_centre - np.pi / 2
    distance = abs((0.3 - wall + np.pi / 2) % np.pi - np.pi / 2)  # circular distance mod pi from the mode to the wall
    assert distance > 1.3  # the wall sits opposite the mode (pi / 2 = 1.571 away), not through it
    assert SamplerCoordinates.walled_by_likelihood(["m1", "m2"], theta, log_l).phase is None


def test_phase_is_sheared_along_the_time_ridge_the_pilot_measures():
    """phi0 and t_c on a ridge phi0 = 0.3 + k (t_c - 0.7), k = 900 rad/s (the phase at ~290 Hz is what the data
    fix): the pilot's slope is found, and in the sheared phase the posterior is narrow and far from the fold."""
    rng = np.random.default_rng(4)
    names = ["phi0", "tc"]
    k = 900.0
    theta = np.column_stack([rng.uniform(0, 2 * np.pi, 20_000), 0.7 + 2e-3 * rng.standard_normal(20_000)])
    ridge = theta[:, 0] - 0.3 - k * (theta[:, 1] - 0.7)
    log_l = 30.0 * np.cos(2.0 * ridge) - 0.5 * ((theta[:, 1] - 0.7) / 1e-3) ** 2
    coordinates = SamplerCoordinates.walled_by_likelihood(names, theta, log_l)
    assert coordinates.phase_slope == pytest.approx(k, rel=0.03) and coordinates.time_anchor == pytest.approx(
        0.7, abs=3e-4
    )
    # a draw on the ridge: its sheared phase sits mid-window whatever its t_c
    on_ridge = np.array([[np.mod(0.3 + k * dt, 2 * np.pi), 0.7 + dt] for dt in (-2e-3, 0.0, 1.5e-3)])
    u = coordinates.from_physical(on_ridge)
    offset = np.abs(np.mod(u[:, 0] - coordinates.phase_centre + np.pi / 2, np.pi) - np.pi / 2)
    assert np.all(offset < 0.3), offset  # far from the fold (pi / 2 away)
    back = coordinates.to_physical(u)
    np.testing.assert_allclose(np.mod(back[:, 0] - on_ridge[:, 0] + np.pi / 2, np.pi) - np.pi / 2, 0.0, atol=1e-9)
    np.testing.assert_allclose(back[:, 1], on_ridge[:, 1])
    # unit Jacobian: the density in u is the physical one plus log 2 (the fold), slope or none
    density = coordinates.log_density(lambda t: np.zeros(len(t)))
    assert density(u) == pytest.approx(np.full(3, np.log(2.0)))
    # rebuilt from its settings (the sampling file's attributes): the same map
    again = SamplerCoordinates(names, fold_phase=True, **coordinates.settings())
    np.testing.assert_allclose(again.from_physical(on_ridge), u)
