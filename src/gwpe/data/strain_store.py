"""The strain store's contract: where a dataset's store lives, what it holds, and the names of its attributes.

``gwpe generate strain`` writes ``<strain.store.root>/<name>.zarr`` with ``store_attributes``; every reader
(the training data module, the posterior packages' data spec, the likelihood samplers, ``gwpe infer``) goes
through the functions here, so writer and readers share one definition:

- arrays ``STRAIN`` float32 (N, D, L), ``PARAMS`` float64 (N, P), ``SNR`` float64 (N,);
- attributes: ``PARAMETERS`` (columns of ``PARAMS``), ``INFERRED``, ``STANDARDISATION`` (training-row mean and
  std of each inferred parameter), ``N_TRAIN`` (rows [0, n_train) train, the rest validation), the data spec
  (``DATA_SPEC_KEYS``: what a model trained on the store expects of its input) and provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gwpe
from gwpe.config import ProjectConfig, StrainDatasetConfig, StrainPriorConfig
from gwpe.errors import ConfigError

FORMAT_VERSION = 1
STRAIN, PARAMS, SNR = "strain", "params", "snr"
PARAMETERS, INFERRED, STANDARDISATION, N_TRAIN = "parameters", "inferred", "standardisation", "n_train"
PLUS_POLARISATION = "plus-polarisation"  # the ``detectors`` entry of a single-polarisation (no detector) dataset
DATA_SPEC_KEYS = (
    "approximant",
    "psd",
    "f_min",
    "f_ref",
    "sample_rate",
    "duration",
    "detectors",
    "reference_gps",
    INFERRED,
    "units",
    "prior",
    "whitening",
    "psd_table",
)
UNITS = {
    "m1": "Msun",
    "m2": "Msun",
    "dL": "Mpc",
    "tc": "s",
    "phi0": "rad",
    "theta_jn": "rad",
    "ra": "rad",
    "dec": "rad",
    "psi": "rad",
    "chi1z": "",
    "chi2z": "",
}


def dataset_config(config: ProjectConfig, name: str, key: str = "strain dataset") -> StrainDatasetConfig:
    """``strain.datasets[name]``; an unknown name fails naming ``key`` (the config key that chose it)."""
    if name not in config.strain.datasets:
        allowed = ", ".join(config.strain.datasets) or "(none configured)"
        raise ConfigError(f"{key} = {name!r}; allowed (strain.datasets): {allowed}")
    return config.strain.datasets[name]


def flows_dataset(config: ProjectConfig) -> StrainDatasetConfig:
    """The dataset the flows are trained and evaluated on (``flows.dataset``)."""
    return dataset_config(config, config.flows.dataset, "flows.dataset")


def flows_store(config: ProjectConfig) -> Path:
    """The store of ``flows.dataset``, checked to exist."""
    return existing_store(config, config.flows.dataset, "flows.dataset")


def store_path(config: ProjectConfig, name: str) -> Path:
    """``<strain.store.root>/<name>.zarr`` (not checked to exist)."""
    return Path(config.strain.store.root) / f"{name}.zarr"


def existing_store(config: ProjectConfig, name: str, key: str = "strain dataset") -> Path:
    """The store of dataset ``name`` (chosen by config ``key``), checked to be configured, generated and to hold
    every chunk file (one stat per shard; contents are checked as they are read, see ``gwpe.data.integrity``)."""
    from gwpe.data.integrity import check_present

    dataset_config(config, name, key)
    path = store_path(config, name)
    if not (path / "zarr.json").is_file():
        raise ConfigError(f"no strain store at {path} (run: gwpe generate strain --dataset {name})")
    check_present(path)
    return path


def channels(detectors) -> int:
    """Strain channels: one per detector, or 1 for the "+" polarisation (no detector)."""
    return max(1, len([d for d in detectors if d != PLUS_POLARISATION]))


def context_shape(dataset: StrainDatasetConfig) -> list[int]:
    """[channels D, samples L = sample_rate x duration]: the shape of one stored (and model-input) strain."""
    return [channels(dataset.detectors), int(round(dataset.sample_rate * dataset.duration))]


def spec_shape(spec: dict) -> tuple[int, int]:
    """The same (D, L) from a data spec (``data_spec`` / a package's config.json)."""
    return channels(spec["detectors"]), int(round(spec["sample_rate"] * spec["duration"]))


def split_sizes(dataset: StrainDatasetConfig) -> tuple[int, int]:
    """(n_train, n_validation): the last ``validation_fraction`` of the rows (at least 1) validate."""
    n_validation = max(1, int(round(dataset.n_signals * dataset.validation_fraction)))
    return dataset.n_signals - n_validation, n_validation


def read_attributes(store: str | Path) -> dict:
    """The store's attributes as a plain dict."""
    import zarr

    return dict(zarr.open_group(str(store), mode="r").attrs)


def data_spec(store: str | Path) -> dict:
    """What a model trained on ``store`` expects of its input (rate, duration, detectors, PSD, whitening) and
    what it infers (parameters, units, prior): copied into every package so ``gwpe infer`` can check files."""
    attrs = read_attributes(store)
    return {k: attrs[k] for k in DATA_SPEC_KEYS if k in attrs}


def recorded_prior(spec: dict) -> StrainPriorConfig:
    """The prior a store (or a package's ``data_spec``) records, as the typed config, taken as written: a store
    is what its data were drawn from, so the current config's bounds (e.g. chi_max < 1) do not re-judge it."""
    return StrainPriorConfig.model_construct(**{**StrainPriorConfig().model_dump(), **spec["prior"]})


def standardisation_attrs(params: np.ndarray, names: list[str], inferred: list[str], n_train: int) -> dict:
    """Per-parameter mean and std over the training rows (Green et al.: zero mean, unit variance)."""
    columns = [names.index(p) for p in inferred]
    train = params[:n_train, columns]
    return {"parameters": inferred, "mean": train.mean(axis=0).tolist(), "std": train.std(axis=0).tolist()}


@dataclass(frozen=True)
class Standardisation:
    """z = (theta - mean) / std per inferred parameter, from the training split."""

    parameters: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def from_attrs(cls, attrs: dict) -> Standardisation:
        """From a store's (or a package's) ``standardisation`` attribute."""
        s = attrs[STANDARDISATION]
        return cls(
            tuple(s["parameters"]), np.asarray(s["mean"], dtype=np.float64), np.asarray(s["std"], dtype=np.float64)
        )

    @classmethod
    def of_store(cls, store: str | Path) -> Standardisation:
        """The standardisation a store was written with."""
        return cls.from_attrs(read_attributes(store))

    def as_attrs(self) -> dict:
        """The JSON form ``from_attrs`` reads (what packages store)."""
        return {"parameters": list(self.parameters), "mean": self.mean.tolist(), "std": self.std.tolist()}

    def forward(self, theta):
        """Physical -> standardised."""
        return (theta - self.mean) / self.std

    def inverse(self, z):
        """Standardised -> physical (numpy or torch, on z's device)."""
        import torch

        if isinstance(z, torch.Tensor):
            return z * torch.as_tensor(self.std, dtype=z.dtype, device=z.device) + torch.as_tensor(
                self.mean, dtype=z.dtype, device=z.device
            )
        return np.asarray(z) * self.std + self.mean


def store_attributes(config: ProjectConfig, name: str, setup, params: np.ndarray) -> dict:
    """Everything ``gwpe generate strain`` records on the store (``setup``: the ``StrainSetup`` it generates with)."""
    import lalsimulation

    dataset = dataset_config(config, name)
    n_train, n_validation = split_sizes(dataset)
    return {
        "gwpe_format": FORMAT_VERSION,
        "product": "strain",
        "dataset": name,
        "profile": config.profile,
        "gwpe_version": gwpe.__version__,
        "backend_version": f"lalsimulation {lalsimulation.__version__}",
        "approximant": setup.approximant,
        "psd": setup.psd_name if setup.psd_table is None else f"measured ({config.strain.psd_dir})",
        "f_min": setup.f_min,
        "f_ref": setup.f_ref,
        "sample_rate": setup.sample_rate,
        "duration": setup.duration,
        "detectors": list(setup.detectors) or [PLUS_POLARISATION],
        "reference_gps": setup.reference_gps,
        **({} if setup.psd_table is None else {"psd_table": setup.psd_table}),
        "whitening": "x = irfft(h~ / sqrt(S_n)) * sqrt(2 dt): white noise is N(0, 1) per sample",
        PARAMETERS: list(dataset.parameters),
        INFERRED: dataset.inferred_parameters,
        "units": UNITS,
        N_TRAIN: n_train,
        "n_validation": n_validation,
        "seed": dataset.seed,
        "prior": dataset.prior.model_dump(),
        STANDARDISATION: standardisation_attrs(params, list(dataset.parameters), dataset.inferred_parameters, n_train),
    }
