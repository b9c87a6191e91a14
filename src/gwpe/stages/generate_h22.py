"""``gwpe generate h22``: the l = m = 2 mode on the Khan-Huerta-Das (q, s1z, s2z) grid, one store per split."""

from __future__ import annotations

import argparse

from gwpe.config import ProjectConfig, load_config
from gwpe.errors import SurrogateNotFoundError
from gwpe.stages.common import write_metrics
from gwpe.waveforms.grid import SPLITS, split_size


def execute(config: ProjectConfig, split: str, metrics_path: str | None = None) -> dict:
    """Generate (or resume) one split inside a ``generate-h22`` run; returns its metrics (with the md5). The
    store's progress markers are removed only once the run and the metrics file are written."""
    from gwpe.data.engine import finish_when_done

    with finish_when_done():
        return _execute(config, split, metrics_path)


def _execute(config: ProjectConfig, split: str, metrics_path: str | None) -> dict:
    from gwpe.data.checksum import dvc_md5
    from gwpe.data.h22 import generate_split
    from gwpe.evaluation.h22_plots import h22_overview
    from gwpe.tracking import stage_run

    with stage_run(config, stage="generate-h22", run_name=f"generate-h22-{split}", tags={"gwpe.split": split}) as run:
        result = generate_split(config, split)
        digest = run.log_dataset("output", f"h22-{split}", result.path) or dvc_md5(result.path)
        metrics = {
            "n_waveforms": result.n_waveforms,
            "bytes_on_disk": result.bytes_on_disk,
            "chunks_total": result.stats.chunks_total,
            "chunks_skipped": result.stats.chunks_skipped,
            "generation_seconds": round(result.stats.seconds, 3),
            "waveforms_per_second": round(result.stats.items_per_second, 3),
        }
        run.log_metrics(metrics)
        run.log_figure(h22_overview(result.path), f"plots/h22-{split}.png")
    if metrics_path:
        write_metrics(str(metrics_path).replace("{split}", split), {**metrics, "md5": digest})
    print(
        f"{split}: {result.n_waveforms} waveforms -> {result.path} ({result.bytes_on_disk / 1e6:.1f} MB, md5 {digest})"
    )
    return {**metrics, "md5": digest}


def dry_run(config: ProjectConfig, splits) -> None:
    """Counts, disk size and CPU-hours of ``splits`` from a few waveforms timed here; nothing is written."""
    from gwpe.data.h22 import estimate_split

    h22 = config.h22
    print(
        f"profile {config.profile}: backend {h22.backend}, t/M in [{h22.time.t_start}, {h22.time.t_end}] "
        f"step {h22.time.dt} ({h22.time.length} samples)"
    )
    try:
        estimate = estimate_split(config)
    except SurrogateNotFoundError:
        # Counts do not depend on the backend; sizes barely do. CPU time is then IMRPhenomTHM's, not the surrogate's.
        print("note: NRHybSur3dq8 data file not found; CPU and size figures below are measured with imrphenomthm")
        estimate = estimate_split(config.model_copy(update={"h22": h22.model_copy(update={"backend": "imrphenomthm"})}))
    print(
        f"measured: {estimate['cpu_seconds_per_waveform'] * 1e3:.1f} ms CPU and "
        f"{estimate['bytes_per_waveform'] / 1e3:.1f} kB compressed per waveform "
        f"({estimate['raw_bytes_per_waveform'] / 1e3:.1f} kB raw)"
    )
    print(f"{'split':<11}{'waveforms':>12}{'disk GB':>11}{'raw GB':>11}{'CPU-hours':>11}")
    totals = [0, 0.0, 0.0, 0.0]
    for split in splits:
        n = split_size(h22.grid, split)
        row = [
            n,
            n * estimate["bytes_per_waveform"] / 1e9,
            n * estimate["raw_bytes_per_waveform"] / 1e9,
            n * estimate["cpu_seconds_per_waveform"] / 3600,
        ]
        totals = [a + b for a, b in zip(totals, row)]
        print(f"{split:<11}{row[0]:>12,}{row[1]:>11.2f}{row[2]:>11.2f}{row[3]:>11.2f}")
    if len(splits) > 1:
        print(f"{'total':<11}{totals[0]:>12,}{totals[1]:>11.2f}{totals[2]:>11.2f}{totals[3]:>11.2f}")


def main(args: argparse.Namespace) -> int:
    """``gwpe generate h22``."""
    config = load_config(args.params)
    splits = SPLITS if args.split == "all" else (args.split,)
    if args.dry_run:
        dry_run(config, splits)
        return 0
    for split in splits:
        execute(config, split, args.metrics)
    return 0
