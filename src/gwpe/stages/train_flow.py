"""``gwpe train flow --model NAME``: one normalizing-flow posterior of ``flows.models`` on its strain dataset."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics
from gwpe.stages.fitting import fit_in_stage_run
from gwpe.training.fit import TrainResult


def execute(config: ProjectConfig, name: str, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    """Fit (or resume) ``flows.models[name]`` inside its ``train-flow`` run."""
    from gwpe.training.flow import flow_job

    return fit_in_stage_run(config, flow_job(config, name), resume, progress_bar)


def main(args: argparse.Namespace) -> int:
    """``gwpe train flow``."""
    from gwpe.training.flow import price_flow_training

    config = load_config(args.params)
    if args.dry_run:
        print(price_flow_training(config, args.model))
        return 0
    result = execute(config, args.model, resume=args.resume, progress_bar=not args.no_progress)
    write_metrics(args.metrics, result.metrics)
    print(
        f"train flow {args.model}: {result.epochs} epochs in {result.seconds:.0f} s, val NLL "
        f"{result.metrics.get('best_val_loss', float('nan')):.4f} -> {result.model_dir} (MLflow run {result.run_id})"
    )
    return 0
