"""``gwpe train wavenet``: fit the physics-inspired WaveNet on the h22 train split (validation: the
validation split), checkpoint every epoch, resume a killed run, save the model pickle-free and log it.

The model input is the whole stored waveform (Re, Im of h22 on the profile's time grid); the leaves read
the last ``leaf_steps`` steps of the root output (paper: 10,000 of 101,300).

The saved model is the epoch with the lowest validation loss (``wavenet.keep: best``, the default; the
validation waveforms sit between the training grid points, so this is early stopping against
overfitting the grid) or the final epoch (``keep: last``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


@dataclass
class TrainResult:
    model_dir: Path
    run_id: str | None
    epochs: int
    seconds: float
    metrics: dict


def architecture(config: ProjectConfig):
    from gwpe.models.wavenet import WaveNetConfig

    return WaveNetConfig(**config.wavenet.model.model_dump())


def data_module(config: ProjectConfig):
    from gwpe.data.datamodule import H22DataModule

    training = config.wavenet.training
    return H22DataModule(
        config.h22.store.root, batch_size=training.batch_size, num_workers=training.num_workers, seed=training.seed
    )


def check_inputs(config: ProjectConfig) -> None:
    length = config.h22.time.length
    if config.wavenet.model.leaf_steps > length:
        raise ConfigError(
            f"wavenet.model.leaf_steps = {config.wavenet.model.leaf_steps}: must be <= the waveform length "
            f"{length} (h22.time)"
        )


def train_wavenet(config: ProjectConfig, resume: bool = False, progress_bar: bool = True) -> TrainResult:
    import lightning as L
    import torch

    from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE
    from gwpe.models.wavenet_module import WaveNetModule
    from gwpe.tracking import dataset_md5, is_rank_zero, stage_run
    from gwpe.training.checkpoints import fingerprint, plan_resume, write_state
    from gwpe.training.trainer import best_checkpoint, build_trainer, compiled, restore_best

    check_inputs(config)
    section, training = config.wavenet, config.wavenet.training
    data = data_module(config)
    train_set = data.dataset("train")
    data.dataset("validation")
    root = Path(config.h22.store.root)
    md5 = {split: dataset_md5(root / f"{split}.zarr") for split in ("train", "validation")}
    expected = fingerprint(section.model.model_dump(), training.fingerprint_fields(), config.h22.time.model_dump(), md5)
    checkpoint_dir = Path(section.checkpoint_dir)
    plan = plan_resume(checkpoint_dir, expected, resume, clear=is_rank_zero())  # same ckpt_path on every rank
    if is_rank_zero():
        print(f"train wavenet: {plan.reason}", flush=True)

    L.seed_everything(training.seed, workers=True, verbose=False)
    rng = np.random.default_rng(training.seed)
    sample = rng.choice(len(train_set), size=min(256, len(train_set)), replace=False)
    waveforms = torch.stack([w for w, _ in train_set.__getitems__(sorted(sample.tolist()))])
    module = WaveNetModule.from_training_parameters(
        architecture(config),
        train_set.parameters,
        waveforms=waveforms,
        learning_rate=training.learning_rate,
        max_epochs=training.max_epochs,
    )
    module.training_config = training
    start = time.perf_counter()
    with stage_run(
        config,
        "train-wavenet",
        run_name=f"train-wavenet-{section.model.head}",
        tags={"gwpe.model": "wavenet", "gwpe.head": section.model.head},
        run_id=plan.run_id,
        log_params=not plan.run_id,
    ) as run:
        run_id = run.info.run_id if run.info is not None else None
        if is_rank_zero():
            write_state(checkpoint_dir, expected, run_id, complete=False)
            for split, digest in md5.items():
                run.log_dataset("input", f"h22-{split}", root / f"{split}.zarr", digest=digest)
        trainer = build_trainer(
            training, checkpoint_dir, samples_per_epoch=len(train_set), progress_bar=progress_bar, run_id=run_id
        )
        trainer.fit(compiled(module, training), datamodule=data, ckpt_path=plan.ckpt_path, weights_only=True)
        seconds = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_loss")}
        metrics.update(epochs=int(trainer.current_epoch), train_seconds=round(seconds, 2))
        _, best = best_checkpoint(trainer)
        if best is not None:
            metrics["best_val_loss"] = best
        if section.keep == "best":
            selected = restore_best(trainer, module)
            if selected is not None:
                metrics["selected_epoch"] = selected
        model_dir = Path(section.model_dir)
        if trainer.is_global_zero:
            module.save_model(
                model_dir,
                extra={
                    "mlflow_run_id": run_id,
                    "registered_name": section.registered_name,
                    "h22": {
                        "backend": config.h22.backend,
                        "time": config.h22.time.model_dump(),
                        "generation_dt": config.h22.generation_dt,
                        "total_mass": config.h22.total_mass,
                        "grid": config.h22.grid.model_dump(),
                    },
                    "data_md5": md5,
                    "metrics": metrics,
                },
            )
            # the losses already have one point per epoch (MLflowEpochMetrics); a step-less copy would add a point
            run.log_metrics({k: v for k, v in metrics.items() if k not in ("epochs", "train_loss", "val_loss")})
            for name in (WEIGHTS_FILE, CONFIG_FILE, "MLmodel"):
                run.log_artifact(model_dir / name, "model")
            write_state(checkpoint_dir, expected, run_id, complete=True)
    return TrainResult(model_dir, run_id, metrics["epochs"], seconds, metrics)


def measure_training_rate(config: ProjectConfig, device: str, batch: int, steps: int = 3, warmup: int = 1) -> dict:
    """Samples/s of full optimisation steps (forward, backward, Adam) of the profile's model at its input
    length, on synthetic inputs of the stored shape; median of ``steps`` steps after ``warmup``."""
    import statistics

    import torch

    from gwpe.models.wavenet_module import WaveNetModule
    from gwpe.training.optim import adam

    length = config.h22.time.length
    params = torch.tensor([[4.0, 0.2, -0.3], [2.0, -0.5, 0.5], [7.0, 0.1, 0.7]], dtype=torch.float64)
    module = WaveNetModule.from_training_parameters(architecture(config), params).to(device)
    optimizer = adam(module.parameters(), lr=1e-3)
    x = torch.randn(batch, 2, length, device=device)
    y = params[torch.arange(batch) % 3].to(device)
    bf16 = device == "cuda" and config.wavenet.training.precision == "bf16-mixed"
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = module.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "samples_per_second": batch / statistics.median(times),
        "parameters": sum(p.numel() for p in module.parameters()),
        "length": length,
        "batch": batch,
        "device": device,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    }


def price_training(config: ProjectConfig) -> str:
    """``gwpe train wavenet --dry-run``: measured samples/s here, extrapolated to the profile's epochs."""
    import torch

    from gwpe.waveforms.grid import split_size

    check_inputs(config)
    training = config.wavenet.training
    device = "cuda" if torch.cuda.is_available() else "cpu"
    length = config.h22.time.length
    batch = training.batch_size if device == "cuda" else max(1, min(training.batch_size, 4 * 2131 // length, 32))
    rate = measure_training_rate(config, device, batch)
    n_train = split_size(config.h22.grid, "train")
    hours = n_train / rate["samples_per_second"] / 3600
    lines = [
        f"profile {config.profile}: WaveNet ({config.wavenet.model.head} head) with {rate['parameters'] / 1e6:.2f} M parameters, "
        f"input length {length:,}, leaves on the last {config.wavenet.model.leaf_steps:,} steps",
        f"measured here ({device}, batch {batch}): {rate['samples_per_second']:.1f} samples/s "
        "(forward + backward + Adam; data loading not included)",
        f"train split {n_train:,} waveforms: {hours:.2f} h per epoch, {hours * training.max_epochs:.1f} h for "
        f"{training.max_epochs} epochs on one such device; data parallelism divides this by the number of "
        f"{'GPUs' if device == 'cuda' else 'devices'} (minus communication)",
    ]
    return "\n".join(lines)


def write_metrics(path: str | Path, metrics: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
