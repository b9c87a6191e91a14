"""A real ``mlflow server`` on 127.0.0.1: train, register, promote, pull from another directory and infer
against it; then the MLflow UI in headless Chromium (Debian's chromium + chromedriver, installed by .ci/run)
shows the runs with their metrics and renders the compare view of two runs (screenshots under test-output/)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import REPO, gwpe_env, run_gwpe, tiny_profile, write_profile
from gwpe.inference.strain_files import write_strain

CHROMIUM, CHROMEDRIVER = (
    shutil.which("chromium") or "/usr/bin/chromium",
    shutil.which("chromedriver") or "/usr/bin/chromedriver",
)
ARTIFACTS = Path(os.environ.get("GWPE_TEST_OUTPUT", REPO / "test-output"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=open(root / "server.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        assert process.poll() is None, (root / "server.log").read_text()
    else:
        raise AssertionError("mlflow server did not answer /health within 120 s:\n" + (root / "server.log").read_text())
    yield uri
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """A tiny MAF trained twice (two runs) against the server; the evaluations register versions 1 and 2."""
    root = tmp_path_factory.mktemp("project")
    profile = tiny_profile()
    profile["flows"]["models"] = {"maf": profile["flows"]["models"]["maf"]}
    write_profile(root / "params.yaml", profile)
    env = gwpe_env(root, MLFLOW_TRACKING_URI=server)
    run_gwpe(["generate", "strain", "--params", "params.yaml", "--dataset", "strain-5d"], cwd=root, env=env, check=True)
    for epochs in (2, 3):
        profile["flows"]["training"]["max_epochs"] = epochs
        write_profile(root / "params.yaml", profile)
        for args in (
            ["train", "flow", "--model", "maf", "--no-progress"],
            ["evaluate", "flow", "--model", "maf", "--no-progress"],
        ):
            run_gwpe([*args, "--params", "params.yaml"], cwd=root, env=env, check=True)
    return root, env


@pytest.mark.slow
def test_register_promote_pull_and_infer_through_the_server(server, trained, tmp_path):
    root, env = trained
    client = MlflowClient(server)
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'gwpe-npe-maf'"))
    assert versions == [1, 2]
    run_gwpe(["models", "promote", "gwpe-npe-maf", "1", "--alias", "production"], cwd=root, env=env, check=True)
    assert client.get_model_version_by_alias("gwpe-npe-maf", "production").version == "1"
    # another directory, nothing of the project there: only the server
    elsewhere = tmp_path / "laptop"
    elsewhere.mkdir()
    remote_env = gwpe_env(elsewhere, MLFLOW_TRACKING_URI=server, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false")
    listed = json.loads(run_gwpe(["models", "list", "--json"], cwd=elsewhere, env=remote_env, check=True).stdout)
    assert [r["version"] for r in listed] == [1, 2] and "production" in listed[0]["aliases"]
    assert sum("champion" in r["aliases"] for r in listed) == 1
    run_gwpe(
        ["models", "pull", "gwpe-npe-maf@production", "--out", "pulled"], cwd=elsewhere, env=remote_env, check=True
    )
    package = next((elsewhere / "pulled").rglob("weights.pt")).parent
    assert (
        json.loads((package / "config.json").read_text())["mlflow_run_id"]
        == client.get_model_version("gwpe-npe-maf", "1").run_id
    )
    rng = np.random.default_rng(3)
    write_strain(elsewhere / "event.h5", rng.standard_normal((1, 1024)), 1024.0)
    result = run_gwpe(
        [
            "infer",
            "--model",
            "gwpe-npe-maf@production",
            "--strain",
            "event.h5",
            "--n-samples",
            "400",
            "--out",
            "posterior.h5",
            "--no-progress",
        ],
        cwd=elsewhere,
        env=remote_env,
        check=True,
    )
    assert "models:/gwpe-npe-maf/1" in result.stdout
    with h5py.File(elsewhere / "posterior.h5") as f:
        assert f["samples"].shape == (400, 5) and f.attrs["model_version"] == 1
    local = run_gwpe(
        [
            "infer",
            "--model",
            str(package),
            "--strain",
            "event.h5",
            "--n-samples",
            "400",
            "--seed",
            "0",
            "--out",
            "local.h5",
            "--no-plot",
            "--no-progress",
        ],
        cwd=elsewhere,
        env=remote_env,
        check=True,
    )
    assert "m1" in local.stdout
    assert "(version 1)" in local.stdout  # a pulled folder knows its registry version (friction 8: it said -1)


def chrome():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            f"headless browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for_text(driver, texts, timeout=90):
    from selenium.webdriver.common.by import By

    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if all(t in body for t in texts):
            return body
        time.sleep(0.5)
    raise AssertionError(f"page never showed {texts}; it showed:\n{body[:2000]}")


@pytest.mark.slow
def test_mlflow_ui_shows_runs_metrics_and_compare_view(server, trained):
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("gwpe-test")
    runs = client.search_runs([experiment.experiment_id], "tags.`gwpe.stage` = 'train-flow'")
    assert len(runs) == 2
    params = runs[0].data.params  # the stage's own params and the effective architecture (friction 4)
    assert "model.kind" in params and not any(k.startswith(("h22.", "wavenet.", "distill.")) for k in params)
    assert "val_nll" in runs[0].data.metrics  # val_loss under its meaning
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = chrome()
    try:
        # MLflow 3.17 opens experiments in its GenAI view; workflowType selects the model-training runs table
        driver.get(f"{server}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning")
        body = wait_for_text(driver, [runs[0].info.run_name, runs[1].info.run_name])
        driver.save_screenshot(str(ARTIFACTS / "mlflow-experiment.png"))
        assert "train-flow-maf" in body
        # one run's page lists its metrics with values
        driver.get(
            f"{server}/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}?workflowType=machine_learning"
        )
        body = wait_for_text(driver, ["Metrics (", "val_loss", "train_loss"])
        assert f"{runs[0].data.metrics['val_loss']}"[:6] in body  # the value itself is on the page
        driver.save_screenshot(str(ARTIFACTS / "mlflow-run.png"))
        ids = json.dumps([r.info.run_id for r in runs])
        driver.get(
            f"{server}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment.experiment_id])}"
            "&workflowType=machine_learning"
        )
        # issue 24, acceptance 2: the two runs' differing param (2 vs 3 epochs) is on the compare page
        body = wait_for_text(
            driver, ["Comparing 2 Runs from 1 Experiment", "val_loss", "Run details", "flows.training.max_epochs"]
        )
        driver.save_screenshot(str(ARTIFACTS / "mlflow-compare.png"))
        assert runs[0].info.run_name in body and runs[1].info.run_name in body
        assert runs[0].info.run_name != runs[1].info.run_name  # unique run names (friction 4)
        # and their loss curves, one chart per metric, both runs in each
        driver.get(
            f"{server}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART&workflowType=machine_learning"
        )
        wait_for_text(driver, ["Model metrics", "best_val_loss"])
        # charts are in alphabetical order and drawn as they scroll into view: scroll to the loss curves
        deadline = time.time() + 60
        body = ""
        while time.time() < deadline and not all(m in body for m in ("train_loss", "val_loss", "val_nll")):
            driver.execute_script(
                "document.querySelectorAll('*').forEach(e => {"
                " if (e.scrollHeight > e.clientHeight + 50) e.scrollTop += 600; });"
            )
            time.sleep(0.5)
            body = driver.find_element("tag name", "body").text
        assert all(m in body for m in ("train_loss", "val_loss", "val_nll")), body[-2000:]
        charts = driver.find_elements("css selector", "canvas, svg.main-svg")
        assert charts, "no chart was drawn"
        time.sleep(2)  # let the line plots finish drawing before the screenshot
        driver.save_screenshot(str(ARTIFACTS / "mlflow-charts.png"))
    finally:
        driver.quit()
    for name in ("mlflow-experiment.png", "mlflow-run.png", "mlflow-compare.png", "mlflow-charts.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_batch_of_events(server, trained, tmp_path):
    """Issue 24, friction 6 / acceptance 3: registered versions are MLflow logged models (the runs' Models
    column) with a signature and an input example; ``gwpe models serve`` (no venv on PATH: it finds its own
    mlflow and uvicorn) answers a 3-event batch in one request in MLflow's standard ``dataframe_records`` and
    ``dataframe_split`` formats; loaded by gwpe, no pickle."""
    import mlflow

    client = MlflowClient(server)
    version = client.get_model_version("gwpe-npe-maf", "1")
    assert version.source.startswith("models:/m-")  # a logged model, not a raw artifact folder
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.source_run_id == version.run_id
    mlflow.set_tracking_uri(server)
    info = mlflow.models.get_model_info("models:/gwpe-npe-maf/1")
    assert [c.name for c in info.signature.inputs.inputs] == ["event", "strain", "n_samples", "seed"]
    assert [c.name for c in info.signature.outputs.inputs] == ["event", "m1", "m2", "phi0", "tc", "dL"]
    assert info.saved_input_example_info["type"] == "dataframe"

    port = free_port()
    env = gwpe_env(tmp_path, MLFLOW_TRACKING_URI=server, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false")
    env["PATH"] = "/usr/bin:/bin"  # a user who never activated the venv
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gwpe")), "models", "serve", "gwpe-npe-maf@champion", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=open(tmp_path / "serve.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def post(payload):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps(payload).encode(),
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["predictions"]

    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        rng = np.random.default_rng(0)
        events = [
            {"event": name, "strain": rng.standard_normal((1, 1024)).round(5).tolist(), "n_samples": 200, "seed": 1}
            for name in ("GW-a", "GW-b", "GW-c")
        ]
        predictions = post({"dataframe_records": events})
        assert len(predictions) == 600 and set(predictions[0]) == {"event", "m1", "m2", "phi0", "tc", "dL"}
        assert {e: sum(p["event"] == e for p in predictions) for e in ("GW-a", "GW-b", "GW-c")} == dict.fromkeys(
            ("GW-a", "GW-b", "GW-c"), 200
        )
        assert 20 < np.median([p["m1"] for p in predictions]) < 100  # physical units (Msun), not standardised
        columns = ["event", "strain", "n_samples", "seed"]
        split = post({"dataframe_split": {"columns": columns, "data": [[e[c] for c in columns] for e in events]}})
        assert [p["m1"] for p in split] == [p["m1"] for p in predictions]  # same seeds, same draws
        with pytest.raises(urllib.error.HTTPError) as error:
            post({"dataframe_records": [{"event": "short", "strain": [[0.0] * 10]}]})
        assert "the model expects finite whitened strain of shape (1, 1024)" in error.value.read().decode()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_models_serve_refuses_a_pickled_model_without_running_it(tmp_path):
    """Issue 25: MLflow's default (MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true) runs the pickle an ``MLmodel`` names
    when it is served. A crafted version registered in a real sqlite store: ``gwpe models serve`` refuses to load
    it (pickle off) and its code never runs, even when the user's environment leaves MLflow's default on."""
    import pickle

    import mlflow

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "crafted"
    crafted.mkdir()
    (crafted / "python_model.pkl").write_bytes(pickle.dumps(Payload()))
    (crafted / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n    python_model: python_model.pkl\n"
        "    python_version: 3.11.0\n    cloudpickle_version: 3.1.1\n"
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        mlflow.set_experiment("crafted")  # not an experiment id cached from another test's store
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(crafted), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "crafted")
    finally:
        mlflow.set_tracking_uri(previous)
    env = gwpe_env(tmp_path, MLFLOW_TRACKING_URI=store)
    env.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)  # MLflow's default: pickles allowed
    served = subprocess.run(
        [str(Path(sys.executable).with_name("gwpe")), "models", "serve", "crafted/1", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert served.returncode != 0 and "Deserializing model using pickle is disallowed" in served.stdout + served.stderr
    assert not marker.exists()
