"""Model registry: pickle-free model versions and the ``champion`` alias.

A version's source is a run artifact folder holding ``weights.pt`` (tensors only) and ``config.json``;
nothing is pickled, and loading uses ``torch.load(weights_only=True)``. Each version is tagged with its
score; the alias ``champion`` moves to a new version only when its score beats the current champion's
(for WaveNet: median test overlap, higher is better).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CHAMPION = "champion"
PACKAGE_TAG = "gwpe.package"  # the run artifact folder a version was made from


@dataclass
class Registration:
    """A registered version and its score, whether it is now ``champion``, and the previous champion's
    version and score."""

    name: str
    version: int
    score: float
    champion: bool
    previous_champion: int | None
    previous_score: float | None


def register_version(
    name: str,
    run_id: str,
    artifact_path: str,
    score_name: str,
    score: float,
    higher_is_better: bool = True,
    flavor=None,
) -> Registration:
    """Register the package at ``runs:/<run_id>/<artifact_path>`` (once per run) and move ``champion`` if it is
    better. With ``flavor`` (a module with ``save_model(path, package, mlflow_model)``, e.g. ``gwpe.serving``)
    the version is an MLflow logged model of the run (the UI's Models column, a signature and an input
    example); without it, the raw artifact folder."""
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="gwpe model; pickle-free: weights.pt (weights_only) + config.json"
        )
    existing = [
        v
        for v in client.search_model_versions(f"name = '{name}'")
        if v.run_id == run_id and (v.tags.get(PACKAGE_TAG) == artifact_path or v.source.endswith(artifact_path))
    ]
    if existing:  # re-evaluating the same training run updates its version instead of adding one
        version = int(existing[0].version)
    elif flavor is not None:
        from mlflow.models import Model

        with tempfile.TemporaryDirectory(prefix="gwpe-register-") as scratch:
            package = download_model(f"runs:/{run_id}/{artifact_path}", scratch)
            info = Model.log(None, flavor, name=name, package=package, run_id=run_id)
        created = client.create_model_version(name, source=info.model_uri, run_id=run_id, model_id=info.model_id)
        version = int(created.version)
    else:
        source = f"{mlflow.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        version = int(client.create_model_version(name, source=source, run_id=run_id).version)
    client.set_model_version_tag(name, str(version), PACKAGE_TAG, artifact_path)
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
    import os

    import mlflow

    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # two small files: the bar would only clutter stderr
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=None if destination is None else str(destination)
            )
        )
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before


def load_wavenet(uri: str = f"models:/gwpe-wavenet@{CHAMPION}"):
    """A registered WaveNet, ready for ``predict``; e.g. ``load_wavenet("models:/gwpe-wavenet@champion")``."""
    from gwpe.models.wavenet_predictor import WaveNetPredictor

    return WaveNetPredictor.load_model(download_model(uri))


def check_server(uri: str | None = None, timeout: float = 5.0) -> str:
    """The tracking URI, after a health check when it is an HTTP server (one-line error if unreachable)."""
    import urllib.error
    import urllib.request

    from gwpe.errors import RegistryError
    from gwpe.tracking import tracking_uri

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # reading the registry must not create an empty store (MLflow would, silently, in the working directory)
        raise RegistryError(
            f"no MLflow store at {uri}: run gwpe inside a gwpe project (its mlflow.db) or set MLFLOW_TRACKING_URI "
            "to one (sqlite:////abs/path/mlflow.db or http://host:port)"
        )
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryError(
                f"tracking server {uri} unreachable ({reason}); start it or set MLFLOW_TRACKING_URI"
            ) from None
    return uri


def parse_model_reference(reference: str) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS`` -> (name, alias, None); ``NAME/VERSION`` -> (name, None, version); also ``models:/...``."""
    from gwpe.errors import RegistryError

    ref = reference.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise RegistryError(
        f"model = {reference!r}; allowed: NAME@ALIAS (e.g. gwpe-npe-maf@champion), NAME/VERSION, or a package folder"
    )


def model_version(reference: str):
    """The registry's ModelVersion for ``NAME@ALIAS`` or ``NAME/VERSION`` (one-line errors for unknown ones)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from gwpe.errors import RegistryError

    name, alias, version = parse_model_reference(reference)
    client = MlflowClient(check_server())
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        known = sorted(m.name for m in client.search_registered_models())
        raise RegistryError(
            f"no registered model {name!r} in {client.tracking_uri}; registered: {', '.join(known) or 'none'}"
        ) from None
    if alias is not None:
        if alias not in registered.aliases:
            allowed = ", ".join(f"{a} (v{v})" for a, v in sorted(registered.aliases.items())) or "none set"
            raise RegistryError(f"model {name!r} has no alias {alias!r}; aliases: {allowed}")
        return client.get_model_version_by_alias(name, alias)
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise RegistryError(
            f"model {name!r} has no version {version}; versions: {', '.join(map(str, versions)) or 'none'}"
        ) from None


def list_models() -> list[dict]:
    """Every registered model: versions, aliases and each version's score tag (the metric the alias follows)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(check_server())
    rows = []
    for registered in sorted(client.search_registered_models(), key=lambda m: m.name):
        aliases_by_version: dict[str, list[str]] = {}
        for alias, version in registered.aliases.items():
            aliases_by_version.setdefault(str(version), []).append(alias)
        for version in sorted(
            client.search_model_versions(f"name = '{registered.name}'"), key=lambda v: int(v.version)
        ):
            score = {k: v for k, v in version.tags.items() if k in SCORE_TAGS}
            rows.append(
                {
                    "name": registered.name,
                    "version": int(version.version),
                    "aliases": sorted(aliases_by_version.get(str(version.version), [])),
                    "metric": next(iter(score), ""),
                    "value": float(next(iter(score.values()), "nan")),
                    "run_id": version.run_id,
                }
            )
    return rows


SCORE_TAGS = ("median_test_overlap", "val_nll")


def promote(name: str, version: int, alias: str) -> dict:
    """Point ``alias`` at ``name`` version ``version`` (checked to exist); returns the previous holder."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from gwpe.errors import RegistryError

    model_version(f"{name}/{version}")  # existence, with one-line errors
    if not alias or not alias.replace("-", "").replace("_", "").isalnum() or alias.isdigit():
        raise RegistryError(f"alias = {alias!r}; allowed: letters, digits, '-' and '_', not only digits")
    client = MlflowClient(check_server())
    previous = None
    try:
        previous = int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        pass
    client.set_registered_model_alias(name, alias, str(version))
    return {"name": name, "alias": alias, "version": int(version), "previous": previous}


def pull(reference: str, destination: str | Path, overwrite: bool = False) -> Path:
    """Download a registered package into ``destination`` and check it loads (pickle-free).

    A non-empty ``destination`` is refused unless ``overwrite`` (the user's files there are never replaced
    silently); the package is downloaded and checked in a temporary sibling folder first, then its files are
    moved in, so a failed download leaves ``destination`` as it was. With ``overwrite`` only same-named files
    are replaced."""
    import shutil
    import tempfile

    from gwpe.errors import RegistryError
    from gwpe.models.loading import load_package

    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise RegistryError(f"--out {destination} is a file; allowed: a folder (new or empty, or --overwrite)")
    if destination.is_dir() and any(destination.iterdir()) and not overwrite:
        held = ", ".join(sorted(p.name for p in destination.iterdir())[:4])
        raise RegistryError(
            f"--out {destination} is not empty ({held}); allowed: a new or empty folder, or --overwrite to replace "
            "the package's files there"
        )
    version = model_version(reference)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gwpe-pull-", dir=destination.parent))
    try:
        folder = download_model(f"models:/{version.name}/{version.version}", staging)
        load_package(folder)
        destination.mkdir(exist_ok=True)
        for item in folder.iterdir():
            target = destination / item.name
            if target.is_dir() and item.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def resolve_package(model: str, cache: str | Path | None = None) -> tuple[Path, dict]:
    """A package folder for ``model`` (a folder, ``NAME@ALIAS`` or ``NAME/VERSION``) and where it came from.

    A registry download with no ``cache`` goes to a new temporary folder, named in the returned
    ``"temporary"`` entry: the caller removes it once the model is loaded."""
    import tempfile

    path = Path(model)
    if path.is_dir():
        from gwpe.models.package import read_package_config

        meta = read_package_config(path)
        source = {"source": str(path.resolve())}
        registered = path / "registered_model_meta"  # MLflow writes it into a pulled model: name and version
        if registered.is_file():
            import yaml

            with contextlib.suppress(Exception):
                info = yaml.safe_load(registered.read_text())
                source.update(name=str(info["model_name"]), version=int(info["model_version"]))
        if meta.get("mlflow_run_id"):
            source["run_id"] = meta["mlflow_run_id"]
        return path, source
    version = model_version(model)  # a reference; unknown forms get the allowed ones in one line
    target = Path(cache or tempfile.mkdtemp(prefix="gwpe-model-"))
    folder = download_model(f"models:/{version.name}/{version.version}", target)
    return folder, {
        "source": f"models:/{version.name}/{version.version}",
        "name": version.name,
        "version": int(version.version),
        "run_id": version.run_id,
        **({} if cache else {"temporary": str(target)}),
    }
