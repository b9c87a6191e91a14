"""``gwpe generate strain``: whitened detector strain for posterior estimation (Green et al.), one store per dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gwpe.config import ProjectConfig, load_config
from gwpe.data.strain_store import context_shape, dataset_config, split_sizes
from gwpe.stages.common import write_metrics


def execute(config: ProjectConfig, name: str, metrics_path: str | None = None, plots_path: str | None = None) -> dict:
    """Generate (or resume) dataset ``name`` inside a ``generate-strain`` run; returns its metrics (with the md5).
    The store's progress markers are removed only once the run, metrics and plots files are written."""
    from gwpe.data.engine import finish_when_done

    with finish_when_done():
        return _execute(config, name, metrics_path, plots_path)


def _execute(config: ProjectConfig, name: str, metrics_path: str | None, plots_path: str | None) -> dict:
    import numpy as np

    from gwpe.data.checksum import dvc_md5
    from gwpe.data.strain import generate_dataset, snr_histogram, snr_summary
    from gwpe.tracking import stage_run

    with stage_run(config, stage="generate-strain", run_name=f"generate-{name}", tags={"gwpe.dataset": name}) as run:
        result = generate_dataset(config, name)
        digest = run.log_dataset("output", name, result.path) or dvc_md5(result.path)
        metrics = {
            "n_signals": result.n_signals,
            "bytes_on_disk": result.bytes_on_disk,
            "generation_seconds": round(result.stats.seconds, 3),
            "signals_per_second": round(result.stats.items_per_second, 3),
            **{k: round(float(v), 4) for k, v in snr_summary(result.snr).items()},
        }
        run.log_metrics(metrics)
        run.log_figure(snr_histogram(result.snr, name), f"plots/{name}-snr.png")
    if metrics_path:
        write_metrics(str(metrics_path).replace("{dataset}", name), {**metrics, "md5": digest})
    if plots_path:
        counts, edges = np.histogram(result.snr, bins=40)
        centres = 0.5 * (edges[1:] + edges[:-1])
        rows = [{"snr": round(float(c), 3), "signals": int(n)} for c, n in zip(centres, counts)]
        out = Path(str(plots_path).replace("{dataset}", name))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"{name}: {result.n_signals} signals -> {result.path} ({result.bytes_on_disk / 1e6:.1f} MB), "
        f"median SNR {metrics['snr_median']:.1f}, md5 {digest}"
    )
    return {**metrics, "md5": digest}


def dry_run(config: ProjectConfig, names: list[str]) -> None:
    """Counts, disk size and CPU-hours of the datasets from signals timed here; nothing is written."""
    from gwpe.data.strain import estimate_dataset

    strain = config.strain
    print(f"profile {config.profile}: {strain.approximant}, PSD {strain.psd}, f_min {strain.f_min} Hz")
    print(
        f"{'dataset':<12}{'train':>11}{'validation':>12}{'samples':>9}{'ms CPU':>8}{'disk GB':>10}{'raw GB':>9}"
        f"{'CPU-hours':>11}"
    )
    for name in names:
        dataset = dataset_config(config, name)
        estimate = estimate_dataset(config, name)
        n = dataset.n_signals
        n_train, n_validation = split_sizes(dataset)
        channels, samples = context_shape(dataset)
        print(
            f"{name:<12}{n_train:>11,}{n_validation:>12,}{channels * samples:>9}"
            f"{estimate['cpu_seconds_per_signal'] * 1e3:>8.2f}{n * estimate['bytes_per_signal'] / 1e9:>10.2f}"
            f"{n * estimate['raw_bytes_per_signal'] / 1e9:>9.2f}{n * estimate['cpu_seconds_per_signal'] / 3600:>11.2f}"
        )


def main(args: argparse.Namespace) -> int:
    """``gwpe generate strain``."""
    config = load_config(args.params)
    names = list(config.strain.datasets) if args.dataset == "all" else [args.dataset]
    for name in names:
        dataset_config(config, name, "--dataset")  # unknown names fail before any work
    if args.dry_run:
        dry_run(config, names)
        return 0
    for name in names:
        execute(config, name, args.metrics, args.plots)
    return 0
