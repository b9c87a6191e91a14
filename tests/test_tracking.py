import json

import mlflow
from mlflow.tracking import MlflowClient

from gwpe.config import parse_config
from gwpe.tracking import NullRun, is_rank_zero, stage_run, tracking_uri
from gwpe.tracking.metrics_files import read_metrics

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
    assert data.params["h22.grid.dq"] == "0.5" and data.params["h22.surrogate_path"] == "null"
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

    for r in runs:
        split = r.data.tags["gwpe.split"]
        metrics = read_metrics(tmp_path / "metrics" / f"h22-{split}.json")
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


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_copied_or_moved_project_logs_into_its_own_store(tmp_path, tiny_params):
    """Issue 24, friction 1: experiments recorded ``<clone>/mlruns/<id>`` as their artifact location, so a copy
    of a project wrote its artifacts into the original's mlruns/ (and a moved one into a folder that is gone)."""
    import os
    import shutil
    import sqlite3
    import sys
    from pathlib import Path

    original = tmp_path
    (original / "dvc.yaml").write_text("stages: {}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    run_gwpe(["generate", "h22", "--split", "validation"], original, env=env, check=True)
    before = _files(original / "mlruns")
    assert before, "the stage logged no artifact"

    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(original, copy)
    run_gwpe(["generate", "h22", "--split", "test"], copy, env=env, check=True)
    assert _files(original / "mlruns") == before
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("gwpe-test")
    assert experiment.artifact_location == str(copy / "mlruns" / experiment.experiment_id)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all(r.info.artifact_uri.startswith(f"{copy}/mlruns/") for r in runs)
    assert all(client.list_artifacts(r.info.run_id, "plots") for r in runs)
    with sqlite3.connect(original / "mlflow.db") as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 1

    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.move(copy, moved)
    result = run_gwpe(["models", "list"], moved, env=env, check=True)
    assert str(copy) not in result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("gwpe-test").experiment_id])
    assert all(r.info.artifact_uri.startswith(f"{moved}/mlruns/") for r in runs)
    assert all(client.list_artifacts(r.info.run_id, "plots") for r in runs)
    shutil.rmtree(moved)


def test_reruns_of_a_stage_get_unique_run_names(tmp_path, monkeypatch):
    """Issue 24, friction 4: two runs of one stage were both named ``train-wavenet-physics``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = parse_config({"profile": "unit", "tracking": {"experiment": "gwpe-names"}})
    names = []
    for _ in range(3):
        with stage_run(config, stage="train-wavenet", run_name="train-wavenet-physics", log_params=False) as run:
            names.append(run.info.run_name)
    with stage_run(config, stage="train-wavenet", run_name="train-wavenet-physics-x", log_params=False) as run:
        names.append(run.info.run_name)
    assert names == [
        "train-wavenet-physics",
        "train-wavenet-physics-2",
        "train-wavenet-physics-3",
        "train-wavenet-physics-x",
    ]


def test_each_stage_logs_its_own_params_and_the_effective_architecture():
    """Issue 24, friction 4: every run logged all ~250 profile params whatever the stage, and the teacher and the
    students logged identical params (their architectures only in a metric)."""
    from gwpe.config import load_config
    from gwpe.tracking import stage_params

    from conftest import REPO

    config = load_config(REPO / "params.yaml")
    everything = stage_params(config, "a-stage-not-listed")
    flow = stage_params(
        config, "train-flow", {"gwpe.flow": "maf"}, {"model": {"kind": "maf", "options": {"hidden": 8}}}
    )
    assert len(flow) < len(everything) / 2
    assert {k.split(".")[0] for k in flow} == {"profile", "strain", "flows", "model"}
    assert "flows.models.maf.kind" in flow and not any(k.startswith("flows.models.cvae_plus.") for k in flow)
    assert flow["model.options.hidden"] == 8 and flow["model.kind"] == "maf"
    generate = stage_params(config, "generate-h22")
    assert {k.split(".")[0] for k in generate} == {"profile", "h22"} and generate["h22.surrogate_path"] == "null"


def test_metrics_files_keep_numbers_for_dvc_and_identifiers_in_a_sidecar(tmp_path):
    """Issue 24 friction 5: md5s, names, paths and per-parameter lists made ``dvc metrics show`` 273 columns wide;
    the DVC file keeps only numbers (and booleans), the sidecar the rest, and reading merges them back."""
    from gwpe.stages.common import write_metrics
    from gwpe.tracking.metrics_files import info_path, read_metrics

    metrics = {
        "median_overlap": 0.99,
        "md5": "abc.dir",
        "registry": {"name": "gwpe-wavenet", "version": 3, "champion": True},
        "rhat": [1.01, 1.02],
        "broken": float("nan"),
        "empty": None,
    }
    write_metrics(tmp_path / "m.json", metrics)
    numbers = json.loads((tmp_path / "m.json").read_text())
    assert numbers == {"median_overlap": 0.99, "registry": {"version": 3, "champion": True}}
    info = json.loads(info_path(tmp_path / "m.json").read_text())
    assert info == {
        "md5": "abc.dir",
        "registry": {"name": "gwpe-wavenet"},
        "rhat": [1.01, 1.02],
        "broken": "nan",
        "empty": None,
    }
    merged = read_metrics(tmp_path / "m.json")
    assert merged["registry"] == {"version": 3, "champion": True, "name": "gwpe-wavenet"}
    assert merged["rhat"] == [1.01, 1.02]
