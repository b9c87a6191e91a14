"""MLflow tracking layer used by every gwpe stage.

- Tracking URI: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<project root>/mlflow.db`` (MLflow >= 3.13
  refuses ``./mlruns``). The project root is ``$DVC_ROOT`` under DVC, else the nearest folder above the
  working directory holding ``dvc.yaml`` or ``.git``, else the working directory.
- One run per stage invocation, opened by rank 0 only (under DDP/SLURM every other rank gets a no-op run).
- Each run logs the params of its stage (``stage_params``: the profile sections that define it and the effective
  architecture it trained), and tags the profile, stage, git commit (and whether the
  tree was dirty), gwpe version, the sha256 of the environment's lock file (``gwpe.env.lock_sha256``), DVC
  experiment name, and the DVC-compatible md5 of each input/output dataset (``data.<role>.<name>.md5``), so a
  run can be traced to the exact data version in ``dvc.lock``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import gwpe
from gwpe.redaction import redact_value
from gwpe.config import ProjectConfig, flatten
from gwpe.data.checksum import dvc_md5

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "LOCAL_RANK")
HOST_TAG, PID_TAG = "gwpe.host", "gwpe.pid"  # where a stage's run was last opened (RUNNING -> KILLED on restart)
LOCK_FILE = Path("requirements") / "lock.txt"  # the exact versions `make install` installs (`make lock` refreshes it)


def is_rank_zero() -> bool:
    """True unless an MPI/torchrun/SLURM rank variable says this process is not rank 0."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value) == 0
    return True


def project_root(start: str | Path | None = None) -> Path:
    """``$DVC_ROOT``, else the nearest folder at or above ``start`` (default: the working directory) holding
    ``dvc.yaml`` or ``.git``, else ``start`` itself."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / ".git").exists():
            return folder
    return here


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///<project root>/mlflow.db``, whose artifact locations are
    first rebased onto this root when the project was copied or moved (``gwpe.tracking.store``)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    from gwpe.tracking.store import rebase_once

    root = project_root()
    rebase_once(root / "mlflow.db", root)
    return f"sqlite:///{root / 'mlflow.db'}"


def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """(commit sha or 'unknown', dirty flag) of the project's git checkout."""
    root = root or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sha, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def environment_tags(source: str | Path | None = None) -> dict[str, str]:
    """``gwpe.env.lock_sha256`` and ``gwpe.env.lock_path``: the sha256 of the lock file of the checkout gwpe runs
    from, found from the package source (``source``, default ``gwpe.__file__``: ``<root>/src/gwpe/__init__.py``),
    not the working directory; both ``none`` where there is no lock (an installed wheel ships none)."""
    try:
        root = Path(source or gwpe.__file__).resolve().parents[2]
        digest = hashlib.sha256((root / LOCK_FILE).read_bytes()).hexdigest()
    except (OSError, IndexError):
        return {"gwpe.env.lock_sha256": "none", "gwpe.env.lock_path": "none"}
    return {"gwpe.env.lock_sha256": digest, "gwpe.env.lock_path": LOCK_FILE.as_posix()}


class NullRun:
    """Stands in for a run on ranks other than 0: every call is a no-op."""

    info = None

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log to the active MLflow run and, when a W&B run is open (``tracking.wandb``), mirror there."""
    import mlflow

    metrics = {k: float(v) for k, v in metrics.items()}
    mlflow.log_metrics(metrics, step=step)
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.log({**metrics, **({"epoch": step} if step is not None else {})})


@contextlib.contextmanager
def wandb_run(config: ProjectConfig, stage: str, run_name: str, mlflow_run_id: str | None) -> Iterator[None]:
    """A W&B run beside the MLflow run when ``tracking.wandb`` is offline/online (rank 0 only). Offline runs
    are written under ``<project root>/wandb`` and uploaded later with ``wandb sync wandb/offline-run-*``."""
    if config.tracking.wandb == "off":
        yield
        return
    try:
        import wandb
    except ImportError:
        from gwpe.errors import ConfigError

        raise ConfigError(
            f"tracking.wandb = {config.tracking.wandb!r} needs the wandb package (pip install wandb)"
        ) from None
    run = wandb.init(
        project=config.tracking.experiment,
        name=run_name,
        mode=config.tracking.wandb,
        dir=str(project_root()),
        config=flatten(config),
        tags=[stage, config.profile],
        job_type=stage,
        notes=f"MLflow run {mlflow_run_id}" if mlflow_run_id else None,
        reinit="finish_previous",
    )
    try:
        yield
        run.finish()
    except BaseException:
        run.finish(exit_code=1)
        raise


class StageRun:
    """Thin handle over the active MLflow run with gwpe's conventions."""

    def __init__(self, run):
        self.run = run
        self.info = run.info

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        log_metrics(metrics, step)

    def log_dataset(self, role: str, name: str, path: str | Path, digest: str | None = None) -> str:
        """Tag the DVC-compatible md5 of a dataset (``role`` is 'input' or 'output') and log it as an input."""
        import mlflow

        digest = digest or dvc_md5(path)
        mlflow.set_tags({f"data.{role}.{name}.md5": digest, f"data.{role}.{name}.path": str(path)})
        with contextlib.suppress(Exception):  # the dataset panel is a convenience; the tags are the record
            from mlflow.data.meta_dataset import MetaDataset
            from mlflow.data.sources import LocalArtifactDatasetSource

            dataset = MetaDataset(LocalArtifactDatasetSource(str(Path(path).resolve())), name=name, digest=digest[:32])
            mlflow.log_input(dataset, context=role)
        return digest

    def log_figure(self, figure, name: str) -> None:
        import mlflow

        mlflow.log_figure(figure, name)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)


# The profile sections that define what a stage computes: its run logs these (and ``profile``), so runs of one
# stage compare by the params that matter. A stage not listed logs the whole profile.
STAGE_SECTIONS = {
    "generate-h22": ("h22",),
    "generate-strain": ("strain",),
    "train-wavenet": ("h22", "wavenet"),
    "evaluate-wavenet": ("h22", "wavenet"),
    "train-flow": ("strain", "flows"),
    "evaluate-flow": ("strain", "flows"),
    "reference": ("strain", "flows"),
    "sample": ("strain", "flows", "sampling"),
    "evidence": ("strain", "flows", "sampling"),
    "sweep": ("strain", "distill"),
    "train-teacher": ("strain", "distill"),
    "train-student": ("strain", "distill"),
    "evaluate-distill": ("strain", "distill"),
}


def stage_params(config: ProjectConfig, stage: str, tags: dict | None = None, extra: dict | None = None) -> dict:
    """The params a stage's run logs: ``profile``, the stage's sections of the profile (``STAGE_SECTIONS``;
    other ``flows.models`` entries than the run's ``gwpe.flow`` tag left out), and ``extra`` flattened
    (e.g. ``{"model": effective architecture}`` -> ``model.depth``)."""
    flat = flatten(config)
    sections = STAGE_SECTIONS.get(stage)
    if sections is not None:
        flat = {k: v for k, v in flat.items() if k == "profile" or k.split(".", 1)[0] in sections}
    flow = (tags or {}).get("gwpe.flow")
    if flow is not None:
        flat = {
            k: v for k, v in flat.items() if not k.startswith("flows.models.") or k.startswith(f"flows.models.{flow}.")
        }
    flat.update(flatten(extra or {}))
    return {k: ("null" if v is None else redact_value(k, v)) for k, v in flat.items()}  # no secret in MLflow


def unique_run_name(experiment, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ... when the experiment already has a run of that name: reruns of a
    stage stay apart in the UI's run list and compare view."""
    from mlflow.tracking import MlflowClient

    if experiment is None:
        return base
    quoted = base.replace("'", "\\'")
    taken = {
        run.info.run_name
        for run in MlflowClient().search_runs(
            [experiment.experiment_id], filter_string=f"attributes.run_name LIKE '{quoted}%'", max_results=50_000
        )
    }
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)


@contextlib.contextmanager
def stage_run(
    config: ProjectConfig,
    stage: str,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    run_id: str | None = None,
    log_params: bool = True,
    params: dict | None = None,
    abandoned_run_id: str | None = None,
) -> Iterator[StageRun | NullRun]:
    """Open the stage's MLflow run (rank 0 only) with the stage's params (``stage_params``: its profile sections
    plus ``params``, e.g. the effective architecture) and provenance tags.

    ``run_id`` reopens an existing run (a resumed training, or the evaluation of a trained model, which
    reports into its training run); its params are then not logged again unless ``log_params``. A run that was
    deleted (or purged) meanwhile is not reopened: a new run is started, and one line says so.

    Runs of this stage left RUNNING by a process of this host that is gone (killed), and
    ``abandoned_run_id`` (the unfinished run of a checkpoint being started afresh) if still RUNNING, are first
    closed as KILLED (``close_killed_runs``).
    """
    if not is_rank_zero():
        yield NullRun()
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.set_experiment(config.tracking.experiment)
    if run_id is not None and not reopenable(run_id, stage):
        run_id, log_params = None, True
    close_killed_runs(experiment.experiment_id, stage, keep=run_id, abandoned=abandoned_run_id)
    commit, dirty = git_commit()
    all_tags = {
        "gwpe.stage": stage,
        "gwpe.profile": config.profile,
        "gwpe.version": gwpe.__version__,
        **environment_tags(),
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        "dvc.stage": os.environ.get("DVC_STAGE", ""),
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""),
        HOST_TAG: socket.gethostname(),  # with PID_TAG: a later start can tell that this process is gone
        PID_TAG: str(os.getpid()),
        **{k: str(redact_value(k, v)) for k, v in (tags or {}).items()},
    }
    all_tags = {k: v for k, v in all_tags.items() if v != ""}
    if run_id is not None:
        all_tags = {k: v for k, v in all_tags.items() if k != "gwpe.stage"}
        all_tags[f"gwpe.stage.{stage}"] = "true"
    name = (
        None
        if run_id
        else unique_run_name(mlflow.get_experiment_by_name(config.tracking.experiment), run_name or stage)
    )
    with mlflow.start_run(run_id=run_id, run_name=name, tags=all_tags) as run:
        if log_params:
            mlflow.log_params(stage_params(config, stage, tags, params))
        with wandb_run(config, stage, run.info.run_name or run_name or stage, run.info.run_id):
            yield StageRun(run)


def reopenable(run_id: str, stage: str) -> bool:
    """Whether run ``run_id`` exists and is not deleted; if not, says in one line that a new run is started."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        state = "no longer exists"
    else:
        if run.info.lifecycle_stage != "deleted":
            return True
        state = "was deleted"
    print(f"{stage}: MLflow run {run_id} {state}; logging to a new run (checkpoints are kept)", flush=True)
    return False


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


def close_killed_runs(experiment_id: str, stage: str, keep: str | None = None, abandoned: str | None = None) -> list:
    """Mark as KILLED the RUNNING runs of ``stage`` whose process (``gwpe.host``/``gwpe.pid`` tags) ran on this
    host and is gone, plus ``abandoned`` if RUNNING; ``keep`` (the run about to be reopened) is left alone.
    Returns the ids closed; each is reported in one line. Runs of other hosts are left as they are."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    host = socket.gethostname().replace("'", "\\'")
    running = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    )
    closed = []
    for run in running:
        tags = run.data.tags
        of_stage = tags.get("gwpe.stage") == stage or tags.get(f"gwpe.stage.{stage}") == "true"  # opened or reopened
        if run.info.run_id == keep or not of_stage:
            continue
        pid = tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and _process_gone(int(pid)):
            closed.append(run.info.run_id)
    if abandoned and abandoned != keep and abandoned not in closed:
        with contextlib.suppress(MlflowException):
            if client.get_run(abandoned).info.status == "RUNNING":
                closed.append(abandoned)
    for run_id in closed:
        client.set_terminated(run_id, "KILLED")
        print(f"{stage}: MLflow run {run_id} was left RUNNING by a killed process; marked KILLED", flush=True)
    return closed


def numeric_metrics(metrics: dict, prefix: str = "", exclude: tuple[str, ...] = ()) -> dict[str, float]:
    """The finite numeric leaves of nested ``metrics`` as dotted MLflow keys (``methods.emcee.seconds``);
    top-level keys in ``exclude`` are left out."""
    import math

    flat = flatten({k: v for k, v in metrics.items() if k not in exclude})
    return {
        f"{prefix}{key}": float(value)
        for key, value in flat.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def dataset_md5(path: str | Path) -> str:
    """The DVC md5 of a dataset: under a DVC stage, from ``dvc.lock`` when an upstream stage outputs ``path``
    (DVC has just verified it, so this is free and exactly the tracked version), else computed (reads
    every file: costly for TB stores)."""
    import yaml

    root = project_root()
    lock = root / "dvc.lock"
    target = Path(path).resolve()
    if lock.is_file() and (os.environ.get("DVC_ROOT") or os.environ.get("DVC_STAGE")):
        with contextlib.suppress(Exception):
            for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
                for out in stage.get("outs", []):
                    if (root / out["path"]).resolve() == target and out.get("md5"):
                        return out["md5"]
    return dvc_md5(path)


def ui_command(host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The ``mlflow ui`` command line for the project's tracking store, bound to loopback by default."""
    import sys

    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(),
        "--host",
        host,
        "--port",
        str(port),
    ]
