import mlflow
from mlflow.tracking import MlflowClient

from gwpe.config import parse_config
from gwpe.tracking import NullRun, is_rank_zero, stage_run, tracking_uri

from conftest import run_gwpe


def test_default_uri_is_sqlite_at_project_root_and_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/x.db")
    assert tracking_uri() == "sqlite:////elsewhere/x.db"


def test_stage_run_logs_config_profile_and_commit(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = parse_config({"profile": "unit", "tracking": {"experiment": "gwpe-unit"}})
    with stage_run(config, stage="unit-stage", tags={"gwpe.split": "test"}) as run:
        run.log_metrics({"answer": 42})
        run_id = run.info.run_id
    data = MlflowClient(uri).get_run(run_id).data
    assert data.params["h22.grid.dq"] == "0.08" and data.params["h22.surrogate_path"] == "null"
    assert (
        data.tags["gwpe.profile"] == "unit"
        and data.tags["gwpe.stage"] == "unit-stage"
        and data.tags["gwpe.split"] == "test"
    )
    assert len(data.tags["git.commit"]) in (40, 7) or data.tags["git.commit"] == "unknown"
    assert data.metrics["answer"] == 42


def test_only_rank_zero_logs(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RANK", "1")
    assert not is_rank_zero()
    config = parse_config({"profile": "unit", "tracking": {"experiment": "gwpe-rank"}})
    with stage_run(config, stage="x") as run:
        assert isinstance(run, NullRun)
        run.log_metrics({"a": 1})
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_experiment_by_name("gwpe-rank") is None
    monkeypatch.setenv("RANK", "0")
    assert is_rank_zero()


def test_generate_logs_one_run_per_split_with_dataset_checksums(tmp_path, tiny_params):
    result = run_gwpe(
        ["generate", "h22", "--split", "all", "--metrics", "metrics/h22-{split}.json"], tmp_path, check=True
    )
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("gwpe-test")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["gwpe.split"] for r in runs) == ["test", "train", "validation"]
    import json

    for r in runs:
        split = r.data.tags["gwpe.split"]
        metrics = json.loads((tmp_path / "metrics" / f"h22-{split}.json").read_text())
        assert r.data.tags[f"data.output.h22-{split}.md5"] == metrics["md5"] and metrics["md5"].endswith(".dir")
        assert r.data.metrics["n_waveforms"] == {"train": 27, "validation": 1, "test": 1}[split]
        artifacts = [a.path for a in client.list_artifacts(r.info.run_id, "plots")]
        assert artifacts == [f"plots/h22-{split}.png"]
    assert "train: 27 waveforms" in result.stdout


def test_registry_commands_outside_a_project_refuse_instead_of_creating_an_empty_store(tmp_path):
    """Issue 24, friction 7: ``gwpe infer --model NAME@ALIAS`` or ``models list`` in a folder with no store named
    the registry "none" after MLflow had silently created an empty mlflow.db there."""
    import os
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    import numpy as np

    np.save(tmp_path / "strain.npy", np.zeros(1024, dtype=np.float32))
    for args in (
        ["models", "list"],
        ["infer", "--model", "gwpe-npe-maf@champion", "--strain", "strain.npy", "--out", "p.h5"],
    ):
        result = run_gwpe(args, tmp_path, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]
        assert not (tmp_path / "mlflow.db").exists()
