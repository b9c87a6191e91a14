"""The reference posteriors of ``gwpe reference``: emcee reference posteriors for the first validation
injections of ``flows.dataset``.

The observations are exactly what ``gwpe evaluate flow`` gives the flows: validation signal i plus its fixed
noise realisation (seeded by ``flows.training.seed`` and i). The likelihood is the whitened Gaussian one with
the dataset's own generator and prior (``gwpe.inference.likelihood``), sampled with emcee
(``gwpe.inference.reference``). Output ``<flows.reference.path>/<dataset>.h5``: attributes (dataset, its md5,
noise seed, parameter names, sampler settings), and per injection a group ``injection_<i>`` with the
observation, the truth, samples in physical units, log posterior and the diagnostics.

emcee moves in ``gwpe.inference.coordinates.SamplerCoordinates``: (M_c, nu = m2/m1) in place of (m1, m2), and
phi0 folded onto one of the two identical copies of the (2, 2)-mode posterior; the density carries the
Jacobian, so the samples, mapped back, follow the (m1, m2, phi0) posterior.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import gwpe
from gwpe.config import ProjectConfig
from gwpe.data.strain_store import flows_dataset, flows_store


def reference_path(config: ProjectConfig) -> Path:
    """``<flows.reference.path>/<flows.dataset>.h5``."""
    return Path(config.flows.reference.path) / f"{config.flows.dataset}.h5"


def build_reference_posteriors(config: ProjectConfig, progress: bool = True) -> dict:
    """emcee posteriors of the first ``flows.reference.injections`` validation injections, written to
    ``reference_path``; returns the summary (dataset, per-injection diagnostics, path)."""
    import h5py

    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.likelihood import WhitenedGaussianLikelihood
    from gwpe.inference.reference import injection_start, run_emcee
    from gwpe.tracking import dataset_md5
    from gwpe.waveforms.strain import StrainGenerator, StrainSetup

    settings = config.flows.reference
    dataset = flows_dataset(config)
    if settings.burn >= settings.steps:
        from gwpe.errors import ConfigError

        raise ConfigError(
            f"flows.reference.burn = {settings.burn}; allowed: < flows.reference.steps = {settings.steps}"
        )
    store = flows_store(config)
    validation = StrainDataset(store, "validation", seed=config.flows.training.seed)
    names = list(validation.standardisation.parameters)
    if names != list(dataset.parameters):
        from gwpe.errors import ConfigError

        raise ConfigError(
            f"flows.dataset {config.flows.dataset!r} infers {names} of {list(dataset.parameters)}; "
            "reference posteriors need every drawn parameter inferred (no nuisance parameters)"
        )
    generator = StrainGenerator(StrainSetup.build(config.strain, dataset))
    out = reference_path(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".h5.partial")  # an interrupted run leaves the previous file intact
    summary = {"dataset": config.flows.dataset, "injections": []}
    with h5py.File(partial, "w") as h5:
        h5.attrs.update(
            {
                "dataset": config.flows.dataset,
                "data_md5": dataset_md5(store),
                "noise_seed": config.flows.training.seed,
                "parameters": names,
                "walkers": settings.walkers,
                "steps": settings.steps,
                "burn": settings.burn,
                "sampler": "emcee stretch move",
                "gwpe_version": gwpe.__version__,
            }
        )
        for index in range(min(settings.injections, len(validation))):
            strain, theta = validation[index]
            observation = strain.numpy().astype(np.float64)
            truth = validation.standardisation.inverse(theta.numpy().astype(np.float64))
            with WhitenedGaussianLikelihood(
                generator, names, observation, prior=dataset.prior, workers=settings.workers
            ) as likelihood:
                start = injection_start(
                    truth, names, settings.walkers, likelihood.log_posterior, seed=settings.seed + index
                )
                coordinates = SamplerCoordinates.centred_on(names, start, fold_phase=True)
                density = coordinates.log_density(likelihood.log_posterior)
                result = run_emcee(
                    density,
                    coordinates.from_physical(start),
                    settings.steps,
                    settings.burn,
                    seed=settings.seed + index,
                    progress=progress,
                )
                evaluations = likelihood.evaluations
            group = h5.create_group(f"injection_{index}")
            group.create_dataset("observation", data=observation)
            group.create_dataset("truth", data=truth)
            group.create_dataset("samples", data=coordinates.to_physical(result.samples), compression="gzip")
            group.create_dataset("log_posterior", data=result.log_posterior, compression="gzip")
            diagnostics = {
                "index": index,
                "acceptance": result.acceptance,
                "autocorr": result.autocorr.tolist(),
                "rhat": result.rhat.tolist(),
                "converged": result.converged,
                "effective_samples": result.effective_samples(),
                "likelihood_evaluations": evaluations,
                "seconds": round(result.seconds, 2),
            }
            group.attrs["diagnostics"] = json.dumps(diagnostics)
            summary["injections"].append(diagnostics)
            print(
                f"reference injection {index}: {len(result.samples):,} samples, acceptance {result.acceptance:.2f}, "
                f"max tau {result.autocorr.max():.0f} steps, max R-hat {result.rhat.max():.3f}, "
                f"{evaluations:,} likelihood calls in {result.seconds:.0f} s",
                flush=True,
            )
    partial.replace(out)
    summary["path"] = str(out)
    return summary


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
