"""``gwpe evaluate wavenet``: Table 1, overlaps and Figs. 8-11 of Khan, Huerta & Das; register the model.

Everything lands in the training's MLflow run (its id is in the model's config.json), so one run holds the
losses, the test metrics, the plots, the per-waveform CSV and the registered model version. The alias
``champion`` moves only if the median test overlap beats the current champion's (``register_version``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gwpe.config import ProjectConfig, load_config
from gwpe.stages.common import registry_entry, save_and_log, write_metrics


def execute(
    config: ProjectConfig,
    params_path: str = "params.yaml",
    model_dir=None,
    plots_dir="plots/wavenet",
    limit: int | None = None,
    register: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate, plot, log and register; returns the metrics (Table 1, counts, baseline, registry)."""
    import matplotlib

    matplotlib.use("Agg")

    from gwpe.data.h22_store import store_path
    from gwpe.evaluation import wavenet as wavenet_eval
    from gwpe.evaluation import wavenet_plots
    from gwpe.tracking import dataset_md5, numeric_metrics, stage_run
    from gwpe.inference import flavor
    from gwpe.tracking.registry import register_version

    module, meta = wavenet_eval.load_trained(config, params_path, model_dir)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    test_path = store_path(config.h22, "test")
    run_id = meta.get("mlflow_run_id")
    with stage_run(
        config, "evaluate-wavenet", run_name="evaluate-wavenet", run_id=run_id, log_params=run_id is None
    ) as run:
        run.log_dataset("input", "h22-test", test_path, digest=dataset_md5(test_path))
        evaluation = wavenet_eval.evaluate(module, config, limit=limit, progress=progress)
        metrics = wavenet_eval.summary(evaluation)
        run.log_metrics(numeric_metrics(metrics, prefix="test."))
        slices = wavenet_plots.q_slices(evaluation, config.wavenet.evaluation.q_slices)
        picks = wavenet_plots.pick_examples(evaluation, slices)
        times, stored, regenerated = wavenet_eval.waveform_pairs(config, evaluation, list(picks.values()))
        figures = {
            "errors-vs-q": wavenet_plots.errors_vs_q(evaluation),
            "overlap-histograms": wavenet_plots.overlap_histograms(evaluation, slices),
            "overlap-spin-planes": wavenet_plots.overlap_planes(evaluation, slices),
            "waveform-pairs": wavenet_plots.waveform_pairs(evaluation, slices, times, stored, regenerated, picks),
        }
        for name, figure in figures.items():
            save_and_log(run, figure, plots_dir / f"{name}.png", f"plots/wavenet/{name}.png")
        with tempfile.TemporaryDirectory() as scratch:  # per-waveform results, for follow-ups (paper App. A)
            table = Path(scratch) / "test-predictions.csv"
            wavenet_eval.write_predictions(table, evaluation)
            run.log_artifact(table, "evaluation")
        if run.info is not None and register:
            registration = register_version(
                meta.get("registered_name", config.wavenet.registered_name),
                run.info.run_id,
                "model",
                "median_test_overlap",
                metrics["median_overlap"],
                flavor=flavor,
            )
            metrics["registry"] = registry_entry(registration)
            verdict = (
                "is now champion"
                if registration.champion
                else f"stays challenger (champion v{registration.previous_champion}: {registration.previous_score:.4f})"
            )
            print(
                f"registered {registration.name} v{registration.version} "
                f"(median test overlap {registration.score:.4f}) {verdict}"
            )
    return metrics


def main(args: argparse.Namespace) -> int:
    """``gwpe evaluate wavenet``."""
    from gwpe.evaluation.wavenet import format_table1

    metrics = execute(
        load_config(args.params),
        args.params,
        model_dir=args.model,
        plots_dir=args.plots_dir,
        limit=args.limit,
        register=not args.no_register,
        progress=not args.no_progress,
    )
    write_metrics(args.metrics, metrics)
    print(format_table1(metrics))
    return 0
