"""Likelihood throughput and wall time to a fixed effective sample size: flow-MCMC (cold, warm) vs emcee.

    .venv/bin/python benchmarks/sampler.py [--params params.yaml] [--ess 800] [--workers 2]

Needs the default pipeline's strain-5d store and trained NPE (``dvc repro train-flow@maf``). On injection
``sampling.injection`` with ``sampling`` settings, in one run:

1. log-likelihood evaluations per second: one parameter vector per call (in-process) vs batches of 2,048
   (in-process, then over ``--workers`` template processes);
2. wall time and log-posterior evaluations until the production samples reach ``--ess`` effective samples,
   for flow-MCMC from a cold start (prior draws, flow learned from scratch), flow-MCMC warm-started from the
   NPE (both including the 2,000-draw pilot that places the phase window), and emcee (DE + stretch moves, walkers in a
   ball
   around the injection as reference runs usually start, run in
   chunks of 250 steps with the first fifth dropped, until its ESS = kept steps x walkers / max tau reaches
   the target or ``--max-emcee-steps``); and adaptive importance sampling from the NPE (its own
   2,000-draw pilot for the phase window, the NPE distilled into a flow, annealed to the posterior, final
   draws until the weights' Kish ESS reaches the target; independent draws, so no R-hat). The last column
   is the largest 1-D marginal JS divergence from the
   warm flow-MCMC posterior: an ESS read off a chain shorter than 50 autocorrelation times can be reached
   before the chain has forgotten its start;
3. the outside sampler (issue 26): dynesty nested sampling (``gwpe.inference.nested``: ``--nlive`` live points,
   ``--dynesty-sample``: auto, dynesty's own choice, unif below 10 dimensions; or rslice / rwalk as bilby runs
   them; bound multi, dlogz 0.1, phi0 periodic) on the same
   likelihood and prior (the unit cube mapped onto it exactly), one likelihood call at a time. Every gwpe
   sampler is compared with it: max 1-D JS, the standard-deviation ratio per parameter and for chirp mass with
   its bootstrap error (chains redrawn at their ESS, weighted sets at their Kish ESS), and log Z (dynesty's
   logz +- logzerr, adaptive IS's estimate +- its standard error), beside calls and wall time.
   ``--nlive 0`` skips it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def likelihood_rates(event, workers: int, n_single: int = 200, n_batch: int = 2048) -> dict[str, float]:
    from gwpe.inference.sampling import prior_start

    theta = prior_start(event, n_batch, seed=1)
    rates = {}
    with event.likelihood(0) as likelihood:
        began = time.perf_counter()
        for row in theta[:n_single]:
            likelihood(row[None])
        rates["one at a time"] = n_single / (time.perf_counter() - began)
        began = time.perf_counter()
        likelihood(theta)
        rates["batched, in-process"] = n_batch / (time.perf_counter() - began)
    with event.likelihood(workers) as likelihood:
        likelihood(theta[: 4 * workers])  # start the pool outside the timing
        began = time.perf_counter()
        likelihood(theta)
        rates[f"batched, {workers} processes"] = n_batch / (time.perf_counter() - began)
    return rates


def emcee_to_ess(density, start: np.ndarray, target: float, max_steps: int, seed: int, fold, chunk: int = 250) -> dict:
    import emcee

    from gwpe.inference.reference import ensemble_moves, gelman_rubin

    walkers, dim = start.shape
    sampler = emcee.EnsembleSampler(walkers, dim, density, vectorize=True, moves=ensemble_moves())
    sampler.random_state = np.random.RandomState(seed).get_state()
    began, state, ess = time.perf_counter(), start, 0.0
    while sampler.iteration < max_steps:
        state = sampler.run_mcmc(state, chunk, progress=False)
        burn = sampler.iteration // 5
        tau = sampler.get_autocorr_time(discard=burn, tol=0)
        ess = (sampler.iteration - burn) * walkers / max(1.0, float(np.max(tau)))
        if ess >= target:
            break
    chain = sampler.get_chain(discard=sampler.iteration // 5)
    chain = fold(chain.reshape(-1, dim)).reshape(chain.shape)
    return {
        "seconds": time.perf_counter() - began,
        "evaluations": walkers * (sampler.iteration + 1),
        "ess": ess,
        "rhat": float(np.max(gelman_rubin(chain))),
        "steps": sampler.iteration,
        "samples": chain.reshape(-1, dim),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--ess", type=float, default=800.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-emcee-steps", type=int, default=8000)
    parser.add_argument("--nlive", type=int, default=1000, help="dynesty live points; 0: no outside sampler")
    parser.add_argument("--dynesty-sample", default="auto", choices=["auto", "unif", "rslice", "rwalk"])
    args = parser.parse_args()

    from gwpe.config import load_config
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.reference import injection_start
    from gwpe.inference.event_evidence import adaptive_from_npe
    from gwpe.inference.sampling import (
        flowmc_from_pilot,
        inside_prior,
        load_event,
        load_npe,
        npe_draws,
        prior_start,
    )

    config = load_config(args.params)
    settings = config.sampling.model_copy(
        update={
            "flowmc": config.sampling.flowmc.model_copy(update={"target_ess": args.ess, "max_production_loops": 400})
        }
    )
    event = load_event(config, settings.injection)
    print(
        f"{config.flows.dataset} injection {event.index}, {settings.flowmc.chains} chains / "
        f"{settings.emcee.walkers} walkers, "
        f"target ESS {args.ess:.0f}"
    )
    print("\nlog-likelihood evaluations per second")
    for label, rate in likelihood_rates(event, args.workers).items():
        print(f"  {label:24s} {rate:9,.0f}/s")

    module = load_npe(config)
    theta_npe, _ = npe_draws(module, event, settings.npe_samples, settings.seed)
    theta_npe = theta_npe[inside_prior(event, theta_npe)]
    rows, samples, evidences = [], {}, {}
    with event.likelihood(args.workers) as likelihood:
        prior_draws = prior_start(event, max(settings.flowmc.chains, settings.pilot_draws), settings.seed)
        for label, pilot, start, warm in (
            ("flow-MCMC, cold start", prior_draws, prior_draws[: settings.flowmc.chains], None),
            (
                "flow-MCMC, NPE warm start",
                theta_npe[: settings.pilot_draws],
                theta_npe[: settings.flowmc.chains],
                theta_npe,
            ),
        ):
            began = time.perf_counter()
            result, coordinates, summary = flowmc_from_pilot(event, settings, likelihood, pilot, start, warm)
            samples[label] = coordinates.to_physical(result.flat().double().numpy())
            rows.append(
                (
                    label,
                    time.perf_counter() - began,
                    summary["evaluations"],
                    summary["effective_samples"],
                    max(summary["rhat"]),
                )
            )
        began = time.perf_counter()
        pilot = theta_npe[: settings.pilot_draws]
        coordinates = SamplerCoordinates.walled_by_likelihood(event.names, pilot, likelihood(pilot))
        estimate, u, weights, _, rounds = adaptive_from_npe(
            settings,
            likelihood,
            coordinates,
            theta_npe,
            ess=args.ess,
            generator=torch.Generator().manual_seed(settings.seed),
        )
        label = f"adaptive IS from the NPE ({len(rounds) - 1} rounds)"
        samples[label] = (coordinates.to_physical(u.numpy()), weights.numpy())
        evidences[label] = (estimate.log_evidence, estimate.standard_error)
        rows.append(
            (
                label,
                time.perf_counter() - began,
                rounds[-1].evaluations + len(pilot),
                estimate.effective_samples,
                float("nan"),
            )
        )
        start = injection_start(
            event.truth, event.names, settings.emcee.walkers, likelihood.log_posterior, seed=settings.seed
        )
        coordinates = SamplerCoordinates.centred_on(event.names, start)
        emcee_run = emcee_to_ess(
            coordinates.log_density(likelihood.log_posterior, periodic=True),
            coordinates.from_physical(start),
            args.ess,
            args.max_emcee_steps,
            settings.seed,
            coordinates.fold_sampler,
        )
        label = "emcee (DE + stretch moves)" + (
            "" if emcee_run["ess"] >= args.ess else f", stopped at {emcee_run['steps']} steps"
        )
        samples[label] = coordinates.to_physical(emcee_run.pop("samples"))
        rows.append((label, emcee_run["seconds"], emcee_run["evaluations"], emcee_run["ess"], emcee_run["rhat"]))
    nested = None
    if args.nlive > 0:
        from gwpe.inference.nested import nested_sample

        with event.likelihood(0) as likelihood:  # dynesty asks for one point at a time
            nested = nested_sample(
                likelihood,
                event.dataset.prior,
                event.names,
                nlive=args.nlive,
                sample=args.dynesty_sample,
                progress=True,
            )
        label = f"dynesty ({args.dynesty_sample}, nlive {args.nlive})"
        samples[label] = (nested.samples, nested.weights)
        evidences[label] = (nested.log_evidence, nested.standard_error)
        rows.append((label, nested.seconds, nested.evaluations, nested.effective_samples, float("nan")))
    from gwpe.evaluation.divergence import marginal_divergences

    reference = samples["flow-MCMC, NPE warm start"]
    print(f"\nwall time to ESS {args.ess:.0f} ({args.workers} template processes)")
    print(
        f"  {'sampler':44s} {'seconds':>8s} {'evaluations':>12s} {'ESS':>7s} {'max R-hat':>9s} {'ESS/s':>7s} "
        f"{'max JS vs warm':>14s}"
    )
    for label, seconds, evaluations, ess, rhat in rows:
        draws, weights = samples[label] if isinstance(samples[label], tuple) else (samples[label], None)
        js = (
            max(marginal_divergences(draws, reference, weights_a=weights)[1])
            if label != "flow-MCMC, NPE warm start"
            else 0.0
        )
        rhat_text = "-" if np.isnan(rhat) else f"{rhat:.3f}"
        print(
            f"  {label:44s} {seconds:8.1f} {evaluations:12,d} {ess:7.0f} {rhat_text:>9s} {ess / seconds:7.1f} "
            f"{js:14.4f}"
        )
    if nested is not None:
        print(outside_table(event.names, rows, samples, evidences, nested))


def with_chirp_mass(names: list[str], draws: np.ndarray) -> np.ndarray:
    from gwpe.physics import chirp_mass

    return np.column_stack([draws, chirp_mass(draws[:, names.index("m1")], draws[:, names.index("m2")])])


def outside_table(names: list[str], rows: list, samples: dict, evidences: dict, nested) -> str:
    """Every gwpe sampler against dynesty: max 1-D JS, sd ratio +- bootstrap per parameter (and chirp mass), log Z."""
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.nested import std_ratios

    columns = [*names, "chirp_mass"]
    reference = with_chirp_mass(names, nested.samples)
    lines = [
        "\nagainst the outside sampler: max 1-D JS [nat], standard deviation / dynesty's (+- bootstrap), log Z",
        f"  {'sampler':44s} {'max JS':>7s} " + " ".join(f"{c:>14s}" for c in columns) + f" {'log Z':>18s}",
    ]
    for label, _seconds, _evaluations, ess, _rhat in rows:
        draws, weights = samples[label] if isinstance(samples[label], tuple) else (samples[label], None)
        draws = with_chirp_mass(names, draws)
        js = max(marginal_divergences(draws, with_chirp_mass(names, nested.equal_samples), weights_a=weights)[1])
        ratio, error = std_ratios(
            draws, reference, weights, nested.weights, effective_a=None if weights is not None else ess
        )
        log_z = f"{evidences[label][0]:.3f} +- {evidences[label][1]:.3f}" if label in evidences else "-"
        cells = " ".join(f"{r:6.3f} +- {e:5.3f}" for r, e in zip(ratio, error))
        lines.append(f"  {label:44s} {js:7.4f} {cells} {log_z:>18s}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
