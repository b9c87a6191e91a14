"""A project's MLflow store follows the project when it is copied or moved.

MLflow's SQL stores record absolute artifact locations (``<root>/mlruns/<experiment id>``, and every run's,
logged model's and model version's location below it). A copied project would go on writing its artifacts
into the original's ``mlruns/``, and a moved one would point at a folder that no longer exists. gwpe keeps
MLflow's own layout (absolute paths, so ``mlflow ui`` and ``mlflow models serve`` work from any folder) and
rebases it: the first time a process resolves the project's default store, locations of the form
``<old>/mlruns/...`` whose experiment sits at ``<old>/mlruns/<its id>`` are rewritten to ``<root>/mlruns/...``
when ``<old>`` is not the project root and is either gone (a move) or another project (it has its own
``mlflow.db``: a copy). Locations elsewhere (a shared artifact root, object storage) are left alone.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from pathlib import Path

# (table, column) pairs holding artifact locations or dataset paths in MLflow's SQL schema (3.x).
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
    ("datasets", "dataset_source"),
)


def _local_path(location: str) -> str:
    return location[len("file://") :] if location.startswith("file://") else location


def moved_roots(connection: sqlite3.Connection, root: Path) -> set[str]:
    """The project roots other than ``root`` that this store's experiments were created under."""
    old = set()
    for experiment_id, location in connection.execute("SELECT experiment_id, artifact_location FROM experiments"):
        path = _local_path(location or "")
        suffix = f"/mlruns/{experiment_id}"
        if not path.endswith(suffix):
            continue
        prefix = path[: -len(suffix)]
        if prefix and Path(prefix) != root and (not Path(prefix).exists() or (Path(prefix) / "mlflow.db").exists()):
            old.add(prefix)
    return old


def rebase(database: Path, root: Path) -> int:
    """Rewrite ``<old root>/`` to ``<root>/`` in the store's location columns (module docstring); the number
    of values changed. A store without the expected tables (not MLflow's) is left untouched."""
    if not database.is_file():
        return 0
    changed = 0
    with contextlib.closing(sqlite3.connect(database, timeout=60)) as connection:
        try:
            old_roots = moved_roots(connection, root)
        except sqlite3.DatabaseError:
            return 0
        if not old_roots:
            return 0
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # An old root counts only where a location starts: at the value's start, after file://, or after a
        # JSON quote (a dataset source), so /x/a/... is not taken for the root /a.
        pattern = re.compile(
            r'(^|file://|")(' + "|".join(re.escape(o) for o in sorted(old_roots, key=len, reverse=True)) + r")/"
        )
        with connection:
            for table, column in LOCATION_COLUMNS:
                if table not in tables or column not in {
                    c[1] for c in connection.execute(f"PRAGMA table_info({table})")
                }:
                    continue
                rows = connection.execute(f"SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL")
                for rowid, value in rows.fetchall():
                    rebased = pattern.sub(lambda m: f"{m.group(1)}{root}/", value)
                    if rebased != value:
                        connection.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (rebased, rowid))
                        changed += 1
    return changed


@functools.cache
def rebase_once(database: Path, root: Path) -> int:
    """``rebase`` at most once per process and store."""
    return rebase(database, root)
