"""``gwpe sweep``: the Optuna study of ResNet depth, width, IAF transforms and learning rate (``gwpe.tuning``)."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics


def execute(
    config: ProjectConfig,
    workers: int | None = None,
    metrics_path: str | None = None,
    plots_dir: str = "plots/sweep",
    progress_bar: bool = True,
) -> dict:
    """Run the study's missing trials under its parent ``sweep`` run; returns the summary (best trial)."""
    from gwpe.tracking import stage_run
    from gwpe.tuning.sweep import optimise, prepare_sweep

    plan = prepare_sweep(config, workers)
    with stage_run(
        config,
        "sweep",
        run_name=f"sweep-{plan.name}",
        run_id=plan.parent,
        log_params=plan.parent is None,
        tags=plan.tags,
    ) as run:
        summary, metrics = optimise(plan, run, plots_dir, progress_bar)
    write_metrics(metrics_path, metrics)
    return summary


def main(args: argparse.Namespace) -> int:
    """``gwpe sweep``."""
    config = load_config(args.params)
    if args.dry_run:
        from gwpe.training.distill import price_distill

        print(price_distill(config))
        return 0
    summary = execute(
        config,
        workers=args.workers,
        metrics_path=args.metrics,
        plots_dir=args.plots_dir,
        progress_bar=not args.no_progress,
    )
    print(
        f"sweep {summary['study']}: trials {summary['trials']}; best trial {summary['trial']} val NLL "
        f"{summary['value']:.4f} with {summary['params']} -> {config.distill.sweep.best_params}"
    )
    return 0
