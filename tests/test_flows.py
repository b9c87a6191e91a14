"""Flow posteriors (issue 5): batch-norm bijection, normalisation, fast sampler, KL annealing, tiny fits."""

import json

import numpy as np
import pytest
import torch
from scipy import stats
from zuko.flows.autoregressive import MaskedAutoregressiveTransform

from gwpe.models.flows import (
    CVAE,
    BatchNormTransform,
    batchnorm_layers,
    build_flow_model,
    build_maf,
    kl_weight,
    resolve_config,
)
from gwpe.models.flows.annealing import annealed_kl
from gwpe.models.flows.made import ContextSplitMADE
from gwpe.models.flows.networks import diag_normal_kl


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster, and fair to a machine shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise_batchnorm(model, generator):
    """Non-trivial eval statistics and affine parameters, so the tests see every term of the layer."""
    with torch.no_grad():
        for bn in batchnorm_layers(model):
            bn.set_statistics(
                torch.rand(bn.features, generator=generator) - 0.5, 0.5 + torch.rand(bn.features, generator=generator)
            )
            bn.log_gamma.copy_(0.3 * torch.randn(bn.features, generator=generator))
            bn.beta.copy_(0.3 * torch.randn(bn.features, generator=generator))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_transform_inverts_and_log_det_matches_autograd(mode):
    g = torch.Generator().manual_seed(0)
    bn = BatchNormTransform(3)
    _randomise_batchnorm(bn, g)
    bn.train(mode == "train")
    running_before = bn.running_mean.clone()
    x = 2.0 * torch.randn(16, 3, generator=g, dtype=torch.float32) + torch.tensor([1.0, -2.0, 0.5])
    t = bn()
    y, ladj = t.call_and_ladj(x)
    torch.testing.assert_close(t.inv(y), x, atol=1e-5, rtol=1e-5)
    for i in range(3):  # per-sample Jacobian, statistics held fixed (the transform keeps those it standardised with)
        jacobian = torch.autograd.functional.jacobian(lambda v: t(v.unsqueeze(0)).squeeze(0), x[i])
        assert float(torch.linalg.slogdet(jacobian).logabsdet) == pytest.approx(float(ladj[i].detach()), abs=1e-5)
    if mode == "train":  # batch statistics: y has mean beta and std exp(log_gamma); running stats moved by momentum
        torch.testing.assert_close(y.mean(0), bn.beta.detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(y.std(0, unbiased=False), bn.log_gamma.detach().exp(), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(bn.running_mean, 0.9 * running_before + 0.1 * x.mean(0))
    else:  # running statistics, formula by hand, nothing updated
        expected = (x - bn.running_mean) / (bn.running_var + bn.eps).sqrt() * bn.log_gamma.exp() + bn.beta
        torch.testing.assert_close(y, expected.detach())
        torch.testing.assert_close(bn.running_mean, running_before)


def test_batchnorm_statistics_from_the_whole_dataset():
    torch.manual_seed(0)
    bn = BatchNormTransform(2)
    data = torch.randn(1000, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([4.0, -1.0])
    bn.set_statistics_from(data)
    torch.testing.assert_close(bn.running_mean, data.mean(0))
    torch.testing.assert_close(bn.running_var, data.var(0))

    # in a MAF: one pass over (context, x) batches, pooled exactly; the first layer's inputs are MADE_0(x | y)
    model = build_maf(3, 4, transforms=2, hidden=(16, 16)).train()
    contexts, xs = torch.randn(300, 4), torch.randn(300, 3) * 2 + 1
    batches = [(contexts[i : i + 64], xs[i : i + 64]) for i in range(0, 300, 64)]
    assert model.set_batchnorm_statistics(batches) == 300
    assert model.training  # mode restored
    with torch.no_grad():
        inputs = model.flow.transform.transforms[0](contexts)(xs)
    first, second = batchnorm_layers(model)
    torch.testing.assert_close(first.running_mean, inputs.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first.running_var, inputs.var(0), atol=1e-5, rtol=1e-5)
    # the second layer saw MADE_1 of the first layer's output standardised with each batch's statistics
    made_0, bn_0, made_1 = model.flow.transform.transforms[:3]
    expected = second.running_mean.clone(), second.running_var.clone()
    with torch.no_grad():
        seen = torch.cat([made_1(c)(bn_0()(made_0(c)(x))) for c, x in batches])  # train mode: batch statistics
    torch.testing.assert_close(expected, (seen.mean(0), seen.var(0)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("features", [1, 2])
def test_maf_log_prob_normalises(features):
    g = torch.Generator().manual_seed(features)
    torch.manual_seed(features)
    model = build_maf(features, 3, transforms=3, hidden=(16, 16)).eval()
    _randomise_batchnorm(model, g)
    context = torch.randn(3, generator=g)
    axis = torch.linspace(-12.0, 12.0, 2001 if features == 1 else 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[axis] * features, indexing="ij"), dim=-1).reshape(-1, features)
    with torch.no_grad():
        density = model.log_prob(grid.float(), context).double().exp().reshape(*[len(axis)] * features)
    integral = density
    for _ in range(features):
        integral = torch.trapezoid(integral, axis, dim=0)
    assert float(integral) == pytest.approx(1.0, abs=2e-3)
    # Monte-Carlo (importance sampling from a wide Gaussian q): E_q[p / q] = integral of p
    proposal = torch.distributions.Normal(torch.zeros(features), 3.0 * torch.ones(features))
    draws = proposal.sample((20000,))
    with torch.no_grad():
        ratio = (model.log_prob(draws, context) - proposal.log_prob(draws).sum(-1)).exp()
    assert float(ratio.mean()) == pytest.approx(1.0, abs=4 * float(ratio.std()) / 20000**0.5 + 1e-3)


def _first_layer_calls(made_modules):
    """Forward hooks counting calls and rows on each MADE's first (context-reading) layer."""
    calls = []
    handles = [
        m.hyper[0].register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[:-1].numel()))
        for m in made_modules
    ]
    return calls, handles


def test_fast_sampler_equals_naive_zuko_and_reads_the_context_once_per_observation():
    torch.manual_seed(0)
    features, transforms, n = 4, 3, 200
    model = build_maf(features, 32, transforms=transforms, hidden=(32, 32, 32)).eval()
    _randomise_batchnorm(model, torch.Generator().manual_seed(1))
    mades = [t for t in model.flow.transform.transforms if isinstance(t, MaskedAutoregressiveTransform)]
    for context in (torch.randn(32), torch.randn(3, 32)):  # one observation, then a batch of three
        calls, handles = _first_layer_calls(mades)
        torch.manual_seed(7)
        naive = model.sample_naive(context, n)
        naive_calls = list(calls)
        calls.clear()
        torch.manual_seed(7)
        fast = model.sample(context, n)
        for h in handles:
            h.remove()
        batch = context.shape[:-1].numel()
        assert fast.shape == naive.shape == (n, *context.shape[:-1], features)
        torch.testing.assert_close(fast, naive, atol=1e-4, rtol=1e-4)
        assert naive_calls == [n * batch] * (features * transforms)  # zuko: every pass, every sample
        assert calls == [batch] * transforms  # fast: once per MADE, one row per observation
    noise = torch.randn(50, features)
    torch.testing.assert_close(
        model.sample(context[0], 50, noise=noise), model.flow(context[0]).transform.inv(noise), atol=1e-4, rtol=1e-4
    )


def test_fast_sampler_rebuilds_its_cached_plan_after_a_weight_update():
    torch.manual_seed(0)
    model = build_maf(3, 8, transforms=2, hidden=(16, 16)).eval()
    context, noise = torch.randn(8), torch.randn(40, 3)
    before = model.sample(context, 40, noise=noise)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.flow(context).log_prob(torch.randn(5, 3)).sum().backward()
    optimizer.step()  # in place: the same tensors, new values
    after = model.sample(context, 40, noise=noise)
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, model.flow(context).transform.inv(noise), atol=1e-4, rtol=1e-4)
    for parameter in model.parameters():  # through .data: no version bump, seen by value
        parameter.data.mul_(1.1)
    torch.testing.assert_close(
        model.sample(context, 40, noise=noise), model.flow(context).transform.inv(noise), atol=1e-4, rtol=1e-4
    )


def test_cvae_plus_fast_sampler_with_per_sample_latent_context_equals_naive():
    torch.manual_seed(0)
    model = build_flow_model(
        {
            "kind": "cvae_plus",
            "features": 3,
            "context_shape": [2, 8],
            "latent": 4,
            "hidden": [16, 16],
            "flow_hidden": [16, 16],
            "transforms": 2,
            "iaf_context": 3,
        }
    ).eval()
    _randomise_batchnorm(model, torch.Generator().manual_seed(2))
    decoder_mades = [t for t in model.decoder_flow.transforms if isinstance(t, MaskedAutoregressiveTransform)]
    for context in (torch.randn(2, 8), torch.randn(2, 2, 8)):
        torch.manual_seed(3)
        naive = model.sample_naive(context, 100)
        calls, handles = _first_layer_calls(decoder_mades)
        torch.manual_seed(3)
        fast = model.sample(context, 100)
        for h in handles:
            h.remove()
        torch.testing.assert_close(fast, naive, atol=1e-4, rtol=1e-4)
        assert calls == [context.shape[:-2].numel()] * 2  # the strain part once per observation


def test_context_split_made_equals_zuko_and_skips_the_context_gradient():
    """Same state dict, same outputs and parameter gradients as zuko's MADE; backward FLOPs smaller by exactly
    the context's input gradient, 2 B H C per unit, since the strain needs none (``made.py``)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    b, c, f, hidden = 16, 64, 3, [32, 32]
    split = ContextSplitMADE(f, c, order=torch.arange(f).flip(0), hidden_features=hidden)
    plain = MaskedAutoregressiveTransform(f, c, order=torch.arange(f).flip(0), hidden_features=hidden)
    plain.load_state_dict(split.state_dict())
    assert split.split and split.state_dict().keys() == plain.state_dict().keys()
    x, context = torch.randn(b, f, requires_grad=True), torch.randn(b, c)
    flops, grads = [], []
    for made in (split, plain):
        with FlopCounterMode(display=False) as counter:
            y, ladj = made(context).call_and_ladj(x)
            grads.append(torch.autograd.grad((y**2).sum() + ladj.sum(), [x, *made.parameters()]))
        flops.append(counter.get_total_flops())
        torch.testing.assert_close(made(context).inv(y), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split(context)(x), plain(context)(x), atol=1e-6, rtol=1e-5)
    for g_split, g_plain in zip(*grads):
        torch.testing.assert_close(g_split, g_plain, atol=1e-6, rtol=1e-5)
    assert flops[1] - flops[0] == 2 * b * hidden[0] * c
    # (n, B, F) samples against a (B, C) context broadcast as in zuko
    xs = torch.randn(5, b, f)
    torch.testing.assert_close(split(context)(xs), plain(context)(xs), atol=1e-6, rtol=1e-5)


def test_kl_annealing_schedule_and_floor():
    assert [kl_weight(e) for e in range(6)] == pytest.approx([1e-5, 1 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert kl_weight(6) == pytest.approx(1e-5) and kl_weight(19) == pytest.approx(1 / 3)
    assert kl_weight(23) == 1.0 and kl_weight(18) == pytest.approx(1e-5)  # fourth cycle starts at epoch 18
    assert all(kl_weight(e) == 1.0 for e in range(24, 300))
    with pytest.raises(ValueError):
        kl_weight(-1)
    small = torch.tensor([0.1, 0.2], requires_grad=True)  # mean 0.15 < 0.2: ignored (constant, no gradient)
    annealed_kl(small, 1.0).backward()
    assert small.grad.abs().sum() == 0
    large = torch.tensor([0.3, 0.5], requires_grad=True)
    assert float(annealed_kl(large, 0.5).detach()) == pytest.approx(0.2)
    annealed_kl(large, 0.5).backward()
    torch.testing.assert_close(large.grad, torch.tensor([0.25, 0.25]))


def test_cvae_analytic_kl_and_loss_annealing():
    loc_q, scale_q, loc_p, scale_p = (
        torch.randn(5, 4),
        torch.rand(5, 4) + 0.1,
        torch.randn(5, 4),
        torch.rand(5, 4) + 0.1,
    )
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc_q, scale_q), torch.distributions.Normal(loc_p, scale_p)
    ).sum(-1)
    torch.testing.assert_close(diag_normal_kl(loc_q, scale_q, loc_p, scale_p), expected)
    torch.manual_seed(0)
    model = CVAE(2, 3, latent=2, hidden=(8, 8, 8))
    x, y = torch.randn(64, 2), torch.randn(64, 3)
    with torch.no_grad():
        torch.manual_seed(1)
        reconstruction, kl = model.elbo_terms(x, y)
        torch.manual_seed(1)
        loss = float(model.loss(x, y, epoch=0))
        torch.manual_seed(1)
        elbo = float(model.log_prob(x, y).mean())
    assert loss == pytest.approx(float(reconstruction.mean() + 1e-5 * kl.mean().clamp(min=0.2)), rel=1e-5)
    assert elbo == pytest.approx(float(-(reconstruction + kl).mean()), rel=1e-5)
    assert float(kl.min()) >= 0.0


def _conditional_gaussian(n, generator):
    """y ~ U(-1, 1); x1 = 2y + 0.5 + 0.3 e1; x2 = y - x1/2 + 0.2 e2: at y, x1 ~ N(2y + .5, .3^2), x2 ~ N(-.25, .25^2),
    correlated (cov -0.045); log p(x | y) has mean -[log(2 pi e) + log(0.3 * 0.2)]."""
    y = 2 * torch.rand(n, 1, generator=generator) - 1
    x1 = 2 * y + 0.5 + 0.3 * torch.randn(n, 1, generator=generator)
    x2 = y - x1 / 2 + 0.2 * torch.randn(n, 1, generator=generator)
    return torch.cat([x1, x2], dim=-1), y


def _truth(y0):
    return [stats.norm(2 * y0 + 0.5, 0.3).cdf, stats.norm(-0.25, np.sqrt(0.04 + 0.0225)).cdf]


def _fit(model, steps, lr, groups=None, epoch=None):
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(groups or model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        x, y = _conditional_gaussian(256, g)
        loss = model.loss(x, y, epoch=None if epoch is None else epoch(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.set_batchnorm_statistics([(y, x) for x, y in (_conditional_gaussian(1024, g) for _ in range(4))])
    return model.eval()


def test_tiny_maf_fits_a_known_conditional_gaussian_posterior():
    torch.manual_seed(0)
    model = _fit(build_maf(2, 1, transforms=2, hidden=(32, 32)), steps=400, lr=3e-3)
    y0 = 0.3
    samples = model.sample(torch.tensor([y0]), 1500).numpy()
    for column, cdf in enumerate(_truth(y0)):
        assert stats.kstest(samples[:, column], cdf).pvalue > 0.01
    # the test has power: a 0.25-sigma shift of the truth is rejected
    assert stats.kstest(samples[:, 0], stats.norm(2 * y0 + 0.5 + 0.075, 0.3).cdf).pvalue < 0.01
    x, y = _conditional_gaussian(2000, torch.Generator().manual_seed(5))
    with torch.no_grad():  # exact NLL near the true conditional entropy: 0.5 log(2 pi e)*2 + log(0.3 * 0.2)
        assert float(-model.log_prob(x, y).mean()) == pytest.approx(2.8379 + np.log(0.06), abs=0.1)


def test_tiny_cvae_plus_elbo_improves_and_samples_match_the_posterior_moments():
    torch.manual_seed(0)
    model = build_flow_model(
        {
            "kind": "cvae_plus",
            "features": 2,
            "context_shape": [1],
            "latent": 2,
            "hidden": [16, 16],
            "flow_hidden": [16, 16],
            "transforms": 2,
            "iaf_context": 2,
        }
    )
    x, y = _conditional_gaussian(2000, torch.Generator().manual_seed(5))
    with torch.no_grad():
        before = float(model.eval().log_prob(x, y).mean())
    groups = model.parameter_groups(gaussian_lr=2e-3, flow_lr=4e-3)
    assert [g["lr"] for g in groups] == [2e-3, 4e-3]
    model = _fit(model, steps=200, lr=2e-3, groups=groups, epoch=lambda step: step // 40)  # beta: 1e-5 .. 1, ends at 1
    with torch.no_grad():
        after = float(model.log_prob(x, y).mean())
    exact = -(2.8379 + np.log(0.06))
    assert after > before + 2.0 and after == pytest.approx(exact, abs=0.2)  # ELBO <= log p, close to it
    y0 = 0.3
    samples = model.sample(torch.tensor([y0]), 4000)
    assert samples.shape == (4000, 2)
    torch.testing.assert_close(samples.mean(0), torch.tensor([2 * y0 + 0.5, -0.25]), atol=0.05, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.tensor([0.3, 0.25]), atol=0.03, rtol=0)


def test_factory_configs_groups_and_pickle_free_round_trip(tmp_path):
    with pytest.raises(ValueError, match="flow kind"):
        build_flow_model({"kind": "nsf", "features": 2, "context_shape": [4]})
    with pytest.raises(ValueError, match="unknown maf options"):
        build_flow_model({"kind": "maf", "features": 2, "context_shape": [4], "latent": 3})
    assert resolve_config({"kind": "cvae", "features": 5, "context_shape": [1, 1024]})["hidden"] == [2048] * 3
    # strain-8d CVAE+: latent 16, 10 MADE units per flow, IAF context 16, frozen N(0, I) prior
    model = build_flow_model(
        {
            "kind": "cvae_plus",
            "features": 8,
            "context_shape": [1, 64],
            "latent": 16,
            "transforms": 10,
            "iaf_context": 16,
            "frozen_prior": True,
            "hidden": [8],
            "flow_hidden": [8],
            "embedding": {"kind": "conv", "features": 12, "channels": [4]},
        }
    )
    assert model.prior is None and len(model.prior_flow.transforms) == 20  # 10 MADEs + 10 batch norms
    groups = model.parameter_groups()
    assert [g["lr"] for g in groups] == [1e-4, 4e-4]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for g in groups for p in g["params"])
    context, x = torch.randn(5, 1, 64), torch.randn(5, 8)
    assert model.sample(context[0], 3).shape == (3, 8) and model.sample(context, 3).shape == (3, 5, 8)

    maf = build_flow_model(
        {
            "kind": "maf",
            "features": 3,
            "context_shape": [2, 16],
            "hidden": [8, 8],
            "embedding": {"kind": "conv", "features": 6, "channels": [4, 4]},
        }
    )
    embedded = []
    maf.embedding.register_forward_hook(lambda m, i, o: embedded.append(o.shape))
    maf.sample(torch.randn(2, 16), 100)
    assert embedded == [(6,)]  # the strain is embedded once per observation
    torch.save(maf.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps(maf.config))
    copy = build_flow_model(json.loads((tmp_path / "config.json").read_text()))
    copy.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    context, x = torch.randn(4, 2, 16), torch.randn(4, 3)
    torch.testing.assert_close(copy.eval().log_prob(x, context), maf.eval().log_prob(x, context))


def test_periodic_symmetry_normalises_is_shift_invariant_and_fold_draws_its_density():
    """phase.py on a leaky 1-D Gaussian q (mean near the circle's edge, sd 0.3 P): q_sym integrates to 1 on
    the circle, q_sym(x + P/2) = q_sym(x), folded draws follow q_sym (KS), and for a target p with both
    properties the cross-entropy can only improve: E_p log q_sym > E_p log q."""
    from gwpe.models.flows.phase import PeriodicSymmetry

    low, period = -1.0, 2.5
    phase = PeriodicSymmetry(index=0, low=low, period=period, copies=2, wraps=3)  # q this wide needs 3 wraps
    q = torch.distributions.Normal(
        torch.tensor(-0.9, dtype=torch.float64), torch.tensor(0.3 * period, dtype=torch.float64)
    )
    log_q = lambda x: q.log_prob(x[..., 0])  # noqa: E731
    grid = torch.linspace(low, low + period, 20_001, dtype=torch.float64)[:-1].unsqueeze(-1)
    density = phase.log_prob(log_q, grid).exp()
    assert float(density.mean() * period) == pytest.approx(1.0, abs=1e-4)
    assert float(q.cdf(torch.tensor(low))) > 0.3  # a third of q's mass is off the circle
    shifted = phase.log_prob(log_q, grid + period / 2)
    torch.testing.assert_close(shifted, phase.log_prob(log_q, grid), atol=1e-9, rtol=1e-9)
    draws = phase.fold(q.sample((4000, 1)), generator=torch.Generator().manual_seed(0))[:, 0].numpy()
    assert draws.min() >= low and draws.max() < low + period
    cdf = np.cumsum(density.numpy()) * period / len(grid)
    points = grid[:, 0].numpy()
    assert stats.kstest(draws, lambda v: np.interp(v, points, cdf)).pvalue > 0.01
    # p: uniform mixture of two von-Mises-like bumps P/2 apart on the circle (periodic and invariant)
    g = torch.Generator().manual_seed(1)
    target = low + torch.remainder(
        torch.randn(20_000, 1, generator=g, dtype=torch.float64) * 0.2
        - 0.9
        - low
        + (period / 2) * torch.randint(2, (20_000, 1), generator=g),
        period,
    )
    assert float(phase.log_prob(log_q, target).mean()) > float(log_q(target).mean()) + 0.1
    with pytest.raises(ValueError, match="period = -1"):
        PeriodicSymmetry(0, 0.0, -1.0)


def test_maf_with_phase_samples_on_the_circle_and_its_log_prob_sums_the_images(tmp_path):
    """A MAF with ``phase``: draws of feature 1 on [low, low + P), log_prob = the images' log-mean-exp of the
    flow's, the training loss is the flow's own, and the option survives the pickle-free package."""
    from gwpe.models.flow_module import FlowModule

    torch.manual_seed(0)
    phase = {"index": 1, "low": -1.7, "period": 3.4, "copies": 2, "wraps": 1}
    module = FlowModule(
        {"kind": "maf", "features": 3, "context_shape": [1, 8], "transforms": 2, "hidden": [16, 16], "phase": phase}
    )
    model = module.model.eval()
    strain = torch.randn(1, 8)
    draws = module.sample(strain, 2000)
    assert draws[:, 1].min() >= -1.7 and draws[:, 1].max() < -1.7 + 3.4
    assert abs(float((draws[:, 1] > 0).float().mean()) - 0.5) < 0.1  # the P/2 shift fills both halves
    x, context = torch.randn(7, 3), torch.randn(7, 1, 8)
    folded = x.clone()
    folded[:, 1] = -1.7 + torch.remainder(x[:, 1] + 1.7, 3.4)
    images = torch.stack(
        [model.flow_log_prob(folded + torch.tensor([0.0, i * 1.7, 0.0]), context) for i in range(-2, 3)]
    )
    torch.testing.assert_close(model.log_prob(x, context), torch.logsumexp(images, 0) - np.log(2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.loss(x, context), -model.flow_log_prob(x, context).mean())
    module.save_model(tmp_path / "maf")
    again = FlowModule.load_model(tmp_path / "maf")
    assert again.model.phase.config() == phase
    torch.testing.assert_close(again.model.log_prob(x, context), model.log_prob(x, context))
    with pytest.raises(ValueError, match="phase index = 5"):
        build_maf(3, 8, transforms=1, hidden=[8], phase={**phase, "index": 5})
