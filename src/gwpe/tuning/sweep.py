"""``gwpe sweep``: an Optuna study over the teacher family's ResNet depth, width, IAF transforms and learning rate.

- Objective: validation NLL of the ResNet1D+IAF posterior on ``distill.dataset`` after ``sweep.max_epochs``
  epochs (Adam, cosine decay; the same module the teacher trains). Search space from ``sweep.search_space``
  (integers inclusive, learning rate log-uniform).
- Sampler: TPE seeded with ``sampler_seed`` + worker index (distinct proposals across workers), random for the
  first half of the trials (at most 10). Pruner: median (``startup_trials`` finished trials, ``warmup_epochs``)
  or Hyperband over epochs, through ``optuna_integration.PyTorchLightningPruningCallback`` (DDP-safe:
  ``check_pruned`` after fit, RDB storage required by Optuna for that case).
- Study name: ``<sweep.study_name>-<8 hex>``, the hex a fingerprint of the search space, pruner, epochs, model,
  training settings and the dataset's md5, so rerunning the same configuration resumes the same study and
  changing it starts a new one. ``n_trials`` counts finished (complete + pruned) trials of the study, all
  workers together; a rerun only adds the missing ones. Local workers split the remaining trials exactly;
  workers on other machines (same command, same RDB URL) stop when the study holds ``n_trials`` finished
  trials, so the total can exceed it by the trials in flight at that moment.
- MLflow: one parent run per study (its id is kept in the study, so resumed and remote workers nest under the
  same parent); every trial is a child run with its parameters, per-epoch losses and ``optuna.state``
  (COMPLETE / PRUNED). The parent gets the optimisation history, intermediate values, parameter importances
  (fANOVA) and parallel-coordinate plots.
- Output: ``sweep.best_params`` (JSON: best trial's parameters and value), a DVC output the teacher consumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gwpe.config import ProjectConfig
from gwpe.data.strain_store import existing_store
from gwpe.errors import ConfigError
from gwpe.redaction import redact, redact_value

PARENT_ATTR = "mlflow_parent_run_id"
OBJECTIVE = "val_nll"  # the objective: validation negative log-likelihood (nats) after sweep.max_epochs


def study_name(config: ProjectConfig, data_md5: str) -> str:
    """``<sweep.study_name>-<8 hex>``, the hex an md5 fingerprint of everything that defines the study
    (module doc)."""
    sweep = config.distill.sweep
    identity = {
        "search_space": sweep.search_space.model_dump(),
        "pruner": [sweep.pruner, sweep.startup_trials, sweep.warmup_epochs],
        "max_epochs": sweep.max_epochs,
        "sampler_seed": sweep.sampler_seed,
        "model": config.distill.model.model_dump(),
        "training": config.distill.training.model_dump(exclude={"threads", "num_workers"}),
        "data": data_md5,
    }
    digest = hashlib.md5(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{sweep.study_name}-{digest}"


def suggest(trial, space) -> dict:
    """The trial's (depth, width, transforms, learning_rate) from ``space`` (a ``SearchSpaceConfig``)."""
    return {
        "depth": trial.suggest_int("depth", *space.depth),
        "width": trial.suggest_int("width", *space.width),
        "transforms": trial.suggest_int("transforms", *space.transforms),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
    }


def build_sampler(config: ProjectConfig, worker_index: int = 0, offset: int = 0):
    """Seeded TPE. ``offset`` (trials already in the study, and a host hash for server storages) keeps a resumed
    sweep or a second machine from replaying the first one's random start-up proposals."""
    import optuna

    sweep = config.distill.sweep
    startup = max(1, min(10, sweep.n_trials // 2))
    return optuna.samplers.TPESampler(
        seed=sweep.sampler_seed + 1009 * worker_index + offset, n_startup_trials=startup, constant_liar=True
    )


def sampler_offset(config: ProjectConfig, study) -> int:
    """``build_sampler``'s seed offset: the trials already in ``study``, plus a host-name hash for server
    storages."""
    import socket
    import zlib

    offset = len(study.get_trials(deepcopy=False))
    if not config.distill.sweep.storage.startswith(("sqlite:", "journal:")):  # a server shared by machines
        offset += zlib.crc32(socket.gethostname().encode()) % 100_003
    return offset


def build_pruner(config: ProjectConfig):
    """The ``sweep.pruner``: median, Hyperband over epochs (reduction factor 3), or none."""
    import optuna

    sweep = config.distill.sweep
    if sweep.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials, n_warmup_steps=sweep.warmup_epochs)
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=sweep.max_epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(config: ProjectConfig, storage, name: str, worker_index: int = 0, offset: int = 0):
    """Create or load study ``name`` (minimising) with the seeded TPE sampler and the configured pruner."""
    import optuna

    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=build_sampler(config, worker_index, offset),
        pruner=build_pruner(config),
    )
    if study.metric_names is None:  # the dashboard and plots label the objective instead of "Objective Value"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])
    return study


class Objective:
    """Trains one trial's model; picklable, so spawned worker processes can run it."""

    def __init__(self, config: ProjectConfig, store: str, parent_run_id: str | None):
        self.config, self.store, self.parent_run_id = config, store, parent_run_id

    def __call__(self, trial) -> float:
        import lightning as L
        import mlflow
        import optuna
        from optuna_integration import PyTorchLightningPruningCallback

        from gwpe.data.strain_datamodule import StrainDataModule
        from gwpe.models.flow_module import FlowModule
        from gwpe.tracking import environment_tags, tracking_uri
        from gwpe.training.distill import resnet_iaf_config
        from gwpe.training.posterior import with_support
        from gwpe.training.trainer import build_trainer
        from gwpe.tuning.storage import WORKER_ATTR, worker_tag

        config, sweep = self.config, self.config.distill.sweep
        trial.set_user_attr(WORKER_ATTR, worker_tag())
        params = suggest(trial, sweep.search_space)
        model_config = with_support(resnet_iaf_config(config, params), self.store)
        training = config.distill.training.model_copy(
            update={"max_epochs": sweep.max_epochs, "learning_rate": params["learning_rate"]}
        )
        data = StrainDataModule(
            self.store,
            batch_size=training.batch_size,
            num_workers=training.num_workers,
            seed=training.seed,
            in_memory=training.in_memory,
        )
        L.seed_everything(training.seed + trial.number, workers=True, verbose=False)
        module = FlowModule(model_config, learning_rate=training.learning_rate, schedule="cosine", training=training)
        pruning = PyTorchLightningPruningCallback(trial, monitor="val_loss")
        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(config.tracking.experiment)
        tags = {
            "gwpe.stage": "sweep-trial",
            "gwpe.profile": config.profile,
            "optuna.study": trial.study.study_name,
            "optuna.trial_number": str(trial.number),
            **environment_tags(),  # the lock file's hash, as on every stage run
        }
        nested = mlflow.active_run() is not None
        with mlflow.start_run(
            run_name=f"trial-{trial.number}", nested=nested, parent_run_id=self.parent_run_id, tags=tags
        ) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            # by run id: a ddp_spawn trial's ranks do not inherit this process's active run
            trainer = build_trainer(
                training,
                None,
                samples_per_epoch=len(data.dataset("train")),
                progress_bar=False,
                extra_callbacks=[pruning],
                run_id=run.info.run_id,
            )
            # the names the teacher's and students' runs use (stage_params): runs compare across stages
            from gwpe.config import flatten

            mlflow.log_params(
                {
                    **{k: ("null" if v is None else v) for k, v in flatten({"model": model_config}).items()},
                    **{k: redact_value(k, v) for k, v in flatten({"training": training.model_dump()}).items()},
                }
            )
            mlflow.log_metric("parameters", sum(p.numel() for p in module.model.parameters()))
            pruned = None
            try:
                trainer.fit(module, datamodule=data)
                pruning.check_pruned()
            except optuna.TrialPruned as signal:
                # the run ends FINISHED (its epochs are valid); the tag says it was stopped early
                mlflow.set_tags({"optuna.state": "PRUNED", "optuna.pruned_epoch": str(trainer.current_epoch)})
                # the pruning epoch stops before the epoch-end hook that logs val_loss: copy Optuna's values
                logged = {m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")}
                frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
                for step, loss in frozen.intermediate_values.items():
                    if step not in logged:
                        mlflow.log_metric("val_loss", loss, step=step)
                pruned = signal
            except Exception:
                mlflow.set_tag("optuna.state", "FAIL")
                raise
            if pruned is None:
                value = float(trainer.callback_metrics["val_loss"])
                mlflow.set_tag("optuna.state", "COMPLETE" if value == value else "FAIL")
                mlflow.log_metric("objective_val_loss", value)
        if pruned is not None:
            raise pruned
        return value


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _max_trials_callback(n_trials: int):
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    return MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))


def run_worker(
    config: ProjectConfig,
    root: str,
    name: str,
    store: str,
    parent_run_id: str | None,
    quota: int,
    worker_index: int,
    threads: int | None,
    progress_bar: bool = False,
) -> None:
    """One local worker: ``quota`` trials of study ``name`` (top level, so ``spawn`` can start it)."""
    import optuna
    import torch

    from gwpe.tuning.storage import build_storage

    if threads:
        torch.set_num_threads(threads)
    quiet_trials()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = build_storage(config.distill.sweep.storage, root)
    study = open_study(config, storage, name, worker_index)
    study.sampler = build_sampler(config, worker_index, sampler_offset(config, study))
    study.optimize(
        Objective(config, store, parent_run_id),
        n_trials=quota,
        gc_after_trial=True,
        callbacks=[_max_trials_callback(config.distill.sweep.n_trials)],
        show_progress_bar=progress_bar,
    )


def quiet_trials() -> None:
    """Trials train many short fits: keep Lightning's per-fit banner and tips off the sweep's progress bar."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def sweep_plots(study, plots_dir: Path) -> dict[str, Path]:
    """Optimisation history, intermediate values (pruning), parameter importances, parallel coordinates (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ov

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    plots_dir.mkdir(parents=True, exist_ok=True)
    makers = {
        "optimization_history": ov.plot_optimization_history,
        "intermediate_values": ov.plot_intermediate_values,
        "param_importances": ov.plot_param_importances,
        "parallel_coordinate": ov.plot_parallel_coordinate,
    }
    written = {}
    for name, make in makers.items():
        try:
            axes = make(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances need 2 complete trials
            print(f"sweep: no {name} plot ({error})", flush=True)
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = plots_dir / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[name] = path
    return written


@dataclass
class SweepPlan:
    """A study opened and ready to run: what the stage's MLflow run and ``optimise`` need."""

    config: ProjectConfig
    name: str
    storage: Any
    study: Any
    store: Path
    root: str
    workers: int
    parent: str | None  # the MLflow parent run recorded in the study, if still valid here
    tags: dict[str, str]
    started: float


def prepare_sweep(config: ProjectConfig, workers: int | None = None) -> SweepPlan:
    """Open (or resume) the study, fail orphaned trials, and find the parent run to reopen."""
    import optuna

    from gwpe.tracking import dataset_md5, project_root
    from gwpe.tuning.storage import build_storage, fail_orphans

    sweep = config.distill.sweep
    workers = sweep.workers if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers = {workers}; allowed: >= 1")
    store = existing_store(config, config.distill.dataset, "distill.dataset")
    root = str(project_root())
    md5 = dataset_md5(store)
    name = study_name(config, md5)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = build_storage(sweep.storage, root)
    study = open_study(config, storage, name)
    orphans = fail_orphans(study, storage)
    if orphans:
        print(f"sweep {name}: trials {orphans} were left running by a dead process; failed and re-queued", flush=True)
    started = time.perf_counter()
    # As configured (a sqlite/journal file relative to the project root), so a copied project is self-contained.
    tags = {"optuna.study": name, "optuna.storage": redact(sweep.storage)}
    return SweepPlan(config, name, storage, study, store, root, workers, recorded_parent(config, study), tags, started)


def recorded_parent(config: ProjectConfig, study) -> str | None:
    """The study's MLflow parent run, unless it was deleted, belongs to another experiment or another server."""
    parent = study.user_attrs.get(PARENT_ATTR)
    try:
        import mlflow

        from gwpe.tracking import tracking_uri

        mlflow.set_tracking_uri(tracking_uri())
        if parent is not None:
            recorded = mlflow.get_run(parent)
            experiment = mlflow.get_experiment_by_name(config.tracking.experiment)
            if (
                recorded.info.lifecycle_stage != "active"
                or experiment is None
                or recorded.info.experiment_id != experiment.experiment_id
            ):
                parent = None  # deleted in the UI, or the profile now tracks into another experiment
    except Exception:  # a parent recorded against another tracking server: start a new one here
        parent = None
    return parent


def optimise(
    plan: SweepPlan, run, plots_dir: str | Path = "plots/sweep", progress_bar: bool = True
) -> tuple[dict, dict]:
    """Run the missing trials inside the stage's (parent) ``run``; write ``sweep.best_params`` and the plots.
    Returns (summary, metrics)."""
    import multiprocessing

    from optuna.trial import TrialState

    config, name, study, root, workers = plan.config, plan.name, plan.study, plan.root, plan.workers
    sweep = config.distill.sweep
    store = plan.store
    parent = run.info.run_id if run.info is not None else plan.parent
    if parent is not None and study.user_attrs.get(PARENT_ATTR) != parent:
        study.set_user_attr(PARENT_ATTR, parent)
    remaining = max(0, sweep.n_trials - _finished(study))
    print(
        f"sweep {name}: {_finished(study)} of {sweep.n_trials} trials finished; running {remaining} on "
        f"{workers} worker{'s' if workers > 1 else ''}",
        flush=True,
    )
    if remaining:
        quotas = [q for q in _split(remaining, min(workers, remaining))]
        if len(quotas) == 1:
            run_worker(config, root, name, str(store), parent, quotas[0], 0, None, progress_bar=progress_bar)
        else:
            threads = max(1, (os.cpu_count() or 1) // len(quotas))
            context = multiprocessing.get_context("spawn")
            processes = [
                context.Process(target=run_worker, args=(config, root, name, str(store), parent, quota, index, threads))
                for index, quota in enumerate(quotas)
            ]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
            bad = [p.exitcode for p in processes if p.exitcode != 0]
            if bad:
                raise RuntimeError(f"sweep {name}: {len(bad)} worker process(es) failed (exit codes {bad})")
    study = open_study(config, plan.storage, name)
    trials = study.get_trials(deepcopy=False)
    count = {
        state.name.lower(): sum(t.state == state for t in trials)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    }
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    if not completed:
        raise RuntimeError(f"sweep {name}: no trial completed ({count}); nothing to hand to the teacher")
    best = study.best_trial
    seconds = time.perf_counter() - plan.started
    summary = {
        "study": name,
        "storage": redact(sweep.storage),
        "trial": best.number,
        "value": best.value,
        "params": best.params,
        "trials": count,
        "mlflow_parent_run_id": parent,
    }
    out = Path(sweep.best_params)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    metrics = {
        "best_val_loss": best.value,
        "best_trial": best.number,
        **{f"trials_{k}": v for k, v in count.items()},
        "sweep_seconds": round(seconds, 2),
        **{f"best_{k}": v for k, v in best.params.items()},
    }
    run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    run.log_artifact(out, "sweep")
    for path in sweep_plots(study, Path(plots_dir)).values():
        run.log_artifact(path, "plots")
    return summary, metrics
