"""``gwpe event fetch|prepare|analyse|injections``: a real event from its strain to a likelihood-checked posterior."""

from __future__ import annotations

import argparse
from pathlib import Path

from gwpe.config import load_config
from gwpe.stages.common import save_and_log, write_metrics


def record(config, stage: str, args, metrics: dict, figures: dict, artifacts=(), exclude=()) -> Path:
    """The event stages' shared ending: figures saved under ``--plots-dir`` (default plots/events/<event>) and
    logged with the numeric metrics and ``artifacts`` ((path, artifact folder) pairs) in the stage's MLflow run,
    then the DVC metrics file; returns the plots folder."""
    from gwpe.tracking import numeric_metrics, stage_run

    plots = Path(args.plots_dir or Path("plots") / "events" / config.event.name)
    plots.mkdir(parents=True, exist_ok=True)
    with stage_run(config, stage, run_name=f"{stage}-{config.event.name}") as run:
        run.log_metrics(numeric_metrics(metrics, exclude=exclude))
        for name, figure in figures.items():
            save_and_log(run, figure, plots / name, f"event/{name}")
        for path, folder in artifacts:
            run.log_artifact(path, folder)
    write_metrics(args.metrics, metrics)
    return plots


def fetch(args: argparse.Namespace) -> int:
    """``gwpe event fetch NAME|GPS``: the event's GWOSC files into ``--dest`` (a local copy is used if present)."""
    from gwpe.data.gwosc import load_event_strain

    gps = None
    try:
        gps = float(args.event)
    except ValueError:
        pass
    strain = load_event_strain(
        args.event if gps is None else f"GPS {gps}",
        gps,
        args.detectors,
        args.before,
        args.after,
        args.dest,
        source=args.source,
        host=args.host,
        timeout=args.timeout,
    )
    print(
        f"{args.event}: {', '.join(strain.detectors)} from {strain.source}, "
        f"{strain.data.shape[-1] / strain.sample_rate:g} s at {strain.sample_rate:g} Hz from GPS {strain.start_time}: "
        f"{', '.join(strain.files)}"
    )
    return 0


def prepare(args: argparse.Namespace) -> int:
    """``gwpe event prepare``: strain, resampling, off-source PSDs, whitened data and their plots; an MLflow run."""
    import numpy as np

    from gwpe.data.event_data import prepare_event
    from gwpe.evaluation.event_plots import asd_figure, time_frequency_figure, whitened_figure
    from gwpe.inference.event_posterior import prepared_path
    from gwpe.waveforms.whitening import psd

    config = load_config(args.params)
    prepared = prepare_event(config, prepared_path(config))
    event, written = config.event, prepared.record
    t0 = written["gps"] - prepared.start_time
    times = np.arange(prepared.whitened.shape[-1]) / prepared.rate - t0
    figures = {
        "asd.png": asd_figure(
            prepared.frequencies,
            prepared.psd,
            list(event.detectors),
            design=psd(config.strain.psd, prepared.frequencies, config.strain.f_min),
        ),
        "whitened.png": whitened_figure(
            times,
            prepared.whitened,
            list(event.detectors),
            rate=prepared.rate,
            bandpass=(30.0, min(350.0, 0.45 * prepared.rate)),
            title=f"{event.name}: whitened strain (band-passed for display)",
        ),
        "time-frequency.png": time_frequency_figure(prepared.whitened, prepared.rate, list(event.detectors), t0),
    }
    keys = ("name", "gps", "source", "sample_rate", "segment_seconds", "window_start_gps")
    metrics = {k: written[k] for k in keys}
    metrics["off_source_seconds"] = written["psd"]["off_source_seconds"]
    metrics["on_source_whitened_rms"] = written["on_source_whitened_rms"]
    plots = record(config, "event-prepare", args, metrics, figures, [(prepared_path(config), "event-data")])
    print(
        f"{event.name}: {', '.join(event.detectors)} from {written['source']}, {written['segment_seconds']:g} s at "
        f"{written['sample_rate']:g} Hz; PSDs from {metrics['off_source_seconds']:.1f} s off-source -> "
        f"{prepared_path(config)}, plots in {plots}"
    )
    return 0


def analyse(args: argparse.Namespace) -> int:
    """``gwpe event analyse``: the NPE posterior (gwpe infer) and its likelihood checks; report, files, run."""
    from gwpe.inference.event_posterior import analyse_event, format_report

    config = load_config(args.params)
    outcome = analyse_event(config, progress=not args.no_progress)
    artifacts = [(path, "posterior") for path in outcome.files]
    record(config, "event-analyse", args, outcome.metrics, outcome.figures, artifacts, ("maximum_likelihood",))
    print(format_report(outcome.metrics))
    return 0


def injections(args: argparse.Namespace) -> int:
    """``gwpe event injections``: the NPE's p–p test on injections into the event's off-source noise."""
    from gwpe.inference.event_injections import injection_test

    config = load_config(args.params)
    metrics, figures = injection_test(config, progress=not args.no_progress)
    event = config.event
    record(config, "event-injections", args, metrics, figures)
    failing = ", ".join(metrics["failing"]) or "none"
    print(
        f"{event.name}: NPE p-p on {metrics['n_injections']} injections in real noise: min KS p "
        f"{metrics['min_ks_pvalue']:.3f} (below 0.05: {failing})"
    )
    return 0
