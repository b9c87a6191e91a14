"""Pickle-free model packages, the same for every gwpe model.

A package is a folder with ``weights.pt`` (the state dict: tensors only, read with
``torch.load(weights_only=True)``, so no pickled code runs) and ``config.json`` (the model kind, what rebuilds
the module, and provenance such as the MLflow run and data checksums).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"


class PackagedModel:
    """Mixin for modules with ``model_kind`` and ``metadata()``: ``save_model`` and ``read_package``."""

    model_kind: str = ""

    def metadata(self) -> dict:  # pragma: no cover - each model defines it
        raise NotImplementedError

    def save_model(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``weights.pt`` (tensors only) and ``config.json`` (``metadata()`` + ``extra``) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps({**self.metadata(), **(extra or {})}, indent=2) + "\n")
        return folder

    @classmethod
    def read_package(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
        """(config.json contents, state dict) of a package of this model kind; no pickled code is executed."""
        folder = Path(folder)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("model") != cls.model_kind:
            raise ValueError(f"{folder / CONFIG_FILE}: model = {meta.get('model')!r}; expected {cls.model_kind!r}")
        return meta, torch.load(folder / WEIGHTS_FILE, weights_only=True, map_location=map_location)
