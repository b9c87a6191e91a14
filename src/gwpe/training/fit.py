"""One training body for every Lightning fit (WaveNet, flows, teacher, students): resume, seed, fit, keep the best
epoch, save the package pickle-free, log it.

A stage builds a ``FitJob`` (the family's data module, module factory and package contents), then

    session = start_fit(job, resume)                 # fingerprint, resume plan, seed, module
    with stage_run(..., run_id=session.plan.run_id) as run:
        result = finish_fit(session, run, progress)  # trainer.fit, best epoch, save, log

``start_fit`` runs before the MLflow run opens because a resumed fit reopens the run its checkpoints belong to.
Checkpoints go to ``job.checkpoint_dir`` every epoch; ``resume`` continues only an unfinished fit whose
fingerprint (model config, training settings, ``job.fingerprint_extra``, md5 of every input store) matches
(``gwpe.training.checkpoints``). The training settings reach the module through its constructor
(``make_module(data)`` builds it with ``training=job.training``), never set from outside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gwpe.config import TrainingConfig
from gwpe.training.checkpoints import ResumePlan

LOSS_METRICS = ("train_loss", "val_loss")  # logged per epoch by the callback: not logged again at the end


@dataclass
class TrainResult:
    """What a finished fit reports: the package folder, its MLflow run, epochs, wall time and final metrics."""

    model_dir: Path
    run_id: str | None
    epochs: int
    seconds: float
    metrics: dict


@dataclass
class FitJob:
    """One Lightning fit, described by its model family (``gwpe.training.wavenet`` / ``posterior``)."""

    stage: str
    run_name: str
    data: Any  # a SplitDataModule
    inputs: dict[str, Path]  # dataset name -> store: md5 in the fingerprint, logged as MLflow inputs
    model_config: dict
    training: TrainingConfig
    checkpoint_dir: Path
    model_dir: Path
    registered_name: str
    make_module: Callable[[Any], Any]  # data module -> LightningModule (called right after seeding)
    package_extra: Callable[[Any, Any, dict, dict], dict]  # (module, data, md5s, metrics) -> config.json extras
    tags: dict[str, Any] = field(default_factory=dict)
    fingerprint_extra: tuple = ()
    keep_best: bool = True  # save the lowest-val_loss epoch (else the last)
    count_parameters: bool = False  # report the module's parameter count in the metrics


@dataclass
class FitSession:
    """A fit between ``start_fit`` and ``finish_fit``."""

    job: FitJob
    plan: ResumePlan
    expected: str
    md5: dict[str, str]
    module: Any
    samples_per_epoch: int
    started: float


def start_fit(job: FitJob, resume: bool) -> FitSession:
    """Open the data, decide whether to resume (every rank passes the same checkpoint to fit; only rank 0
    clears a stale folder), seed everything and build the module."""
    import lightning as L

    from gwpe.tracking import dataset_md5, is_rank_zero
    from gwpe.training.checkpoints import fingerprint, plan_resume

    samples = len(job.data.dataset("train"))
    job.data.dataset("validation")  # a missing split fails before anything is cleared
    md5 = {name: dataset_md5(path) for name, path in job.inputs.items()}
    expected = fingerprint(job.model_config, job.training.fingerprint_fields(), *job.fingerprint_extra, md5)
    plan = plan_resume(job.checkpoint_dir, expected, resume, clear=is_rank_zero())
    if is_rank_zero():
        print(f"{job.run_name}: {plan.reason}", flush=True)
    L.seed_everything(job.training.seed, workers=True, verbose=False)
    module = job.make_module(job.data)
    return FitSession(job, plan, expected, md5, module, samples, time.perf_counter())


def finish_fit(session: FitSession, run, progress_bar: bool = True) -> TrainResult:
    """Fit inside the open stage ``run``, restore the best epoch, save the package (rank 0) and log it."""
    from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE
    from gwpe.tracking import is_rank_zero
    from gwpe.training.checkpoints import write_state
    from gwpe.training.guards import NonFiniteGuard
    from gwpe.training.trainer import best_checkpoint, build_trainer, compiled, restore_best

    job, module = session.job, session.module
    run_id = run.info.run_id if run.info is not None else None
    if is_rank_zero():
        write_state(job.checkpoint_dir, session.expected, run_id, complete=False)
        for name, path in job.inputs.items():
            run.log_dataset("input", name, path, digest=session.md5[name])
    trainer = build_trainer(
        job.training,
        job.checkpoint_dir,
        samples_per_epoch=session.samples_per_epoch,
        progress_bar=progress_bar,
        run_id=run_id,
        extra_callbacks=[NonFiniteGuard()],  # a NaN/inf loss or weight stops the fit: no package is saved
    )
    trainer.fit(
        compiled(module, job.training), datamodule=job.data, ckpt_path=session.plan.ckpt_path, weights_only=True
    )
    seconds = time.perf_counter() - session.started
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in LOSS_METRICS}
    metrics.update(epochs=int(trainer.current_epoch), train_seconds=round(seconds, 2))
    if job.count_parameters:
        metrics["parameters"] = sum(p.numel() for p in module.model.parameters())
    _, best = best_checkpoint(trainer)
    if best is not None:
        metrics["best_val_loss"] = best
    if job.keep_best:
        selected = restore_best(trainer, module)
        if selected is not None:
            metrics["selected_epoch"] = selected
    if trainer.is_global_zero:
        extra = job.package_extra(module, job.data, session.md5, metrics)
        module.save_model(
            job.model_dir,
            extra={"mlflow_run_id": run_id, "registered_name": job.registered_name, **extra, "metrics": metrics},
        )
        run.log_metrics({k: v for k, v in metrics.items() if k not in ("epochs", *LOSS_METRICS)})
        for name in (WEIGHTS_FILE, CONFIG_FILE, "MLmodel"):
            run.log_artifact(job.model_dir / name, "model")
        write_state(job.checkpoint_dir, session.expected, run_id, complete=True)
    return TrainResult(job.model_dir, run_id, metrics["epochs"], seconds, metrics)
