import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import GWPE, REPO, gwpe_env, run_gwpe


def test_help_lists_the_pipeline_stages(tmp_path):
    result = run_gwpe(["--help"], tmp_path, check=True)
    assert "generate" in result.stdout and "ui" in result.stdout
    assert "h22" in run_gwpe(["generate", "--help"], tmp_path, check=True).stdout


def test_dry_run_prices_the_paper_profile_without_generating(tmp_path):
    result = run_gwpe(
        ["generate", "h22", "--params", str(REPO / "experiments" / "paper.yaml"), "--dry-run"], tmp_path, check=True
    )
    assert "197,516" in result.stdout and "1,580,128" in result.stdout and "187,308" in result.stdout
    assert "CPU-hours" in result.stdout and "101301 samples" in result.stdout
    assert not (tmp_path / "data").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gwpe_ui_serves_mlflow_on_loopback(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [str(GWPE), "ui", "--port", str(port)],
        cwd=tmp_path,
        env=gwpe_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200 and response.read().strip() == b"OK"
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("MLflow UI did not answer /health within 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)
