"""``gwpe sample``: flow-MCMC (NPE warm start) posteriors for one injection, beside a cold start and emcee
(``sampling.compare``)."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics


def log_outcome(run, config: ProjectConfig, outcome) -> None:
    """A sampling stage's record: the input store, numeric metrics, figures and the HDF5 file."""
    from gwpe.tracking import numeric_metrics

    run.log_dataset("input", config.flows.dataset, outcome.store)
    run.log_metrics(numeric_metrics(outcome.metrics, exclude=("truth", "injection")))
    if "converged" in outcome.metrics:  # booleans are not MLflow metrics: 1 / 0
        run.log_metrics({"converged": float(outcome.metrics["converged"])})
    for name, figure in outcome.figures.items():
        run.log_figure(figure, name)
    run.log_artifact(outcome.path, "sampling")


def execute(config: ProjectConfig, progress: bool = True, plots_dir: str | None = None) -> dict:
    """Run the three samplers (``gwpe.inference.sampling``), then record them in a ``sample`` run."""
    from gwpe.inference.sampling import sample_event
    from gwpe.tracking import stage_run

    outcome = sample_event(config, progress=progress, plots_dir=plots_dir)
    run_name = f"sample-{config.flows.dataset}-{outcome.metrics['injection']}"
    with stage_run(config, "sample", run_name=run_name) as run:
        log_outcome(run, config, outcome)
    return outcome.metrics


def main(args: argparse.Namespace) -> int:
    """``gwpe sample``."""
    metrics = execute(load_config(args.params), progress=not args.no_progress, plots_dir=args.plots_dir)
    write_metrics(args.metrics, metrics)
    print(
        f"posteriors ({', '.join(metrics['methods'])}) for {metrics['dataset']} injection {metrics['injection']} "
        f"-> {metrics['path']}"
    )
    return 0
