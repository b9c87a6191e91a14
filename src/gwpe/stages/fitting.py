"""The training stages' shared fit: a ``FitJob`` inside its MLflow stage run (``gwpe train ...``)."""

from __future__ import annotations

from gwpe.config import ProjectConfig
from gwpe.training.fit import FitJob, TrainResult


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
