"""The outside sampler (issue 26): dynesty nested sampling on gwpe's own whitened likelihood and prior, against
gwpe's adaptive importance sampling, on a tiny strain problem (256 Hz, m1, m2, d_L free; phi0, t_c fixed).

Agreement is asserted where it can fail: log Z within 3 combined standard errors plus 0.05, posterior standard
deviations within 2 bootstrap errors plus 3 % (issue 26's acceptance), every 1-D JS divergence below 0.01 nat.
Measured (nlive 150, seed 1, dynesty's own method for 3-D, unif; the masses moved in (M_c, m2/m1), the default):
dynesty log Z -356.03 +- 0.27 (8,029 calls; rslice, the default until stop 51: -355.90, 42,458 calls), adaptive IS
-356.04 +- 0.004 (10,306 calls). Over seeds 0-7 (benchmarks/nested_coordinates.py --sample unif, 2026-12-07)
dynesty's log Z scatters by 0.21 about -355.93 in (M_c, m2/m1) and by 0.28 about -355.96 in (m1, m2), against a
stated 0.27 (docs/data/nested-coordinates-unif.json)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gwpe.config import StrainConfig, StrainDatasetConfig
from gwpe.errors import ConfigError
from gwpe.inference.likelihood import WhitenedGaussianLikelihood
from gwpe.inference.nested import dynesty_method, nested_sample, prior_transform, std_ratios
from gwpe.waveforms.priors import log_prior_density, sample_prior
from gwpe.waveforms.strain import StrainGenerator, StrainSetup, as_theta

NAMES = ["m1", "m2", "dL"]
TRUTH = np.array([60.0, 42.0, 2200.0])


@pytest.fixture(scope="module")
def problem():
    dataset = StrainDatasetConfig(parameters=["m1", "m2", "phi0", "tc", "dL"], n_signals=2, sample_rate=256.0)
    generator = StrainGenerator(StrainSetup.build(StrainConfig(), dataset))
    signal, snr = generator.whitened(as_theta(NAMES, TRUTH))
    observation = signal + np.random.default_rng(7).standard_normal(signal.shape)
    likelihood = WhitenedGaussianLikelihood(generator, NAMES, observation, prior=dataset.prior)
    return likelihood, dataset.prior, snr


def test_prior_transform_is_the_prior(problem):
    """The unit cube maps onto the prior's support and reproduces ``sample_prior`` (KS per column), with the
    m1 >= m2 triangle and the volumetric d_L prior."""
    from scipy.stats import ks_2samp

    _, prior, _ = problem
    names = ["m1", "m2", "dL", "tc", "phi0", "theta_jn", "dec"]
    cube = np.random.default_rng(0).uniform(size=(20_000, len(names)))
    mapped = prior_transform(prior, names, cube)
    assert np.all(np.isfinite(log_prior_density(prior, names, mapped)))
    reference = sample_prior(prior, names, 20_000, np.random.default_rng(1))
    for k, name in enumerate(names):
        assert ks_2samp(mapped[:, k], reference[:, k]).pvalue > 1e-3, name
    # a transform that ignored the triangle (m2 uniform on the full range) fails this
    assert np.all(mapped[:, 0] >= mapped[:, 1])


@pytest.fixture(scope="module")
def runs(problem):
    from gwpe.inference.evidence import adaptive_importance_sampling
    from gwpe.inference.flowmc import StandardisedFlow

    likelihood, prior, _ = problem
    nested = nested_sample(likelihood, prior, NAMES, nlive=150, dlogz=0.1, seed=1)  # auto: unif in 3-D

    def log_target(x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(likelihood.log_posterior(x.numpy()))

    torch.manual_seed(0)
    flow = StandardisedFlow(len(NAMES), 2, (32, 32))
    flow.fit(
        torch.as_tensor(sample_prior(prior, NAMES, 2000, np.random.default_rng(2)), dtype=torch.float32),
        10,
        restandardise=True,
    )
    calls = likelihood.evaluations
    estimate, draws, weights, _, rounds = adaptive_importance_sampling(
        log_target,
        flow,
        draws_per_round=1000,
        ess_fraction=0.3,
        max_rounds=15,
        epochs=10,
        final_ess=2000,
        final_batch=4000,
        max_final_draws=20_000,
        generator=torch.Generator().manual_seed(3),
    )
    return nested, (estimate, draws.numpy(), weights.numpy(), likelihood.evaluations - calls)


def test_dynesty_and_adaptive_is_agree(problem, runs):
    from gwpe.evaluation.divergence import marginal_divergences

    _, _, snr = problem
    nested, (estimate, draws, weights, calls) = runs
    assert 8 < snr < 30  # a posterior that is neither the prior nor a point
    combined = math.hypot(nested.standard_error, estimate.standard_error)
    difference = nested.log_evidence - estimate.log_evidence
    assert abs(difference) <= 3 * combined + 0.05, (nested.log_evidence, estimate.log_evidence, combined)
    ratio, error = std_ratios(nested.samples, draws, nested.weights, weights)
    assert np.all(np.abs(ratio - 1) <= 2 * error + 0.03), (ratio, error)
    js = marginal_divergences(draws, nested.equal_samples, weights_a=weights)[1]
    assert js.max() < 0.01, js
    assert nested.evaluations > 0 and calls > 0
    # "auto" ran dynesty's own choice for 3-D, and records it
    assert nested.settings["sample"] == "unif"
    assert [dynesty_method(d) for d in (5, 9, 10, 20, 21)] == ["unif", "unif", "rwalk", "rwalk", "rslice"]


def test_std_ratio_detects_a_narrow_posterior(runs):
    """The check can fail: draws shrunk by 20 % about their mean are flagged by the same criterion."""
    nested, _ = runs
    mean = nested.weights @ nested.samples
    narrow = mean + 0.8 * (nested.samples - mean)
    ratio, error = std_ratios(narrow, nested.samples, nested.weights, nested.weights)
    assert np.allclose(ratio, 0.8)
    assert np.all(np.abs(ratio - 1) > 2 * error + 0.03)


def test_template_segment_setting(problem):
    """``sampling.template_segment`` lengthens the long segment with the window centred; the reweighted log Z shift
    is zero for the same segment and finite, small and recorded for a longer one."""
    from gwpe.inference.likelihood import segment_shift, template_settings

    likelihood, _, _ = problem
    setup = likelihood.generator.setup
    assert setup.with_segment(None) is setup and setup.with_segment(setup.segment / 2) is setup
    longer = setup.with_segment(4 * setup.segment)
    assert longer.segment == 4 * setup.segment and longer.n_samples == setup.n_samples
    assert longer.pad - setup.pad == (longer.n_long - setup.n_long) // 2 / setup.sample_rate
    draws = np.tile(TRUTH, (20, 1)) * np.random.default_rng(0).normal(1.0, 0.005, (20, 3))
    same = segment_shift(likelihood, draws, setup.segment)
    assert same["log_z_shift"] == 0.0 and same["compared_with_seconds"] == setup.segment
    shifted = segment_shift(likelihood, draws, 2 * setup.segment)
    assert shifted["compared_with_seconds"] == 2 * setup.segment
    assert 0 < abs(shifted["log_z_shift"]) < 1 and np.isfinite(shifted["standard_error"])
    assert template_settings(likelihood)["segment_seconds"] == setup.segment


def test_chirp_mass_ratio_cube_carries_the_component_mass_prior(problem):
    """dynesty's (M_c, nu) coordinates: the cube maps onto the m_min <= m2 <= m1 <= m_max triangle, and the prior
    ratio the likelihood carries turns uniform cube draws into the triangle's uniform prior: weights averaging 1
    (so Z is unchanged), weighted mean masses m_min + 2/3 and 1/3 of the range. Dropping the Jacobian m1^2 / M_c
    moves the mean weight to 0.012, and dropping the nu edge's 1 / (1 - nu_min) to 0.40 with m2's mean 2 Msun low."""
    from gwpe.inference.nested import ChirpMassRatioCube

    _, prior, _ = problem
    names = ["m1", "m2", "dL"]
    cube = ChirpMassRatioCube(prior, names)
    u = np.random.default_rng(3).uniform(size=(400_000, 3))
    sampled = cube.transform(u)
    theta, log_ratio = cube.physical(sampled)
    assert np.all(theta[:, 0] >= theta[:, 1] - 1e-9)
    assert theta[:, 1].min() >= prior.mass_min - 1e-9 and theta[:, 0].max() <= prior.mass_max + 1e-9
    np.testing.assert_allclose(theta[:, 2], prior_transform(prior, names, u)[:, 2])
    weights = np.exp(log_ratio)
    assert abs(weights.mean() - 1) < 0.01, weights.mean()
    span = prior.mass_max - prior.mass_min
    mean = (weights @ theta[:, :2]) / weights.sum()
    np.testing.assert_allclose(mean, [prior.mass_min + 2 * span / 3, prior.mass_min + span / 3], atol=0.15)


def test_nested_sampling_in_chirp_mass_ratio_gives_the_evidence_under_the_component_prior(problem):
    """A Gaussian likelihood on a thin constant-M_c ridge in (m1, m2) (sd 4 along it, 0.3 across, normalised),
    well inside the triangle: Z is the prior density there, 2 / (m_max - m_min)^2, in both mass coordinates.
    Measured (nlive 200): components -0.07 / -0.15 +- 0.17, chirp_mass_ratio +0.14 / +0.16 +- 0.18 from it."""
    _, prior, _ = problem
    mean = np.array([60.0, 42.0])
    gradient = np.array([0.6 / 60 - 0.2 / 102, 0.6 / 42 - 0.2 / 102])  # d log M_c / d(m1, m2)
    along = np.array([-gradient[1], gradient[0]]) / np.linalg.norm(gradient)
    across = np.array([along[1], -along[0]])
    cov = 16.0 * np.outer(along, along) + 0.09 * np.outer(across, across)
    inverse, log_norm = np.linalg.inv(cov), -0.5 * np.log(np.linalg.det(2 * np.pi * cov))

    def log_likelihood(theta):
        d = theta[:, :2] - mean
        return log_norm - 0.5 * np.einsum("ni,ij,nj->n", d, inverse, d)

    exact = np.log(2 / (prior.mass_max - prior.mass_min) ** 2)
    result = nested_sample(log_likelihood, prior, ["m1", "m2"], nlive=200, seed=0, masses="chirp_mass_ratio")
    assert abs(result.log_evidence - exact) <= 3 * result.standard_error, (result.log_evidence, exact)
    assert result.settings["masses"] == "chirp_mass_ratio"
    assert np.all(result.samples[:, 0] >= result.samples[:, 1])  # draws come back as (m1, m2)
    sd = np.sqrt(result.weights @ np.square(result.samples - result.weights @ result.samples))
    np.testing.assert_allclose(sd, np.sqrt(np.diag(cov)), rtol=0.1)
    np.testing.assert_allclose(result.log_likelihood, log_likelihood(result.samples), atol=1e-6)
    with pytest.raises(ConfigError, match="masses = 'q'"):
        nested_sample(log_likelihood, prior, ["m1", "m2"], nlive=50, masses="q")


def test_half_phase_folds_a_pi_periodic_likelihood_and_unfolds_onto_both_copies(monkeypatch):
    """benchmarks/outside_sampler.py --fold-phase: dynesty's phi0 in [0, 2 pi) is read as phi0 / 2, the draws go
    back onto either pi-copy, and a likelihood that is not pi-periodic is caught."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from outside_sampler import HalfPhase

    names = ["m1", "phi0"]
    periodic = HalfPhase(lambda theta: np.cos(2 * theta[:, 1]) + theta[:, 0], names)
    assert periodic.check(np.array([1.0, 0.0])) < 1e-12
    seen = periodic(np.array([[1.0, 2.0], [0.0, 5.0]]))
    assert np.allclose(seen, [1.0 + np.cos(2.0), np.cos(5.0)])
    folded = np.column_stack([np.zeros(4000), np.random.default_rng(0).uniform(0, 2 * np.pi, 4000)])
    phases = periodic.unfold(folded, seed=0)[:, 1]
    upper = phases >= np.pi
    assert 0.45 < upper.mean() < 0.55  # each copy gets half the draws
    assert np.allclose(np.mod(phases, np.pi), folded[:, 1] / 2)
    lopsided = HalfPhase(lambda theta: np.cos(theta[:, 1]), names)
    assert lopsided.check(np.array([1.0, 0.0])) > 0.1
    with pytest.raises(ConfigError):
        HalfPhase(lambda theta: theta[:, 0], ["m1", "m2"])
