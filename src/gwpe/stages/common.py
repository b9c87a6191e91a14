"""What every stage does alike: write the DVC metrics file, save and log figures, the registry entry. Imports
nothing heavy (the training stages' shared fit is ``gwpe.stages.fitting``), so the stages that only load packages
never import Lightning."""

from __future__ import annotations

from pathlib import Path


def write_metrics(path: str | Path | None, metrics: dict) -> None:
    """The stage's DVC metrics JSON, numbers only, and its ``.info.json`` sidecar of identifiers (md5s,
    names, paths, per-parameter lists; see :mod:`gwpe.tracking.metrics_files`). Nothing when ``path`` is None."""
    from gwpe.tracking.metrics_files import write_metrics_files

    if path:
        write_metrics_files(path, metrics)


def save_and_log(run, figure, path: str | Path, artifact: str, dpi: int = 110) -> None:
    """Save ``figure`` to ``path`` (the DVC plots folder), log it to ``run`` as ``artifact`` and close it."""
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=dpi)
    run.log_figure(figure, artifact)
    plt.close(figure)


def registry_entry(registration) -> dict:
    """The ``registry`` block of a stage's metrics for one ``register_version`` result."""
    return {"name": registration.name, "version": registration.version, "champion": registration.champion}
