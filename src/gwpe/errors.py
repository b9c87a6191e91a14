"""User-facing errors: each one prints as a single line and exits non-zero from the CLI."""


class GwpeError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code = 2


class ConfigError(GwpeError):
    """A configuration value is unknown, of the wrong type or out of range."""


class WaveformError(GwpeError):
    """A waveform backend produced invalid data (NaN/inf, bad time grid) for some parameters."""

    exit_code = 3


class SurrogateNotFoundError(GwpeError):
    """The NRHybSur3dq8 data file is not on disk (gwpe never downloads it)."""


class PackageError(GwpeError):
    """A model package (weights.pt + config.json) is missing, corrupt or of an unknown kind."""


class InputError(GwpeError):
    """An input file for inference is unreadable or does not match what the model expects."""


class CorruptStoreError(GwpeError):
    """A zarr data store has a missing chunk, a checksum mismatch or a damaged shard index (named in the message).

    Raised inside a DataLoader worker, torch re-raises it in the parent as ``CorruptStoreError(<traceback text>)``;
    the message is cut back to the original one line here."""

    exit_code = 5

    def __init__(self, message: str = ""):
        text = str(message)
        if "\nOriginal Traceback" in text:  # torch's ExceptionWrapper.reraise: keep the original message only
            last = text.rstrip().splitlines()[-1]
            text = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(text)


class RegistryError(GwpeError):
    """The tracking server is unreachable, or a registered model, version or alias does not exist."""


class LockedError(GwpeError):
    """An output folder is being written by another gwpe process (its ``.gwpe.lock`` is held)."""


class TrainingDivergedError(GwpeError):
    """A training loss or the model's weights became NaN or infinite; the fit stops and no package is saved."""

    exit_code = 3


class StoreError(GwpeError):
    """The tracking store (``mlflow.db``) is locked, truncated or not a database."""


class DiskError(GwpeError):
    """Writing an output failed in the filesystem: no space left, quota exceeded, read-only or no permission."""

    exit_code = 4


_DB_DRIVERS = {"psycopg": "psycopg", "psycopg2": "psycopg2-binary", "pymysql": "pymysql", "MySQLdb": "mysqlclient"}
_STORE_MESSAGES = {
    "database is locked": "is locked by another process; wait for it to finish (or stop it) and rerun",
    "file is not a database": "is not an SQLite database (corrupt or overwritten); restore it from a copy",
    "database disk image is malformed": "is damaged (malformed); restore it from a copy",
    "unable to open database file": "cannot be opened (missing folder or no permission)",
    "database or disk is full": "cannot grow: the disk is full; free space and rerun (finished work is kept)",
    "disk I/O error": "could not be written (disk I/O error: a full disk or a file-size limit); free space and rerun",
}


def _default_store() -> str:
    """The store gwpe would use, for the message only: ``MLFLOW_TRACKING_URI``, else the ``mlflow.db`` beside the
    nearest ``dvc.yaml`` above the working directory (``gwpe.tracking.tracking_uri``'s rule, which this lowest
    layer cannot import)."""
    import os
    from pathlib import Path

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    here = Path.cwd()
    root = next((p for p in (here, *here.parents) if (p / "dvc.yaml").is_file()), here)
    return f"sqlite:///{root / 'mlflow.db'}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def as_user_error(exc: BaseException, store: str | None = None) -> GwpeError | None:
    """The one-line error for a failure the user's environment caused (a full or read-only disk, a locked or
    damaged ``mlflow.db``, named by ``store``), found anywhere in ``exc``'s chain; None for anything else (a bug
    keeps its traceback).

    Checked by text and errno, not by class, so this module imports neither SQLAlchemy nor MLflow."""
    import errno

    for link in _chain(exc):
        if isinstance(link, GwpeError):
            return link
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            where = f" writing {link.filename}" if link.filename else ""
            return DiskError(
                f"{link.strerror or 'no space left on device'}{where}; free space or point the output elsewhere "
                "and rerun (finished work is kept)"
            )
        if isinstance(link, OSError) and link.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and link.filename:
            return DiskError(f"cannot write {link.filename}: {link.strerror}")
        if isinstance(link, ModuleNotFoundError) and link.name in _DB_DRIVERS:
            return StoreError(
                f"tracking store {store or _default_store()}: its database driver {link.name} is not installed "
                f"(pip install {_DB_DRIVERS[link.name]})"
            )
        text = str(link)
        if type(link).__module__.startswith(("sqlalchemy", "psycopg", "pymysql")) and any(
            needle in text for needle in ("Connection refused", "could not connect", "connection failed", "timeout")
        ):
            return StoreError(
                f"tracking store {store or _default_store()} unreachable (connection refused or timed out)"
            )
        for needle, advice in _STORE_MESSAGES.items():
            if needle in text:  # SQLite's own messages
                return StoreError(f"tracking store {store or _default_store()} {advice} ({needle})")
    return None
