"""Optuna storage from one config string (``distill.sweep.storage``). Domain-free.

- ``sqlite:///FILE``: SQLite; a relative FILE is taken from the project root (beside ``mlflow.db``). Fine for a
  few local worker processes (Optuna advises an RDB server for more);
- any other SQLAlchemy URL (``postgresql://user@host/db``, ``mysql+pymysql://...``): an RDB server that workers
  on several machines share;
- ``journal:FILE``: Optuna's append-only journal file (fast, lock-file based; on a shared file system workers on
  several machines can use it too).
RDB storages run trial heartbeats: a trial whose worker died is failed after ``grace_period`` seconds and
re-queued once with the same parameters (``RetryHeartbeatStaleTrialCallback``). Journal storages have no heartbeat;
``gwpe sweep`` instead fails and re-queues RUNNING trials whose process on this host is gone (``fail_orphans``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gwpe.errors import ConfigError
from gwpe.redaction import redact

HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
WORKER_ATTR = "worker"
# A live worker tags its trial right after asking for it (two storage writes apart). A RUNNING trial still
# untagged this long after it started was asked for by a process killed in between; 30 s also covers a worker
# waiting for SQLite's write lock.
UNTAGGED_SECONDS = 30


def resolve_storage_url(url: str, root: str | Path) -> str:
    """``url`` with a relative sqlite/journal path made absolute against ``root``."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :])
            if not str(path):
                raise ConfigError(f"distill.sweep.storage = {redact(url)!r}: no file name after {prefix!r}")
            return prefix + str(path if path.is_absolute() else Path(root) / path)
    if "://" not in url:
        raise ConfigError(
            f"distill.sweep.storage = {redact(url)!r}; allowed: sqlite:///FILE, an RDB URL "
            "(postgresql://..., mysql://...) or journal:FILE"
        )
    return url


def build_storage(url: str, root: str | Path):
    """An Optuna storage object for ``url`` (see the module docstring)."""
    import warnings

    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    url = resolve_storage_url(url, root)
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # concurrent local workers wait for the write lock
    import time

    from sqlalchemy.exc import DBAPIError

    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=HEARTBEAT_SECONDS,
                        grace_period=GRACE_SECONDS,
                        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                    )
            except DBAPIError:  # workers that start together race to create the schema in a new database
                if attempt == 4:
                    raise
                time.sleep(0.5 + attempt)
    except (ImportError, ModuleNotFoundError) as error:
        raise ConfigError(f"distill.sweep.storage = {redact(url)!r}: database driver missing ({error})") from None
    except (optuna.exceptions.StorageInternalError, DBAPIError) as error:
        first = str(error).strip().splitlines()[0][:200]
        raise ConfigError(f"distill.sweep.storage = {redact(url)!r}: cannot use the database ({first})") from None


def _orphaned(trial, host: str) -> bool:
    import datetime

    worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
    if not worker:
        started = trial.datetime_start
        return started is not None and (datetime.datetime.now() - started).total_seconds() > UNTAGGED_SECONDS
    name, _, pid = worker.rpartition(":")
    return name == host and pid.isdigit() and not _alive(int(pid))


def worker_tag() -> str:
    """``host:pid`` of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphans(study, storage) -> list[int]:
    """Fail RUNNING trials whose worker process on this host no longer exists, or that no worker tagged within
    ``UNTAGGED_SECONDS`` of their start, and re-queue their parameters (a killed sweep then resumes with them).
    Trials of live processes or other hosts are left alone. Returns the numbers of the trials failed."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _orphaned(trial, host):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            # re-queue once (a trial that kills its worker twice is dropped); one killed before it drew its
            # parameters has nothing to retry: a fresh trial takes its place
            if trial.params and "retry_of" not in trial.user_attrs:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            failed.append(trial.number)
    return failed
