"""The `gwpe evaluate wavenet` stage: evaluate a saved WaveNet, log Table 1 and Figs. 8-11, register it.

Everything lands in the training's MLflow run (its id is in the model's config.json), so one run holds the
losses, the test metrics, the plots, the per-waveform CSV and the registered model version. The alias
``champion`` moves only if the median test overlap beats the current champion's (``register_version``).
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


def load_trained(config: ProjectConfig, params_path: str, model_dir: str | Path | None = None):
    """(module, metadata) of the saved model; refuses a model trained on another time grid than the test set."""
    from gwpe.models.wavenet_module import CONFIG_FILE, WaveNetModule

    model_dir = Path(model_dir or config.wavenet.model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"no trained model in {model_dir} (run: gwpe train wavenet --params {params_path})")
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    trained_on = meta.get("h22", {}).get("time")
    if trained_on and trained_on != config.h22.time.model_dump():
        raise ConfigError(
            f"{model_dir} was trained on h22.time = {trained_on}, but the profile's test set has "
            f"{config.h22.time.model_dump()}; evaluate with the profile it was trained with"
        )
    return WaveNetModule.load_model(model_dir), meta


def _write_predictions(path: Path, evaluation) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["q", "s1z", "s2z", "q_pred", "s1z_pred", "s2z_pred", "overlap", "baseline_overlap"])
        for row in zip(*evaluation.true.T, *evaluation.predicted.T, evaluation.overlap, evaluation.baseline_overlap):
            writer.writerow([f"{v:.6g}" for v in row])


def evaluate_stage(
    config: ProjectConfig,
    params_path: str,
    model_dir=None,
    plots_dir="plots/wavenet",
    limit: int | None = None,
    register: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate, plot, log and register; returns the metrics (Table 1, counts, baseline, registry)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gwpe.config import flatten
    from gwpe.evaluation import wavenet as wavenet_eval
    from gwpe.evaluation import wavenet_plots
    from gwpe.tracking import dataset_md5, stage_run
    from gwpe.tracking.registry import register_version

    module, meta = load_trained(config, params_path, model_dir)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    test_path = Path(config.h22.store.root) / "test.zarr"
    with stage_run(
        config,
        "evaluate-wavenet",
        run_name="evaluate-wavenet",
        run_id=meta.get("mlflow_run_id"),
        log_params=meta.get("mlflow_run_id") is None,
    ) as run:
        run.log_dataset("input", "h22-test", test_path, digest=dataset_md5(test_path))
        evaluation = wavenet_eval.evaluate(module, config, limit=limit, progress=progress)
        metrics = wavenet_eval.summary(evaluation)
        run.log_metrics({f"test.{k}": v for k, v in flatten(metrics).items() if isinstance(v, (int, float))})
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
            figure.savefig(plots_dir / f"{name}.png", dpi=110)
            run.log_figure(figure, f"plots/wavenet/{name}.png")
            plt.close(figure)
        with tempfile.TemporaryDirectory() as scratch:  # per-waveform results, for follow-ups (paper App. A)
            table = Path(scratch) / "test-predictions.csv"
            _write_predictions(table, evaluation)
            run.log_artifact(table, "evaluation")
        if run.info is not None and register:
            registration = register_version(
                meta.get("registered_name", config.wavenet.registered_name),
                run.info.run_id,
                "model",
                "median_test_overlap",
                metrics["median_overlap"],
            )
            metrics["registry"] = {
                "name": registration.name,
                "version": registration.version,
                "champion": registration.champion,
            }
            verdict = (
                "is now champion"
                if registration.champion
                else f"stays challenger (champion v{registration.previous_champion}: {registration.previous_score:.4f})"
            )
            print(
                f"registered {registration.name} v{registration.version} (median test overlap {registration.score:.4f}) {verdict}"
            )
    return metrics


def format_table1(metrics: dict) -> str:
    """Table 1 of Khan, Huerta & Das as text, with the overlap counts and the trivial baseline."""
    names = {
        "delta_q": "Δq",
        "delta_s1": "Δs1",
        "delta_s2": "Δs2",
        "delta_sigma_eff": "Δσ_eff",
        "delta_S_eff": "ΔS_eff",
        "overlap": "O",
    }
    lines = [
        f"Table 1 ({metrics['n_test']} test waveforms)",
        f"{'':<8}{'min':>9}{'Q1':>9}{'median':>9}{'Q3':>9}{'max':>9}",
    ]
    for key, label in names.items():
        row = metrics["table1"][key]
        lines.append(f"{label:<8}" + "".join(f"{row[s]:>9.3f}" for s in ("min", "q1", "median", "q3", "max")))
    lines.append(", ".join(f"O <= {k.rsplit('_', 1)[1]}: {v}" for k, v in metrics["counts"].items()))
    lines.append(
        f"median overlap {metrics['median_overlap']:.4f} vs trivial baseline (training-mean parameters) "
        f"{metrics['baseline']['median_overlap']:.4f}"
    )
    return "\n".join(lines)
