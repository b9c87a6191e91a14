"""``gwpe evaluate distill``: Table II (NLL, latency, parameters, memory), JS teacher-student and Table I; register.

Everything goes to an ``evaluate-distill`` run; the teacher is registered as ``distill.registered_teacher`` and
the distilled student as ``distill.registered_student`` from their training runs' ``model`` folders; the alias
``champion`` moves only to a lower validation NLL.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import registry_entry, write_metrics


def execute(
    config: ProjectConfig, plots_dir: str | Path = "plots/distill", register: bool = True, progress: bool = True
) -> dict:
    """Evaluate teacher and students (``gwpe.evaluation.distill``), log and register; returns the metrics."""
    import matplotlib.pyplot as plt

    from gwpe.evaluation.distill import evaluate_distill
    from gwpe.tracking import stage_run
    from gwpe.inference import flavor
    from gwpe.tracking.registry import register_version

    section = config.distill
    metrics, figures, meta = evaluate_distill(config, plots_dir, progress)
    table2 = metrics["table2"]
    with stage_run(config, "evaluate-distill", run_name="evaluate-distill", tags={"gwpe.model": "distill"}) as run:
        for name, figure in figures.items():
            run.log_figure(figure, f"plots/distill/{name}")
            plt.close(figure)
        for role, row in table2.items():
            run.log_metrics({f"{role}.{k}": v for k, v in row.items() if isinstance(v, (int, float))})
        run.log_metrics(metrics["comparison"])
        run.log_metrics(
            {
                f"{role}.relative_error.{p}": v
                for role, row in metrics["relative_error_percent"].items()
                for p, v in row.items()
            }
        )
        run.log_metrics(
            {
                f"{role}.js_mean.{p}": v
                for role, row in metrics["js_teacher_student"].items()
                for p, v in row["mean"].items()
            }
        )
        if run.info is not None and register:
            registry = {}
            for role, name in (
                ("teacher", section.registered_teacher),
                ("student-distilled", section.registered_student),
            ):
                run_id = meta[role].get("mlflow_run_id")
                if run_id:
                    registration = register_version(
                        name,
                        run_id,
                        "model",
                        "val_nll",
                        table2[role]["val_nll"],
                        higher_is_better=False,
                        flavor=flavor,
                    )
                    registry[role] = registry_entry(registration)
            metrics["registry"] = registry
    return metrics


def main(args: argparse.Namespace) -> int:
    """``gwpe evaluate distill``."""
    from gwpe.evaluation.distill import format_table2

    metrics = execute(
        load_config(args.params), plots_dir=args.plots_dir, register=not args.no_register, progress=not args.no_progress
    )
    write_metrics(args.metrics, metrics)
    print(format_table2(metrics))
    return 0
