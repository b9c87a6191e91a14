"""``gwpe evaluate flow --model NAME``: validation NLL (Table III), p-p calibration, reference comparison, registry.

Everything lands in the training's MLflow run; the model is registered as ``<prefix>-<name>`` and the alias
``champion`` moves only to a lower validation NLL (``gwpe.evaluation.flow`` says what is measured).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import registry_entry, save_and_log, write_metrics


def execute(
    config: ProjectConfig,
    name: str,
    plots_dir: str | Path = "plots/flows",
    register: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate ``flows.models[name]``, plot, log into its training run and register it; returns the metrics."""
    import matplotlib

    matplotlib.use("Agg")

    from gwpe.evaluation.calibration import pp_plot
    from gwpe.evaluation.flow import compare_with_reference, corner_of_injection0, evaluate_flow
    from gwpe.inference.reference_file import matching_reference
    from gwpe.tracking import stage_run
    from gwpe.inference import flavor
    from gwpe.tracking.registry import register_version

    result = evaluate_flow(config, name, progress)
    metrics, meta = result.metrics, result.meta
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    run_id = meta.get("mlflow_run_id")
    with stage_run(
        config, "evaluate-flow", run_name=f"evaluate-flow-{name}", run_id=run_id, log_params=run_id is None
    ) as run:
        figure = pp_plot(result.calibration, title=f"{name} on {config.flows.dataset}: {result.injections} injections")
        save_and_log(run, figure, plots_dir / f"{name}-pp.png", f"plots/flows/{name}-pp.png")
        reference = compare_with_reference(
            config,
            result.module,
            result.standardisation,
            name,
            plots_dir,
            run,
            matching_reference(config),
            result.drawn,
        )
        if reference is not None:
            metrics["reference"] = reference
            run.log_metrics(
                {
                    **{f"test.reference_max_js.{k}": v for k, v in reference["max_js"].items()},
                    **{f"test.reference_max_kl.{k}": v for k, v in reference["max_kl"].items()},
                }
            )
        else:
            figure = corner_of_injection0(
                result.module, result.standardisation, result.validation, name, config.flows.reference.flow_samples
            )
            save_and_log(run, figure, plots_dir / f"{name}-corner-0.png", f"plots/flows/{name}-corner-0.png", dpi=80)
        run.log_metrics({f"test.table3.{k}": v for k, v in metrics["table3"].items()})
        run.log_metrics(
            {
                "test.val_nll": metrics["val_nll"],
                "test.min_ks_pvalue": metrics["min_ks_pvalue"],
                "test.sampling_seconds_1e4": metrics["sampling_seconds_1e4"],
                "test.outside_prior": metrics["outside_prior"],
                **{f"test.ks_pvalue.{k}": v for k, v in metrics["ks_pvalue"].items()},
                **{f"test.width90_over_prior.{k}": v for k, v in metrics["width90_over_prior"].items()},
                **{
                    f"test.gnpe_inner.ks_pvalue.{k}": v
                    for k, v in metrics.get("gnpe_inner", {}).get("ks_pvalue", {}).items()
                },
            }
        )
        if run.info is not None and register:
            registration = register_version(
                meta["registered_name"],
                run.info.run_id,
                "model",
                "val_nll",
                metrics["val_nll"],
                higher_is_better=False,
                flavor=flavor,
            )
            metrics["registry"] = registry_entry(registration)
    return metrics


def main(args: argparse.Namespace) -> int:
    """``gwpe evaluate flow``."""
    from gwpe.evaluation.flow import format_report

    metrics = execute(
        load_config(args.params),
        args.model,
        plots_dir=args.plots_dir,
        register=not args.no_register,
        progress=not args.no_progress,
    )
    write_metrics(args.metrics, metrics)
    print(format_report(args.model, metrics))
    return 0
