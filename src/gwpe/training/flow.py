"""``gwpe train flow --model NAME``: fit one posterior model of ``flows.models`` on its strain dataset.

Checkpoints in ``<flows.checkpoint_dir>/<name>``, the package in ``<flows.model_dir>/<name>``; the training
itself is ``gwpe.training.fit`` on the job ``posterior_job`` describes (fresh training noise, resume, best epoch,
pickle-free).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from gwpe.config import ProjectConfig
from gwpe.data.strain_store import Standardisation, context_shape, flows_dataset, flows_store
from gwpe.errors import ConfigError
from gwpe.training.fit import FitJob
from gwpe.training.posterior import posterior_job, with_support


def flow_model_config(config: ProjectConfig, name: str) -> dict:
    """The ``build_flow_model`` dict for ``flows.models[name]``, shaped by the profile's dataset (checked):
    features = the inferred parameters, context = (detectors or 1 polarisation, sample_rate x duration)."""
    from gwpe.models.flows import resolve_config

    if name not in config.flows.models:
        raise ConfigError(f"flow model = {name!r}; allowed: {', '.join(config.flows.models)}")
    entry, dataset = config.flows.models[name], flows_dataset(config)
    raw = {**entry.flow_dict(), "features": len(dataset.inferred_parameters), "context_shape": context_shape(dataset)}
    raw.pop("gnpe", None)  # filled in from the store by ``with_gnpe``
    try:
        return resolve_config(raw)
    except ValueError as error:
        raise ConfigError(f"flows.models.{name}: {error}") from None


def phi0_symmetry(mode: str, standardisation) -> dict | None:
    """The MAF's ``phase`` option for ``flows.phase_symmetry`` = mode: phi0's circle [0, 2 pi) in the
    standardised units z = (phi0 - mean) / std, with 2 copies (phi0 -> phi0 + pi) for "pi", 1 for "periodic";
    None for "none" or a dataset that does not infer phi0."""
    names = list(standardisation.parameters)
    if mode == "none" or "phi0" not in names:
        return None
    k = names.index("phi0")
    mean, std = float(standardisation.mean[k]), float(standardisation.std[k])
    return {
        "index": k,
        "low": (0.0 - mean) / std,
        "period": 2 * math.pi / std,
        "copies": 2 if mode == "pi" else 1,
        "wraps": 2,
    }


def with_phase_symmetry(config: ProjectConfig, model_config: dict, store: Path) -> dict:
    """``model_config`` with the phi0 symmetry of ``flows.phase_symmetry`` for a MAF (from the store's
    standardisation); other kinds unchanged."""
    if model_config["kind"] != "maf":
        return model_config
    standardisation = Standardisation.of_store(store)
    return {**model_config, "phase": phi0_symmetry(config.flows.phase_symmetry, standardisation)}


def with_gnpe(config: ProjectConfig, name: str, model_config: dict, store: Path) -> dict:
    """``model_config`` with ``flows.models[name].gnpe`` completed from the store (``gwpe.models.flows.gnpe``):
    t_c's column and standardisation, its prior range, the reference time (the range's centre) and the sample
    rate; unchanged without ``gnpe``. ConfigError unless t_c is inferred from one channel of strain."""
    entry = config.flows.models[name]
    if entry.gnpe is None:
        return model_config
    from gwpe.data.strain_store import data_spec, recorded_prior

    dataset = flows_dataset(config)
    standardisation = Standardisation.of_store(store)
    names = list(standardisation.parameters)
    if "tc" not in names or dataset.detectors:
        raise ConfigError(
            f"flows.models.{name}.gnpe on dataset {config.flows.dataset!r} (inferred {names}, detectors "
            f"{dataset.detectors or 'none'}); allowed: a one-channel dataset that infers tc (strain-5d, strain-8d)"
        )
    k = names.index("tc")
    prior = recorded_prior(data_spec(store))
    gnpe = entry.gnpe.model_dump()
    gnpe["init"] = {**gnpe["init"], "embedding": gnpe["init"]["embedding"] or {"kind": "flatten"}}
    gnpe.update(
        index=k,
        mean=float(standardisation.mean[k]),
        std=float(standardisation.std[k]),
        low=float(prior.tc_min),
        high=float(prior.tc_max),
        reference=0.5 * (float(prior.tc_min) + float(prior.tc_max)),
        sample_rate=float(dataset.sample_rate),
    )
    return {**model_config, "gnpe": gnpe}


def model_training(config: ProjectConfig, name: str):
    """``flows.training`` with the model's own ``max_epochs`` where it sets one."""
    training, entry = config.flows.training, config.flows.models[name]
    return training if entry.max_epochs is None else training.model_copy(update={"max_epochs": entry.max_epochs})


def price_flow_training(config: ProjectConfig, name: str, steps: int = 3) -> str:
    """``gwpe train flow --dry-run``: optimisation steps timed here on synthetic batches of the dataset's
    shape, extrapolated to the profile's epochs; nothing is read or written."""
    import statistics

    import torch

    from gwpe.data.strain_store import split_sizes
    from gwpe.models.flow_module import FlowModule

    model_config, training = flow_model_config(config, name), model_training(config, name)
    dataset = flows_dataset(config)
    gnpe = config.flows.models[name].gnpe
    if gnpe is not None:  # priced with placeholder standardisation: only the cost matters here, no store is read
        columns = list(dataset.inferred_parameters)
        init = {**gnpe.model_dump()["init"]}
        init["embedding"] = init["embedding"] or {"kind": "flatten"}
        model_config = {
            **model_config,
            "gnpe": {
                **gnpe.model_dump(),
                "init": init,
                "index": columns.index("tc") if "tc" in columns else 0,
                "mean": 0.0,
                "std": 1.0,
                "low": -1.0,
                "high": 1.0,
                "reference": 0.0,
                "sample_rate": float(dataset.sample_rate),
            },
        }
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
    return "\n".join(
        [
            f"profile {config.profile}: {name} ({model_config['kind']}) on {config.flows.dataset}: "
            f"{parameters / 1e6:.2f} M parameters, {model_config['features']} parameters inferred from strain of "
            f"shape {tuple(model_config['context_shape'])}",
            f"measured here (cpu, batch {batch}): {rate:.0f} samples/s "
            "(loss + backward + Adam; data loading not included)",
            f"train split {n_train:,} signals: {hours * 3600:.0f} s per epoch, {hours * training.max_epochs:.2f} h for "
            f"{training.max_epochs} epochs on one such device",
        ]
    )


def seed_embedding(model, store: Path) -> int:
    """Seed an SVD embedding (``gwpe.models.flows.embedding.SVDEmbedding``) from the store's first noise-free
    whitened training signals; a model without one is left as built. Returns the embeddings seeded."""
    import torch

    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.models.flows.embedding import SVDEmbedding, seed_svd_embeddings

    def rows(n: int):
        train = StrainDataset(store, "train", noise="none")
        pairs = train.__getitems__(list(range(min(n, len(train)))))
        return torch.stack([strain for strain, _ in pairs]), torch.stack([theta for _, theta in pairs])

    if hasattr(model, "seed_embeddings"):  # GNPE: its inner embedding sees the strain shifted by t_c's proxy
        wanted = max((m.seed_signals for m in model.modules() if isinstance(m, SVDEmbedding)), default=0)
        return model.seed_embeddings(*rows(wanted)) if wanted else 0
    return seed_svd_embeddings(model, lambda n: rows(n)[0])


def flow_job(config: ProjectConfig, name: str) -> FitJob:
    """The fit of ``flows.models[name]``: checkpoints in ``<flows.checkpoint_dir>/<name>``, the package in
    ``<flows.model_dir>/<name>``, registered as ``<flows.registered_prefix>-<name>``."""
    from gwpe.models.flow_module import FlowModule

    section = config.flows
    store = flows_store(config)
    model_config = with_support(with_phase_symmetry(config, flow_model_config(config, name), store), store)
    model_config = with_gnpe(config, name, model_config, store)
    training = model_training(config, name)

    def make_module():
        module = FlowModule(
            model_config,
            learning_rate=training.learning_rate,
            halve_every=section.halve_every,
            schedule=section.schedule,
            training=training,
        )
        seed_embedding(module.model, store)
        return module

    return posterior_job(
        config,
        stage="train-flow",
        run_name=f"train-flow-{name}",
        dataset=section.dataset,
        dataset_key="flows.dataset",
        model_config=model_config,
        training=training,
        checkpoint_dir=Path(section.checkpoint_dir) / name,
        model_dir=Path(section.model_dir) / name,
        registered_name=f"{section.registered_prefix}-{name.replace('_', '-')}",
        make_module=make_module,
        tags={"gwpe.model": "flow", "gwpe.flow": name, "gwpe.flow.kind": model_config["kind"]},
        # phase_fold joins the fingerprint only when set, so checkpoints of unfolded runs still resume
        fingerprint_extra=(section.halve_every, section.phase_flip, section.schedule)
        + (("phase_fold",) if section.models[name].phase_fold else ()),
        meta={"name": name, "phase_fold": section.models[name].phase_fold},
        phase_flip=section.phase_flip,
        phase_fold=section.models[name].phase_fold,
    )
