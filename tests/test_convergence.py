"""Convergence checked, not assumed (issue 26): rank-normalised split R-hat and bulk / tail ESS through ArviZ,
the extension loop that stops on convergence or records non-convergence at its cap, and the reference file's
attributes naming the method that really produced its samples."""

import io
import json
import warnings
from contextlib import contextmanager
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from gwpe.inference.convergence import ConvergenceTarget, diagnose, extend_until_converged, warn_unconverged
from gwpe.inference.reference import run_emcee


def _arviz(chains: np.ndarray, method: str, kind: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        dataset = az.convert_to_dataset(chains.transpose(1, 0, 2))
        if kind == "rhat":
            return az.rhat(dataset, method=method)["x"].values
        return az.ess(dataset, method=method)["x"].values


def _ar1(draws: int, chains: int, dim: int, rho: float, seed: int) -> np.ndarray:
    """(draws, chains, dim) stationary AR(1) chains with lag-1 correlation rho (tau = (1 + rho) / (1 - rho))."""
    rng = np.random.default_rng(seed)
    x = np.empty((draws, chains, dim))
    x[0] = rng.standard_normal((chains, dim))
    noise = rng.standard_normal((draws, chains, dim)) * np.sqrt(1 - rho**2)
    for t in range(1, draws):
        x[t] = rho * x[t - 1] + noise[t]
    return x


def test_diagnostics_are_arviz_rank_rhat_and_bulk_tail_ess():
    chains = _ar1(1000, 8, 3, rho=0.5, seed=0)
    report = diagnose(chains)
    np.testing.assert_allclose(report.rhat, _arviz(chains, "rank", "rhat"))
    np.testing.assert_allclose(report.ess_bulk, _arviz(chains, "bulk", "ess"))
    np.testing.assert_allclose(report.ess_tail, _arviz(chains, "tail", "ess"))
    # AR(1) with rho 0.5: tau = 3, so about 8,000 / 3 effective draws in the bulk
    assert np.all(report.ess_bulk > 1800) and np.all(report.ess_bulk < 3600)
    assert report.converged and np.max(report.rhat) < 1.01
    summary = report.summary()
    assert summary["converged"] is True and summary["target_rhat"] == 1.01 and len(summary["ess_tail"]) == 3
    json.dumps(summary)  # JSON-ready
    assert not warn_unconverged("mixed", report, ["a", "b", "c"], stream=io.StringIO())


def test_a_stuck_chain_reads_rhat_above_target_and_is_reported_not_converged():
    chains = _ar1(1000, 8, 2, rho=0.5, seed=1)
    chains[:, 3, 1] = 2.0 + 0.1 * chains[:, 3, 1]  # one chain stuck in another place in the second parameter
    report = diagnose(chains)
    assert report.rhat[0] < 1.01 and report.rhat[1] > 1.01 and not report.converged
    stream = io.StringIO()
    assert warn_unconverged("test sampler", report, ["a", "b"], stream=stream)
    line = stream.getvalue()
    assert line.count("\n") == 1 and "NOT CONVERGED" in line and "(b; target <= 1.01)" in line
    # a parameter no chain has moved in has no R-hat: not converged either
    frozen = diagnose(np.ones((100, 4, 1)))
    assert not frozen.converged and json.dumps(frozen.summary())


def test_too_few_effective_tail_draws_is_not_converged_even_with_good_rhat():
    chains = _ar1(400, 4, 1, rho=0.9, seed=2)  # tau 19: ~80 effective draws
    report = diagnose(chains, ConvergenceTarget(rhat=1.5, tail_ess=400))
    assert np.max(report.rhat) <= 1.5 and report.ess_tail[0] < 400 and not report.converged


def test_extension_stops_once_converged():
    rng = np.random.default_rng(3)
    stretches = []

    def advance():
        stretches.append(rng.standard_normal((250, 4, 2)))
        return np.concatenate(stretches)

    report = extend_until_converged(advance, ConvergenceTarget(1.01, tail_ess=2500), max_rounds=20)
    # iid: tail ESS ~ 1,000 per 250 x 4 draws, so it converges in the third or fourth round and stops there
    assert report.converged and 2 <= report.rounds <= 5 and len(stretches) == report.rounds
    assert [row["draws"] for row in report.history] == [250 * (k + 1) for k in range(report.rounds)]
    assert report.summary()["convergence_rounds"] == report.rounds


def test_extension_records_non_convergence_at_the_cap():
    stretches = []

    def advance():
        block = _ar1(100, 4, 1, rho=0.3, seed=len(stretches))
        block[:, 0] += 5.0  # chain 0 lives elsewhere for ever
        stretches.append(block)
        return np.concatenate(stretches)

    report = extend_until_converged(advance, ConvergenceTarget(), max_rounds=3)
    assert not report.converged and report.rounds == 3 and len(stretches) == 3
    assert report.summary()["converged"] is False and report.summary()["max_rhat"] > 1.5


def _gaussian(x):
    return -0.5 * np.sum(np.atleast_2d(x) ** 2, axis=1)


def test_emcee_extends_until_converged_and_stops_before_its_cap():
    start = 0.01 * np.random.default_rng(4).standard_normal((16, 2))
    result = run_emcee(_gaussian, start, steps=300, burn=100, seed=0, progress=False, max_steps=5000, extend_steps=200)
    assert result.converged and result.steps < 5000 and result.steps == 300 + 200 * (result.convergence.rounds - 1)
    assert np.max(result.rhat) <= 1.01 and np.min(result.convergence.ess_tail) >= 400
    assert result.evaluations == 16 * (result.steps + 1) and len(result.samples) == 16 * (result.steps - 100)
    assert result.diagnostics()["converged"] is True


def test_emcee_at_its_cap_is_recorded_not_converged():
    start = 0.01 * np.random.default_rng(5).standard_normal((8, 2))
    result = run_emcee(
        _gaussian,
        start,
        steps=60,
        burn=20,
        seed=0,
        progress=False,
        max_steps=100,
        extend_steps=20,
        target=ConvergenceTarget(1.01, tail_ess=1e6),
    )
    assert not result.converged and result.steps == 100 and result.convergence.rounds == 3
    diagnostics = result.diagnostics()
    assert diagnostics["converged"] is False and diagnostics["target_tail_ess"] == 1e6
    assert len(diagnostics["convergence_history"]) == 3


def test_flow_mcmc_production_runs_to_its_cap_unless_converged():
    from gwpe.inference.flowmc import FlowMC

    def log_prob(x):
        return -0.5 * (x**2).sum(-1)

    def run(target):
        sampler = FlowMC(
            log_prob,
            2,
            n_chains=8,
            local="rw",
            n_local=3,
            n_global=3,
            training_loops=2,
            production_loops=2,
            flow_epochs=1,
            n_local_production=1,
            transforms=1,
            hidden=(8,),
            seed=0,
        )
        initial = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
        return sampler.run(initial, max_production_loops=4, convergence=target)

    capped = run(ConvergenceTarget(1.01, tail_ess=1e9))
    assert capped.history["phase"].count("production") == 4 and not capped.converged
    assert np.isfinite(capped.history["max_rhat"][-1]) and capped.history["min_ess_tail"][-1] < 1e9
    easy = run(ConvergenceTarget(10.0, tail_ess=1.0))
    assert easy.history["phase"].count("production") == 2 and easy.converged
    np.testing.assert_allclose(easy.convergence.rhat, diagnose(easy.samples.double().numpy()).rhat)


@contextmanager
def _likelihood(log_posterior):
    yield SimpleNamespace(log_posterior=log_posterior, evaluations=0)


@pytest.mark.parametrize("method", ["emcee", "adaptive_is", "stalled"])
def test_reference_file_names_the_method_that_made_its_samples(tmp_path, monkeypatch, capsys, method):
    """A stalled adaptive IS (an NPE that misses the posterior) falls back to emcee for that injection."""
    import gwpe.inference.reference_file as reference_file
    import gwpe.inference.sampling as sampling
    import gwpe.tracking
    from gwpe.config import ProjectConfig

    names = ["m1", "m2", "dL"]
    truth = np.array([40.0, 30.0, 1000.0])

    def log_posterior(theta):
        theta = np.atleast_2d(theta)
        z = (theta - truth) / np.array([1.0, 1.0, 50.0])
        return np.where(theta[:, 1] <= theta[:, 0], -0.5 * (z**2).sum(1), -np.inf)

    event = SimpleNamespace(
        index=0,
        names=names,
        truth=truth,
        observation=np.zeros((1, 8)),
        likelihood=lambda workers: _likelihood(log_posterior),
        dataset=SimpleNamespace(prior=SimpleNamespace(mass_min=20.0, mass_max=80.0)),  # the probit mass map's triangle
    )
    fake_result = {
        "samples": np.tile(truth, (10, 1)),
        "draws": np.tile(truth, (20, 1)),
        "weights": np.full(20, 0.05),
        "diagnostics": {
            "method": "adaptive_is",
            "log_evidence": -1.0,
            "log_evidence_error": 0.01,
            "effective_samples": 20.0,
            "efficiency": 1.0,
            "final_draws": 20,
            "converged": True,
            "likelihood_evaluations": 20,
            "seconds": 0.0,
        },
    }
    monkeypatch.setattr(reference_file, "flows_dataset", lambda config: SimpleNamespace(parameters=names))
    monkeypatch.setattr(reference_file, "flows_store", lambda config: tmp_path)
    monkeypatch.setattr(gwpe.tracking, "dataset_md5", lambda path: "md5")
    monkeypatch.setattr(sampling, "load_event", lambda config, index: event)
    monkeypatch.setattr(sampling, "load_npe", lambda config: object())
    if method == "stalled":
        fake_result = {"diagnostics": {"method": "adaptive_is", "converged": False, "stalled_beta": 0.03}}
    monkeypatch.setattr(reference_file, "_adaptive_is", lambda *args: fake_result)  # the sampler itself: tested above
    import gwpe.data.strain_dataset as strain_dataset

    monkeypatch.setattr(strain_dataset, "StrainDataset", lambda *args, **kwargs: [None] * 5)
    reference = {
        "injections": 1,
        "method": "adaptive_is" if method == "stalled" else method,
        "walkers": 8,
        "steps": 200,
        "burn": 50,
        "workers": 0,
    }
    reference.update({"max_steps": 400, "path": str(tmp_path / "reference")})
    config = ProjectConfig.model_validate({"profile": "test", "flows": {"reference": reference}})

    summary = reference_file.build_reference_posteriors(config, progress=False)
    attrs, items = reference_file.read_reference_posteriors(tmp_path / "reference" / "strain-5d.h5")
    if method == "stalled":
        diagnostics = items[0]["diagnostics"]
        assert diagnostics["method"] == "emcee" and diagnostics["fallback_from"]["stalled_beta"] == 0.03
        assert summary["fallbacks"] == [0] and json.loads(attrs["fallbacks"]) == [0]
        assert items[0]["samples"].shape[1] == 3 and "falling back to emcee" in capsys.readouterr().err
        return
    assert attrs["method"] == method and summary["method"] == method
    if method == "emcee":  # the label names the moves the code runs (it once said "stretch move" for DE moves)
        from gwpe.inference.reference import ensemble_moves

        assert all(type(move).__name__ in attrs["sampler"] for move, _ in ensemble_moves())
        assert "differential-evolution" in attrs["sampler"] and "Snooker" not in attrs["sampler"]
        diagnostics = items[0]["diagnostics"]
        assert diagnostics["method"] == "emcee" and 200 <= diagnostics["steps"] <= 400
        assert {"max_rhat", "min_ess_bulk", "min_ess_tail", "converged", "target_rhat"} <= set(diagnostics)
        assert attrs["converged"] == diagnostics["converged"] == summary["converged"]
    else:
        assert "adaptive importance sampling" in attrs["sampler"] and "'maf'" in attrs["sampler"]
        assert "stretch" not in attrs["sampler"] and "emcee" not in attrs["sampler"]
        with h5py.File(tmp_path / "reference" / "strain-5d.h5") as h5:
            assert h5["injection_0/weights"].shape == (20,) and h5["injection_0/draws"].shape == (20, 3)
        assert attrs["npe_model"] == "maf" and items[0]["samples"].shape == (10, 3)


def test_sd_error_is_arviz_mcse_and_matches_the_scatter_of_sds_over_repeated_heavy_tailed_chains():
    # a slowly varying scale (log-scale AR(1), rho 0.95) on fast AR(1) chains: heavy tails visited in long
    # excursions, as a flow-MCMC chain visits an under-covered tail. The draws decorrelate fast (high bulk ESS),
    # their squares slowly, so 1 / sqrt(2 bulk ESS) understates the sd's error; ArviZ's mcse sd does not
    def chains(seed):
        return _ar1(500, 8, 1, rho=0.5, seed=seed) * np.exp(0.5 * _ar1(500, 8, 1, rho=0.95, seed=1000 + seed))

    report = diagnose(chains(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az

        mcse = az.mcse(az.convert_to_dataset(chains(0).transpose(1, 0, 2)), method="sd")["x"].values
    np.testing.assert_allclose(report.sd_error, mcse / chains(0).reshape(-1, 1).std(axis=0))
    sds = np.array([chains(seed).std() for seed in range(60)])
    claimed = np.mean([diagnose(chains(seed)).sd_error[0] for seed in range(0, 60, 6)])
    observed = sds.std(ddof=1) / sds.mean()
    gaussian = 1 / np.sqrt(2 * report.ess_bulk[0])  # what a bulk-ESS argument would say
    assert 0.6 < claimed / observed < 1.6, (claimed, observed)
    assert observed > 1.4 * gaussian, (observed, gaussian)


def test_an_sd_error_target_holds_back_convergence_until_the_widths_are_known():
    chains = np.random.default_rng(5).standard_normal((500, 4, 2))  # iid: sd error ~ 1 / sqrt(2 x 2,000) = 1.6 %
    assert diagnose(chains, ConvergenceTarget(sd_error=0.03)).converged
    report = diagnose(chains, ConvergenceTarget(sd_error=0.01))
    assert not report.converged and 0.012 < report.summary()["max_sd_error"] < 0.02
    assert report.summary()["target_sd_error"] == 0.01
    stream = io.StringIO()
    assert warn_unconverged("flow-MCMC", report, ["a", "b"], stream=stream)
    assert "max sd error 0.01" in stream.getvalue() and "target <= 0.01)" in stream.getvalue()
