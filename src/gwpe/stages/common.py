"""What every stage does alike: fit a job in its stage run, write the DVC metrics file, save and log figures."""

from __future__ import annotations

from pathlib import Path

from gwpe.config import ProjectConfig
from gwpe.training.fit import FitJob, TrainResult


def write_metrics(path: str | Path | None, metrics: dict) -> None:
    """The stage's DVC metrics JSON, numbers only, and its ``.info.json`` sidecar of identifiers (md5s,
    names, paths, per-parameter lists; see :mod:`gwpe.tracking.metrics_files`). Nothing when ``path`` is None."""
    from gwpe.tracking.metrics_files import write_metrics_files

    if path:
        write_metrics_files(path, metrics)


def save_and_log(run, figure, path: str | Path, artifact: str, dpi: int = 110) -> None:
    """Save ``figure`` to ``path`` (the DVC plots folder), log it to ``run`` as ``artifact`` and close it."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=dpi)
    run.log_figure(figure, artifact)
    plt.close(figure)


def registry_entry(registration) -> dict:
    """The ``registry`` block of a stage's metrics for one ``register_version`` result."""
    return {"name": registration.name, "version": registration.version, "champion": registration.champion}


def fit_in_stage_run(config: ProjectConfig, job: FitJob, resume: bool, progress_bar: bool) -> TrainResult:
    """Start ``job`` (resume plan, seed, module), then fit it inside its stage run (reopened when resuming).
    The model and checkpoint folders are locked throughout (rank 0): a second writer fails at once."""
    import contextlib

    from gwpe.tracking import is_rank_zero, stage_run
    from gwpe.training.fit import finish_fit, start_fit
    from gwpe.training.locks import folders_locked

    lock = folders_locked(job.model_dir, job.checkpoint_dir) if is_rank_zero() else contextlib.nullcontext()
    with lock:
        session = start_fit(job, resume)
        with stage_run(
            config,
            job.stage,
            run_name=job.run_name,
            tags=job.tags,
            run_id=session.plan.run_id,
            log_params=not session.plan.run_id,
            params={"model": job.model_config, "training": job.training.model_dump()},
            abandoned_run_id=session.plan.abandoned_run_id,
        ) as run:
            return finish_fit(session, run, progress_bar)
