"""Typed configuration: ``params.yaml`` (or any profile file) parsed into pydantic models.

Every model forbids unknown keys and is strict about types, so a typo or a quoted number fails before
any work starts, with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gwpe.errors import ConfigError

DEFAULT_PARAMS = "params.yaml"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class H22GridConfig(StrictModel):
    """The (q, s1z, s2z) training grid of Khan, Huerta & Das (sec. 2.1); validation/test use midpoints."""

    q_min: float = Field(1.0, ge=1.0, le=10.0)
    q_max: float = Field(8.0, ge=1.0, le=10.0)
    dq: float = Field(0.08, gt=0.0)
    s_min: float = Field(-0.8, ge=-0.998, le=0.998)
    s_max: float = Field(0.8, ge=-0.998, le=0.998)
    ds: float = Field(0.012, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> "H22GridConfig":
        if self.q_max - self.q_min < self.dq:
            raise ValueError(f"q_max - q_min must be >= dq = {self.dq} (got q_min={self.q_min}, q_max={self.q_max})")
        if self.s_max - self.s_min < self.ds:
            raise ValueError(f"s_max - s_min must be >= ds = {self.ds} (got s_min={self.s_min}, s_max={self.s_max})")
        return self


class TimeGridConfig(StrictModel):
    """Uniform grid t/M in [t_start, t_end] with step dt; the amplitude peak of h22 sits at t = 0."""

    t_start: float = Field(-10000.0, lt=0.0, ge=-1.0e6)
    t_end: float = Field(130.0, gt=0.0, le=400.0)
    dt: float = Field(0.1, gt=0.0, le=10.0)

    @property
    def length(self) -> int:
        return int(round((self.t_end - self.t_start) / self.dt)) + 1


class StoreConfig(StrictModel):
    """Zarr v3 store: one shard file per ``chunk_size`` waveforms, one compressed inner chunk per waveform."""

    root: str = "data/h22"
    chunk_size: int = Field(256, ge=1, le=1_000_000)
    compression_level: int = Field(5, ge=0, le=9)


class ComputeConfig(StrictModel):
    """Where generation runs: a Dask LocalCluster of ``workers`` processes, or an existing scheduler."""

    workers: int = Field(2, ge=0, le=4096, description="0 runs in-process without Dask")
    threads_per_worker: int = Field(1, ge=1, le=256)
    scheduler_address: str | None = None


class H22Config(StrictModel):
    """The l = m = 2 mode of aligned-spin binary black holes in geometric units."""

    backend: Literal["imrphenomthm", "nrhybsur3dq8"] = "imrphenomthm"
    generation_dt: float = Field(1.0, gt=0.0, le=10.0)
    total_mass: float = Field(50.0, gt=1.0, le=1.0e4)
    surrogate_path: str | None = None
    grid: H22GridConfig = H22GridConfig()
    time: TimeGridConfig = TimeGridConfig()
    store: StoreConfig = StoreConfig()
    compute: ComputeConfig = ComputeConfig()


class TrackingConfig(StrictModel):
    experiment: str = Field("gwpe", min_length=1)


class ProjectConfig(StrictModel):
    """A whole profile file. ``profile`` names it in MLflow and in dataset provenance."""

    profile: str = Field(min_length=1)
    tracking: TrackingConfig = TrackingConfig()
    h22: H22Config = H22Config()


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return sorted(model.model_fields)


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] = ProjectConfig) -> str:
    """One line: ``<source>: <key> = <value>: <what is allowed>``."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
    key = _dotted(loc)
    value = err.get("input")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key; allowed keys here: {', '.join(_allowed_keys(model, loc))}"
        text = f"{source}: {key}: {msg}"
    elif err["type"] == "missing":
        text = f"{source}: {key}: required key is missing"
    elif isinstance(value, dict):
        text = f"{source}: {key}: {msg}"
    else:
        text = f"{source}: {key} = {value!r}: {msg}"
    more = len(exc.errors()) - 1
    return text + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")


def parse_config(data: Any, source: str = "<config>") -> ProjectConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(data).__name__}")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("config error in " + format_validation_error(exc, source)) from None


def load_config(path: str | Path = DEFAULT_PARAMS) -> ProjectConfig:
    """Read and validate a profile file (``params.yaml`` or ``experiments/<name>.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --params FILE; profiles live in experiments/)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, str(path))


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for logging resolved configs as MLflow params."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
