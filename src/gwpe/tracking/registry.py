"""Model registry: pickle-free model versions and the ``champion`` alias.

A version's source is a run artifact folder holding ``weights.pt`` (tensors only) and ``config.json``;
nothing is pickled, and loading uses ``torch.load(weights_only=True)``. Each version is tagged with its
score; the alias ``champion`` moves to a new version only when its score beats the current champion's
(for WaveNet: median test overlap, higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHAMPION = "champion"


@dataclass
class Registration:
    name: str
    version: int
    score: float
    champion: bool
    previous_champion: int | None
    previous_score: float | None


def register_version(name: str, run_id: str, artifact_path: str, score_name: str, score: float,
                     higher_is_better: bool = True) -> Registration:
    """Register ``runs:/<run_id>/<artifact_path>`` (once per run) and move ``champion`` if it is better."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="gwpe model; pickle-free: weights.pt (weights_only) + config.json")
    existing = [v for v in client.search_model_versions(f"name = '{name}'") if v.run_id == run_id and v.source.endswith(artifact_path)]
    if existing:  # re-evaluating the same training run updates its version instead of adding one
        version = int(existing[0].version)
    else:
        source = f"{mlflow.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        version = int(client.create_model_version(name, source=source, run_id=run_id).version)
    client.set_model_version_tag(name, str(version), score_name, repr(float(score)))

    previous, previous_score = None, None
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        previous = int(champion.version)
        previous_score = float(champion.tags.get(score_name, "nan"))
    except MlflowException:
        pass
    if previous == version:
        better = True  # the champion itself was re-evaluated
    elif previous is None or previous_score != previous_score:  # no champion, or one without a score
        better = True
    else:
        better = score > previous_score if higher_is_better else score < previous_score
    if better:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    return Registration(name, version, float(score), better, previous, previous_score)


def download_model(uri: str, destination: str | Path | None = None) -> Path:
    """Download ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (or any artifact URI) to a folder."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=None if destination is None else str(destination)))


def load_wavenet(uri: str = f"models:/gwpe-wavenet@{CHAMPION}"):
    """A registered WaveNet, ready for ``predict``; e.g. ``load_wavenet("models:/gwpe-wavenet@champion")``."""
    from gwpe.models.wavenet_module import WaveNetModule

    return WaveNetModule.load_model(download_model(uri))
