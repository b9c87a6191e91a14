"""The reference posteriors of ``gwpe reference``: likelihood posteriors for the first validation injections of
``flows.dataset``, which ``gwpe evaluate flow`` compares every flow with (1-D JS / KL).

The observations are exactly what ``gwpe evaluate flow`` gives the flows: validation signal i plus its fixed
noise realisation (seeded by ``flows.training.seed`` and i). The likelihood is the whitened Gaussian one with
the dataset's own generator (on ``sampling.template_segment``, as ``gwpe sample``) and prior
(``gwpe.inference.likelihood``). Two methods (``flows.reference.method``):

- ``adaptive_is`` (default): adaptive importance sampling seeded by the NPE ``sampling.model``
  (``gwpe.inference.evidence.adaptive_importance_sampling`` with the ``sampling.adaptive`` settings, as
  ``gwpe evidence``): a flow distilled from NPE draws is annealed to the posterior and importance-sampled
  until ESS ``flows.reference.final_ess``. The weights L pi / q are exact, so the NPE only shapes the
  proposal (its variance), never the target; the ESS, efficiency and log Z are recorded. The stored samples
  are ``flows.reference.samples`` draws resampled by weight; the weighted draws are stored too. A reference
  must not depend on the quality of the model it judges: where the bridge stalls (beta < 1 after
  ``sampling.adaptive.max_rounds``: an NPE that misses the posterior, e.g. two epochs of training) or the
  final ESS stays below its target, that injection falls back to emcee, said on stderr and recorded
  (``method: emcee`` with ``fallback_from``). Chosen as the default because on the demo it is exact, 63 % efficient
  and about 2.5x cheaper than the emcee below (27 s against ~70 s per injection, 2 cores), whose chains
  did not reach R-hat <= 1.01 in 4,000 steps (issue 26).
- ``emcee``: the DE-move ensemble (``gwpe.inference.reference``) from a ball around the truth, extended until
  ``sampling.convergence`` (rank-normalised R-hat, tail ESS) or ``flows.reference.max_steps``; an unconverged
  run warns on stderr and is recorded ``converged: false``.

Output ``<flows.reference.path>/<dataset>.h5``: attributes (dataset, its md5, noise seed, parameter names,
``method`` and ``sampler``: what really produced the samples, settings, ``converged``), and per injection a
group ``injection_<i>`` with the observation, the truth, samples in physical units, log posterior (emcee) or
the weighted draws and weights (adaptive IS), and the diagnostics (JSON).

Both sample in ``gwpe.inference.coordinates.SamplerCoordinates``: (M_c, nu = m2/m1) in place of (m1, m2), and
phi0 folded onto one of the two identical copies of the (2, 2)-mode posterior; the density carries the
Jacobian, so the samples, mapped back, follow the (m1, m2, phi0) posterior.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import gwpe
from gwpe.config import ProjectConfig
from gwpe.data.strain_store import flows_dataset, flows_store


def reference_path(config: ProjectConfig) -> Path:
    """``<flows.reference.path>/<flows.dataset>.h5``."""
    return Path(config.flows.reference.path) / f"{config.flows.dataset}.h5"


def sampler_label(config: ProjectConfig) -> str:
    """What produces the reference samples, in words (the HDF5 ``sampler`` attribute)."""
    from gwpe.inference.reference import MOVES

    settings = config.flows.reference
    if settings.method == "adaptive_is":
        return (
            f"adaptive importance sampling seeded by the NPE {config.sampling.model!r} "
            "(annealed bridge, exact weights L pi / q; samples resampled by weight)"
        )
    return f"{MOVES}; extended until rank-normalised R-hat and tail ESS meet sampling.convergence"


def _adaptive_is(config: ProjectConfig, event, module, likelihood, progress: bool) -> dict:
    """Adaptive IS of one injection's posterior from the NPE (module doc): samples, weighted draws, diagnostics."""
    import time

    import torch

    from gwpe.errors import ConfigError
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.event_evidence import adaptive_from_npe
    from gwpe.inference.evidence import AnnealingStalled
    from gwpe.inference.sampling import inside_prior, mass_bounds, npe_draws

    settings, reference = config.sampling, config.flows.reference
    seed = reference.seed + event.index
    began, templates = time.perf_counter(), likelihood.evaluations
    theta_npe, _ = npe_draws(module, event, settings.npe_samples, seed)
    theta_npe = theta_npe[inside_prior(event, theta_npe)]
    if len(theta_npe) < 10:
        raise ConfigError(
            f"only {len(theta_npe)} NPE draws of {settings.npe_samples} lie inside the prior for injection "
            f"{event.index}; raise sampling.npe_samples or set flows.reference.method: emcee"
        )
    pilot = theta_npe[: settings.pilot_draws]
    coordinates = SamplerCoordinates.walled_by_likelihood(
        event.names, pilot, likelihood(pilot), mass_bounds=mass_bounds(event, settings)
    )
    generator = torch.Generator().manual_seed(seed)
    try:
        estimate, draws, weights, resampled, rounds = adaptive_from_npe(
            settings,
            likelihood,
            coordinates,
            theta_npe,
            ess=reference.final_ess,
            resample=reference.samples,
            generator=generator,
            progress=progress,
            on_stall="raise",  # no final draws from a proposal that missed the posterior: emcee takes over
            inflation=settings.adaptive.seed_inflation,  # no flow-MCMC draws seed its kernel here (config doc)
        )
    except AnnealingStalled as stall:
        return {
            "diagnostics": {
                "method": "adaptive_is",
                "converged": False,
                "stalled_beta": float(stall.beta),
                "likelihood_evaluations": len(pilot) + int(stall.evaluations),
                "seconds": round(time.perf_counter() - began, 2),
            }
        }
    rng = np.random.default_rng(seed)
    weights = weights.double().numpy()
    return {
        "samples": coordinates.to_physical(resampled.double().numpy(), rng),
        "draws": coordinates.to_physical(draws.double().numpy(), rng),
        "weights": weights,
        "diagnostics": {
            "method": "adaptive_is",
            "log_evidence": estimate.log_evidence,
            "log_evidence_error": estimate.standard_error,
            "effective_samples": estimate.effective_samples,
            "efficiency": estimate.efficiency,
            "final_draws": len(weights),
            "rounds": len(rounds),
            "final_beta": float(rounds[-1].beta) if rounds else float("nan"),
            "max_weight": float(weights.max()),
            "converged": bool(estimate.effective_samples >= reference.final_ess),
            "likelihood_evaluations": len(pilot) + (int(rounds[-1].evaluations) if rounds else 0) + len(weights),
            "template_evaluations": likelihood.evaluations - templates,
            "seconds": round(time.perf_counter() - began, 2),
        },
    }


def _emcee(config: ProjectConfig, event, likelihood, progress: bool) -> dict:
    """The emcee reference of one injection, extended until converged or its cap (module doc)."""
    from gwpe.inference.convergence import warn_unconverged
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.reference import injection_start, run_emcee
    from gwpe.inference.sampling import convergence_target, mass_bounds

    settings = config.flows.reference
    start = injection_start(
        event.truth, event.names, settings.walkers, likelihood.log_posterior, seed=settings.seed + event.index
    )
    coordinates = SamplerCoordinates.centred_on(
        event.names, start, fold_phase=True, mass_bounds=mass_bounds(event, config.sampling)
    )
    templates = likelihood.evaluations
    result = run_emcee(
        coordinates.log_density(likelihood.log_posterior),
        coordinates.from_physical(start),
        settings.steps,
        settings.burn,
        seed=settings.seed + event.index,
        progress=progress,
        max_steps=settings.max_steps,
        extend_steps=config.sampling.emcee.extend_steps,
        target=convergence_target(config.sampling),
    )
    warn_unconverged(f"gwpe reference emcee, injection {event.index}", result.convergence, event.names)
    diagnostics = {
        "method": "emcee",
        **result.diagnostics(),
        "likelihood_evaluations": likelihood.evaluations - templates,
        "seconds": round(result.seconds, 2),
    }
    return {
        "samples": coordinates.to_physical(result.samples),
        "log_posterior": result.log_posterior,
        "diagnostics": diagnostics,
    }


def _fall_back_to_emcee(config: ProjectConfig, event, likelihood, progress: bool, failed: dict) -> dict:
    """emcee for an injection whose adaptive IS stalled or missed its ESS (module doc), the failure recorded."""
    reached = (
        f"its bridge stalled at beta = {failed['stalled_beta']:.3g}"
        if "stalled_beta" in failed
        else f"ESS {failed['effective_samples']:,.0f} < flows.reference.final_ess "
        f"{config.flows.reference.final_ess:,.0f}"
    )
    print(
        f"WARNING: gwpe reference adaptive IS, injection {event.index}: {reached} (the NPE "
        f"{config.sampling.model!r} misses this posterior); falling back to emcee for this injection",
        file=sys.stderr,
        flush=True,
    )
    result = _emcee(config, event, likelihood, progress)
    result["diagnostics"]["fallback_from"] = failed
    return result


def build_reference_posteriors(config: ProjectConfig, progress: bool = True) -> dict:
    """Reference posteriors of the first ``flows.reference.injections`` validation injections (module doc),
    written to ``reference_path``; returns the summary (dataset, method, per-injection diagnostics, path)."""
    import h5py

    from gwpe.data.strain_dataset import StrainDataset
    from gwpe.errors import ConfigError
    from gwpe.inference.sampling import load_event, load_npe
    from gwpe.tracking import dataset_md5

    settings = config.flows.reference
    dataset = flows_dataset(config)
    if settings.burn >= settings.steps:
        raise ConfigError(
            f"flows.reference.burn = {settings.burn}; allowed: < flows.reference.steps = {settings.steps}"
        )
    store = flows_store(config)
    module = load_npe(config) if settings.method == "adaptive_is" else None  # a missing model fails before sampling
    available = len(StrainDataset(store, "validation", seed=config.flows.training.seed))
    events = [load_event(config, index) for index in range(min(settings.injections, available))]
    out = reference_path(config)
    partial = out.with_suffix(".h5.partial")  # an interrupted run leaves the previous file intact
    summary = {"dataset": config.flows.dataset, "method": settings.method, "injections": []}
    out.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(partial, "w") as h5:
        h5.attrs.update(
            {
                "dataset": config.flows.dataset,
                "data_md5": dataset_md5(store),
                "noise_seed": config.flows.training.seed,
                "parameters": events[0].names if events else list(dataset.parameters),
                "method": settings.method,
                "sampler": sampler_label(config),
                "settings": settings.model_dump_json(),
                "walkers": settings.walkers,
                "steps": settings.steps,
                "burn": settings.burn,
                "gwpe_version": gwpe.__version__,
            }
        )
        if settings.method == "adaptive_is":
            h5.attrs["npe_model"] = config.sampling.model
            h5.attrs["adaptive"] = config.sampling.adaptive.model_dump_json()
        else:
            h5.attrs["convergence"] = config.sampling.convergence.model_dump_json()
        for event in events:
            with event.likelihood(settings.workers) as likelihood:
                if settings.method == "adaptive_is":
                    result = _adaptive_is(config, event, module, likelihood, progress)
                    if not result["diagnostics"]["converged"]:
                        result = _fall_back_to_emcee(config, event, likelihood, progress, result["diagnostics"])
                else:
                    result = _emcee(config, event, likelihood, progress)
            group = h5.create_group(f"injection_{event.index}")
            group.create_dataset("observation", data=event.observation)
            group.create_dataset("truth", data=event.truth)
            group.create_dataset("samples", data=result["samples"], compression="gzip")
            for key in ("log_posterior", "draws", "weights"):
                if key in result:
                    group.create_dataset(key, data=result[key], compression="gzip")
            diagnostics = {"index": event.index, **result["diagnostics"]}
            group.attrs["diagnostics"] = json.dumps(diagnostics)
            summary["injections"].append(diagnostics)
            print(f"reference injection {event.index}: {_describe(diagnostics, len(result['samples']))}", flush=True)
        summary["converged"] = all(row["converged"] for row in summary["injections"])
        h5.attrs["converged"] = summary["converged"]
        # injections whose adaptive IS fell back to emcee: their diagnostics' "method" says what made them
        summary["fallbacks"] = [row["index"] for row in summary["injections"] if "fallback_from" in row]
        h5.attrs["fallbacks"] = json.dumps(summary["fallbacks"])
    partial.replace(out)
    summary["path"] = str(out)
    return summary


def _describe(diagnostics: dict, n: int) -> str:
    """One line on a reference run: samples, quality figures, cost."""
    if diagnostics["method"] == "adaptive_is":
        quality = (
            f"adaptive IS ESS {diagnostics['effective_samples']:,.0f} of {diagnostics['final_draws']:,} draws "
            f"({100 * diagnostics['efficiency']:.1f} %), log Z {diagnostics['log_evidence']:.3f} "
            f"+- {diagnostics['log_evidence_error']:.3f}"
        )
    else:
        quality = (
            f"emcee {diagnostics['steps']} steps, acceptance {diagnostics['acceptance']:.2f}, max R-hat "
            f"{diagnostics['max_rhat']:.3f}, min tail ESS {diagnostics['min_ess_tail']:,.0f}"
        )
    return (
        f"{n:,} samples, {quality}, converged {diagnostics['converged']}, "
        f"{diagnostics['likelihood_evaluations']:,} likelihood calls in {diagnostics['seconds']:.0f} s"
    )


def read_reference_posteriors(path: str | Path) -> tuple[dict, list[dict]]:
    """(file attributes, [{"index", "truth", "samples", "observation", "diagnostics"}, ...])."""
    import h5py

    with h5py.File(path, "r") as h5:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items()}
        groups = sorted(h5, key=lambda g: int(g.split("_")[1]))
        items = [
            {
                "index": int(g.split("_")[1]),
                "truth": h5[g]["truth"][()],
                "samples": h5[g]["samples"][()],
                "observation": h5[g]["observation"][()],
                "diagnostics": json.loads(h5[g].attrs["diagnostics"]),
            }
            for g in groups
        ]
    return attrs, items


def matching_reference(config: ProjectConfig) -> tuple[dict, list[dict]] | None:
    """``read_reference_posteriors`` of this profile's reference file, or None when there is none or it was made
    for other data or another noise realisation (it then says so)."""
    from gwpe.tracking import dataset_md5

    path = reference_path(config)
    if not path.is_file():
        return None
    attrs, items = read_reference_posteriors(path)
    store = flows_store(config)
    if attrs["data_md5"] != dataset_md5(store) or attrs["noise_seed"] != config.flows.training.seed:
        print(f"{path} was made for other data or noise; rerun gwpe reference to compare", flush=True)
        return None
    return attrs, items
