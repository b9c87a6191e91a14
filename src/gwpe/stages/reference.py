"""``gwpe reference``: reference posteriors (adaptive IS from the NPE, or converged emcee) for the first
validation injections of ``flows.dataset``."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import write_metrics


def execute(config: ProjectConfig, progress: bool = True) -> dict:
    """Sample the reference posteriors (``gwpe.inference.reference_file``) inside a ``reference`` run: the
    per-injection diagnostics as metrics, the HDF5 file as an artifact."""
    from gwpe.data.strain_store import flows_store
    from gwpe.inference.reference_file import build_reference_posteriors
    from gwpe.tracking import numeric_metrics, stage_run

    store = flows_store(config)
    with stage_run(config, "reference", run_name=f"reference-{config.flows.dataset}") as run:
        run.log_dataset("input", config.flows.dataset, store)
        summary = build_reference_posteriors(config, progress=progress)
        for row in summary["injections"]:
            scalars = {k: v for k, v in row.items() if k != "index" and not isinstance(v, (list, dict, str))}
            if "autocorr" in row:
                scalars["max_autocorr"] = max(row["autocorr"])
            scalars["converged"] = float(row["converged"])  # booleans are not MLflow metrics: 1 / 0
            run.log_metrics(numeric_metrics(scalars, prefix=f"injection_{row['index']}."))
        run.log_artifact(summary["path"], "reference")
    return summary


def main(args: argparse.Namespace) -> int:
    """``gwpe reference``."""
    summary = execute(load_config(args.params), progress=not args.no_progress)
    write_metrics(args.metrics, summary)
    print(
        f"{summary['method']} reference posteriors for {len(summary['injections'])} {summary['dataset']} injections "
        f"(converged: {summary['converged']}) -> {summary['path']}"
    )
    return 0
