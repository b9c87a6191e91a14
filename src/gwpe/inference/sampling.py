"""Likelihood-based posteriors for one strain injection, warm-started by the NPE flow.

The event is validation injection ``sampling.injection`` of ``flows.dataset`` with its fixed noise realisation
(the observation ``gwpe evaluate flow`` gives the flows); the target is the whitened Gaussian likelihood times
the normalised dataset prior (``gwpe.inference.likelihood``), in ``SamplerCoordinates`` (chirp mass, mass
ratio, phi0 folded onto one of its two exact copies). Three samplers, each timed and counted in log-posterior
evaluations:

- **flow-MCMC, warm** (``gwpe.inference.flowmc``): the proposal flow is first fitted to draws of the NPE
  posterior for this observation (no likelihood calls) and the chains start at NPE draws;
- **flow-MCMC, cold**: the same sampler with the proposal learned from scratch and chains started at prior
  draws; the phase window is centred on those draws, so nothing of the NPE is used;
- **emcee** (differential-evolution and stretch moves, ``gwpe.inference.reference``): walkers start at draws of
  the warm flow-MCMC posterior
  and the first ``burn`` steps are dropped, so emcee checks that posterior is stationary under an independent
  kernel. With ``emcee.latent`` (the default) the walkers move in the latent space of the warm run's final
  proposal flow (``flowmc.LatentTransport``, NeuTra): there the posterior is close to N(0, I). On the demo's
  injection 0 it converged (R-hat <= 1.009, tail ESS >= 4,200 after 3,500-4,000 steps) where sampler
  coordinates give R-hat 1.13 after the same 4,000 steps (autocorrelation times 85-200 steps); the flow only
  preconditions, the chain stays exact. Each step inverts the MAF (5 sequential passes per transform) on one
  thread, ~4 ms a half-ensemble: ~30 s of a run whose likelihood calls are the same either way. Started at
  NPE draws instead, walkers strand in secondary t_c maxima one cycle away (measured on the default profile:
  R-hat 5.9 after 2,000 steps), which flow proposals jump out of and DE moves do not.

Both flow-MCMC runs train until the flow's proposals are accepted at ``train_until`` (the flow has learned
the posterior), then sample with the flow frozen (``flowmc.production_local: latent``: the production loops'
local steps are a random walk in that flow's latent space, which unsticks chains in the tails the independence
moves under-cover: demo injection 0, warm, 45 loops, max R-hat 1.017 -> 1.012) until ``target_ess`` and
``sampling.convergence`` (every parameter's rank-normalised split R-hat <= 1.01 and tail ESS >= 400:
``gwpe.inference.convergence``) or ``max_production_loops``; emcee is extended by ``emcee.extend_steps``
until the same target or ``emcee.max_steps``.
A run that ends at its cap unconverged prints one WARNING line on stderr and is recorded ``converged: false``
with its R-hat and ESS (metrics, HDF5 diagnostics); ``converged`` at the top of the metrics is all of them.
"Evaluations to learn" is the count at the end of training; the warm start is useful when it is smaller than
the cold one for the same posterior.

Output ``<sampling.path>/<dataset>.h5``: attributes (dataset, md5, injection, names, settings), the
observation and truth, one group per sampler with physical samples, sampler-coordinate samples, log posterior
(sampler coordinates), log likelihood and its diagnostics (JSON: acceptance, R-hat, ESS, evaluations,
seconds, per-loop history); ``<dataset>-proposal.pt`` holds the warm run's final proposal flow (a state dict,
loaded with ``weights_only=True``; its config is the file's ``proposal`` attribute) for restarts and other
tools. ``gwpe evidence`` does not use it, so that its importance sampling stays independent of the MCMC.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import gwpe
from gwpe.config import ProjectConfig
from gwpe.data.strain_store import flows_dataset, flows_store
from gwpe.errors import ConfigError

METHODS = ("flowmc_warm", "flowmc_cold", "emcee")


@dataclass
class SamplingOutcome:
    """The samplers' metrics, figures (artifact name -> figure) and the files they read and wrote."""

    metrics: dict
    figures: dict
    store: Path
    path: Path


@dataclass
class Event:
    """One observation of ``flows.dataset`` with what every sampler needs."""

    index: int
    names: list[str]
    strain: torch.Tensor  # (D, L) whitened, as the flows see it
    observation: np.ndarray  # float64 copy
    truth: np.ndarray  # (P,) physical
    standardisation: object
    dataset: object  # StrainDatasetConfig
    generator: object  # StrainGenerator
    store: Path

    def likelihood(self, workers: int):
        from gwpe.inference.likelihood import WhitenedGaussianLikelihood

        return WhitenedGaussianLikelihood(
            self.generator, self.names, self.observation, prior=self.dataset.prior, workers=workers
        )


def load_event(config: ProjectConfig, index: int) -> Event:
    """Validation injection ``index`` of ``flows.dataset`` (strain with its fixed noise, physical truth) and
    its generator; ConfigError when out of range or when a drawn parameter is not inferred."""
    from gwpe.data.strain_dataset import StrainDataset
    from gwpe.waveforms.strain import StrainGenerator, StrainSetup

    dataset, store = flows_dataset(config), flows_store(config)
    validation = StrainDataset(store, "validation", seed=config.flows.training.seed)
    if not 0 <= index < len(validation):
        raise ConfigError(
            f"sampling.injection = {index}; allowed: 0 .. {len(validation) - 1} "
            f"(validation signals of {config.flows.dataset})"
        )
    names = list(validation.standardisation.parameters)
    if names != list(dataset.parameters):
        raise ConfigError(
            f"flows.dataset {config.flows.dataset!r} infers {names} of {list(dataset.parameters)}; "
            "likelihood-based posteriors need every drawn parameter inferred (no nuisance parameters)"
        )
    strain, theta = validation[index]
    truth = validation.standardisation.inverse(theta.numpy().astype(np.float64))
    # the likelihood's templates: the dataset's setup, on a longer segment when sampling.template_segment asks
    generator = StrainGenerator(
        StrainSetup.build(config.strain, dataset).with_segment(config.sampling.template_segment)
    )
    return Event(
        index,
        names,
        strain,
        strain.numpy().astype(np.float64),
        truth,
        validation.standardisation,
        dataset,
        generator,
        store,
    )


def load_npe(config: ProjectConfig):
    """The trained NPE ``sampling.model``; ConfigError unless it is a trained MAF (an exact density)."""
    from gwpe.models.flow_posterior import FlowPosterior

    name = config.sampling.model
    exact = [key for key, model in config.flows.models.items() if model.kind == "maf"]
    if name not in exact:  # a CVAE's log q is a bound (ELBO), which would bias every importance weight
        raise ConfigError(
            f"sampling.model = {name!r}; allowed: {', '.join(exact) or 'none'} "
            "(flows.models of kind maf: importance weights need an exact density)"
        )
    folder = Path(config.flows.model_dir) / name
    if not (folder / "weights.pt").exists():
        raise ConfigError(
            f"sampling.model = {name!r}: no trained model at {folder}; run `dvc repro train-flow@{name}` first"
        )
    return FlowPosterior.load_model(folder)


@torch.no_grad()
def npe_draws(module, event: Event, n: int, seed: int, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(theta (n, P) physical, log q(theta | x) (n,)) from the NPE flow; the strain is embedded per batch.

    A GNPE model (``gwpe.models.flows.gnpe``) has no log q(theta | x): its draws come with the joint density
    q(theta, t^) of the recovered proxy law, and the "log q" returned is log q(theta, t^) - log p(t^ | theta),
    so that the usual weights L pi / q are its exact joint weights L pi p(t^ | theta) / q(theta, t^)."""
    torch.manual_seed(seed)
    thetas, log_qs = [], []
    log_scale = float(np.log(event.standardisation.std).sum())
    model = module.model
    for k, size in enumerate([batch] * (n // batch) + ([n % batch] if n % batch else [])):
        if getattr(model, "tractable", True):
            z = module.sample(event.strain, size)
            context = event.strain.unsqueeze(0).expand(size, *event.strain.shape)
            log_q = model.log_prob(z, context).double()
        else:
            model.eval()
            z, proxy, log_q = model.sample_with_density(event.strain, size, seed=seed + k)
            log_q = log_q - model.log_kernel(z, proxy)
        log_qs.append(log_q.numpy() - log_scale)
        thetas.append(event.standardisation.inverse(z.double().numpy()))
    return np.concatenate(thetas), np.concatenate(log_qs)


def torch_density(density):
    """A numpy log density (n, D) -> (n,) as the torch callable FlowMC expects."""

    def log_prob(u: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(density(u.detach().double().numpy()), dtype=u.dtype)

    return log_prob


def convergence_target(settings):
    """The ``ConvergenceTarget`` of a ``SamplingSection`` (``settings.convergence``)."""
    from gwpe.inference.convergence import ConvergenceTarget

    return ConvergenceTarget(settings.convergence.rhat, settings.convergence.tail_ess, settings.convergence.sd_error)


def run_flowmc(
    settings,
    density,
    start_u: np.ndarray,
    seed: int,
    warm_u: np.ndarray | None = None,
    progress: bool = False,
    reported=None,
    wall: int | None = None,
):
    """One flow-MCMC run from ``start_u`` (chains, D); ``warm_u`` (n, D): draws the proposal is first fitted to;
    ``reported``: the map to the columns convergence is checked on (``FlowMC.run``); ``wall``: the column the
    proposal is folded at (``StandardisedFlow``)."""
    from gwpe.inference.flowmc import FlowMC, StandardisedFlow

    fm = settings.flowmc
    torch.manual_seed(seed)
    dim = start_u.shape[1]
    proposal = None
    if warm_u is not None:
        proposal = StandardisedFlow(dim, fm.transforms, tuple(fm.hidden), wall)
        proposal.fit(torch.as_tensor(warm_u, dtype=torch.float32), fm.warm_start_epochs, restandardise=True)
    sampler = FlowMC(
        torch_density(density),
        dim,
        n_chains=fm.chains,
        local="rw",
        step_size=fm.step_size,
        n_local=fm.local_steps,
        n_global=fm.global_steps,
        n_local_production=fm.production_local_steps,
        training_loops=fm.max_training_loops,
        production_loops=fm.production_loops,
        flow_epochs=fm.flow_epochs,
        history_loops=fm.history_loops,
        transforms=fm.transforms,
        hidden=tuple(fm.hidden),
        flow=proposal,
        seed=seed,
        defensive=fm.defensive,
        defensive_temperature=fm.defensive_temperature,
        production_local=fm.production_local,
        latent_step=fm.latent_step,
        production_chains=fm.production_chains,
        refine_rounds=fm.refine_rounds,
        refine_draws=fm.refine_draws,
        kernel_weight=fm.kernel_weight,
        wall=wall,
    )
    began = time.perf_counter()
    result = sampler.run(
        torch.as_tensor(start_u, dtype=torch.float32),
        progress=progress,
        train_until=fm.train_until,
        target_ess=fm.target_ess,
        max_production_loops=fm.max_production_loops,
        target_rhat=fm.target_rhat,
        convergence=convergence_target(settings),
        reported=reported,
    )
    return result, time.perf_counter() - began


def flowmc_from_pilot(
    event: Event,
    settings,
    likelihood,
    pilot: np.ndarray,
    start: np.ndarray,
    warm: np.ndarray | None,
    progress: bool = False,
    fold_polarisation: bool = False,
    sky=None,
    label: str = "flow-MCMC",
):
    """(result, coordinates, summary) of one flow-MCMC run: the ``pilot`` draws' likelihoods place the phase
    walls (psi's with ``fold_polarisation``, for a phase-marginalised likelihood), chains start at ``start``
    (chains, P), and the proposal is first fitted to ``warm`` draws if given; ``sky``: a ``SkyFrame`` the sky
    and t_c are sampled in (``gwpe.inference.coordinates``). The pilot's evaluations count towards the run's.
    A run that is not converged at its loop cap warns (one line on stderr, ``label`` naming it)."""
    from gwpe.inference.convergence import warn_unconverged
    from gwpe.inference.coordinates import SamplerCoordinates

    templates, began = likelihood.evaluations, time.perf_counter()
    coordinates = SamplerCoordinates.walled_by_likelihood(
        event.names,
        pilot,
        likelihood(pilot),
        fold_polarisation=fold_polarisation,
        sky=sky,
        mass_bounds=mass_bounds(event, settings),
    )
    result, _ = run_flowmc(
        settings,
        coordinates.log_density(likelihood.log_posterior),
        coordinates.from_physical(start),
        settings.seed,
        warm_u=None if warm is None else coordinates.from_physical(warm),
        progress=progress,
        reported=coordinates.reported,
        wall=equal_mass_wall(coordinates, settings.flowmc.fold_equal_mass),
    )
    result.history["evaluations"] = [count + len(pilot) for count in result.history["evaluations"]]
    result.evaluations += len(pilot)
    summary = flowmc_summary(result, time.perf_counter() - began)
    summary["pilot_evaluations"] = len(pilot)
    summary["template_evaluations"] = likelihood.evaluations - templates
    warn_unconverged(label, result.convergence, coordinates.reported_names)
    return result, coordinates, summary


def equal_mass_wall(coordinates, fold: bool) -> int | None:
    """The column a proposal flow is folded at, with ``fold`` and half-probit mass coordinates (u_nu <= 0,
    ``gwpe.inference.coordinates``); else None."""
    return coordinates.masses[1] if fold and coordinates.mass_bounds is not None else None


def mass_bounds(event: Event, settings) -> tuple[float, float] | None:
    """The prior's (m_min, m_max) where ``settings.mass_coordinates`` is probit (the samplers then move in
    coordinates without the mass triangle's walls: ``gwpe.inference.coordinates``), else None."""
    if settings.mass_coordinates != "probit" or not {"m1", "m2"} <= set(event.names):
        return None
    prior = event.dataset.prior
    return float(prior.mass_min), float(prior.mass_max)


def flowmc_summary(result, seconds: float) -> dict:
    """JSON-ready diagnostics of a flow-MCMC run: evaluations (to learn: at the last training loop), loops,
    acceptances, R-hat, ESS and the per-loop history."""
    from gwpe.inference.flowmc import effective_sample_size

    history = result.history
    training = [i for i, phase in enumerate(history["phase"]) if phase == "training"]
    learned = training[-1] if training else -1
    return {
        "evaluations": int(result.evaluations),
        "seconds": round(seconds, 2),
        "evaluations_to_learn": int(history["evaluations"][learned]) if training else 0,
        "training_loops": len(training),
        "production_loops": len(history["phase"]) - len(training),
        "local_acceptance": result.local_acceptance,
        "global_acceptance": result.global_acceptance,
        "effective_samples": effective_sample_size(result.samples),
        "gelman_rubin": result.rhat.tolist(),  # classic; "rhat" below is the rank-normalised split R-hat
        **result.convergence.summary(),
        "history": history,
    }


def prior_start(event: Event, n: int, seed: int) -> np.ndarray:
    """``n`` draws (n, P) from the dataset's prior, seeded with ``seed``."""
    from gwpe.waveforms.priors import sample_prior

    return sample_prior(event.dataset.prior, event.names, n, np.random.default_rng(seed))


def inside_prior(event: Event, theta: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``theta`` (n, P) where the prior density is non-zero."""
    from gwpe.waveforms.priors import log_prior_density

    return np.isfinite(log_prior_density(event.dataset.prior, event.names, theta))


def log_likelihood_from(
    event: Event, coordinates, u: np.ndarray, theta: np.ndarray, log_density_u: np.ndarray
) -> np.ndarray:
    """log L = log p(u) - log pi(theta) - log |d theta / d u| (the sampler stores p(u))."""
    from gwpe.waveforms.priors import log_prior_density

    return log_density_u - log_prior_density(event.dataset.prior, event.names, theta) - coordinates.log_jacobian(u)


def sampling_path(config: ProjectConfig) -> Path:
    """``<sampling.path>/<flows.dataset>.h5``."""
    return Path(config.sampling.path) / f"{config.flows.dataset}.h5"


def proposal_path(config: ProjectConfig) -> Path:
    """``<sampling.path>/<flows.dataset>-proposal.pt``: the warm run's final proposal flow."""
    return Path(config.sampling.path) / f"{config.flows.dataset}-proposal.pt"


def sample_event(config: ProjectConfig, progress: bool = True, plots_dir: str | Path | None = None) -> SamplingOutcome:
    """The three samplers on one injection (module doc); returns the metrics written beside the HDF5 file."""
    import h5py

    from gwpe.inference.convergence import warn_unconverged
    from gwpe.inference.flowmc import LatentTransport
    from gwpe.inference.reference import run_emcee
    from gwpe.tracking import dataset_md5

    settings = config.sampling
    module = load_npe(config)  # a misnamed model fails before any data is read
    event = load_event(config, settings.injection)
    fm = settings.flowmc
    theta_npe, _ = npe_draws(module, event, max(settings.npe_samples, fm.chains), settings.seed)
    theta_npe = theta_npe[inside_prior(event, theta_npe)]
    if len(theta_npe) < fm.chains:
        raise ConfigError(
            f"only {len(theta_npe)} of the NPE draws lie inside the prior; raise sampling.npe_samples "
            f"(now {settings.npe_samples}) above {fm.chains} chains / that fraction"
        )
    prior_draws = prior_start(event, max(fm.chains, settings.pilot_draws), settings.seed)
    runs: dict[str, dict] = {}
    with event.likelihood(settings.workers) as likelihood:
        for method, pilot, start, warm in (
            ("flowmc_warm", theta_npe[: settings.pilot_draws], theta_npe[: fm.chains], theta_npe),
            ("flowmc_cold", prior_draws, prior_draws[: fm.chains], None),
        ):
            if method not in ("flowmc_warm", *settings.compare):
                continue
            result, coordinates, summary = flowmc_from_pilot(
                event, settings, likelihood, pilot, start, warm, progress, label=f"gwpe sample {method}"
            )
            if method == "flowmc_warm":
                warm_coordinates = coordinates
            u = result.flat().double().numpy()
            runs[method] = {
                "u": u,
                "log_density": result.log_prob.reshape(-1).double().numpy(),
                "coordinates": coordinates,
                "summary": summary,
                "proposal": result.proposal if method == "flowmc_warm" else None,
            }
            print(
                f"{method}: learned the posterior after {summary['evaluations_to_learn']:,} evaluations "
                f"({summary['training_loops']} training loops), {summary['evaluations']:,} in all, ESS "
                f"{summary['effective_samples']:,.0f}, global acceptance {summary['global_acceptance']:.2f}, "
                f"max R-hat {max(summary['rhat']):.3f}, min tail ESS {summary['min_ess_tail']:,.0f}, "
                f"converged {summary['converged']}, {summary['seconds']:.0f} s",
                flush=True,
            )
        if "emcee" in settings.compare:  # emcee in the warm proposal's latent space
            emcee_settings = settings.emcee
            rng = np.random.default_rng(settings.seed)
            distinct = np.unique(
                runs["flowmc_warm"]["u"], axis=0
            )  # a rejected step repeats a state; DE and stretch moves need distinct walkers
            start = distinct[rng.choice(len(distinct), emcee_settings.walkers, replace=False)]
            templates = likelihood.evaluations
            if emcee_settings.latent:  # NeuTra: the walkers move in the warm proposal's latent space (module doc)
                transport = LatentTransport(runs["flowmc_warm"]["proposal"])
                density, start = (  # on the wall's own side (``LatentTransport.density``): one copy, no mirror
                    transport.density(warm_coordinates.log_density(likelihood.log_posterior), one_side=True),
                    transport.to_latent(start),
                )

                def fold(z: np.ndarray) -> np.ndarray:
                    return transport.from_latent(z)[0]
            else:
                density = warm_coordinates.log_density(likelihood.log_posterior, periodic=True)
                fold = warm_coordinates.fold_sampler
            result = run_emcee(
                density,
                start,
                emcee_settings.steps,
                emcee_settings.burn,
                seed=settings.seed,
                progress=progress,
                fold=fold,
                max_steps=emcee_settings.max_steps,
                extend_steps=emcee_settings.extend_steps,
                target=convergence_target(settings),
            )
            log_density_u = result.log_posterior  # the chain's density is p_z: back to p(u) by the map's Jacobian
            if emcee_settings.latent:  # at the walkers' own z: a folded proposal maps z and its mirror to one u
                log_density_u = log_density_u - transport.from_latent(result.walker_samples)[1]
            runs["emcee"] = {
                "u": result.samples,
                "log_density": log_density_u,
                "coordinates": warm_coordinates,
                "summary": {
                    "evaluations": result.evaluations,
                    "template_evaluations": likelihood.evaluations - templates,
                    "seconds": round(result.seconds, 2),
                    **result.diagnostics(),
                },
            }
            print(
                f"emcee: {result.evaluations:,} evaluations ({result.steps} steps), "
                f"ESS {result.effective_samples():,.0f}, acceptance {result.acceptance:.2f}, "
                f"max R-hat {result.rhat.max():.3f}, min tail ESS {np.min(result.convergence.ess_tail):,.0f}, "
                f"converged {result.converged}, {result.seconds:.0f} s",
                flush=True,
            )
            warn_unconverged("gwpe sample emcee", result.convergence, event.names)

    from gwpe.evaluation.divergence import marginal_divergences

    for _method, run in runs.items():
        run["theta"] = run["coordinates"].to_physical(run["u"], np.random.default_rng(settings.seed))
    metrics = {
        "dataset": config.flows.dataset,
        "injection": event.index,
        "parameters": event.names,
        "truth": event.truth.tolist(),
        "methods": {},
    }
    metrics["converged"] = all(run["summary"]["converged"] for run in runs.values())
    for method, run in runs.items():
        entry = {k: v for k, v in run["summary"].items() if k not in ("history", "convergence_history")}
        if method != "flowmc_warm":
            entry["js_vs_flowmc_warm"] = dict(
                zip(event.names, marginal_divergences(run["theta"], runs["flowmc_warm"]["theta"])[1].round(5).tolist())
            )
        metrics["methods"][method] = entry
    if "flowmc_cold" in metrics["methods"]:
        warm, cold = metrics["methods"]["flowmc_warm"], metrics["methods"]["flowmc_cold"]
        metrics["warm_start"] = {
            "evaluations_to_learn": {"warm": warm["evaluations_to_learn"], "cold": cold["evaluations_to_learn"]},
            "evaluations_to_target_ess": {"warm": warm["evaluations"], "cold": cold["evaluations"]},
            "fewer_evaluations": warm["evaluations_to_learn"] < cold["evaluations_to_learn"],
        }

    out = sampling_path(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".h5.partial")  # an interrupted run leaves the previous file intact
    with h5py.File(partial, "w") as h5:
        h5.attrs.update(
            {
                "dataset": config.flows.dataset,
                "data_md5": dataset_md5(event.store),
                "injection": event.index,
                "parameters": event.names,
                "settings": settings.model_dump_json(),
                "npe_model": settings.model,
                "converged": metrics["converged"],  # every sampler met sampling.convergence (diagnostics per group)
                "gwpe_version": gwpe.__version__,
                "proposal": json.dumps(
                    {
                        **runs["flowmc_warm"]["proposal"].config(),
                        **warm_coordinates.settings(),
                    }
                ),
            }
        )
        h5.create_dataset("observation", data=event.observation)
        h5.create_dataset("truth", data=event.truth)
        for method, run in runs.items():
            group = h5.create_group(method)
            group.create_dataset("samples", data=run["theta"], compression="gzip")
            group.create_dataset("sampler_samples", data=run["u"], compression="gzip")
            group.create_dataset("log_posterior", data=run["log_density"], compression="gzip")
            group.create_dataset(
                "log_likelihood",
                compression="gzip",
                data=log_likelihood_from(event, run["coordinates"], run["u"], run["theta"], run["log_density"]),
            )
            group.attrs["phase_centre"] = run["coordinates"].phase_centre
            group.attrs["mass_bounds"] = json.dumps(run["coordinates"].mass_bounds)
            group.attrs["phase_slope"] = run["coordinates"].phase_slope  # the phase - time shear (coordinates doc)
            group.attrs["time_anchor"] = run["coordinates"].time_anchor
            group.attrs["diagnostics"] = json.dumps(run["summary"])
    torch.save(runs["flowmc_warm"]["proposal"].state_dict(), proposal_path(config))
    partial.replace(out)
    metrics["path"] = str(out)

    figures = {"sampling/convergence.png": convergence_figure(runs)}
    if plots_dir is not None:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        for name, figure in figures.items():
            figure.savefig(Path(plots_dir) / Path(name).name, dpi=110)
    return SamplingOutcome(metrics, figures, event.store, out)


def convergence_figure(runs: dict):
    """Flow-proposal acceptance and production ESS against log-posterior evaluations, warm vs cold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method, colour in (("flowmc_warm", "tab:blue"), ("flowmc_cold", "tab:orange")):
        if method not in runs:
            continue
        history = runs[method]["summary"]["history"]
        evaluations = np.array(history["evaluations"])
        left.plot(evaluations, history["global_acceptance"], "o-", ms=3, color=colour, label=method.replace("_", " "))
        learned = runs[method]["summary"]["evaluations_to_learn"]
        left.axvline(learned, color=colour, ls=":")
        ess = np.array(history["ess"], dtype=float)
        right.plot(
            evaluations[np.isfinite(ess)],
            ess[np.isfinite(ess)],
            "o-",
            ms=3,
            color=colour,
            label=method.replace("_", " "),
        )
    left.set(
        xlabel="log-posterior evaluations",
        ylabel="flow proposal acceptance",
        title="training ends (dotted) once the flow has learned",
    )
    right.set(
        xlabel="log-posterior evaluations",
        ylabel="effective samples (production)",
        title="production, flow frozen (early peak: short chains overestimate ESS)",
    )
    for axis in (left, right):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def read_sampling(path: str | Path) -> tuple[dict, dict[str, dict]]:
    """(file attributes,
    {method: {"samples", "sampler_samples", "log_posterior", "log_likelihood", "phase_centre", "mass_bounds",
    "phase_slope", "time_anchor", "diagnostics"}})."""
    import h5py

    with h5py.File(path, "r") as h5:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in h5.attrs.items()}
        attrs["observation"], attrs["truth"] = h5["observation"][()], h5["truth"][()]
        runs = {
            method: {
                **{
                    key: h5[method][key][()]
                    for key in ("samples", "sampler_samples", "log_posterior", "log_likelihood")
                },
                "phase_centre": float(h5[method].attrs["phase_centre"]),
                # files written before sampling.mass_coordinates hold (M_c, nu): null
                "mass_bounds": json.loads(h5[method].attrs.get("mass_bounds", "null")),
                # files written before the phase - time shear: none
                "phase_slope": float(h5[method].attrs.get("phase_slope", 0.0)),
                "time_anchor": float(h5[method].attrs.get("time_anchor", 0.0)),
                "diagnostics": json.loads(h5[method].attrs["diagnostics"]),
            }
            for method in METHODS
            if method in h5
        }
    return attrs, runs
