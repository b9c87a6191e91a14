"""``gwpe train teacher`` and ``gwpe train student --mode distilled|direct``: the ResNet1D+IAF distillation study."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics
from gwpe.stages.fitting import fit_in_stage_run
from gwpe.training.fit import TrainResult


def execute_teacher(config: ProjectConfig, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    """Fit (or resume) the teacher with the sweep's best architecture inside its ``train-teacher`` run."""
    from gwpe.training.distill import teacher_job

    return fit_in_stage_run(config, teacher_job(config), resume, progress_bar)


def execute_student(config: ProjectConfig, mode: str, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    """Fit (or resume) the ``mode`` student (distilled or direct) inside its ``train-student`` run."""
    from gwpe.training.distill import student_job

    return fit_in_stage_run(config, student_job(config, mode), resume, progress_bar)


def main_teacher(args: argparse.Namespace) -> int:
    """``gwpe train teacher``."""
    result = execute_teacher(load_config(args.params), resume=args.resume, progress_bar=not args.no_progress)
    write_metrics(args.metrics, result.metrics)
    print(
        f"train teacher: {result.epochs} epochs in {result.seconds:.0f} s, val NLL "
        f"{result.metrics.get('best_val_loss', float('nan')):.4f}, {result.metrics['parameters']:,} parameters -> "
        f"{result.model_dir} (MLflow run {result.run_id})"
    )
    return 0


def main_student(args: argparse.Namespace) -> int:
    """``gwpe train student``."""
    config = load_config(args.params)
    result = execute_student(config, args.mode, resume=args.resume, progress_bar=not args.no_progress)
    write_metrics(args.metrics, result.metrics)
    print(
        f"train student ({args.mode}): {result.epochs} epochs in {result.seconds:.0f} s, val NLL "
        f"{result.metrics.get('best_val_loss', float('nan')):.4f}, {result.metrics['parameters']:,} parameters -> "
        f"{result.model_dir}"
    )
    return 0
