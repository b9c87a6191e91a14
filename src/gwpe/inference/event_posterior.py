"""A real event's posterior: the NPE through ``gwpe infer``, checked against the likelihood (``gwpe event analyse``).

On the event's strain (the files ``gwpe event prepare`` found, whitened over the whole segment with the PSDs
measured off-source, the analysis window cut at ``gps - event.window_start``), in order:

1. **NPE**: ``gwpe infer`` on the files (``gwpe.inference.infer.run_infer``: the data-quality gate, then
   ``sampling.npe_samples`` draws) and the flow's own log q for importance weights.
2. **Likelihood**: two-detector Gaussian likelihood in the whitened time domain over the window,
   log L = -1/2 sum_{d,t} (x_dt - h_dt(theta))^2 + const (``WhitenedGaussianLikelihood``: each template is
   projected on H1 and L1 with their antenna patterns and delays at the event's GPS time, whitened with the same
   measured PSDs and cropped to the window). The normalised prior is the package's recorded prior. Steps 4-5
   sample every parameter but phi0 and d_L, which the likelihood marginalises on a grid
   (``DistanceMarginalisedLikelihood``, as bilby's distance + phase marginalisation; exact for these (2, 2)-only
   signals up to the grids' error, measured at the heaviest draws by doubling both grids and reported as
   ``marginalisation_error``): the carrier's fringes in (t_c, phi0) are what a sampler of the full likelihood
   cannot cross at SNR ~25 (measured: adaptive IS stalled at beta = 0.008 on the tiny profile's real-noise
   injection), and the d_L-theta_JN ridge is what left the phase-marginalised samplers apart on GW150914
   (adaptive IS ESS 4, max JS 0.063 against flow-MCMC). Psi is then sampled folded to a period of pi/2, the sky
   in the H1-L1 baseline's frame and t_c as the arrival time at H1 (``gwpe.inference.coordinates``). (d_L, phi0)
   are drawn back from p(d_L, phi0 | theta, x) for the results.
3. **IS of the raw NPE**: efficiency ESS / n and ESS of its weights L pi / q with the full likelihood (phi0
   included, as the NPE's q is joint): how close the NPE is.
4. **Adaptive IS seeded by the NPE** (``adaptive_from_npe``): annealed from the NPE to the posterior; exact
   weights, log Z with its error. This is the likelihood-checked posterior the report quotes.
5. **Flow-MCMC** warm-started from the NPE: an independent sampler of the same posterior. Agreement: the 1-D
   JS divergence of every reported parameter between ``RECONSTRUCTED`` equal-weight draws of each (adaptive IS
   resampled by its weights), with d_L drawn back.
6. **Report**: median and 5 %/95 % of detector-frame m1, m2, chirp mass, q = m2/m1, chi_eff, d_L, theta_JN, ra,
   dec per posterior; the network matched-filter SNR of the maximum-likelihood draw,
   rho_mf = sum_d <x_d, h_d> / sqrt(sum_d <h_d, h_d>) (whitened inner products over the window); the log Bayes
   factor signal vs noise, ln B = ln Z - ln L(h = 0); the fraction of sky mass at dec < 0.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError
from gwpe.inference.result_file import with_derived

MARGINALISED = ("dL", "phi0")  # in the order they appear in the dataset's parameters
RECONSTRUCTED = 5000  # equal-weight draws per posterior given (d_L, phi0) back
REPORTED = ("m1", "m2", "chirp_mass", "mass_ratio", "chi_eff", "dL", "theta_jn", "ra", "dec")
QUANTILES = (0.05, 0.5, 0.95)


@dataclass
class EventOutcome:
    """The analysis' metrics, figures (artifact name -> figure) and files written."""

    metrics: dict
    figures: dict
    files: list[Path]


def prepared_path(config: ProjectConfig) -> Path:
    """``<event.path>/data``: the PSDs and ``event.json`` of ``gwpe event prepare``."""
    return Path(require_event(config).path) / "data"


def posterior_path(config: ProjectConfig) -> Path:
    """``<event.path>/posterior``: the result files of ``gwpe event analyse``."""
    return Path(require_event(config).path) / "posterior"


def require_event(config: ProjectConfig):
    """The profile's ``event`` section, or a one-line ConfigError."""
    if config.event is None:
        raise ConfigError(f"profile {config.profile!r} has no event section (e.g. experiments/gw150914.yaml)")
    return config.event


def read_prepared(config: ProjectConfig) -> dict:
    """``event.json`` of ``gwpe event prepare``, or a one-line ConfigError naming the command to run."""
    path = prepared_path(config) / "event.json"
    if not path.is_file():
        raise ConfigError(f"no prepared event at {path}; run `gwpe event prepare --params ...` first")
    return json.loads(path.read_text())


def weighted_quantiles(values: np.ndarray, weights: np.ndarray | None, q=QUANTILES) -> list[float]:
    """Quantiles of a (weighted) sample: the weighted empirical CDF, interpolated."""
    if weights is None:
        return np.quantile(values, q).tolist()
    carried = weights > 0  # draws outside the prior carry no weight and must not stretch the interpolation
    values, weights = values[carried], weights[carried]
    order = np.argsort(values)
    cdf = np.cumsum(weights[order])
    cdf = (cdf - 0.5 * weights[order]) / cdf[-1]
    return np.interp(q, cdf, values[order]).tolist()


def summary(columns: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict:
    """{parameter: {"median", "p05", "p95"}} over ``REPORTED``, plus the sky mass at dec < 0."""
    out = {}
    for name in REPORTED:
        if name in columns:
            low, median, high = weighted_quantiles(np.asarray(columns[name], dtype=float), weights)
            out[name] = {"median": round(median, 4), "p05": round(low, 4), "p95": round(high, 4)}
    if "dec" in columns:
        w = np.full(len(columns["dec"]), 1.0 / len(columns["dec"])) if weights is None else weights / weights.sum()
        out["sky_fraction_south"] = round(float(w[columns["dec"] < 0].sum()), 4)
    return out


def matched_filter_snr(observation: np.ndarray, templates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(network matched-filter SNR, network optimal SNR) of whitened templates (n, D, L) in data (D, L)."""
    inner = np.einsum("dl,ndl->n", observation, templates)
    norm = np.sqrt(np.einsum("ndl,ndl->n", templates, templates))
    return inner / norm, norm


def event_for(config: ProjectConfig, module, meta: dict, window: np.ndarray, package: Path):
    """The ``gwpe.inference.sampling.Event`` of the event window: names, whitened data, the package's
    standardisation, its recorded prior and a generator with its data spec (measured PSDs, event GPS)."""
    from gwpe.data.strain_store import Standardisation, recorded_prior
    from gwpe.inference.input_gate import generator_of
    from gwpe.inference.sampling import Event

    spec = meta["data_spec"]
    standardisation = Standardisation.from_attrs(meta)
    names = list(standardisation.parameters)
    generator = generator_of(spec)
    dataset = config.strain.datasets[config.event.dataset].model_copy(update={"prior": recorded_prior(spec)})
    if names != list(dataset.parameters):
        raise ConfigError(
            f"model {package} infers {names}; the likelihood checks need every drawn parameter "
            f"{list(dataset.parameters)} (event.model must infer them all)"
        )
    return Event(
        -1,
        names,
        torch.as_tensor(window, dtype=torch.float32),
        np.asarray(window, dtype=np.float64),
        np.full(len(names), np.nan),
        standardisation,
        dataset,
        generator,
        package,
    )


def analyse_event(config: ProjectConfig, progress: bool = True) -> EventOutcome:
    """Module doc, steps 1-6: writes the NPE samples, the bilby result files and the evidence file."""
    import h5py

    from gwpe.data.strain_store import recorded_prior
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.evidence import importance_sampling
    from gwpe.inference.infer import run_infer
    from gwpe.inference.input_gate import check_input
    from gwpe.inference.likelihood import DistanceMarginalisedLikelihood
    from gwpe.inference.result_file import write_bilby_result
    from gwpe.inference.sampling import flowmc_from_pilot, inside_prior, npe_draws, torch_density
    from gwpe.inference.strain_files import read_strain
    from gwpe.models.loading import load_package
    from gwpe.models.package import read_package_config

    event_config, settings = require_event(config), config.sampling
    prepared = read_prepared(config)
    package = Path(config.flows.model_dir) / event_config.model
    if not (package / "weights.pt").is_file():
        raise ConfigError(f"no trained NPE at {package}; run `gwpe train flow --model {event_config.model}` first")
    out = posterior_path(config)
    out.mkdir(parents=True, exist_ok=True)
    window_gps = float(prepared["window_start_gps"])
    files = list(prepared["files"])
    timings = {}

    began = time.perf_counter()
    inferred = run_infer(
        str(package),
        files,
        settings.npe_samples,
        out / "npe.h5",
        start=window_gps,
        whiten_raw=True,
        plot=False,
        progress=progress,
        seed=settings.seed,
    )
    timings["npe_seconds"] = round(time.perf_counter() - began, 2)
    with h5py.File(out / "npe.h5", "r") as f:
        npe_samples = f["samples"][()]

    meta = read_package_config(package)
    module = load_package(package)
    gate = check_input(read_strain(files), meta["data_spec"], window_gps, whiten_raw=True)
    event = event_for(config, module, meta, gate.window, package)
    names = event.names
    prior = recorded_prior(meta["data_spec"])
    generator = torch.Generator().manual_seed(settings.seed)
    n = settings.npe_samples
    metrics: dict = {"event": event_config.name, "gps": prepared["gps"], "window_start_gps": window_gps}
    with event.likelihood(settings.workers) as likelihood:  # the full likelihood: the raw NPE's own weights
        theta, log_q = npe_draws(module, event, n, settings.seed + 1)
        began = time.perf_counter()
        estimate, _, _ = importance_sampling(
            torch_density(likelihood.log_posterior), torch.as_tensor(theta), torch.as_tensor(log_q)
        )
        metrics["npe_importance"] = {
            "efficiency": round(float(estimate.efficiency), 6),
            "effective_samples": round(float(estimate.effective_samples), 2),
            "draws": n,
            "log_evidence": round(float(estimate.log_evidence), 4),
        }
        timings["npe_importance_seconds"] = round(time.perf_counter() - began, 2)

    # the likelihood checks sample every parameter but phi0 and d_L, which are marginalised (module doc, step 2)
    reduced = dataclasses.replace(event, names=[p for p in names if p not in MARGINALISED])
    keep = [names.index(p) for p in reduced.names]
    rng = np.random.default_rng(settings.seed)
    with DistanceMarginalisedLikelihood(
        event.generator, reduced.names, event.observation, prior=event.dataset.prior, workers=settings.workers
    ) as likelihood:
        began = time.perf_counter()
        inside, pilot, _, estimate, ais_theta, ais_weights, rounds = adaptive_posterior(
            reduced, settings, likelihood, theta[:, keep], generator, progress
        )
        metrics["adaptive_importance"] = {
            "log_evidence": round(float(estimate.log_evidence), 4),
            "log_evidence_error": round(float(estimate.standard_error), 4),
            "efficiency": round(float(estimate.efficiency), 4),
            "effective_samples": round(float(estimate.effective_samples), 1),
            "rounds": len(rounds) - 1,
            "beta_reached": float(rounds[-2].beta) if len(rounds) > 1 else 1.0,
            "likelihood_evaluations": int(likelihood.evaluations),
        }
        timings["adaptive_seconds"] = round(time.perf_counter() - began, 2)

        began = time.perf_counter()
        result, mcmc_coordinates, diagnostics = flowmc_from_pilot(
            reduced,
            settings,
            likelihood,
            pilot,
            inside[: settings.flowmc.chains],
            inside,
            progress=progress,
            fold_polarisation=True,
            sky=sky_frame_of(reduced),
        )
        mcmc_flat = mcmc_coordinates.to_physical(result.flat().double().numpy(), rng)
        metrics["flowmc"] = {
            k: diagnostics[k]
            for k in ("evaluations", "training_loops", "production_loops", "local_acceptance", "global_acceptance")
        }
        metrics["flowmc"]["effective_samples"] = round(float(diagnostics["effective_samples"]), 1)
        metrics["flowmc"]["max_rhat"] = round(float(np.max(diagnostics["rhat"])), 4)  # rank-normalised split R-hat
        metrics["flowmc"]["min_ess_tail"] = round(float(diagnostics["min_ess_tail"]), 1)
        metrics["flowmc"]["converged"] = diagnostics["converged"]  # sampling.convergence met (else warned)
        timings["flowmc_seconds"] = round(time.perf_counter() - began, 2)

        # equal-weight draws of both posteriors, with (d_L, phi0) drawn back from p(d_L, phi0 | theta, x)
        began = time.perf_counter()
        pick = rng.choice(len(ais_theta), size=RECONSTRUCTED, p=ais_weights / ais_weights.sum())
        checked = reconstruct(likelihood, ais_theta[pick], names, rng)
        thinned = rng.choice(len(mcmc_flat), min(RECONSTRUCTED, len(mcmc_flat)), replace=False)
        mcmc_theta = reconstruct(likelihood, mcmc_flat[thinned], names, rng)
        timings["reconstruction_seconds"] = round(time.perf_counter() - began, 2)

        # maximum likelihood: the best of the heaviest draws, at its best phase and distance
        top = ais_theta[np.argsort(ais_weights)[-min(400, len(ais_theta)) :]]
        row, best_distance, best_phase, max_ratio, template = likelihood.maximum_likelihood(top)
        best_full = np.empty(len(names))
        best_full[keep] = top[row]
        best_full[names.index("phi0")], best_full[names.index("dL")] = best_phase, best_distance
        metrics["marginalisation_error"] = round(likelihood.grid_error(top[-50:]), 6)
        mf, optimal = matched_filter_snr(event.observation, template[None])
        per_detector = [
            float(np.dot(event.observation[d], template[d]) / np.linalg.norm(template[d]))
            for d in range(event.observation.shape[0])
        ]
        log_noise = float(-0.5 * np.square(event.observation).sum() - 0.5 * event.observation.size * np.log(2 * np.pi))
    log_z = metrics["adaptive_importance"]["log_evidence"]
    metrics["network_snr"] = round(float(mf[0]), 3)
    metrics["network_optimal_snr"] = round(float(optimal[0]), 3)
    metrics["detector_snr"] = dict(zip(event_config.detectors, [round(s, 3) for s in per_detector]))
    metrics["max_log_likelihood_ratio"] = round(max_ratio, 3)
    metrics["log_noise_evidence"] = round(log_noise, 4)
    metrics["log_bayes_factor"] = round(log_z - log_noise, 3)
    metrics["maximum_likelihood"] = dict(zip(names, best_full.round(6).tolist()))

    npe_columns = with_derived(npe_samples, names)
    ais_columns = with_derived(checked, names)
    mcmc_columns = with_derived(mcmc_theta, names)
    metrics["npe"] = summary(npe_columns)
    metrics["likelihood_checked"] = summary(ais_columns)
    metrics["flowmc_posterior"] = summary(mcmc_columns)
    reported = [p for p in REPORTED if p in ais_columns]
    a = np.stack([ais_columns[p] for p in reported], axis=1)
    b = np.stack([mcmc_columns[p] for p in reported], axis=1)
    _, js = marginal_divergences(a, b, seed=settings.seed)
    metrics["agreement_js"] = dict(zip(reported, js.round(5).tolist()))
    metrics["max_js"] = round(float(js.max()), 5)
    metrics["agree"] = bool(js.max() <= settings.agreement_js)
    metrics["outside_prior"] = {
        "npe": float(np.mean(~inside_prior(event, npe_samples))),
        "adaptive_importance": float(np.mean(~inside_prior(event, checked))),
        "flowmc": float(np.mean(~inside_prior(event, mcmc_theta))),
    }
    metrics["gate"] = {c["name"]: c["status"] for c in inferred["checks"]}
    metrics["timings"] = timings

    bounds = {p: (lo, hi) for p in names for lo, hi in [prior_bounds_of(prior, p)]}
    common = {"gps_offset": window_gps, "priors": bounds}
    info = {
        "event": event_config.name,
        "detectors": list(event_config.detectors),
        "files": files,
        "model": str(package),
        "likelihood": "whitened time-domain Gaussian, measured off-source PSDs, phi0 and d_L marginalised "
        "(gwpe.inference.event_posterior)",
    }
    files_written = [
        write_bilby_result(
            out / f"{event_config.name}_result.hdf5",
            ais_columns,
            label=event_config.name,
            sampler="gwpe adaptive importance sampling (NPE-seeded)",
            log_evidence=log_z,
            log_evidence_err=metrics["adaptive_importance"]["log_evidence_error"],
            log_noise_evidence=log_noise,
            meta={**info, "method": "adaptive importance sampling"},
            **common,
        ),
        write_bilby_result(
            out / f"{event_config.name}_npe_result.hdf5",
            npe_columns,
            label=f"{event_config.name}_npe",
            sampler="gwpe NPE (gwpe infer)",
            log_noise_evidence=log_noise,
            meta={**info, "method": "neural posterior estimation"},
            **common,
        ),
        out / "npe.h5",
    ]
    np.savez_compressed(
        out / "samples.npz",
        parameters=np.array(names),
        sampled_parameters=np.array(reduced.names),
        adaptive_theta=ais_theta,
        adaptive_weights=ais_weights,
        adaptive_posterior=checked,
        flowmc=mcmc_theta,
        npe=npe_samples,
    )
    files_written.append(out / "samples.npz")
    figures = event_figures(config, npe_columns, ais_columns, mcmc_columns, event, template)
    from gwpe.inference.event_evidence import annealing_figure

    figures["annealing.png"] = annealing_figure(rounds)
    return EventOutcome(metrics, figures, files_written)


def adaptive_posterior(event, settings, likelihood, theta_npe: np.ndarray, generator, progress: bool = False):
    """Adaptive IS seeded by NPE draws ``theta_npe`` (physical): the draws inside the prior, the pilot that walls
    the phase, the sampler coordinates, the estimate, the final draws (physical) with normalised weights, rounds."""
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.event_evidence import adaptive_from_npe
    from gwpe.inference.sampling import inside_prior, mass_bounds

    inside = theta_npe[inside_prior(event, theta_npe)]
    pilot = inside[: settings.pilot_draws]
    coordinates = SamplerCoordinates.walled_by_likelihood(
        event.names,
        pilot,
        likelihood(pilot),
        fold_polarisation="phi0" not in event.names,
        sky=sky_frame_of(event),
        mass_bounds=mass_bounds(event, settings),
    )
    estimate, u, weights, _, rounds = adaptive_from_npe(
        settings, likelihood, coordinates, inside, generator=generator, progress=progress
    )
    theta = coordinates.to_physical(u.numpy(), np.random.default_rng(settings.seed))
    return inside, pilot, coordinates, estimate, theta, weights.numpy(), rounds


def sky_frame_of(event):
    """The ``SkyFrame`` of the event's first two detectors at the generator's reference time, or None."""
    from gwpe.waveforms.sky_frame import SkyFrame

    setup = event.generator.setup
    return SkyFrame.build(setup.detectors, setup.reference_gps) if len(setup.detectors) >= 2 else None


def reconstruct(likelihood, theta: np.ndarray, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """Full draws in ``names`` order from draws of the sampled parameters: (d_L, phi0) drawn from
    p(d_L, phi0 | theta, x) of the distance- and phase-marginalised ``likelihood``."""
    distance, phase = likelihood.distance_phase_posterior(theta, rng)
    out = np.empty((len(theta), len(names)))
    sampled = [names.index(p) for p in likelihood.names]
    out[:, sampled] = theta
    out[:, names.index("dL")], out[:, names.index("phi0")] = distance, phase
    return out


def prior_bounds_of(prior, name: str) -> tuple[float, float]:
    """The prior's (low, high) of one parameter (``gwpe.waveforms.priors.prior_bounds``)."""
    from gwpe.waveforms.priors import prior_bounds

    return prior_bounds(prior, name)


def event_figures(config, npe, checked, mcmc, event, template) -> dict:
    """Corner plot (NPE, adaptive IS, flow-MCMC; published 90 % marked), whitened data with the maximum-likelihood
    waveform, and the sky map of the likelihood-checked posterior."""
    from gwpe.evaluation.event_plots import whitened_figure
    from gwpe.evaluation.event_posterior_plots import event_corner, sky_map

    event_config = config.event
    shown = ["m1", "m2", "chirp_mass", "chi_eff", "dL", "theta_jn"]
    shown = [p for p in shown if p in checked]
    posteriors = {
        "adaptive IS (likelihood)": np.stack([checked[p] for p in shown], axis=1),
        "flow-MCMC": np.stack([mcmc[p] for p in shown], axis=1),
        "NPE": np.stack([npe[p] for p in shown], axis=1),
    }
    published = {p: tuple(v) for p, v in event_config.published.items() if p in shown}
    figures = {"corner.png": event_corner(posteriors, shown, published=published, title=f"{event_config.name}")}
    if "ra" in checked and "dec" in checked:
        figures["sky.png"] = sky_map(
            checked["ra"],
            checked["dec"],
            label="adaptive IS",
            title=f"{event_config.name} sky",
        )
    rate = event.generator.setup.sample_rate
    times = np.arange(event.observation.shape[-1]) / rate - event_config.window_start
    figures["whitened-ml.png"] = whitened_figure(
        times,
        event.observation,
        list(event_config.detectors),
        span=(-0.3, 0.1),
        templates=template,
        rate=rate,
        bandpass=(30.0, min(350.0, 0.45 * rate)),
        title=f"{event_config.name}: whitened data and the maximum-likelihood waveform",
    )
    return figures


def format_report(metrics: dict) -> str:
    """Terminal table: median [5 %, 95 %] per parameter for the NPE and the likelihood-checked posterior, then the
    IS efficiency, agreement, SNR and Bayes factor."""
    lines = [f"{metrics['event']} (window from GPS {metrics['window_start_gps']:.3f})"]
    lines.append(f"{'parameter':<12}{'NPE':>30}{'likelihood-checked (adaptive IS)':>36}")
    for name in REPORTED:
        if name not in metrics["likelihood_checked"]:
            continue
        cells = []
        for key in ("npe", "likelihood_checked"):
            q = metrics[key][name]
            cells.append(f"{q['median']:.4g} [{q['p05']:.4g}, {q['p95']:.4g}]")
        lines.append(f"{name:<12}{cells[0]:>30}{cells[1]:>36}")
    npe = metrics["npe_importance"]
    lines.append(
        f"raw NPE importance sampling: efficiency {100 * npe['efficiency']:.3g} %, ESS {npe['effective_samples']:.1f}"
        f" of {npe['draws']}"
    )
    lines.append(
        f"adaptive IS vs flow-MCMC: max 1-D JS {metrics['max_js']:.4f} nat "
        f"({'agree' if metrics['agree'] else 'DISAGREE'})"
    )
    lines.append(
        f"network matched-filter SNR {metrics['network_snr']:.2f}; "
        f"ln B(signal/noise) {metrics['log_bayes_factor']:.1f}; "
        f"sky mass at dec < 0: {metrics['likelihood_checked'].get('sky_fraction_south', float('nan')):.2f}"
    )
    return "\n".join(lines)
