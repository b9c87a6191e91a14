"""gwpe's MLflow model flavour: what a registered version holds besides the pickle-free package.

``save_model`` is the writer ``mlflow.models.Model.log(flavor=gwpe.inference.flavor, package=FOLDER)`` calls:
it copies the package's ``weights.pt`` and ``config.json`` and writes an ``MLmodel`` whose ``python_function``
flavour is loaded by ``gwpe.serving`` (by name; nothing pickled), with a signature (one row per event in:
``event``, ``strain`` (channels, samples), ``n_samples``, ``seed``; posterior samples per event out) and an
input example MLflow validates by serving it once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOADER_MODULE = "gwpe.serving"


def input_shape(meta: dict) -> tuple[int, int]:
    """(channels, samples) of one event: the flow's data spec, or the WaveNet's (2, L) h22 time grid."""
    if meta["model"] == "wavenet":
        time = meta["h22"]["time"]
        return 2, int(round((time["t_end"] - time["t_start"]) / time["dt"])) + 1
    from gwpe.data.strain_store import spec_shape

    return spec_shape(meta["data_spec"])


WAVENET_OUTPUTS = ("q", "s1z", "s2z", "sigma_eff", "S_eff", "eta")


def signature(meta: dict):
    """The MLflow signature: one row per event in, posterior samples (or the WaveNet's estimate) out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "event", required=False),
            ColSpec(Array(Array("double")), "strain"),
            ColSpec("long", "n_samples", required=False),
            ColSpec("long", "seed", required=False),
        ]
    )
    names = WAVENET_OUTPUTS if meta["model"] == "wavenet" else meta["standardisation"]["parameters"]
    return ModelSignature(inputs, Schema([ColSpec("string", "event"), *(ColSpec("double", n) for n in names)]))


def input_example(meta: dict):
    """Two events of unit-variance noise (whitened-strain-like), 10 samples each: a serving example that runs."""
    import pandas as pd

    rng = np.random.default_rng(0)
    shape = input_shape(meta)
    scale = 1.0 if meta["model"] != "wavenet" else 0.1
    return pd.DataFrame(
        [
            {
                "event": name,
                "strain": (scale * rng.standard_normal(shape)).round(4).tolist(),
                "n_samples": 10,
                "seed": 0,
            }
            for name in ("example-a", "example-b")
        ]
    )


def save_model(path: str | Path, package: str | Path, mlflow_model=None, **kwargs) -> Path:
    """The flavour's writer (``mlflow.models.Model.log(flavor=gwpe.serving, package=FOLDER)``): the package's
    weights.pt and config.json at ``path``, and an MLmodel with the pyfunc flavour, signature and example."""
    import platform
    import shutil

    from mlflow.models import Model
    from mlflow.models.utils import _save_example
    from mlflow.pyfunc import add_to_model

    from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE, read_package_config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = read_package_config(package)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        shutil.copy2(Path(package) / name, path / name)
    model = mlflow_model or Model()
    add_to_model(model, loader_module=LOADER_MODULE, data=".", python_version=platform.python_version())
    model.signature = signature(meta)
    _save_example(model, input_example(meta), str(path))
    model.save(str(path / "MLmodel"))
    return path
