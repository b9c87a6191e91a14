"""``gwpe evaluate flow --model NAME``: validation NLL (Table III), p–p calibration, sampling time, registry.

Held-out injections are the first ``flows.evaluation.injections`` validation signals with their fixed noise
realisation; each gets ``samples`` posterior samples (fast sampler), mapped to physical units with the
stored standardisation. Chirp mass is derived from (m1, m2) samples when both are inferred. Widths are the
median central-90 % interval over the prior range (a posterior equal to the prior is calibrated too).
Everything lands in the training's MLflow run; the model is registered as ``<prefix>-<name>`` and the alias
``champion`` moves only to a lower validation NLL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


def _validation_nll(module, data) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for strain, theta in data.val_dataloader():
            total += float(-module.model.log_prob(theta, strain).sum())
            count += len(theta)
    return total / max(count, 1)


def evaluate_flow(config: ProjectConfig, name: str, plots_dir: str | Path = "plots/flows", register: bool = True,
                  progress: bool = True) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from tqdm import tqdm

    from gwpe import physics
    from gwpe.data.strain_datamodule import StrainDataModule
    from gwpe.evaluation.calibration import calibrate, pp_plot
    from gwpe.models.flow_module import FlowModule
    from gwpe.models.package import CONFIG_FILE
    from gwpe.tracking import stage_run
    from gwpe.tracking.registry import register_version
    from gwpe.training.flow import store_path
    from gwpe.waveforms.priors import prior_bounds

    model_dir = Path(config.flows.model_dir) / name
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"no trained flow in {model_dir} (run: gwpe train flow --model {name})")
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    module = FlowModule.load_model(model_dir)
    data = StrainDataModule(store_path(config), batch_size=config.flows.training.batch_size, seed=config.flows.training.seed)
    standardisation = data.standardisation
    validation = data.dataset("validation")
    evaluation = config.flows.evaluation
    n = min(evaluation.injections, len(validation))
    parameters = list(standardisation.parameters)
    samples, truth = [], []
    for index in tqdm(range(n), desc=f"evaluate flow {name}", unit="injection", disable=not progress):
        strain, theta = validation[index]
        draws = module.sample(torch.as_tensor(strain), evaluation.samples).double().numpy()
        samples.append(standardisation.inverse(draws))
        truth.append(standardisation.inverse(np.asarray(theta, dtype=float)))
    samples, truth = np.asarray(samples), np.asarray(truth)
    if "m1" in parameters and "m2" in parameters:
        i, j = parameters.index("m1"), parameters.index("m2")
        samples = np.concatenate([samples, physics.chirp_mass(samples[..., i], samples[..., j])[..., None]], axis=-1)
        truth = np.concatenate([truth, physics.chirp_mass(truth[:, i], truth[:, j])[:, None]], axis=-1)
        parameters.append("chirp_mass")
    prior = config.strain.datasets[config.flows.dataset].prior
    ranges = [np.subtract(*prior_bounds(prior, p)[::-1]) for p in parameters]
    calibration = calibrate(samples, truth, parameters, ranges)
    strain0 = torch.as_tensor(validation[0][0])
    start = time.perf_counter()
    module.sample(strain0, 10_000)
    metrics = {"val_nll": _validation_nll(module, data), **calibration.summary(),
               "sampling_seconds_1e4": time.perf_counter() - start, "parameters": sum(p.numel() for p in module.parameters())}
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    with stage_run(config, "evaluate-flow", run_name=f"evaluate-flow-{name}", run_id=meta.get("mlflow_run_id"),
                   log_params=meta.get("mlflow_run_id") is None) as run:
        figure = pp_plot(calibration, title=f"{name} on {config.flows.dataset}: {n} injections")
        figure.savefig(plots_dir / f"{name}-pp.png", dpi=110)
        run.log_figure(figure, f"plots/flows/{name}-pp.png")
        plt.close(figure)
        run.log_metrics({"test.val_nll": metrics["val_nll"], "test.min_ks_pvalue": metrics["min_ks_pvalue"],
                         "test.sampling_seconds_1e4": metrics["sampling_seconds_1e4"],
                         **{f"test.ks_pvalue.{k}": v for k, v in metrics["ks_pvalue"].items()},
                         **{f"test.width90_over_prior.{k}": v for k, v in metrics["width90_over_prior"].items()}})
        if run.info is not None and register:
            registration = register_version(meta["registered_name"], run.info.run_id, "model", "val_nll",
                                            metrics["val_nll"], higher_is_better=False)
            metrics["registry"] = {"name": registration.name, "version": registration.version,
                                   "champion": registration.champion}
    return metrics


def format_report(name: str, metrics: dict) -> str:
    """Table III's loss column, KS p-values and 90 % widths, one line per parameter."""
    lines = [f"{name}: validation NLL {metrics['val_nll']:.3f} (Table III), {metrics['parameters']:,} parameters, "
             f"10^4 samples in {metrics['sampling_seconds_1e4']:.2f} s",
             f"{'parameter':<12}{'KS p':>8}{'90% width / prior':>20}"]
    for parameter, pvalue in metrics["ks_pvalue"].items():
        lines.append(f"{parameter:<12}{pvalue:>8.3f}{metrics['width90_over_prior'][parameter]:>20.3f}")
    return "\n".join(lines)
