"""Generation through an existing Dask cluster: a scheduler and two workers started with the `dask` CLI as
separate processes on 127.0.0.1; the stores must be byte-identical to a local in-process run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import gwpe_env, run_gwpe, tiny_profile, write_profile

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "dask.log", "w")
    processes = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    for name in ("w1", "w2"):
        processes.append(
            subprocess.Popen(
                [
                    DASK,
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--name",
                    name,
                    "--local-directory",
                    str(tmp_path / name),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    from distributed import Client

    deadline = time.time() + 90
    with Client(address, timeout=60) as client:
        while len(client.scheduler_info()["workers"]) < 2:
            assert time.time() < deadline, (tmp_path / "dask.log").read_text()
            time.sleep(0.2)
    yield address
    for process in reversed(processes):
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        process.wait(timeout=30)


def store_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_generation_through_a_dask_cluster_is_byte_identical(tmp_path, cluster):
    runs = {}
    for name, compute in (
        ("local", {"workers": 0, "scheduler_address": None}),
        ("cluster", {"workers": 2, "scheduler_address": cluster}),
    ):
        folder = tmp_path / name
        folder.mkdir()
        profile = tiny_profile(compute=compute)
        profile["strain"]["compute"] = {
            "workers": compute["workers"],
            "threads_per_worker": 1,
            "scheduler_address": compute["scheduler_address"],
        }
        write_profile(folder / "params.yaml", profile)
        env = gwpe_env(folder)
        run_gwpe(["generate", "h22", "--params", "params.yaml"], cwd=folder, env=env, check=True)
        run_gwpe(
            ["generate", "strain", "--params", "params.yaml", "--dataset", "strain-hl"], cwd=folder, env=env, check=True
        )
        runs[name] = store_bytes(folder / "data")
    assert runs["cluster"] == runs["local"] and len(runs["local"]) > 10
    # the work really ran on the cluster's workers
    from distributed import Client

    with Client(cluster) as client:
        ran = client.run(
            lambda dask_worker: len(
                {str(entry[0]) for entry in dask_worker.state.log if "run_and_mark" in str(entry[0])}
            )
        )
    assert len(ran) == 2 and all(count > 0 for count in ran.values()), ran  # both workers wrote chunks
