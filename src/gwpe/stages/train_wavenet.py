"""``gwpe train wavenet``: the physics-inspired WaveNet regressor of (q, s1z, s2z) from h22 (Khan, Huerta & Das)."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics
from gwpe.stages.fitting import fit_in_stage_run
from gwpe.training.fit import TrainResult


def execute(config: ProjectConfig, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    """Fit (or resume) the WaveNet inside its ``train-wavenet`` run (``gwpe.training.fit``)."""
    from gwpe.training.wavenet import wavenet_job

    return fit_in_stage_run(config, wavenet_job(config), resume, progress_bar)


def main(args: argparse.Namespace) -> int:
    """``gwpe train wavenet``."""
    from gwpe.training.wavenet import price_training

    config = load_config(args.params)
    if args.dry_run:
        print(price_training(config))
        return 0
    result = execute(config, resume=args.resume, progress_bar=not args.no_progress)
    write_metrics(args.metrics, result.metrics)
    print(
        f"train wavenet: {result.epochs} epochs in {result.seconds:.0f} s, val_loss "
        f"{result.metrics.get('val_loss', float('nan')):.4f} -> {result.model_dir} (MLflow run {result.run_id})"
    )
    return 0
