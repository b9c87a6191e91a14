"""The fit of a posterior ``FlowModule`` on a strain store: what ``gwpe train flow|teacher|student`` share.

Training noise is fresh every epoch and validation noise fixed (``StrainDataModule``). The saved package is the
epoch with the lowest validation NLL, with batch-norm statistics of the whole training split, the dataset's
standardisation (samples map back to physical units) and its data spec in config.json
(``gwpe.training.fit`` runs the fit itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gwpe.config import ProjectConfig, TrainingConfig
from gwpe.data.strain_store import (
    N_TRAIN,
    SNR,
    Standardisation,
    data_spec,
    existing_store,
    read_attributes,
    recorded_prior,
)
from gwpe.training.fit import FitJob


def with_support(model_config: dict, store: str | Path) -> dict:
    """``model_config`` built on the prior support of the store's dataset (``gwpe.models.flows.support``): the
    store's standardisation and prior (its data spec, what the data were drawn from); phi0 stays as it is for a
    MAF whose ``phase`` symmetry wraps it, every other parameter gets its bijection."""
    from gwpe.waveforms.priors import support_pieces

    standardisation = Standardisation.of_store(store)
    prior = recorded_prior(data_spec(store))
    names = list(standardisation.parameters)
    periodic = ("phi0",) if model_config.get("phase") else ()
    support = {
        "parameters": names,
        "mean": standardisation.mean.tolist(),
        "std": standardisation.std.tolist(),
        "pieces": support_pieces(prior, names, periodic),
    }
    return {**model_config, "support": support}


def training_snr(store: str | Path) -> dict:
    """Quantiles of the training rows' network optimal SNR (``gwpe infer`` compares an event's with them)."""
    import numpy as np

    from gwpe.data.integrity import open_store

    rows = int(read_attributes(store)[N_TRAIN])
    snr = np.asarray(open_store(store)[SNR][:rows], dtype=np.float64)  # checked chunks: no zeros for a lost one
    quantiles = np.quantile(snr, [0.0, 0.01, 0.5, 0.99, 1.0])
    return dict(zip(("min", "p01", "median", "p99", "max"), (round(float(q), 4) for q in quantiles)))


def posterior_job(
    config: ProjectConfig,
    *,
    stage: str,
    run_name: str,
    dataset: str,
    dataset_key: str,
    model_config: dict,
    training: TrainingConfig,
    checkpoint_dir: Path,
    model_dir: Path,
    registered_name: str,
    make_module: Callable[[], Any],
    tags: dict[str, Any],
    fingerprint_extra: tuple = (),
    meta: dict[str, Any] | None = None,
    phase_flip: bool = False,
    phase_fold: bool = False,
) -> FitJob:
    """A ``FitJob`` for a posterior model of strain dataset ``dataset`` (chosen by config ``dataset_key``)."""
    from gwpe.data.strain_datamodule import StrainDataModule

    store = existing_store(config, dataset, dataset_key)
    data = StrainDataModule(
        store,
        batch_size=training.batch_size,
        num_workers=training.num_workers,
        seed=training.seed,
        in_memory=training.in_memory,
        phase_flip=phase_flip,
        phase_fold=phase_fold,
    )

    def package_extra(module, data, md5: dict, metrics: dict) -> dict:
        metrics["batchnorm_rows"] = module.set_training_statistics(data.dataset("train"), training.batch_size)
        return {
            "dataset": dataset,
            "data_md5": md5[dataset],
            "standardisation": data.standardisation.as_attrs(),
            "data_spec": data_spec(store),
            "training_snr": training_snr(store),
            **(meta or {}),
        }

    return FitJob(
        stage=stage,
        run_name=run_name,
        data=data,
        inputs={dataset: store},
        model_config=model_config,
        training=training,
        checkpoint_dir=checkpoint_dir,
        model_dir=model_dir,
        registered_name=registered_name,
        make_module=lambda data: make_module(),
        package_extra=package_extra,
        tags=tags,
        fingerprint_extra=fingerprint_extra,
        keep_best=True,
        count_parameters=True,
    )
