"""``gwpe evidence``: importance-sampled NPE, the learned harmonic mean, and the comparison of every posterior.

Reads ``gwpe sample``'s file for the same injection and computes (``gwpe.inference.evidence``):

- **IS of the NPE** (``is_npe``): theta ~ q(theta | x) from the NPE flow, weights L pi / q with the normalised
  prior; sample efficiency ESS / n, log Z with its standard error, a resampled posterior;
- **IS of the refined proposal** (``is_flow``): the warm flow-MCMC's final proposal, i.e. the NPE posterior
  distilled into a small flow and then trained on the chains, used as an importance-sampling proposal in
  sampler coordinates (exact weights: it is a normalised density), mixed 80/20 with itself at a base widened
  to T = 1.5 (defensive importance sampling: a flow's tails can be lighter than the posterior's, and then a
  few draws take most of the weight; seen here while the phase walls still cut the mode). When the NPE is too
  broad for useful weights (the demo profile's is: efficiency 0.04 %), this is how its amortised guess still
  pays off;
- **learned harmonic mean** (``lhm``) on all the warm flow-MCMC samples, its standard error scaled by
  sqrt(n / ESS) for their correlation; their log posterior is stored, so it costs no likelihood call. The
  concentrated flow lives on R^D while the posterior lives in the sampler window (0 < nu <= 1, the prior box,
  the phase window, which the broad phi0 posterior fills): the flow's mass inside is measured from its own
  draws and divided out (``learned_harmonic_mean(in_support=...)``; 0.11 in log Z on the demo injection).

Each posterior (IS ones resampled) is compared with the warm flow-MCMC by the JS divergence of every 1-D
marginal; they agree when all are <= ``sampling.agreement_js``. Output ``<sampling.path>/<dataset>-evidence.h5``
(per IS method: proposal draws in physical units, normalised weights, resampled posterior; estimates as
JSON attributes), a corner plot overlaying NPE, IS, flow-MCMC and emcee, metrics, and an MLflow run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

import gwpe
from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


def evidence_path(config: ProjectConfig) -> Path:
    return Path(config.sampling.path) / f"{config.flows.dataset}-evidence.h5"


def _estimate_dict(estimate, seconds: float | None = None, evaluations: int | None = None) -> dict:
    out = {"log_evidence": estimate.log_evidence, "standard_error": estimate.standard_error,
           "effective_samples": estimate.effective_samples, "efficiency": estimate.efficiency}
    if evaluations is not None:
        out["likelihood_evaluations"] = evaluations
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


def run_evidence(config: ProjectConfig, plots_dir: str | Path | None = None) -> dict:
    import time

    import h5py

    from gwpe.evaluation.corner_plots import posterior_corner
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.evidence import defensive_mixture, importance_sampling, learned_harmonic_mean
    from gwpe.inference.flowmc import StandardisedFlow
    from gwpe.inference.sample_stage import (inside_prior, load_event, load_npe, npe_draws, proposal_path,
                                             read_sampling, sampling_path, torch_density)
    from gwpe.tracking import stage_run

    settings = config.sampling
    source = sampling_path(config)
    if not source.exists():
        raise ConfigError(f"no sampler output at {source}; run `gwpe sample --params ...` first (DVC stage sample)")
    attrs, runs = read_sampling(source)
    if int(attrs["injection"]) != settings.injection or attrs["npe_model"] != settings.model:
        raise ConfigError(f"{source} holds injection {attrs['injection']} with model {attrs['npe_model']!r}; "
                          f"sampling asks for injection {settings.injection} with {settings.model!r}: rerun `gwpe sample`")
    event = load_event(config, settings.injection)
    module = load_npe(config)
    proposal_config = json.loads(attrs["proposal"])
    proposal = StandardisedFlow.from_state(proposal_config, torch.load(proposal_path(config), weights_only=True))
    coordinates = SamplerCoordinates(event.names, fold_phase=True, phase_centre=proposal_config["phase_centre"])
    n = settings.npe_samples
    generator = torch.Generator().manual_seed(settings.seed)
    estimates, draws = {}, {}
    with event.likelihood(settings.workers) as likelihood:
        theta, log_q = npe_draws(module, event, n, settings.seed + 1)
        began, templates = time.perf_counter(), likelihood.evaluations
        estimate, weights, resampled = importance_sampling(torch_density(likelihood.log_posterior), torch.as_tensor(theta),
                                                           torch.as_tensor(log_q), resample=n, generator=generator)
        estimates["is_npe"] = _estimate_dict(estimate, time.perf_counter() - began, likelihood.evaluations - templates)
        draws["is_npe"] = (theta, weights.numpy(), resampled.numpy())
        u, log_q_u = defensive_mixture(proposal, settings.proposal_samples, generator=generator)
        u, log_q_u = u.double(), log_q_u.double()
        began, templates = time.perf_counter(), likelihood.evaluations
        estimate, weights, resampled_u = importance_sampling(torch_density(coordinates.log_density(likelihood.log_posterior)),
                                                             u, log_q_u, resample=len(u), generator=generator)
        estimates["is_flow"] = _estimate_dict(estimate, time.perf_counter() - began, likelihood.evaluations - templates)
        rng = np.random.default_rng(settings.seed)
        draws["is_flow"] = (coordinates.to_physical(u.numpy(), rng), weights.numpy(),
                            coordinates.to_physical(resampled_u.numpy(), rng))
    warm = runs["flowmc_warm"]
    fraction = min(1.0, max(1.0, warm["diagnostics"]["effective_samples"]) / len(warm["sampler_samples"]))
    def in_support(u: torch.Tensor) -> torch.Tensor:
        u = u.double().numpy()
        valid = np.isfinite(coordinates.log_jacobian(u))
        valid[valid] &= inside_prior(event, coordinates.to_physical(u[valid]))
        return torch.as_tensor(valid)

    estimate = learned_harmonic_mean(None, torch.as_tensor(warm["sampler_samples"]), settings.harmonic_temperature,
                                     log_target_values=torch.as_tensor(warm["log_posterior"]), seed=settings.seed,
                                     in_support=in_support, effective_fraction=fraction)
    estimates["lhm"] = {**_estimate_dict(estimate), "temperature": settings.harmonic_temperature}
    difference = estimates["is_flow"]["log_evidence"] - estimates["lhm"]["log_evidence"]
    combined = math.hypot(estimates["is_flow"]["standard_error"], estimates["lhm"]["standard_error"])

    reference = warm["samples"]
    posteriors = {"is_npe": draws["is_npe"][2], "is_flow": draws["is_flow"][2], "flowmc_cold": runs["flowmc_cold"]["samples"],
                  "emcee": runs["emcee"]["samples"]}
    js = {method: dict(zip(event.names, marginal_divergences(samples, reference)[1].round(5).tolist()))
          for method, samples in posteriors.items()}
    agree = {method: max(values.values()) <= settings.agreement_js for method, values in js.items()}
    metrics = {"dataset": config.flows.dataset, "injection": event.index, "evidence": estimates,
               "evidence_difference": {"is_flow_minus_lhm": difference, "in_standard_errors": difference / combined if combined > 0 else math.inf},
               "js_vs_flowmc_warm": js, "max_js_vs_flowmc_warm": {m: max(v.values()) for m, v in js.items()},
               "agrees_within_js": agree, "agreement_js": settings.agreement_js}

    out = evidence_path(config)
    partial = out.with_suffix(".h5.partial")
    with h5py.File(partial, "w") as h5:
        h5.attrs.update({"dataset": config.flows.dataset, "injection": event.index, "parameters": event.names,
                         "sampling_file": str(source), "gwpe_version": gwpe.__version__, "lhm": json.dumps(estimates["lhm"])})
        for method in ("is_npe", "is_flow"):
            proposal_draws, weights, resampled = draws[method]
            group = h5.create_group(method)
            group.create_dataset("proposal_samples", data=proposal_draws, compression="gzip")
            group.create_dataset("weights", data=weights, compression="gzip")
            group.create_dataset("resampled", data=resampled, compression="gzip")
            group.attrs["estimate"] = json.dumps(estimates[method])
    partial.replace(out)
    metrics["path"] = str(out)

    corner_sets = {"NPE": draws["is_npe"][0], "IS (refined proposal)": draws["is_flow"][2],
                   "flow-MCMC (warm)": reference, "emcee": runs["emcee"]["samples"]}
    figure = posterior_corner(corner_sets, event.names, truth=event.truth,
                              title=f"{config.flows.dataset} injection {event.index}: NPE, importance sampling and MCMC")
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        figure.savefig(Path(plots_dir) / "corner.png", dpi=90)
    from gwpe.inference.sample_stage import flat_metrics

    with stage_run(config, "evidence", run_name=f"evidence-{config.flows.dataset}-{event.index}") as run:
        run.log_dataset("input", config.flows.dataset, event.store)
        run.log_metrics(flat_metrics(metrics))
        run.log_figure(figure, "sampling/corner.png")
        run.log_artifact(out, "sampling")
    return metrics


def format_evidence(metrics: dict) -> str:
    lines = [f"{metrics['dataset']} injection {metrics['injection']}"]
    for method, estimate in metrics["evidence"].items():
        lines.append(f"  {method:8s} log Z = {estimate['log_evidence']:.3f} +- {estimate['standard_error']:.3f}, "
                     f"ESS {estimate['effective_samples']:,.0f}, efficiency {100 * estimate['efficiency']:.3f} %")
    lines.append(f"  IS (refined) - LHM = {metrics['evidence_difference']['is_flow_minus_lhm']:+.3f} "
                 f"({metrics['evidence_difference']['in_standard_errors']:+.1f} standard errors)")
    for method, value in metrics["max_js_vs_flowmc_warm"].items():
        verdict = "agrees" if metrics["agrees_within_js"][method] else "differs"
        lines.append(f"  {method:12s} max 1-D JS vs flow-MCMC {value:.4f} nat: {verdict} (<= {metrics['agreement_js']})")
    return "\n".join(lines)
