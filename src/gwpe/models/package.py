"""Pickle-free model packages, the same for every gwpe model.

A package is a folder with ``weights.pt`` (the state dict: tensors only, read with
``torch.load(weights_only=True)``, so no pickled code runs) and ``config.json`` (the model kind, what rebuilds
the module, the gwpe version, the data spec and standardisation, provenance such as the MLflow run and data
checksums), plus an ``MLmodel`` file that makes the folder an MLflow pyfunc model (``gwpe.serving``).

This module knows the file format only; ``gwpe.models.loading`` rebuilds the module a package holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gwpe.errors import PackageError

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
PACKAGE_FORMAT = 1
KINDS = ("flow", "wavenet")
SERVING_MODULE = "gwpe.serving"  # the pyfunc loader named in MLmodel (by name: MLflow imports it when serving)


class PackagedModel:
    """Mixin for modules with ``model_kind`` and ``metadata()``: ``save_model`` and ``read_package``."""

    model_kind: str = ""

    def metadata(self) -> dict:  # pragma: no cover - each model defines it
        raise NotImplementedError

    def save_model(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``weights.pt`` (tensors only) and ``config.json`` (``metadata()`` + ``extra``) into ``folder``."""
        folder = Path(folder)
        refuse_non_finite(self.state_dict(), folder)  # before anything is created: a NaN model is never written
        folder.mkdir(parents=True, exist_ok=True)
        import io

        import gwpe
        from gwpe.models.atomic import replaced_together

        meta = {**self.metadata(), "package_format": PACKAGE_FORMAT, "gwpe_version": gwpe.__version__, **(extra or {})}
        # all three written to temporary names, then renamed: a failed write (full disk) keeps the previous package
        names = (WEIGHTS_FILE, CONFIG_FILE, "MLmodel")
        with replaced_together(*(folder / name for name in names)) as (weights, config, mlmodel):
            buffer = io.BytesIO()  # torch.save to a path makes a full disk a RuntimeError; a file write an OSError
            torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, buffer)
            weights.write_bytes(buffer.getbuffer())
            config.write_text(json.dumps(meta, indent=2) + "\n")
            write_mlmodel(folder, mlmodel)  # MLflow pyfunc flavour over the same files (``mlflow models serve``)
        return folder

    @classmethod
    def read_package(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
        """(config.json contents, state dict) of a package of this model kind; no pickled code is executed."""
        folder = Path(folder)
        meta = read_package_config(folder)
        if meta.get("model") != cls.model_kind:
            raise PackageError(f"{folder / CONFIG_FILE}: model = {meta.get('model')!r}; expected {cls.model_kind!r}")
        return meta, read_weights(folder, map_location)


def non_finite_tensors(state: dict) -> tuple[list[str], int, int]:
    """(names of the floating-point tensors holding NaN/inf, how many such values, how many values checked)."""
    names, bad, total = [], 0, 0
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex()):
            total += tensor.numel()
            count = int((~torch.isfinite(tensor.detach())).sum())
            if count:
                names.append(name)
                bad += count
    return names, bad, total


def describe_non_finite(names: list[str], bad: int, total: int) -> str:
    """``"3 of 1,000 weights are NaN/inf (a, b)"``."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{bad:,} of {total:,} weights are NaN/inf ({shown})"


def refuse_non_finite(state: dict, folder: str | Path) -> None:
    """``PackageError`` (one line) when a floating-point tensor of ``state`` holds NaN or inf: a diverged model is
    never saved as a package, whichever code path tries (``gwpe.training.guards`` stops the fit itself earlier)."""
    names, bad, total = non_finite_tensors(state)
    if names:
        raise PackageError(
            f"refusing to save model package {folder}: {describe_non_finite(names, bad, total)}; nothing was written"
        )


def read_package_config(folder: str | Path) -> dict:
    """config.json of a package, checked: both files present, valid JSON, a known model kind."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PackageError(f"model package {folder} does not exist")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise PackageError(f"model package {folder} has no {name} (a package is {WEIGHTS_FILE} + {CONFIG_FILE})")
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PackageError(f"{folder / CONFIG_FILE} is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("model") not in KINDS:
        kind = meta.get("model") if isinstance(meta, dict) else None
        raise PackageError(f"{folder / CONFIG_FILE}: model = {kind!r}; allowed: {', '.join(KINDS)}")
    return meta


def read_weights(folder: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The state dict, with ``weights_only=True``: a file holding anything but tensors is refused, not run."""
    import warnings

    path = Path(folder) / WEIGHTS_FILE
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol before refusing a foreign file
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, weights_only=True, map_location=map_location)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise PackageError(
            f"{path} is not a tensors-only state dict (torch.load(weights_only=True) refused it: "
            f"{type(error).__name__}); nothing in it was executed"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PackageError(f"{path} is not a state dict of tensors")
    return state


def write_mlmodel(folder: str | Path, path: str | Path | None = None) -> Path:
    """Add ``MLmodel`` (python_function flavour, loader ``gwpe.serving``) to a package folder (written to
    ``path`` when given, e.g. a temporary name)."""
    import platform

    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    model = Model()
    add_to_model(model, loader_module=SERVING_MODULE, data=".", python_version=platform.python_version())
    path = Path(path) if path is not None else Path(folder) / "MLmodel"
    model.save(str(path))
    return path
