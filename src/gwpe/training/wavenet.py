"""``gwpe train wavenet``: fit the physics-inspired WaveNet on the h22 train split (validation: the
validation split), checkpoint every epoch, resume a killed run, save the model pickle-free and log it.

The model input is the whole stored waveform (Re, Im of h22 on the profile's time grid); the leaves read
the last ``leaf_steps`` steps of the root output (paper: 10,000 of 101,300).

The saved model is the epoch with the lowest validation loss (``wavenet.keep: best``, the default; the
validation waveforms sit between the training grid points, so this is early stopping against
overfitting the grid) or the final epoch (``keep: last``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.data.h22_store import split_path
from gwpe.errors import ConfigError
from gwpe.training.fit import FitJob


def architecture(config: ProjectConfig):
    """The profile's ``WaveNetConfig``."""
    from gwpe.models.wavenet import WaveNetConfig

    return WaveNetConfig(**config.wavenet.model.model_dump())


def data_module(config: ProjectConfig):
    """The h22 train/validation data module of the profile."""
    from gwpe.data.datamodule import H22DataModule

    training = config.wavenet.training
    return H22DataModule(
        config.h22.store.root, batch_size=training.batch_size, num_workers=training.num_workers, seed=training.seed
    )


def check_inputs(config: ProjectConfig) -> None:
    """The leaves must read no more steps than a stored waveform has."""
    length = config.h22.time.length
    if config.wavenet.model.leaf_steps > length:
        raise ConfigError(
            f"wavenet.model.leaf_steps = {config.wavenet.model.leaf_steps}: must be <= the waveform length "
            f"{length} (h22.time)"
        )


def wavenet_job(config: ProjectConfig) -> FitJob:
    """The WaveNet fit: h22 train/validation splits, the profile's architecture and training, package extras
    (the h22 grid and time axis the model was trained on, checked again at evaluation)."""
    check_inputs(config)
    section, training = config.wavenet, config.wavenet.training
    root = Path(config.h22.store.root)

    def make_module(data):
        import torch

        from gwpe.models.wavenet_module import WaveNetModule, grid_box

        train_set = data.dataset("train")
        rng = np.random.default_rng(training.seed)
        sample = rng.choice(len(train_set), size=min(256, len(train_set)), replace=False)
        waveforms = torch.stack([w for w, _ in train_set.__getitems__(sorted(sample.tolist()))])
        return WaveNetModule.from_training_parameters(
            architecture(config),
            train_set.parameters,
            waveforms=waveforms,
            learning_rate=training.learning_rate,
            max_epochs=training.max_epochs,
            training=training,
            parameter_box=grid_box(config.h22.grid),  # predictions clipped as Table 1 clips them
        )

    def package_extra(module, data, md5: dict, metrics: dict) -> dict:
        h22 = config.h22
        return {
            "h22": {
                "backend": h22.backend,
                "time": h22.time.model_dump(),
                "generation_dt": h22.generation_dt,
                "total_mass": h22.total_mass,
                "grid": h22.grid.model_dump(),
            },
            "data_md5": {name.removeprefix("h22-"): digest for name, digest in md5.items()},
        }

    return FitJob(
        stage="train-wavenet",
        run_name=f"train-wavenet-{section.model.head}",
        data=data_module(config),
        inputs={f"h22-{split}": split_path(root, split) for split in ("train", "validation")},
        model_config=section.model.model_dump(),
        training=training,
        checkpoint_dir=Path(section.checkpoint_dir),
        model_dir=Path(section.model_dir),
        registered_name=section.registered_name,
        make_module=make_module,
        package_extra=package_extra,
        tags={"gwpe.model": "wavenet", "gwpe.head": section.model.head},
        fingerprint_extra=(config.h22.time.model_dump(),),
        keep_best=section.keep == "best",
    )


def measure_training_rate(config: ProjectConfig, device: str, batch: int, steps: int = 3, warmup: int = 1) -> dict:
    """Samples/s of full optimisation steps (forward, backward, Adam) of the profile's model at its input
    length, on synthetic inputs of the stored shape; median of ``steps`` steps after ``warmup``."""
    import statistics

    import torch

    from gwpe.models.wavenet_module import WaveNetModule
    from gwpe.models.optim import adam

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
        f"profile {config.profile}: WaveNet ({config.wavenet.model.head} head) with "
        f"{rate['parameters'] / 1e6:.2f} M parameters, "
        f"input length {length:,}, leaves on the last {config.wavenet.model.leaf_steps:,} steps",
        f"measured here ({device}, batch {batch}): {rate['samples_per_second']:.1f} samples/s "
        "(forward + backward + Adam; data loading not included)",
        f"train split {n_train:,} waveforms: {hours:.2f} h per epoch, {hours * training.max_epochs:.1f} h for "
        f"{training.max_epochs} epochs on one such device; data parallelism divides this by the number of "
        f"{'GPUs' if device == 'cuda' else 'devices'} (minus communication)",
    ]
    return "\n".join(lines)
