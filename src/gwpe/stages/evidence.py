"""``gwpe evidence``: importance-sampled NPE, adaptive IS from it, the learned harmonic mean, and agreement."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics
from gwpe.stages.sample import log_outcome


def execute(config: ProjectConfig, plots_dir: str | None = None, progress: bool = True) -> dict:
    """Estimate the evidences (``gwpe.inference.event_evidence``), then record them in an ``evidence`` run."""
    from gwpe.inference.event_evidence import estimate_evidence
    from gwpe.tracking import stage_run

    outcome = estimate_evidence(config, plots_dir=plots_dir, progress=progress)
    run_name = f"evidence-{config.flows.dataset}-{outcome.metrics['injection']}"
    with stage_run(config, "evidence", run_name=run_name) as run:
        log_outcome(run, config, outcome)
    return outcome.metrics


def main(args: argparse.Namespace) -> int:
    """``gwpe evidence``."""
    from gwpe.inference.event_evidence import format_evidence

    metrics = execute(load_config(args.params), plots_dir=args.plots_dir, progress=not args.no_progress)
    write_metrics(args.metrics, metrics)
    print(format_evidence(metrics))
    return 0
