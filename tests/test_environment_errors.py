"""Issue 25: a full disk or a locked, truncated or garbage ``mlflow.db`` is one line and a non-zero exit, not a
traceback (real files, a real file-size limit, a real SQLite lock)."""

import os
import resource
import signal
import sqlite3
import subprocess

import pytest

from gwpe.errors import StoreError, as_user_error

from conftest import GWPE, gwpe_env, run_gwpe, tiny_profile, write_profile


def one_line(result) -> str:
    """The error line (MLflow's own INFO log lines may precede it; no traceback)."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("gwpe: error:")]
    ok = result.returncode not in (0, 1) and len(errors) == 1 and "Traceback" not in result.stderr  # 1: a traceback
    assert ok and lines[-1] == errors[0], result.stderr[-3000:]
    return errors[0]


@pytest.fixture
def project(tmp_path):
    write_profile(tmp_path / "params.yaml", tiny_profile())
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory):
    """The bytes of a real, freshly created MLflow sqlite store."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db.read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_tracking_store_is_one_line(project, store_bytes, damage):
    env = gwpe_env(project)
    db = project / "mlflow.db"
    data = store_bytes
    db.write_bytes(os.urandom(len(data)) if damage == "garbage" else data[:3000])
    line = one_line(run_gwpe(["models", "list"], project, env))
    assert f"tracking store sqlite:///{db}" in line and ("not an SQLite database" in line or "damaged" in line)


def test_a_full_disk_is_one_line(project):
    """RLIMIT_FSIZE makes the kernel refuse writes past 20 kB (EFBIG), as a full disk would (ENOSPC)."""

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run(
        [str(GWPE), "generate", "h22", "--split", "train", "--params", "params.yaml"],
        cwd=project,
        env=gwpe_env(project),
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=300,
    )
    assert "disk" in one_line(result)


def test_a_locked_store_names_the_store(tmp_path):
    """A real lock: another connection holds an exclusive transaction. (End to end, ``gwpe models list`` waits
    MLflow's busy timeout, 20 s per statement, ~70 s, then prints the same line.)"""
    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError) as locked:
            sqlite3.connect(db, timeout=0.1).execute("SELECT * FROM t")
    finally:
        holder.execute("ROLLBACK")
    error = as_user_error(locked.value, f"sqlite:///{db}")
    assert isinstance(error, StoreError) and f"sqlite:///{db} is locked by another process" in str(error)
