"""``gwpe train teacher`` and ``gwpe train student --mode distilled|direct`` (the ResNet1D+IAF distillation study).

- Teacher: ``distill.model`` with depth, width, IAF transforms and learning rate from the sweep's best trial
  (``distill.sweep.best_params``, a DVC output of ``gwpe sweep``), trained by NLL with Adam and cosine decay.
- Students: the same family with ResNet depth and width, IAF transforms and MADE width multiplied by
  ``distill.student.factor`` (paper eq. 9; rounded, at least 1). Sampling N posterior draws costs one MADE pass
  per transform, so latency at large N falls only if the transform count does. ``distilled`` minimises
  alpha NLL + (1 - alpha) T^2 KL(teacher_T || student_T) (``gwpe.models.distillation``); ``direct`` minimises
  the NLL alone with the same epochs, learning rate and schedule: the "direct training" row.
Packages land in ``<distill.model_dir>/{teacher,student-distilled,student-direct}``.
"""

from __future__ import annotations

import json
from pathlib import Path

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError
from gwpe.data.strain_store import context_shape, existing_store
from gwpe.data.strain_store import dataset_config as strain_dataset
from gwpe.training.fit import FitJob
from gwpe.training.posterior import posterior_job, with_support

TUNED = ("depth", "width", "transforms", "learning_rate")
STUDENT_MODES = ("distilled", "direct")


def dataset_shape(config: ProjectConfig) -> tuple[int, list[int]]:
    """(number of inferred parameters, context shape [detectors, samples]) of ``distill.dataset``."""
    dataset = strain_dataset(config, config.distill.dataset, "distill.dataset")
    return len(dataset.inferred_parameters), context_shape(dataset)


def distill_store(config: ProjectConfig) -> Path:
    """The store of ``distill.dataset`` (it must exist)."""
    return existing_store(config, config.distill.dataset, "distill.dataset")


def resnet_iaf_config(config: ProjectConfig, overrides: dict | None = None, factor: float = 1.0) -> dict:
    """The ``build_flow_model`` dict of the teacher family for ``distill.dataset``: ``distill.model`` with
    ``overrides`` (depth, width, transforms) applied, then ResNet depth and width, IAF transforms and MADE width
    scaled by ``factor`` (rounded, at least 1): the student is smaller in every dimension that costs time."""
    from gwpe.models.flows import resolve_config

    model = config.distill.model.model_dump()
    model.update({k: v for k, v in (overrides or {}).items() if k in ("depth", "width", "transforms")})
    scale = lambda n: max(1, int(round(n * factor)))  # noqa: E731
    features, context_shape = dataset_shape(config)
    raw = {
        "kind": "iaf",
        "features": features,
        "context_shape": context_shape,
        "transforms": scale(model["transforms"]),
        "hidden": [scale(model["hidden"])] * model["hidden_layers"],
        "embedding": {
            "kind": "resnet1d",
            "depth": scale(model["depth"]),
            "width": scale(model["width"]),
            "features": model["features"],
            "kernel_size": model["kernel_size"],
            "stem_stride": model["stem_stride"],
            "downsample_every": model["downsample_every"],
            "pool": model["pool"],
        },
    }
    try:
        return resolve_config(raw)
    except ValueError as error:
        raise ConfigError(f"distill.model: {error}") from None


def read_best_params(config: ProjectConfig) -> dict:
    """The sweep's best trial (``distill.sweep.best_params``): depth, width, transforms, learning_rate."""
    path = Path(config.distill.sweep.best_params)
    if not path.is_file():
        raise ConfigError(f"no sweep result at {path} (run: gwpe sweep)")
    best = json.loads(path.read_text())
    missing = [k for k in TUNED if k not in best.get("params", {})]
    if missing:
        raise ConfigError(f"{path}: params lack {missing}; expected {list(TUNED)}")
    return best


def _job(
    config: ProjectConfig,
    role: str,
    model_config: dict,
    training,
    meta: dict,
    registered_name: str,
    extra: tuple,
    make_module,
) -> FitJob:
    section = config.distill
    return posterior_job(
        config,
        stage=f"train-{role.split('-')[0]}",
        run_name=f"train-{role}",
        dataset=section.dataset,
        dataset_key="distill.dataset",
        model_config=model_config,
        training=training,
        checkpoint_dir=Path(section.checkpoint_dir) / role,
        model_dir=Path(section.model_dir) / role,
        registered_name=registered_name,
        make_module=make_module,
        tags={"gwpe.model": "distill", "gwpe.distill.role": role},
        fingerprint_extra=extra,
        meta={"name": role, "role": role, **meta},
    )


def teacher_job(config: ProjectConfig) -> FitJob:
    """The teacher's fit: ``distill.model`` with the sweep's best depth, width, transforms and learning rate."""
    from gwpe.models.flow_module import FlowModule

    best = read_best_params(config)
    model_config = with_support(resnet_iaf_config(config, best["params"]), distill_store(config))
    training = config.distill.training.model_copy(update={"learning_rate": float(best["params"]["learning_rate"])})
    return _job(
        config,
        "teacher",
        model_config,
        training,
        {"sweep": best},
        config.distill.registered_teacher,
        ("cosine",),
        lambda: FlowModule(model_config, learning_rate=training.learning_rate, schedule="cosine", training=training),
    )


def student_job(config: ProjectConfig, mode: str) -> FitJob:
    """A student's fit (``mode``: distilled or direct): the teacher's own architecture scaled by
    ``distill.student.factor``, the teacher's learning rate, ``student.max_epochs``."""
    from gwpe.data.checksum import dvc_md5
    from gwpe.models.distillation import DistillationModule
    from gwpe.models.flow_module import FlowModule

    if mode not in STUDENT_MODES:
        raise ConfigError(f"student mode = {mode!r}; allowed: {', '.join(STUDENT_MODES)}")
    section, student = config.distill, config.distill.student
    teacher_dir = Path(section.model_dir) / "teacher"
    if not (teacher_dir / "config.json").is_file():
        raise ConfigError(f"no teacher model at {teacher_dir} (run: gwpe train teacher)")
    teacher = FlowModule.load_model(teacher_dir)
    teacher_config = teacher.flow_config
    embedding = teacher_config["embedding"]
    teacher_shape = {
        "depth": embedding["depth"],
        "width": embedding["width"],
        "transforms": teacher_config["transforms"],
    }
    # scale the teacher's own architecture (not distill.model): the student follows whatever the sweep chose
    model_config = with_support(resnet_iaf_config(config, teacher_shape, factor=student.factor), distill_store(config))
    epochs = student.max_epochs or section.training.max_epochs
    training = section.training.model_copy(update={"learning_rate": teacher.learning_rate, "max_epochs": epochs})
    role = f"student-{mode}"
    meta = {"teacher": str(teacher_dir), "factor": student.factor}
    if mode == "distilled":
        meta.update(alpha=student.alpha, temperature=list(student.temperature), teacher_samples=student.teacher_samples)
        teacher_md5 = dvc_md5(teacher_dir)
        extra = ("distilled", student.alpha, tuple(student.temperature), student.teacher_samples, teacher_md5)

        def make():
            return DistillationModule(
                model_config,
                teacher.model,
                alpha=student.alpha,
                temperature=tuple(student.temperature),
                teacher_samples=student.teacher_samples,
                learning_rate=training.learning_rate,
                training=training,
            )
    else:
        extra = ("direct",)

        def make():
            return FlowModule(model_config, learning_rate=training.learning_rate, schedule="cosine", training=training)

    return _job(config, role, model_config, training, meta, section.registered_student, extra, make)


def measure_rate(model_config: dict, batch_size: int, learning_rate: float = 1e-3, steps: int = 2) -> float:
    """Training samples/s of the posterior ``model_config`` here (NLL + backward + Adam on synthetic batches)."""
    import statistics
    import time

    import torch

    from gwpe.models.flow_module import FlowModule
    from gwpe.models.optim import adam

    module = FlowModule(model_config, learning_rate=learning_rate, schedule="cosine")
    optimizer = adam(module.parameters(), lr=learning_rate)
    strain = torch.randn(batch_size, *model_config["context_shape"])
    theta = torch.randn(batch_size, model_config["features"])
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        module.model.loss(theta, strain).backward()
        optimizer.step()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def price_distill(config: ProjectConfig) -> str:
    """``gwpe sweep --dry-run``: the study, teacher and students priced from training rates measured here on
    synthetic batches of the dataset's shape (the sweep at the search space's corners; pruning only shortens
    it, so its figure is an upper bound). Nothing is read or written."""
    from gwpe.data.strain_store import split_sizes
    from gwpe.models.flows import build_flow_model

    section, sweep, space = config.distill, config.distill.sweep, config.distill.sweep.search_space
    features, shape = dataset_shape(config)
    n_train, _ = split_sizes(config.strain.datasets[section.dataset])
    batch = section.training.batch_size
    corners = {
        "smallest": {"depth": space.depth[0], "width": space.width[0], "transforms": space.transforms[0]},
        "largest": {"depth": space.depth[1], "width": space.width[1], "transforms": space.transforms[1]},
    }
    rates = {k: measure_rate(resnet_iaf_config(config, v), batch) for k, v in corners.items()}
    mean_seconds = sum(n_train / r for r in rates.values()) / 2  # per epoch, midway between the corners
    teacher_config = resnet_iaf_config(config)
    teacher_rate = measure_rate(teacher_config, batch)
    student_config = resnet_iaf_config(config, factor=section.student.factor)
    student_rate = measure_rate(student_config, batch)
    epochs = section.training.max_epochs
    student_epochs = section.student.max_epochs or epochs

    def hours(seconds: float) -> float:
        return seconds / 3600

    def count(model_config: dict) -> int:
        return sum(p.numel() for p in build_flow_model(model_config).parameters())

    lines = [
        f"profile {config.profile}: distillation study on {section.dataset}: {features} parameters from strain of "
        f"shape {tuple(shape)}, "
        f"{n_train:,} training signals, batch {batch} (measured here, cpu; data loading not included)",
        f"sweep: {sweep.n_trials} trials x <= {sweep.max_epochs} epochs; {rates['smallest']:.0f} samples/s at the "
        "smallest corner "
        f"{corners['smallest']}, {rates['largest']:.0f} at the largest {corners['largest']}: <= "
        f"{hours(sweep.n_trials * sweep.max_epochs * mean_seconds):.2f} h on one such device "
        f"(/ K with K workers on K devices)",
        f"teacher ({count(teacher_config):,} parameters at distill.model; the sweep's choice replaces it): "
        f"{teacher_rate:.0f} samples/s, "
        f"{hours(epochs * n_train / teacher_rate):.2f} h for {epochs} epochs",
        f"students (factor {section.student.factor}, {count(student_config):,} parameters): "
        f"{student_rate:.0f} samples/s; direct {hours(student_epochs * n_train / student_rate):.2f} h, "
        f"distilled about that plus {section.student.teacher_samples} teacher "
        f"draws per event (teacher forward, no gradient) for {student_epochs} epochs",
    ]
    return "\n".join(lines)
