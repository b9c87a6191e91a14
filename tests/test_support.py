"""Posteriors on the prior's support (``gwpe.models.flows.support``), checked over every posterior family."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gwpe.config import StrainPriorConfig
from gwpe.data.strain_store import Standardisation
from gwpe.models.flow_module import FlowModule
from gwpe.models.flows import build_flow_model
from gwpe.models.flows.support import ParameterSupport, SupportedPosterior
from gwpe.training.flow import phi0_symmetry
from gwpe.waveforms.priors import log_prior_density, sample_prior, support_pieces

PRIOR = StrainPriorConfig()
FIVE = ["m1", "m2", "phi0", "tc", "dL"]
SPINS = ["m1", "m2", "chi1z", "chi2z", "dL"]
SMALL = {
    "maf": {"transforms": 2, "hidden": [16, 16]},
    "maf_phase": {"transforms": 2, "hidden": [16, 16]},
    "cvae": {"hidden": [16, 16], "latent": 2},
    "cvae_plus": {"hidden": [16, 16], "latent": 2, "transforms": 1, "flow_hidden": [8, 8], "iaf_context": 2},
    "iaf": {"transforms": 2, "hidden": [16, 16]},
}
FAMILIES = list(SMALL)
EXACT = ("maf", "maf_phase", "iaf")  # the CVAEs' log_prob is the ELBO, a lower bound


def standardisation(names: list[str], seed: int = 0) -> Standardisation:
    theta = sample_prior(PRIOR, names, 4000, np.random.default_rng(seed))
    return Standardisation(tuple(names), theta.mean(0), theta.std(0))


def model_config(family: str, names: list[str], context: int = 8) -> dict:
    s = standardisation(names)
    kind = "maf" if family == "maf_phase" else family
    config = {"kind": kind, "features": len(names), "context_shape": [1, context], **SMALL[family]}
    periodic: tuple[str, ...] = ()
    if family == "maf_phase":
        config["phase"] = phi0_symmetry("pi", s)
        periodic = ("phi0",)
    config["support"] = {
        "parameters": names,
        "mean": s.mean.tolist(),
        "std": s.std.tolist(),
        "pieces": support_pieces(PRIOR, names, periodic),
    }
    return config


def build(family: str, names: list[str], seed: int = 0, context: int = 8):
    torch.manual_seed(seed)
    model = build_flow_model(model_config(family, names, context)).eval()
    with torch.no_grad():  # spread the random map: draws that reach the edges of the support
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model


def physical(model, x: torch.Tensor) -> np.ndarray:
    s = model.support
    return x.double().numpy() * s.std.numpy() + s.mean.numpy()


CASES = [(family, names) for family in FAMILIES for names in (FIVE, SPINS) if family != "maf_phase" or "phi0" in names]


@pytest.mark.parametrize("family, names", CASES, ids=[f"{f}-{len(n)}d-{n[2]}" for f, n in CASES])
def test_draws_lie_inside_the_prior_and_log_prob_is_minus_inf_outside(family, names):
    model = build(family, names)
    contexts = torch.randn(6, 1, 8) * 5
    draws = model.sample(contexts, 500)  # (n, B, P)
    assert draws.dtype == torch.float64
    theta = physical(model, draws).reshape(-1, len(names))
    assert np.isfinite(log_prior_density(PRIOR, names, theta)).all()
    log_prob = model.log_prob(draws[:, 0], contexts[0].expand(500, 1, 8))
    assert torch.isfinite(log_prob).all()

    inside = theta[:4].copy()
    outside = []
    for column, value in ((0, 90.0), (1, 20.0), (names.index("dL"), 3500.0)):
        row = inside[0].copy()
        row[column] = value
        outside.append(row)
    swapped = inside[1].copy()
    swapped[0], swapped[1] = 40.0, 60.0  # m1 < m2
    outside.append(swapped)
    outside = np.asarray(outside)
    x = torch.as_tensor((outside - model.support.mean.numpy()) / model.support.std.numpy(), dtype=torch.float32)
    values = model.log_prob(x, contexts[0].expand(len(x), 1, 8))
    assert torch.isneginf(values).all(), values


@pytest.mark.parametrize("family", FAMILIES)
def test_density_on_a_three_parameter_support_normalises(family):
    """Monte-Carlo integral of p(x | y) over a box around the support, within 3 SE of 1 (CVAEs: their ELBO
    bound integrates to at most 1)."""
    names = ["m1", "m2", "phi0"] if family == "maf_phase" else ["m1", "m2", "tc"]
    model = build(family, names, seed=1, context=4)
    for parameter in model.parameters():  # a mild map: the box estimate needs a density that is not a spike
        parameter.data.div_(3.0)
    s = model.support
    low = torch.tensor([PRIOR.mass_min, PRIOR.mass_min, 0.0 if "phi0" in names else PRIOR.tc_min])
    high = torch.tensor([PRIOR.mass_max, PRIOR.mass_max, 2 * math.pi if "phi0" in names else PRIOR.tc_max])
    generator = torch.Generator().manual_seed(2)
    n = 200_000
    theta = low + (high - low) * torch.rand(n, 3, generator=generator, dtype=torch.float64)
    x = ((theta - s.mean) / s.std).float()
    volume = float(torch.prod((high - low) / s.std))
    context = torch.randn(1, 4, generator=generator).expand(n, 1, 4)
    with torch.no_grad():
        density = model.log_prob(x, context).double().exp()
    integral = volume * density.mean().item()
    error = volume * density.std().item() / math.sqrt(n)
    if family in EXACT:
        assert abs(integral - 1.0) < 3 * error + 1e-3, (integral, error)
    else:
        assert integral < 1.0 + 3 * error, (integral, error)


def test_log_jacobian_matches_autograd_and_the_inverse_round_trips():
    names = ["m1", "m2", "phi0", "tc", "dL", "chi1z"]
    s = standardisation(names)
    support = ParameterSupport(
        {"parameters": names, "mean": s.mean.tolist(), "std": s.std.tolist(), "pieces": support_pieces(PRIOR, names)}
    )
    theta = sample_prior(PRIOR, names, 8, np.random.default_rng(3))
    x = torch.as_tensor(s.forward(theta), dtype=torch.float64)
    u, log_det = support(x)
    for row, expected in zip(x, log_det):
        jacobian = torch.autograd.functional.jacobian(lambda v: support(v[None])[0][0], row)
        assert torch.linalg.slogdet(jacobian)[1].item() == pytest.approx(expected.item(), abs=1e-9)
    back, log_det_inverse = support.inverse(u)
    assert torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(log_det + log_det_inverse, torch.zeros(8, dtype=torch.float64), atol=1e-9)
    jacobian = torch.autograd.functional.jacobian(lambda v: support.inverse(v[None])[0][0], u[0])
    assert torch.linalg.slogdet(jacobian)[1].item() == pytest.approx(log_det_inverse[0].item(), abs=1e-9)
    # any real u, however far out, maps inside the support
    extreme = torch.tensor([[60.0, -60.0, 3.0, -45.0, 45.0, 1e4], [-1e4, 1e4, -3.0, 0.0, -60.0, -1e4]])
    theta = support.inverse(extreme)[0].numpy() * s.std + s.mean
    assert np.isfinite(log_prior_density(PRIOR, names, theta)).all()


def test_distillation_through_the_support_keeps_kl_finite_at_high_temperature():
    from gwpe.models.distillation import distillation_terms

    teacher, student = build("iaf", SPINS, seed=3), build("iaf", SPINS, seed=4)
    strain = torch.randn(5, 1, 8)
    theta = sample_prior(PRIOR, SPINS, 5, np.random.default_rng(5))
    x = torch.as_tensor((theta - teacher.support.mean.numpy()) / teacher.support.std.numpy(), dtype=torch.float32)
    nll, kl = distillation_terms(student, teacher, strain, x, temperature=4.0, teacher_samples=16)
    assert torch.isfinite(nll) and torch.isfinite(kl)


def test_old_unbounded_packages_load_and_say_so(tmp_path):
    config = model_config("maf", FIVE)
    bounded = FlowModule(config)
    unbounded = FlowModule({k: v for k, v in config.items() if k != "support"})
    for name, module in (("bounded", bounded), ("unbounded", unbounded)):
        module.save_model(tmp_path / name)
    loaded = {name: FlowModule.load_model(tmp_path / name) for name in ("bounded", "unbounded")}
    assert isinstance(loaded["bounded"].model, SupportedPosterior)
    assert loaded["bounded"].parameterisation.startswith("bounded: (m1, m2) -> (chirp mass")
    assert loaded["unbounded"].parameterisation.startswith("unbounded")
    strain = torch.randn(1, 8)
    torch.manual_seed(0)
    a = bounded.eval().sample(strain, 16)
    torch.manual_seed(0)
    b = loaded["bounded"].sample(strain, 16)
    assert torch.equal(a, b)


def test_optional_methods_follow_the_wrapped_family():
    maf, cvae, iaf = (build(family, FIVE) for family in ("maf", "cvae", "iaf"))
    assert not hasattr(maf, "elbo_terms") and hasattr(cvae, "elbo_terms")
    assert hasattr(iaf, "sample_and_log_prob_embedded") and not hasattr(maf, "log_prob_embedded")
    strain = torch.randn(1, 8)
    torch.manual_seed(0)
    fast = maf.sample(strain, 64)
    torch.manual_seed(0)
    naive = maf.sample_naive(strain, 64)
    assert torch.allclose(fast, naive, atol=1e-5)
    reconstruction, kl = cvae.elbo_terms(fast.reshape(64, 5).float(), strain.expand(64, 1, 8))
    assert torch.isfinite(reconstruction).all() and torch.isfinite(kl).all()


def test_a_periodic_angle_rounded_past_its_range_is_wrapped_back():
    names = ["m1", "m2", "phi0"]
    s = standardisation(names)
    pieces = support_pieces(PRIOR, names, periodic=("phi0",))
    assert pieces[-1] == {"kind": "periodic", "index": 2, "low": 0.0, "high": 2 * math.pi}
    support = ParameterSupport({"parameters": names, "mean": s.mean.tolist(), "std": s.std.tolist(), "pieces": pieces})
    edge = torch.tensor([(2 * math.pi - s.mean[2]) / s.std[2], (0.0 - s.mean[2]) / s.std[2]], dtype=torch.float64)
    u = torch.zeros(2000, 3, dtype=torch.float64)
    u[:1000, 2] = edge[0] + torch.arange(1000) * 1e-16  # the fold's [low, low + period) rounded a hair too far
    u[1000:, 2] = edge[1] - torch.arange(1000) * 1e-16
    x = support.inverse(u)[0].numpy()
    theta = x * s.std + s.mean
    assert ((theta[:, 2] >= 0) & (theta[:, 2] <= 2 * math.pi)).all()
    assert np.isfinite(log_prior_density(PRIOR, names, theta)).all()
    outside = torch.tensor([[0.0, 0.0, (7.0 - s.mean[2]) / s.std[2]]])
    assert torch.isneginf(support(outside)[1]).all()
