"""Importance-sampled NPE, the learned harmonic mean, and the comparison of every posterior.

Reads ``gwpe sample``'s file for the same injection and computes (``gwpe.inference.evidence``):

- **IS of the NPE** (``is_npe``): theta ~ q(theta | x) from the NPE flow, weights L pi / q with the normalised
  prior; sample efficiency ESS / n, log Z with its standard error, a resampled posterior;
- **adaptive IS seeded by the NPE** (``ais_npe``): the NPE draws are distilled into a small flow in sampler
  coordinates (as the warm start does), which is then annealed along the bridge q^(1-beta) (L pi)^beta from
  beta = 0 to the posterior, refitted to the weighted draws at each step
  (``gwpe.inference.evidence.adaptive_importance_sampling``, settings ``sampling.adaptive``), and the last
  flow is importance-sampled (exact weights, 80/20 defensive mixture with itself at a base widened to
  T = 1.5), with a population Monte Carlo kernel of the weighted draws in 30 % of every proposal after the
  first round (``adaptive.kernel_weight``). The raw NPE of the demo profile is several times broader than the
  likelihood posterior in t_c and chirp mass (efficiency 0.02-0.14 % over the first seven validation
  injections, ESS 2 of 5,000 on injection 0); annealed from it, 7-14 rounds and 21,000-35,000 likelihood calls
  reach efficiencies of 57-75 % (64 % on injection 0). At β = 1, 2,000 of the warm flow-MCMC's draws hold half
  the kernel (``adaptive.seed_draws``): they decide where draws go, never their weights, so chains too narrow
  or too wide still meet exact widths, and a small mode the chains found but the flow misses (demo injection 1's
  0.5 % at equal mass) is proposed. That makes the proposal share the chains' coverage (a region both miss
  stays missed); ``seed_draws: 0`` gives the fully independent version;
- **learned harmonic mean** (``lhm``) on all the warm flow-MCMC samples, split into fit and estimation
  halves by chain (a random split puts a state and its repeats after rejections in both halves; the flow
  then overfits those states and log Z reads low: -0.07 on the demo injection), its standard error scaled
  by sqrt(n / ESS) for their correlation; their log posterior is stored, so it costs no likelihood call. It
  inherits the chains' error where they are too narrow (issue 26's audit: 0.12 low), so whether they
  converged is recorded beside it (``chains_converged``); fitted to adaptive-IS draws resampled by weight
  it read 0.82 high on the demo (the copies overfit like repeats), so that is not used. The concentrated
  flow lives on R^D while the posterior lives in the sampler window (0 < nu <= 1, the prior box, the phase
  window, which the broad phi0 posterior fills): the flow's mass inside is measured from its own draws and
  divided out (``learned_harmonic_mean(in_support=...)``; 0.11 in log Z on the demo injection).
- **tails and widths**: each IS estimate carries its weights' Pareto k (``evidence.pareto_k``; above 0.7 its
  error is not to be trusted, ``error_trusted``), and each MCMC posterior its standard deviations over adaptive
  IS's with bootstrap errors (``sd_ratio_vs_ais_npe``): a JS divergence of 0.01 hides chains 8 % too narrow.

Each posterior (IS ones as their weighted draws) is compared with the warm flow-MCMC by the JS divergence of
every 1-D marginal; they agree when all are <= ``sampling.agreement_js``.
The templates' settings (segment length, the window's pad, the hard f_min cut: ``sampling.template_segment``)
are recorded with the estimates, and so is the evidence's systematic error from the segment: log Z with templates
on a segment twice as long minus log Z, by reweighting 2,000 adaptive-IS posterior draws
(``gwpe.inference.likelihood.segment_shift``; ``log_z_segment_systematic``).
Output ``<sampling.path>/<dataset>-evidence.h5``
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
from gwpe.inference.sampling import SamplingOutcome


def evidence_path(config: ProjectConfig) -> Path:
    """``<sampling.path>/<flows.dataset>-evidence.h5``."""
    return Path(config.sampling.path) / f"{config.flows.dataset}-evidence.h5"


def _estimate_dict(estimate, seconds: float | None = None, evaluations: int | None = None) -> dict:
    out = {
        "log_evidence": estimate.log_evidence,
        "standard_error": estimate.standard_error,
        "effective_samples": estimate.effective_samples,
        "efficiency": estimate.efficiency,
    }
    if math.isfinite(estimate.pareto_k):  # importance sampling: the weights' tail (evidence.pareto_k)
        out["pareto_k"] = estimate.pareto_k
        out["error_trusted"] = estimate.pareto_k <= 0.7
    if evaluations is not None:
        out["likelihood_evaluations"] = evaluations
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
    return out


def seed_flow(draws: torch.Tensor, adaptive, epochs: int, inflation: float = 1.0):
    """The adaptive-IS flow (``adaptive.transforms`` x ``adaptive.hidden``) fitted to NPE draws (n, D) in sampler
    coordinates for ``epochs``, then widened ``inflation``-fold in every standardised coordinate, so a mode or
    tail the NPE under-covers is still proposed (``AdaptiveISConfig.seed_inflation``)."""
    from gwpe.inference.flowmc import StandardisedFlow

    flow = StandardisedFlow(draws.shape[1], adaptive.transforms, tuple(adaptive.hidden))
    flow.fit(draws.float(), epochs, restandardise=True)
    with torch.no_grad():
        flow.scale.mul_(inflation)
    return flow


def adaptive_from_npe(
    settings,
    likelihood,
    coordinates,
    theta_npe: np.ndarray,
    ess: float | None = None,
    resample: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    on_stall: str = "sample",
    seed_draws: np.ndarray | None = None,
    inflation: float = 1.0,
):
    """``adaptive_importance_sampling`` of the posterior in ``coordinates``, from a flow (``adaptive.transforms``
    x ``adaptive.hidden``) fitted to NPE draws ``theta_npe`` (physical, inside the prior) for
    ``flowmc.warm_start_epochs`` and widened ``inflation``-fold (``seed_flow``); ``sampling.adaptive`` settings,
    ``ess`` overriding ``final_ess`` (and then dropping ``final_sd_error``: the reference stage asks for an ESS, not
    widths to 1 %). In
    half-probit mass coordinates the flow is folded at the equal-mass wall once the bridge reaches the posterior
    (``adaptive.fold_equal_mass``; the ``wall`` of ``adaptive_importance_sampling``). Its final ``sd_error`` is
    checked on the reported columns (``SamplerCoordinates.reported``: the masses and the chirp mass);
    ``seed_draws`` (physical posterior draws, e.g. the warm flow-MCMC's) join its PMC kernel
    (``adaptive_importance_sampling``)."""
    from gwpe.inference.evidence import adaptive_importance_sampling
    from gwpe.inference.sampling import equal_mass_wall, torch_density

    fm, adaptive = settings.flowmc, settings.adaptive
    torch.manual_seed(settings.seed)
    flow = seed_flow(torch.as_tensor(coordinates.from_physical(theta_npe)), adaptive, fm.warm_start_epochs, inflation)
    return adaptive_importance_sampling(
        torch_density(coordinates.log_density(likelihood.log_posterior)),
        flow,
        adaptive.draws_per_round,
        adaptive.ess_fraction,
        adaptive.max_rounds,
        adaptive.refine_rounds,
        adaptive.epochs,
        adaptive.final_ess if ess is None else ess,
        adaptive.final_batch,
        adaptive.max_final_draws,
        resample=resample,
        final_sd_error=adaptive.final_sd_error if ess is None else None,  # a caller's own ESS target stands alone
        generator=generator,
        progress=progress,
        mcmc_steps=adaptive.mcmc_steps,
        particle_sweeps=adaptive.particle_sweeps,
        on_stall=on_stall,
        wall=equal_mass_wall(coordinates, adaptive.fold_equal_mass),
        kernel_weight=adaptive.kernel_weight,
        sd_of=coordinates.reported,
        seed_draws=None if seed_draws is None else torch.as_tensor(coordinates.from_physical(seed_draws)),
    )


def _thinned(samples: np.ndarray, n: int) -> np.ndarray | None:
    """At most n rows of ``samples``, evenly spaced (None for n = 0)."""
    if n == 0:
        return None
    return samples[np.linspace(0, len(samples) - 1, min(n, len(samples))).astype(int)]


def estimate_evidence(
    config: ProjectConfig, plots_dir: str | Path | None = None, progress: bool = True
) -> SamplingOutcome:
    """IS of the NPE, adaptive IS from it and the learned harmonic mean for ``gwpe sample``'s injection, and the
    JS agreement of every posterior with the warm flow-MCMC (module doc); writes the evidence file."""
    import time

    import h5py

    from gwpe.evaluation.corner_plots import posterior_corner
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.evidence import importance_sampling, learned_harmonic_mean
    from gwpe.inference.likelihood import segment_shift, template_settings
    from gwpe.inference.sampling import (
        inside_prior,
        load_event,
        load_npe,
        npe_draws,
        read_sampling,
        sampling_path,
        torch_density,
    )

    settings = config.sampling
    source = sampling_path(config)
    if not source.exists():
        raise ConfigError(f"no sampler output at {source}; run `gwpe sample --params ...` first (DVC stage sample)")
    attrs, runs = read_sampling(source)
    if int(attrs["injection"]) != settings.injection or attrs["npe_model"] != settings.model:
        raise ConfigError(
            f"{source} holds injection {attrs['injection']} with model {attrs['npe_model']!r}; "
            f"sampling asks for injection {settings.injection} with {settings.model!r}: rerun `gwpe sample`"
        )
    event = load_event(config, settings.injection)
    module = load_npe(config)
    # the phase walls the warm run placed from the NPE pilot's likelihoods (no MCMC output involved)
    warm = runs["flowmc_warm"]
    coordinates = SamplerCoordinates(
        event.names,
        fold_phase=True,
        phase_centre=warm["phase_centre"],
        mass_bounds=warm["mass_bounds"],
        phase_slope=warm["phase_slope"],
        time_anchor=warm["time_anchor"],
    )
    n = settings.npe_samples
    generator = torch.Generator().manual_seed(settings.seed)
    estimates, draws = {}, {}

    def in_support(u: torch.Tensor) -> torch.Tensor:
        u = u.double().numpy()
        valid = np.isfinite(coordinates.log_jacobian(u))
        valid[valid] &= inside_prior(event, coordinates.to_physical(u[valid]))
        return torch.as_tensor(valid)

    with event.likelihood(settings.workers) as likelihood:
        theta, log_q = npe_draws(module, event, n, settings.seed + 1)
        began, templates = time.perf_counter(), likelihood.evaluations
        estimate, weights, resampled = importance_sampling(
            torch_density(likelihood.log_posterior),
            torch.as_tensor(theta),
            torch.as_tensor(log_q),
            resample=n,
            generator=generator,
        )
        estimates["is_npe"] = _estimate_dict(estimate, time.perf_counter() - began, likelihood.evaluations - templates)
        draws["is_npe"] = (theta, weights.numpy(), resampled.numpy())

        began, templates = time.perf_counter(), likelihood.evaluations
        estimate, u, weights, resampled_u, rounds = adaptive_from_npe(
            settings,
            likelihood,
            coordinates,
            theta[inside_prior(event, theta)],
            resample=n,
            generator=generator,
            progress=progress,
            seed_draws=_thinned(warm["samples"], settings.adaptive.seed_draws),
        )
        estimates["ais_npe"] = {
            **_estimate_dict(estimate, time.perf_counter() - began, likelihood.evaluations - templates),
            "rounds": len(rounds) - 1,
            "beta_reached": rounds[-2].beta if len(rounds) > 1 else 1.0,
            "final_draws": len(u),
            "evaluations_in_rounds": rounds[-2].evaluations if len(rounds) > 1 else 0,
        }
        rng = np.random.default_rng(settings.seed)
        draws["ais_npe"] = (
            coordinates.to_physical(u.numpy(), rng),
            weights.numpy(),
            coordinates.to_physical(resampled_u.numpy(), rng),
        )
        # the evidence's systematic error from the template segment: log Z on a segment twice as long, by
        # reweighting the adaptive-IS posterior (issue 26; docs/evidence-segment.md has 4, 8 and 16 s)
        templates = template_settings(likelihood)
        segment_systematic = segment_shift(
            likelihood, draws["ais_npe"][2], 2 * templates["segment_seconds"], seed=settings.seed
        )
    warm = runs["flowmc_warm"]
    fraction = min(1.0, max(1.0, warm["diagnostics"]["effective_samples"]) / len(warm["sampler_samples"]))
    estimate = learned_harmonic_mean(
        None,
        torch.as_tensor(warm["sampler_samples"]),
        settings.harmonic_temperature,
        log_target_values=torch.as_tensor(warm["log_posterior"]),
        seed=settings.seed,
        in_support=in_support,
        effective_fraction=fraction,
        groups=torch.arange(len(warm["sampler_samples"])) % settings.flowmc.chains_in_production,
    )
    # on chains too narrow it inherits their error (issue 26's audit: 0.12 low); their convergence is beside it.
    # Fitted to adaptive-IS draws resampled by weight instead, it read 0.82 high (3.8 errors) on the demo: the
    # copies of a resampled draw make the flow overfit, as repeats after MCMC rejections do
    estimates["lhm"] = {
        **_estimate_dict(estimate),
        "temperature": settings.harmonic_temperature,
        "draws": "warm flow-MCMC chains",
        "chains_converged": bool(warm["diagnostics"].get("converged", False)),
    }
    difference = estimates["ais_npe"]["log_evidence"] - estimates["lhm"]["log_evidence"]
    combined = math.hypot(estimates["ais_npe"]["standard_error"], estimates["lhm"]["standard_error"])

    reference = warm["samples"]
    # IS posteriors are compared as the weighted draws they are (no resampling noise)
    posteriors = {
        "is_npe": draws["is_npe"][:2],
        "ais_npe": draws["ais_npe"][:2],
        **{method: (runs[method]["samples"], None) for method in ("flowmc_cold", "emcee") if method in runs},
    }
    js = {
        method: dict(zip(event.names, marginal_divergences(samples, reference, weights_a=weights)[1].round(5).tolist()))
        for method, (samples, weights) in posteriors.items()
    }
    agree = {method: max(values.values()) <= settings.agreement_js for method, values in js.items()}
    sd_ratios = _sd_ratios_vs_ais(event.names, draws["ais_npe"][:2], runs)
    metrics = {
        "dataset": config.flows.dataset,
        "injection": event.index,
        "evidence": estimates,
        "evidence_difference": {
            "ais_npe_minus_lhm": difference,
            "in_standard_errors": difference / combined if combined > 0 else math.inf,
        },
        "js_vs_flowmc_warm": js,
        "max_js_vs_flowmc_warm": {m: max(v.values()) for m, v in js.items()},
        "agrees_within_js": agree,
        "agreement_js": settings.agreement_js,
        # issue 26: each MCMC posterior's standard deviations over adaptive IS's (exact weights), MC standard errors
        "sd_ratio_vs_ais_npe": sd_ratios,
        "templates": templates,
        "log_z_segment_systematic": segment_systematic,
        # fraction of each IS method's proposal draws and resampled posterior outside the prior's support
        "outside_prior": {
            method: {
                "proposal": float(np.mean(~inside_prior(event, proposal))),
                "resampled": float(np.mean(~inside_prior(event, resampled))),
            }
            for method, (proposal, _, resampled) in draws.items()
        },
    }

    out = evidence_path(config)
    partial = out.with_suffix(".h5.partial")
    with h5py.File(partial, "w") as h5:
        h5.attrs.update(
            {
                "dataset": config.flows.dataset,
                "injection": event.index,
                "parameters": event.names,
                "sampling_file": str(source),
                "gwpe_version": gwpe.__version__,
                "lhm": json.dumps(estimates["lhm"]),
                "templates": json.dumps(templates),
                "log_z_segment_systematic": json.dumps(segment_systematic),
            }
        )
        for method in ("is_npe", "ais_npe"):
            proposal_draws, weights, resampled = draws[method]
            group = h5.create_group(method)
            group.create_dataset("proposal_samples", data=proposal_draws, compression="gzip")
            group.create_dataset("weights", data=weights, compression="gzip")
            group.create_dataset("resampled", data=resampled, compression="gzip")
            group.attrs["estimate"] = json.dumps(estimates[method])
        h5["ais_npe"].attrs["rounds"] = json.dumps([vars(r) for r in rounds])
    partial.replace(out)
    metrics["path"] = str(out)

    corner_sets = {
        "NPE": draws["is_npe"][0],
        "IS adapted from the NPE": draws["ais_npe"][2],
        "flow-MCMC (warm)": reference,
        **({"emcee": runs["emcee"]["samples"]} if "emcee" in runs else {}),
    }
    figure = posterior_corner(
        corner_sets,
        event.names,
        truth=event.truth,
        title=f"{config.flows.dataset} injection {event.index}: NPE, importance sampling and MCMC",
    )
    annealing = annealing_figure(rounds)
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        figure.savefig(Path(plots_dir) / "corner.png", dpi=90)
        annealing.savefig(Path(plots_dir) / "adaptive.png", dpi=100)
    figures = {"sampling/corner.png": figure, "sampling/adaptive.png": annealing}
    return SamplingOutcome(metrics, figures, event.store, out)


def _sd_ratios_vs_ais(names: list[str], ais: tuple, runs: dict) -> dict:
    """Per MCMC run: sd / adaptive IS's sd for every parameter and chirp mass, with the ratio's standard error,
    and whether all lie within 3 % and within 2 standard errors of 1 (issue 26's acceptance).

    The error combines both sides' Monte Carlo errors of their sd: the chains' from ArviZ (``mcse`` of the sd,
    through ``convergence.diagnose``: the ESS of the centred squares, which sees a heavy tail's slow visits) and
    adaptive IS's from its weights (``evidence.weighted_sd_error``). An i.i.d. bootstrap at the chains' bulk ESS,
    used before, quoted 1.5 % where repeated runs scattered by 4 %: it misses the kurtosis of the tails."""
    from gwpe.inference.convergence import diagnose
    from gwpe.inference.evidence import weighted_sd_error
    from gwpe.physics import chirp_mass

    def with_chirp_mass(draws: np.ndarray) -> np.ndarray:
        return np.column_stack([draws, chirp_mass(draws[:, names.index("m1")], draws[:, names.index("m2")])])

    reference = with_chirp_mass(ais[0])
    weights = np.asarray(ais[1], dtype=np.float64) / np.sum(ais[1])
    reference_sd = np.sqrt(weights @ np.square(reference - weights @ reference))
    reference_error = weighted_sd_error(reference, weights)
    out = {}
    for method in ("flowmc_warm", "flowmc_cold", "emcee"):
        if method not in runs:
            continue
        samples = with_chirp_mass(runs[method]["samples"])
        chains = int(runs[method]["diagnostics"]["chains"])  # stored draw-major: (draws, chains) flattened
        chain_error = diagnose(samples.reshape(-1, chains, samples.shape[1])).sd_error
        ratio = samples.std(axis=0) / reference_sd
        error = ratio * np.sqrt(np.square(chain_error) + np.square(reference_error))
        deviation = np.abs(ratio - 1.0)
        labels = [*names, "chirp_mass"]
        out[method] = {
            **{name: float(r) for name, r in zip(labels, ratio)},
            "standard_error": dict(zip(labels, map(float, error))),
            "sd_error": dict(zip(labels, map(float, chain_error))),  # this run's, relative (ArviZ mcse sd)
            "reference_sd_error": dict(zip(labels, map(float, reference_error))),  # adaptive IS's, relative
            "max_deviation": float(deviation.max()),
            "within_3_percent": bool(np.all(deviation <= 0.03)),
            "within_2_sigma": bool(np.all(deviation <= 2.0 * error)),
        }
    return out


def format_evidence(metrics: dict) -> str:
    """Terminal summary: log Z per method, the adaptive IS rounds, IS - LHM in standard errors, and each
    posterior's max 1-D JS divergence from the warm flow-MCMC."""
    lines = [f"{metrics['dataset']} injection {metrics['injection']}"]
    for method, estimate in metrics["evidence"].items():
        tail = f", Pareto k {estimate['pareto_k']:.2f}" if "pareto_k" in estimate else ""
        lines.append(
            f"  {method:15s} log Z = {estimate['log_evidence']:.3f} +- {estimate['standard_error']:.3f}, "
            f"ESS {estimate['effective_samples']:,.0f}, efficiency {100 * estimate['efficiency']:.3f} %{tail}"
        )
    adaptive = metrics["evidence"]["ais_npe"]
    lines.append(
        f"  ais_npe: {adaptive['rounds']} rounds to beta = {adaptive['beta_reached']:.3g}, "
        f"{adaptive['likelihood_evaluations']:,} likelihood calls in all"
    )
    lines.append(
        f"  IS adapted from the NPE - LHM = {metrics['evidence_difference']['ais_npe_minus_lhm']:+.3f} "
        f"({metrics['evidence_difference']['in_standard_errors']:+.1f} standard errors)"
    )
    shift = metrics.get("log_z_segment_systematic")
    if shift:
        lines.append(
            f"  templates on {shift['segment_seconds']:g} s: log Z on {shift['compared_with_seconds']:g} s differs by "
            f"{shift['log_z_shift']:+.3f} +- {shift['standard_error']:.3f} (segment systematic)"
        )
    for method, ratios in metrics.get("sd_ratio_vs_ais_npe", {}).items():
        verdict = "within 3 %" if ratios["within_3_percent"] else "NOT within 3 %"
        lines.append(
            f"  {method:12s} sd / adaptive IS's: max deviation {100 * ratios['max_deviation']:.1f} % ({verdict}; "
            f"within 2 standard errors: {ratios['within_2_sigma']})"
        )
    for method, value in metrics["max_js_vs_flowmc_warm"].items():
        verdict = "agrees" if metrics["agrees_within_js"][method] else "differs"
        lines.append(
            f"  {method:12s} max 1-D JS vs flow-MCMC {value:.4f} nat: {verdict} (<= {metrics['agreement_js']})"
        )
    return "\n".join(lines)


def annealing_figure(rounds):
    """Bridge exponent beta and the posterior efficiency of each round's draws against likelihood calls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = [r.evaluations for r in rounds]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.semilogy(calls[:-1], [max(r.beta, 1e-6) for r in rounds[:-1]], "o-", ms=4)
    left.set(xlabel="likelihood evaluations", ylabel="bridge exponent beta")
    left.set_title("from the NPE (beta = 0) to the posterior (1)", fontsize=10)
    right.semilogy(calls, [max(r.posterior_ess_fraction, 1e-6) for r in rounds], "o-", ms=4, color="tab:green")
    right.set(xlabel="likelihood evaluations", ylabel="posterior ESS / draws")
    right.set_title("efficiency of each round's draws (last: final draws)", fontsize=10)
    for axis in (left, right):
        axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return figure
