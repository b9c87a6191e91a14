"""The h22 store's contract: where a split's store lives, its arrays and the names of its attributes.

``<h22.store.root>/<split>.zarr`` holds ``H22`` float32 (N, 2, L) (Re, Im of r h22 / M), ``PARAMS`` float64 (N, 3)
(q, s1z, s2z) and ``TIME`` float64 (L,) (t/M, amplitude peak at 0), with ``store_attributes``. The writer
(``gwpe.data.h22``) and the readers (``H22Dataset``, the overview plot, training and evaluation) use these names.
"""

from __future__ import annotations

from pathlib import Path

import gwpe
from gwpe.config import H22Config, ProjectConfig
from gwpe.waveforms.base import H22Backend
from gwpe.waveforms.grid import PARAMETER_NAMES

FORMAT_VERSION = 1
H22, PARAMS, TIME = "h22", "params", "time"
SPLIT, BACKEND, PARAMETERS = "split", "backend", "parameters"


def split_path(root: str | Path, split: str) -> Path:
    """``<root>/<split>.zarr``."""
    return Path(root) / f"{split}.zarr"


def store_path(config: H22Config, split: str) -> Path:
    """The store of ``split`` under ``h22.store.root`` (not checked to exist)."""
    return split_path(config.store.root, split)


def store_attributes(config: ProjectConfig, split: str, backend: H22Backend) -> dict:
    """Everything ``gwpe generate h22`` records on a split's store."""
    h22 = config.h22
    return {
        "gwpe_format": FORMAT_VERSION,
        "product": "h22",
        SPLIT: split,
        "profile": config.profile,
        BACKEND: backend.name,
        "backend_version": backend.version(),
        "gwpe_version": gwpe.__version__,
        PARAMETERS: list(PARAMETER_NAMES),
        "channels": ["real", "imag"],
        "units": "geometric (G = c = 1): t / M and r h22 / M",
        "conventions": "q = m1/m2 >= 1; |h22| peak at t = 0; arg h22(t = 0) = 0",
        "grid": h22.grid.model_dump(),
        "time": h22.time.model_dump(),
        "generation_dt": h22.generation_dt if backend.name == "imrphenomthm" else None,
        "total_mass_reference": h22.total_mass if backend.name == "imrphenomthm" else None,
    }
