"""Issue 4: `gwpe train wavenet` kill/resume, `gwpe evaluate wavenet` (Table 1), the registry's champion rule."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from gwpe.tracking.metrics_files import read_metrics

from conftest import GWPE, gwpe_env, run_gwpe, tiny_profile, tiny_wavenet, write_profile
from gwpe.config import parse_config
from gwpe.evaluation.wavenet import Evaluation, clip_to_grid, summary, table1


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def _train_history(db: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs(
        [client.get_experiment_by_name("gwpe-test").experiment_id], filter_string="tags.`gwpe.stage` = 'train-wavenet'"
    )
    assert len(runs) == 1, "a resumed training must continue its own MLflow run"
    run_id = runs[0].info.run_id
    return run_id, {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        for k in ("train_loss", "val_loss", "learning_rate")
    }


@pytest.fixture(scope="module")
def tiny_h22(tmp_path_factory):
    """The tiny profile's h22 splits, generated once and copied into each project folder."""
    root = tmp_path_factory.mktemp("h22")
    write_profile(root / "params.yaml", tiny_profile())
    run_gwpe(["generate", "h22", "--params", "params.yaml"], cwd=root, check=True)
    return root / "data"


def _project(tmp_path: Path, tiny_h22: Path, name: str, **training) -> Path:
    import shutil

    folder = tmp_path / name
    shutil.copytree(tiny_h22, folder / "data")
    profile = tiny_profile()
    profile["wavenet"] = tiny_wavenet(**training)
    write_profile(folder / "params.yaml", profile)
    return folder


def test_killed_training_resumes_epoch_optimizer_and_scheduler_and_matches_an_uninterrupted_run(tmp_path, tiny_h22):
    epochs = 14
    # uninterrupted reference, same seed
    straight = _project(tmp_path, tiny_h22, "straight", max_epochs=epochs)
    run_gwpe(["train", "wavenet", "--params", "params.yaml", "--no-progress"], cwd=straight, check=True)
    reference = _checkpoint(straight / "checkpoints" / "wavenet" / "last.ckpt")
    _, reference_history = _train_history(straight / "mlflow.db")

    killed = _project(tmp_path, tiny_h22, "killed", max_epochs=epochs)
    last = killed / "checkpoints" / "wavenet" / "last.ckpt"
    process = subprocess.Popen(
        [str(GWPE), "train", "wavenet", "--params", "params.yaml", "--resume", "--no-progress"],
        cwd=killed,
        env=gwpe_env(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline, at_kill = time.time() + 240, None
    while time.time() < deadline and process.poll() is None:
        try:
            at_kill = _checkpoint(last)["epoch"] if last.is_file() else None
        except Exception:  # caught mid-write: try again
            at_kill = None
        if at_kill is not None and at_kill >= 3:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=30)
    assert at_kill is not None and process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = _checkpoint(last)
    assert 3 <= state["epoch"] < epochs - 1
    assert not json.loads((last.parent / "run.json").read_text())["complete"]

    resumed = run_gwpe(
        ["train", "wavenet", "--params", "params.yaml", "--resume", "--no-progress"], cwd=killed, check=True
    )
    assert f"resuming from {Path('checkpoints/wavenet/last.ckpt')}" in resumed.stdout
    final = _checkpoint(last)
    assert final["epoch"] == reference["epoch"] == epochs - 1
    assert final["global_step"] == reference["global_step"]  # epochs after the checkpoint only, not a restart
    adam_steps = [s["step"] for s in final["optimizer_states"][0]["state"].values()]
    assert all(float(s) == reference["global_step"] for s in adam_steps)  # Adam moments continued, not reset
    assert final["lr_schedulers"][0]["last_epoch"] == epochs  # cosine schedule continued
    run_id, history = _train_history(killed / "mlflow.db")
    assert sorted({step for step, _ in history["train_loss"]}) == list(range(epochs))
    # the learning rate of every epoch matches the uninterrupted run: the scheduler was restored, not restarted
    np.testing.assert_allclose(
        dict(history["learning_rate"])[epochs - 1], dict(reference_history["learning_rate"])[epochs - 1], rtol=1e-9
    )
    final_loss, reference_loss = dict(history["val_loss"])[epochs - 1], dict(reference_history["val_loss"])[epochs - 1]
    assert final_loss == pytest.approx(reference_loss, rel=0.05)
    assert json.loads((killed / "models" / "wavenet" / "config.json").read_text())["mlflow_run_id"] == run_id

    # a finished run is not "resumed" into a no-op: --resume starts fresh and says why
    again = run_gwpe(
        ["train", "wavenet", "--params", "params.yaml", "--resume", "--no-progress"], cwd=killed, check=True
    )
    assert "had finished; starting fresh" in again.stdout


def test_evaluate_registers_and_champion_moves_only_on_a_better_median_overlap(tmp_path, tiny_h22):
    from gwpe.tracking.registry import load_wavenet, register_version

    project = _project(tmp_path, tiny_h22, "registry")
    run_gwpe(["train", "wavenet", "--params", "params.yaml", "--no-progress"], cwd=project, check=True)
    out = run_gwpe(
        ["evaluate", "wavenet", "--params", "params.yaml", "--metrics", "metrics/eval.json", "--no-progress"],
        cwd=project,
        check=True,
    )
    assert "Table 1" in out.stdout and "is now champion" in out.stdout
    metrics = read_metrics(project / "metrics" / "eval.json")
    assert 0 < metrics["table1"]["overlap"]["median"] <= 1 and metrics["registry"]["version"] == 1

    environ_backup = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    try:
        client = MlflowClient()
        run_id = client.get_model_version("gwpe-wavenet", "1").run_id
        # the registered model loads by name and alias without pickle and predicts like the local copy
        registered = load_wavenet("models:/gwpe-wavenet@champion")
        from gwpe.models.wavenet_module import WaveNetModule

        local = WaveNetModule.load_model(project / "models" / "wavenet")
        x = torch.randn(2, 2, 631)
        torch.testing.assert_close(registered.predict(x), local.predict(x))
        # a worse challenger stays a challenger; a better one takes the alias; re-registering a run reuses its version
        score = metrics["median_overlap"]
        import mlflow

        mlflow.set_experiment("gwpe-test")
        with mlflow.start_run() as worse_run:
            mlflow.log_artifact(str(project / "models" / "wavenet" / "weights.pt"), "model")
        worse = register_version("gwpe-wavenet", worse_run.info.run_id, "model", "median_test_overlap", score - 0.1)
        assert (worse.version, worse.champion) == (2, False)
        assert int(client.get_model_version_by_alias("gwpe-wavenet", "champion").version) == 1
        with mlflow.start_run() as better_run:
            mlflow.log_artifact(str(project / "models" / "wavenet" / "weights.pt"), "model")
        better = register_version(
            "gwpe-wavenet", better_run.info.run_id, "model", "median_test_overlap", min(1.0, score + 1e-3)
        )
        assert (better.version, better.champion, better.previous_champion) == (3, True, 1)
        assert int(client.get_model_version_by_alias("gwpe-wavenet", "champion").version) == 3
        assert register_version("gwpe-wavenet", run_id, "model", "median_test_overlap", score).version == 1
        assert int(client.get_model_version_by_alias("gwpe-wavenet", "champion").version) == 3
    finally:
        os.environ.clear()
        os.environ.update(environ_backup)


def test_table1_statistics_and_counts_by_hand():
    true = np.array([[2.0, 0.5, -0.5], [4.0, 0.0, 0.2], [6.0, -0.4, 0.4], [8.0, 0.8, -0.8]])
    predicted = true + np.array([[0.1, 0.0, 0.0], [-0.2, 0.1, 0.0], [0.0, 0.0, -0.3], [0.4, 0.0, 0.0]])
    overlaps = np.array([0.99, 0.96, 0.89, 0.80])
    evaluation = Evaluation(true, predicted, overlaps, true.mean(0), np.full(4, 0.5))
    table = table1(evaluation)
    assert table["table1"]["delta_q"] == pytest.approx(
        {"min": -0.2, "q1": -0.05, "median": 0.05, "q3": 0.175, "max": 0.4}
    )  # linear interpolation
    assert table["table1"]["overlap"]["median"] == pytest.approx(0.925)
    assert table["counts"] == {"overlap_le_0.97": 3, "overlap_le_0.90": 2, "overlap_le_0.85": 1}
    # the largest sigma_eff error is row 2 (q 4 -> 3.8, s1z 0 -> 0.1, s2z 0.2), by eq. 3:
    q, s1, s2 = 3.8, 0.1, 0.2
    expected = (q * s1 + s2) / (1 + q) - (4 * 0 + 0.2) / 5
    assert table["table1"]["delta_sigma_eff"]["max"] == pytest.approx(expected)
    out = summary(evaluation)
    assert out["baseline"]["median_overlap"] == 0.5 and out["median_overlap_gain_over_baseline"] == pytest.approx(0.425)
    assert out["iqr_delta_s2"] == pytest.approx(np.subtract(*np.quantile([0, 0, -0.3, 0], [0.75, 0.25])))


def test_predictions_are_clipped_to_the_training_box():
    config = parse_config(tiny_profile())
    clipped = clip_to_grid(np.array([[0.7, -0.95, 0.2], [9.3, 0.5, 1.2]]), config)
    np.testing.assert_array_equal(clipped, [[1.0, -0.8, 0.2], [8.0, 0.5, 0.8]])


def test_evaluate_without_a_model_and_oversized_leaves_fail_in_one_line(tmp_path, tiny_h22):
    project = _project(tmp_path, tiny_h22, "errors")
    result = run_gwpe(["evaluate", "wavenet", "--params", "params.yaml"], cwd=project)
    assert result.returncode != 0 and "no trained model in models/wavenet" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    profile = tiny_profile()
    profile["wavenet"] = tiny_wavenet()
    profile["wavenet"]["model"]["leaf_steps"] = 5000
    write_profile(project / "params.yaml", profile)
    result = run_gwpe(["train", "wavenet", "--params", "params.yaml"], cwd=project)
    assert result.returncode != 0 and "wavenet.model.leaf_steps = 5000" in result.stderr and "631" in result.stderr
    assert not (project / "models").exists()
