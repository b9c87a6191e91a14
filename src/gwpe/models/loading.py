"""Rebuild the module a package folder holds (``gwpe.models.package`` is the file format; this picks the class).

Kept apart from ``package`` so that the modules, which save themselves through ``PackagedModel``, and the
loader, which needs every module class, import in one direction only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gwpe.errors import PackageError
from gwpe.models.flow_posterior import FlowPosterior
from gwpe.models.package import read_package_config
from gwpe.models.wavenet_predictor import WaveNetPredictor

MODULE_CLASSES = {"flow": FlowPosterior, "wavenet": WaveNetPredictor}  # Lightning-free: inference never imports it


def load_package(folder: str | Path, map_location: str | torch.device = "cpu"):
    """The module packaged in ``folder`` (a ``FlowPosterior`` or ``WaveNetPredictor``), in eval mode."""
    meta = read_package_config(folder)
    cls = MODULE_CLASSES[meta["model"]]
    try:
        return cls.load_model(folder, map_location)
    except PackageError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PackageError(f"model package {folder} does not rebuild ({type(error).__name__}: {first[:160]})") from None
