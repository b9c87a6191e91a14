"""MLflow pyfunc flavour over gwpe's pickle-free packages, for ``mlflow models serve``.

Every package folder also holds an ``MLmodel`` file whose ``python_function`` flavour names this module as
its ``loader_module`` (MLflow's custom-flavour mechanism): MLflow imports gwpe and calls ``_load_pyfunc``;
no pickled or copied code is involved, the weights load with ``weights_only=True``, and it works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``. Serve a registered model with the installed gwpe:

    mlflow models serve -m models:/gwpe-npe-maf@champion --env-manager local -h 127.0.0.1 -p 5001
    curl -s 127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"inputs": {"strain": [[...1024 whitened samples...]], "n_samples": [1000]}}'

Input: ``strain`` (channels, samples) whitened as the model's data spec says (``gwpe infer --whiten`` handles
raw strain), optional ``n_samples`` (flows, default 1000) and ``seed``. Output: a table of posterior samples in
physical units, one column per parameter (flows), or one row of q, s1z, s2z, sigma_eff, S_eff, eta (WaveNet).
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

        from gwpe.data.strain_store import spec_shape
        from gwpe.errors import InputError
        from gwpe.inference.infer import sample_flow, wavenet_estimate

        values = dict(model_input) if isinstance(model_input, dict) else {"strain": model_input}
        if isinstance(model_input, pd.DataFrame):
            values = {"strain": model_input.to_numpy()}
        strain = np.asarray(values.get("strain"), dtype=np.float64)
        n = int(np.asarray(values.get("n_samples", (params or {}).get("n_samples", DEFAULT_SAMPLES))).ravel()[0])
        seed = values.get("seed", (params or {}).get("seed"))
        seed = None if seed is None else int(np.asarray(seed).ravel()[0])
        if strain.ndim == 1:
            strain = strain[None]
        if self.meta["model"] == "wavenet":
            return pd.DataFrame([wavenet_estimate(self.module, strain)])
        spec = self.meta["data_spec"]
        expected = spec_shape(spec)
        if strain.shape != expected or not np.all(np.isfinite(strain)):
            raise InputError(
                f"strain of shape {strain.shape}; the model expects finite whitened strain of shape {expected}"
            )
        samples = sample_flow(self.module, self.meta, strain, n, progress=False, seed=seed)
        return pd.DataFrame(samples, columns=list(self.meta["standardisation"]["parameters"]))


def _load_pyfunc(path: str) -> PackagePredictor:
    """MLflow's custom-flavour entry point."""
    return PackagePredictor(path)
