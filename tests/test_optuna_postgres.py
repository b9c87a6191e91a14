"""Distributed Optuna on a real PostgreSQL server (Debian's postgresql, installed by .ci/run through
scripts/install-system.sh, bound to 127.0.0.1): two `gwpe sweep` processes, as on two machines, join one
study through the RDB URL and finish it together without duplicate trial numbers."""

import glob
import os
import shutil
import socket
import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from conftest import GWPE, gwpe_env, tiny_distill, tiny_profile, write_profile


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(
            f"PostgreSQL's {name} not found: apt-get install postgresql (scripts/install-system.sh, run by make test)"
        )
    return found


def as_postgres_user(args):
    """initdb and postgres refuse to run as root: drop to the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="module")
def postgres():
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="gwpe-pg-"))  # outside pytest's 0700 tree: the postgres user must reach it
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        as_postgres_user([postgres_bin("initdb"), "-D", str(data), "-U", "gwpe", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
        text=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = root / "postgres.log"
    subprocess.run(
        as_postgres_user(
            [
                postgres_bin("pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {sockets}",
            ]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        subprocess.run(
            [postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "gwpe", "optuna"],
            check=True,
            capture_output=True,
            text=True,
        )
        yield f"postgresql+psycopg2://gwpe@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(
            as_postgres_user([postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_machines_share_one_study_through_postgresql(postgres, hl_store, tmp_path):
    machines = []
    for name in ("node-a", "node-b"):  # two project checkouts, as on two machines; only the RDB is shared
        folder = tmp_path / name
        folder.mkdir()
        shutil.copytree(hl_store, folder / "data")
        profile = tiny_profile()
        profile["distill"] = tiny_distill(n_trials=6, storage=postgres, pruner="median")
        write_profile(folder / "params.yaml", profile)
        machines.append(folder)
    processes = [
        subprocess.Popen(
            [str(GWPE), "sweep", "--params", "params.yaml", "--no-progress"],
            cwd=folder,
            env=gwpe_env(folder),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for folder in machines
    ]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    summaries = optuna.study.get_all_study_summaries(postgres)
    assert len(summaries) == 1  # same configuration and data on both machines: one study
    study = optuna.load_study(study_name=summaries[0].study_name, storage=postgres)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) == len(trials)
    # each machine stops once the study holds n_trials finished trials; in-flight ones may add one per machine
    assert 6 <= len(finished) <= 6 + 1
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both machines ran trials
    assert all(t.state != TrialState.RUNNING for t in trials)
