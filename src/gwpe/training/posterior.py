"""Fitting a posterior ``FlowModule`` on a strain store: the shared body of ``gwpe train flow|teacher|student``.

Training noise is fresh every epoch and validation noise fixed (``StrainDataModule``). Checkpoints every
epoch in ``job.checkpoint_dir``; ``resume`` continues a killed run when the fingerprint (model, training,
``job.fingerprint_extra``, data md5) matches. The saved package (``job.model_dir``, pickle-free) is the epoch
with the lowest validation NLL, with batch-norm statistics of the whole training split and the dataset's
standardisation in its config.json so samples map back to physical units; it is logged to the run's
``model`` artifact folder for the registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gwpe.config import ProjectConfig, TrainingConfig
from gwpe.errors import ConfigError
from gwpe.training.wavenet import TrainResult


DATA_SPEC_KEYS = (
    "approximant",
    "psd",
    "f_min",
    "f_ref",
    "sample_rate",
    "duration",
    "detectors",
    "reference_gps",
    "inferred",
    "units",
    "prior",
    "whitening",
)


def data_spec(store: Path) -> dict:
    """What a model trained on ``store`` expects of its input (rate, duration, detectors, PSD, whitening) and
    what it infers (parameters, units, prior): copied into every package so ``gwpe infer`` can check files."""
    import zarr

    attrs = dict(zarr.open_group(str(store), mode="r").attrs)
    return {k: attrs[k] for k in DATA_SPEC_KEYS if k in attrs}


def strain_store(config: ProjectConfig, dataset: str, key: str) -> Path:
    """The zarr store of strain dataset ``dataset`` (named by config key ``key``); checked to exist."""
    if dataset not in config.strain.datasets:
        raise ConfigError(f"{key} = {dataset!r}; allowed: {', '.join(config.strain.datasets)}")
    path = Path(config.strain.store.root) / f"{dataset}.zarr"
    if not (path / "zarr.json").is_file():
        raise ConfigError(f"no strain store at {path} (run: gwpe generate strain --dataset {dataset})")
    return path


@dataclass
class PosteriorJob:
    """What one training of a posterior model needs besides the module itself."""

    stage: str
    run_name: str
    dataset: str
    store: Path
    model_config: dict
    training: TrainingConfig
    checkpoint_dir: Path
    model_dir: Path
    registered_name: str
    tags: dict[str, Any] = field(default_factory=dict)
    fingerprint_extra: tuple = ()
    meta: dict[str, Any] = field(default_factory=dict)
    phase_flip: bool = False


def fit_posterior(
    job: PosteriorJob,
    config: ProjectConfig,
    make_module: Callable[[], Any],
    resume: bool = False,
    progress_bar: bool = True,
) -> TrainResult:
    import lightning as L

    from gwpe.data.strain_datamodule import StrainDataModule
    from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE
    from gwpe.tracking import dataset_md5, is_rank_zero, stage_run
    from gwpe.training.checkpoints import fingerprint, plan_resume, write_state
    from gwpe.training.trainer import best_checkpoint, build_trainer, compiled, restore_best

    training = job.training
    data = StrainDataModule(
        job.store,
        batch_size=training.batch_size,
        num_workers=training.num_workers,
        seed=training.seed,
        phase_flip=job.phase_flip,
    )
    n_train = len(data.dataset("train"))
    md5 = dataset_md5(job.store)
    expected = fingerprint(job.model_config, training.fingerprint_fields(), *job.fingerprint_extra, md5)
    # every rank decides (all must pass the same ckpt_path to fit); only rank 0 clears a stale folder
    plan = plan_resume(job.checkpoint_dir, expected, resume, clear=is_rank_zero())
    if is_rank_zero():
        print(f"{job.run_name}: {plan.reason}", flush=True)
    L.seed_everything(training.seed, workers=True, verbose=False)
    module = make_module()
    module.training_config = training
    start = time.perf_counter()
    with stage_run(
        config, job.stage, run_name=job.run_name, tags=job.tags, run_id=plan.run_id, log_params=not plan.run_id
    ) as run:
        run_id = run.info.run_id if run.info is not None else None
        if is_rank_zero():
            write_state(job.checkpoint_dir, expected, run_id, complete=False)
            run.log_dataset("input", job.dataset, job.store, digest=md5)
        trainer = build_trainer(
            training, job.checkpoint_dir, samples_per_epoch=n_train, progress_bar=progress_bar, run_id=run_id
        )
        trainer.fit(compiled(module, training), datamodule=data, ckpt_path=plan.ckpt_path, weights_only=True)
        seconds = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_loss")}
        metrics.update(
            epochs=int(trainer.current_epoch),
            train_seconds=round(seconds, 2),
            parameters=sum(p.numel() for p in module.model.parameters()),
        )
        _, best = best_checkpoint(trainer)
        if best is not None:
            metrics["best_val_loss"] = best
        selected = restore_best(trainer, module)
        if selected is not None:
            metrics["selected_epoch"] = selected
        if trainer.is_global_zero:
            metrics["batchnorm_rows"] = module.set_training_statistics(data.dataset("train"), training.batch_size)
            standardisation = data.standardisation
            module.save_model(
                job.model_dir,
                extra={
                    "mlflow_run_id": run_id,
                    "registered_name": job.registered_name,
                    "dataset": job.dataset,
                    "data_md5": md5,
                    "standardisation": {
                        "parameters": list(standardisation.parameters),
                        "mean": standardisation.mean.tolist(),
                        "std": standardisation.std.tolist(),
                    },
                    "data_spec": data_spec(job.store),
                    **job.meta,
                    "metrics": metrics,
                },
            )
            run.log_metrics({k: v for k, v in metrics.items() if k not in ("epochs", "train_loss", "val_loss")})
            for file in (WEIGHTS_FILE, CONFIG_FILE, "MLmodel"):
                run.log_artifact(job.model_dir / file, "model")
            write_state(job.checkpoint_dir, expected, run_id, complete=True)
    return TrainResult(job.model_dir, run_id, metrics["epochs"], seconds, metrics)
