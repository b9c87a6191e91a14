"""MLflow pyfunc flavour over gwpe's pickle-free packages, for ``mlflow models serve``.

Every package folder also holds an ``MLmodel`` file whose ``python_function`` flavour names this module as
its ``loader_module`` (MLflow's custom-flavour mechanism): MLflow imports gwpe and calls ``_load_pyfunc``;
no pickled or copied code is involved, the weights load with ``weights_only=True``, and it works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``. Registered versions are MLflow logged models (``gwpe.inference.flavor``
is the flavour's writer, used by ``mlflow.models.Model.log``) with a signature and an input example.
Serve a registered model with the installed gwpe (``gwpe models serve`` runs exactly this, with the
environment's own tools on PATH):

    mlflow models serve -m models:/gwpe-npe-maf@champion --env-manager local -h 127.0.0.1 -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_records": [{"event": "a", "strain": [[...1024 whitened samples...]], "n_samples": 1000},
                                    {"event": "b", "strain": [[...]]}]}'

Input, one row per event (``dataframe_records`` / ``dataframe_split``): ``strain`` (channels, samples) whitened
as the model's data spec says (``gwpe infer --whiten`` handles raw strain), optional ``event`` (an id; default
the row number), ``n_samples`` (flows, default 1000) and ``seed``. Called in Python on the loaded
``PackagePredictor`` (no MLflow schema check), a dict ``{"strain": ...}`` of one event (channels, samples) or
a batch (events, channels, samples) works too. Output: a table of posterior
samples in physical units, one column per parameter and an ``event`` column (flows), or one row per event of
q, s1z, s2z, sigma_eff, S_eff, eta (WaveNet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_SAMPLES = 1000


class PackagePredictor:
    """What ``mlflow.pyfunc.load_model`` returns for a gwpe package."""

    def __init__(self, folder: str | Path):
        from gwpe.models.loading import load_package
        from gwpe.models.package import read_package_config

        self.meta = read_package_config(folder)
        self.module = load_package(folder)

    def predict(self, model_input, params: dict | None = None):
        import pandas as pd

        from gwpe.inference.infer import sample_flow, wavenet_estimate

        frames = []
        for event, strain, n, seed in self.events(model_input, params or {}):
            if self.meta["model"] == "wavenet":
                frames.append(pd.DataFrame([{"event": event, **wavenet_estimate(self.module, strain)}]))
                continue
            samples = sample_flow(self.module, self.meta, strain, n, progress=False, seed=seed)
            frame = pd.DataFrame(samples, columns=list(self.meta["standardisation"]["parameters"]))
            frame.insert(0, "event", event)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def events(self, model_input, params: dict) -> list[tuple[str, np.ndarray, int, int | None]]:
        """(event id, strain, n_samples, seed) per event of a table (one row per event) or a tensor dict."""
        import pandas as pd

        default_n = params.get("n_samples", DEFAULT_SAMPLES)
        if isinstance(model_input, pd.DataFrame):
            if "strain" not in model_input.columns:
                from gwpe.errors import InputError

                raise InputError(
                    f"columns {list(model_input.columns)}; a 'strain' column is required (one row per event)"
                )
            rows = model_input.to_dict("records")
        else:
            values = dict(model_input) if isinstance(model_input, dict) else {"strain": model_input}
            strain = np.asarray(values.get("strain"), dtype=np.float64)
            batch = strain if strain.ndim == len(self.expected) + 1 else strain[None]
            scalar = {k: _first(values.get(k)) for k in ("n_samples", "seed")}
            rows = [{"strain": s, **scalar} for s in batch]
        out = []
        for index, row in enumerate(rows):
            strain = self.checked(row["strain"])
            event = row.get("event")
            n, seed = _first(row.get("n_samples")), _first(row.get("seed", params.get("seed")))
            out.append(
                (
                    str(index) if _missing(event) else str(event),
                    strain,
                    int(default_n if n is None else n),
                    None if seed is None else int(seed),
                )
            )
        return out

    @property
    def expected(self) -> tuple[int, int]:
        from gwpe.inference.flavor import input_shape

        return input_shape(self.meta)

    def checked(self, strain) -> np.ndarray:
        """One event's strain as (channels, samples), finite and of the model's shape (one-line error)."""
        from gwpe.errors import InputError

        strain = np.asarray(
            [np.asarray(channel, dtype=np.float64) for channel in strain]
            if isinstance(strain, (list, tuple, np.ndarray)) and len(strain) and not np.isscalar(strain[0])
            else strain,
            dtype=np.float64,
        )
        if strain.ndim == 1:
            strain = strain[None]
        if strain.shape != self.expected or not np.all(np.isfinite(strain)):
            what = "h22 (Re, Im)" if self.meta["model"] == "wavenet" else "whitened strain"
            raise InputError(
                f"strain of shape {strain.shape}; the model expects finite {what} of shape {self.expected}"
            )
        return strain


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _first(value):
    """A scalar from a scalar, a one-element list/array, or None/NaN (missing)."""
    if value is None:
        return None
    value = np.asarray(value).ravel()
    return None if value.size == 0 or _missing(value[0].item()) else value[0].item()


def _load_pyfunc(path: str) -> PackagePredictor:
    """MLflow's custom-flavour entry point."""
    return PackagePredictor(path)
