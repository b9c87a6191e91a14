"""The outside sampler (issue 26): dynesty nested sampling on gwpe's own whitened likelihood and prior, against
gwpe's adaptive importance sampling, on a tiny strain problem (256 Hz, m1, m2, d_L free; phi0, t_c fixed).

Agreement is asserted where it can fail: log Z within 3 combined standard errors plus 0.05, posterior standard
deviations within 2 bootstrap errors plus 3 % (issue 26's acceptance), every 1-D JS divergence below 0.01 nat.
Measured (nlive 150, rslice): dynesty log Z -355.80 +- 0.26 (40,642 calls, 12 s), adaptive IS -356.04 +- 0.004
(10,306 calls, 4 s); std ratios dynesty / IS 1.026, 1.020, 0.996 +- 0.03; max JS 0.0013 nat."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gwpe.config import StrainConfig, StrainDatasetConfig
from gwpe.inference.likelihood import WhitenedGaussianLikelihood
from gwpe.inference.nested import nested_sample, prior_transform, std_ratios
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
    nested = nested_sample(likelihood, prior, NAMES, nlive=150, sample="rslice", dlogz=0.1, seed=1)

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
