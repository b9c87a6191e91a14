"""``gwpe train flow --model NAME``: fit one posterior model of ``flows.models`` on its strain dataset.

Training noise is fresh every epoch and validation noise fixed (``StrainDataModule``). Checkpoints every
epoch in ``<flows.checkpoint_dir>/<name>``; ``--resume`` continues a killed run (same fingerprint rules as
the WaveNet: model, training and data md5). The saved model (``<flows.model_dir>/<name>``, pickle-free) is
the epoch with the lowest validation NLL, with the dataset's standardisation in its config.json so that
samples map back to physical units.
"""

from __future__ import annotations

import time
from pathlib import Path

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError
from gwpe.training.wavenet import TrainResult


def store_path(config: ProjectConfig) -> Path:
    dataset = config.flows.dataset
    dataset_config(config)
    path = Path(config.strain.store.root) / f"{dataset}.zarr"
    if not (path / "zarr.json").is_file():
        raise ConfigError(f"no strain store at {path} (run: gwpe generate strain --dataset {dataset})")
    return path


def dataset_config(config: ProjectConfig):
    dataset = config.flows.dataset
    if dataset not in config.strain.datasets:
        raise ConfigError(f"flows.dataset = {dataset!r}; allowed: {', '.join(config.strain.datasets)}")
    return config.strain.datasets[dataset]


def flow_model_config(config: ProjectConfig, name: str) -> dict:
    """The ``build_flow_model`` dict for ``flows.models[name]``, shaped by the profile's dataset (checked):
    features = the inferred parameters, context = (detectors or 1 polarisation, sample_rate x duration)."""
    from gwpe.models.flows import resolve_config

    if name not in config.flows.models:
        raise ConfigError(f"flow model = {name!r}; allowed: {', '.join(config.flows.models)}")
    entry, dataset = config.flows.models[name], dataset_config(config)
    context_shape = [max(1, len(dataset.detectors)), int(round(dataset.sample_rate * dataset.duration))]
    raw = {"kind": entry.kind, "features": len(dataset.inferred_parameters), "context_shape": context_shape, **entry.options}
    if entry.embedding is not None:
        raw["embedding"] = entry.embedding
    try:
        return resolve_config(raw)
    except ValueError as error:
        raise ConfigError(f"flows.models.{name}: {error}") from None


def model_training(config: ProjectConfig, name: str):
    """``flows.training`` with the model's own ``max_epochs`` where it sets one."""
    training, entry = config.flows.training, config.flows.models[name]
    return training if entry.max_epochs is None else training.model_copy(update={"max_epochs": entry.max_epochs})


def price_flow_training(config: ProjectConfig, name: str, steps: int = 3) -> str:
    """``gwpe train flow --dry-run``: optimisation steps timed here on synthetic batches of the dataset's
    shape, extrapolated to the profile's epochs; nothing is read or written."""
    import statistics

    import torch

    from gwpe.data.strain import split_sizes
    from gwpe.models.flow_module import FlowModule

    model_config, training = flow_model_config(config, name), model_training(config, name)
    dataset = dataset_config(config)
    module = FlowModule(model_config, learning_rate=training.learning_rate)
    optimizer = module.configure_optimizers()["optimizer"]
    batch = training.batch_size
    strain = torch.randn(batch, *model_config["context_shape"])
    theta = torch.randn(batch, model_config["features"])
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        module.model.loss(theta, strain, epoch=0).backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    rate = batch / statistics.median(times)
    n_train, _ = split_sizes(dataset)
    hours = n_train / rate / 3600
    parameters = sum(p.numel() for p in module.parameters())
    return "\n".join([
        f"profile {config.profile}: {name} ({model_config['kind']}) on {config.flows.dataset}: {parameters / 1e6:.2f} M parameters, "
        f"{model_config['features']} parameters inferred from strain of shape {tuple(model_config['context_shape'])}",
        f"measured here (cpu, batch {batch}): {rate:.0f} samples/s (loss + backward + Adam; data loading not included)",
        f"train split {n_train:,} signals: {hours * 3600:.0f} s per epoch, {hours * training.max_epochs:.2f} h for "
        f"{training.max_epochs} epochs on one such device",
    ])


def train_flow(config: ProjectConfig, name: str, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    import lightning as L

    from gwpe.data.strain_datamodule import StrainDataModule
    from gwpe.models.flow_module import FlowModule
    from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE
    from gwpe.tracking import dataset_md5, is_rank_zero, stage_run
    from gwpe.training.checkpoints import fingerprint, plan_resume, write_state
    from gwpe.training.trainer import best_checkpoint, build_trainer, restore_best

    section = config.flows
    model_config = flow_model_config(config, name)
    training = model_training(config, name)
    store = store_path(config)
    data = StrainDataModule(store, batch_size=training.batch_size, num_workers=training.num_workers, seed=training.seed,
                            phase_flip=section.phase_flip)
    n_train = len(data.dataset("train"))
    md5 = dataset_md5(store)
    expected = fingerprint(model_config, training.model_dump(), section.halve_every, section.phase_flip, md5)
    checkpoint_dir = Path(section.checkpoint_dir) / name
    plan = plan_resume(checkpoint_dir, expected, resume) if is_rank_zero() else None
    if plan is not None:
        print(f"train flow {name}: {plan.reason}", flush=True)
    L.seed_everything(training.seed, workers=True, verbose=False)
    module = FlowModule(model_config, learning_rate=training.learning_rate, halve_every=section.halve_every)
    start = time.perf_counter()
    with stage_run(config, "train-flow", run_name=f"train-flow-{name}",
                   tags={"gwpe.model": "flow", "gwpe.flow": name, "gwpe.flow.kind": model_config["kind"]},
                   run_id=plan.run_id if plan else None, log_params=not (plan and plan.run_id)) as run:
        run_id = run.info.run_id if run.info is not None else None
        if is_rank_zero():
            write_state(checkpoint_dir, expected, run_id, complete=False)
            run.log_dataset("input", section.dataset, store, digest=md5)
        trainer = build_trainer(training, checkpoint_dir, samples_per_epoch=n_train, progress_bar=progress_bar)
        trainer.fit(module, datamodule=data, ckpt_path=plan.ckpt_path if plan else None, weights_only=True)
        seconds = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_loss")}
        metrics.update(epochs=int(trainer.current_epoch), train_seconds=round(seconds, 2),
                       parameters=sum(p.numel() for p in module.parameters()))
        _, best = best_checkpoint(trainer)
        if best is not None:
            metrics["best_val_loss"] = best
        selected = restore_best(trainer, module)
        if selected is not None:
            metrics["selected_epoch"] = selected
        model_dir = Path(section.model_dir) / name
        if trainer.is_global_zero:
            metrics["batchnorm_rows"] = module.set_training_statistics(data.dataset("train"), training.batch_size)
            standardisation = data.standardisation
            module.save_model(model_dir, extra={
                "mlflow_run_id": run_id, "name": name,
                "registered_name": f"{section.registered_prefix}-{name.replace('_', '-')}",
                "dataset": section.dataset, "data_md5": md5,
                "standardisation": {"parameters": list(standardisation.parameters),
                                    "mean": standardisation.mean.tolist(), "std": standardisation.std.tolist()},
                "metrics": metrics,
            })
            run.log_metrics({k: v for k, v in metrics.items() if k not in ("epochs", "train_loss", "val_loss")})
            for file in (WEIGHTS_FILE, CONFIG_FILE):
                run.log_artifact(model_dir / file, "model")
            write_state(checkpoint_dir, expected, run_id, complete=True)
    return TrainResult(model_dir, run_id, metrics["epochs"], seconds, metrics)
