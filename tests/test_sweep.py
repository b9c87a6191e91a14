"""``gwpe sweep``: a real Optuna study on real storage (SQLite, journal file), real worker processes, MLflow
nesting, pruning, and resuming after the sweep process is killed."""

import json
import os
import signal
import subprocess
import datetime
import time

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import GWPE, gwpe_env, run_gwpe, tiny_distill, tiny_profile, write_profile
from gwpe.config import load_config
from gwpe.data.checksum import dvc_md5
from gwpe.tuning.storage import UNTAGGED_SECONDS, WORKER_ATTR, build_storage, resolve_storage_url
from gwpe.tuning.sweep import open_study, study_name

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def project(tmp_path, hl_store, **sweep):
    import shutil

    profile = tiny_profile()
    profile["distill"] = tiny_distill(**sweep)
    write_profile(tmp_path / "params.yaml", profile)
    shutil.copytree(hl_store, tmp_path / "data")
    return tmp_path, gwpe_env(tmp_path)


def study_of(tmp_path):
    config = load_config(tmp_path / "params.yaml")
    storage = build_storage(config.distill.sweep.storage, tmp_path)
    name = study_name(config, dvc_md5(tmp_path / "data" / "strain" / "strain-hl.zarr"))
    return optuna.load_study(study_name=name, storage=storage), config, storage


def test_storage_urls_resolve_and_bad_ones_are_refused(tmp_path):
    assert resolve_storage_url("sqlite:///optuna.db", tmp_path) == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert resolve_storage_url("journal:sweeps/j.log", tmp_path) == f"journal:{tmp_path / 'sweeps' / 'j.log'}"
    assert resolve_storage_url("postgresql://u:p@127.0.0.1/optuna", tmp_path) == "postgresql://u:p@127.0.0.1/optuna"
    with pytest.raises(Exception, match="allowed: sqlite:///FILE"):
        resolve_storage_url("optuna.db", tmp_path)


def test_orphans_are_dead_local_workers_or_trials_never_tagged(tmp_path, monkeypatch):
    import socket

    from gwpe.tuning import storage as storage_module

    storage = build_storage("journal:j.log", tmp_path)
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.Popen(["true"])
    dead.wait()
    tagged_dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    tagged_dead.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{dead.pid}")
    tagged_alive = study.ask()
    tagged_alive.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
    other_host = study.ask()
    other_host.set_user_attr(WORKER_ATTR, f"not-{socket.gethostname()}:{dead.pid}")
    untagged = study.ask()
    assert storage_module.fail_orphans(study, storage) == [tagged_dead.number]  # the untagged one is fresh
    monkeypatch.setattr(storage_module, "UNTAGGED_SECONDS", -1.0)
    assert storage_module.fail_orphans(study, storage) == [untagged.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[tagged_alive.number] == states[other_host.number] == TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == tagged_dead.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING  # its drawn parameters run again


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(tmp_path, hl_store):
    tmp_path, env = project(tmp_path, hl_store, n_trials=4, storage="journal:optuna-journal.log", pruner="none")
    result = run_gwpe(
        ["sweep", "--params", "params.yaml", "--workers", "2", "--no-progress"], cwd=tmp_path, env=env, check=True
    )
    study, _, _ = study_of(tmp_path)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in trials), (
        result.stdout
    )
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # two processes ran them
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # distinct proposals (seed + worker index)
    best = json.loads((tmp_path / "models" / "sweep" / "best.json").read_text())
    assert best["value"] == pytest.approx(min(t.value for t in trials)) and best["trials"]["complete"] == 4
    assert str(tmp_path) not in json.dumps(best)  # issue 24, friction 1: no absolute path in a DVC output
    # every trial is an MLflow run nested under the one sweep run
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("gwpe-test").experiment_id])
    parent = [r for r in runs if r.data.tags.get("gwpe.stage") == "sweep"]
    children = [r for r in runs if r.data.tags.get("gwpe.stage") == "sweep-trial"]
    assert len(parent) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    assert {r.data.tags["optuna.trial_number"] for r in children} == {"0", "1", "2", "3"}
    artifacts = {a.path for a in client.list_artifacts(parent[0].info.run_id, "plots")}
    assert {
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/parallel_coordinate.png",
    } <= artifacts
    # a rerun finds the study full and only rewrites the result
    again = run_gwpe(["sweep", "--params", "params.yaml", "--no-progress"], cwd=tmp_path, env=env, check=True)
    assert "4 of 4 trials finished; running 0" in again.stdout and len(study_of(tmp_path)[0].get_trials()) == 4


@pytest.mark.slow
def test_pruned_trial_is_recorded_in_optuna_and_mlflow(tmp_path, hl_store):
    tmp_path, env = project(
        tmp_path,
        hl_store,
        n_trials=2,
        startup_trials=1,
        warmup_epochs=0,
        max_epochs=3,
        search_space={"depth": [1, 1], "width": [4, 4], "transforms": [1, 1], "learning_rate": [1e-3, 1e3]},
    )
    config = load_config(tmp_path / "params.yaml")
    storage = build_storage(config.distill.sweep.storage, tmp_path)
    name = study_name(config, dvc_md5(tmp_path / "data" / "strain" / "strain-hl.zarr"))
    study = open_study(config, storage, name)
    study.enqueue_trial({"depth": 1, "width": 4, "transforms": 1, "learning_rate": 3e-3})
    study.enqueue_trial(
        {"depth": 1, "width": 4, "transforms": 1, "learning_rate": 1e3}
    )  # diverges: worse than the median
    run_gwpe(["sweep", "--params", "params.yaml", "--no-progress"], cwd=tmp_path, env=env, check=True)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert len(trials[1].intermediate_values) < 3  # stopped before its last epoch
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = {
        r.data.tags["optuna.trial_number"]: r
        for r in client.search_runs(
            [client.get_experiment_by_name("gwpe-test").experiment_id], "tags.`gwpe.stage` = 'sweep-trial'"
        )
    }
    assert runs["0"].data.tags["optuna.state"] == "COMPLETE" and runs["1"].data.tags["optuna.state"] == "PRUNED"
    # issue 24, friction 11: every intermediate value, the pruning epoch's included, is in MLflow; a named objective
    for trial in trials:
        history = client.get_metric_history(runs[str(trial.number)].info.run_id, "val_loss")
        assert sorted(m.step for m in history) == sorted(trial.intermediate_values), trial.number
    assert optuna.load_study(study_name=name, storage=storage).metric_names == ["val_nll"]
    assert json.loads((tmp_path / "models" / "sweep" / "best.json").read_text())["trial"] == 0


@pytest.mark.slow
def test_ddp_spawn_trials_prune_and_log_one_mlflow_run_each(tmp_path, hl_store):
    # issue 8's pattern: each trial trains with 2 ddp_spawn processes;
    # Optuna's pruning callback needs RDB storage (SQLite here)
    tmp_path, env = project(
        tmp_path,
        hl_store,
        n_trials=2,
        startup_trials=1,
        warmup_epochs=0,
        max_epochs=3,
        search_space={"depth": [1, 1], "width": [4, 4], "transforms": [1, 1], "learning_rate": [1e-3, 1e3]},
    )
    profile = yaml.safe_load((tmp_path / "params.yaml").read_text())
    profile["distill"]["training"].update({"devices": 2, "strategy": "ddp_spawn"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    config = load_config(tmp_path / "params.yaml")
    storage = build_storage(config.distill.sweep.storage, tmp_path)
    name = study_name(config, dvc_md5(tmp_path / "data" / "strain" / "strain-hl.zarr"))
    study = open_study(config, storage, name)
    study.enqueue_trial({"depth": 1, "width": 4, "transforms": 1, "learning_rate": 3e-3})
    study.enqueue_trial({"depth": 1, "width": 4, "transforms": 1, "learning_rate": 1e3})
    out = run_gwpe(["sweep", "--params", "params.yaml", "--no-progress"], cwd=tmp_path, env=env, check=True)
    assert "MEMBER: 2/2" in out.stderr + out.stdout  # the trials really ran on 2 ranks
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = {
        r.data.tags["optuna.trial_number"]: r
        for r in client.search_runs(
            [client.get_experiment_by_name("gwpe-test").experiment_id], "tags.`gwpe.stage` = 'sweep-trial'"
        )
    }
    assert sorted(runs) == ["0", "1"]  # one run per trial, not per rank
    history = {k: len(client.get_metric_history(r.info.run_id, "val_loss")) for k, r in runs.items()}
    assert history["0"] == 3 and 1 <= history["1"] < 3  # per-epoch losses from rank 0, by run id


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_finished_trials(tmp_path, hl_store):
    tmp_path, env = project(tmp_path, hl_store, n_trials=5, pruner="none", max_epochs=3)
    config = load_config(tmp_path / "params.yaml")
    storage = build_storage(config.distill.sweep.storage, tmp_path)
    name = study_name(config, dvc_md5(tmp_path / "data" / "strain" / "strain-hl.zarr"))
    process = subprocess.Popen(
        [str(GWPE), "sweep", "--params", "params.yaml", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    finished_before = {}
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name=name, storage=storage).get_trials()
            except KeyError:  # study not created yet
                continue
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if len([t for t in trials if t.state in FINISHED]) >= 2 and running:
                os.killpg(process.pid, signal.SIGKILL)  # mid-trial, as a node failure or Ctrl-\ would
                process.wait()
                finished_before = {t.number: t.value for t in trials if t.state in FINISHED}
                break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert len(finished_before) >= 2, "the sweep finished before it could be interrupted"
    orphans = [
        t for t in optuna.load_study(study_name=name, storage=storage).get_trials() if t.state == TrialState.RUNNING
    ]
    assert len(orphans) == 1
    if WORKER_ATTR not in orphans[0].user_attrs:  # killed between asking for the trial and tagging it
        age = (datetime.datetime.now() - orphans[0].datetime_start).total_seconds()
        time.sleep(max(0.0, UNTAGGED_SECONDS + 1 - age))

    result = run_gwpe(["sweep", "--params", "params.yaml", "--no-progress"], cwd=tmp_path, env=env, check=True)
    assert f"trials [{orphans[0].number}] were left running by a dead process" in result.stdout
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    finished = {t.number: t.value for t in trials if t.state in FINISHED}
    assert len(finished) == 5
    assert all(finished[n] == v for n, v in finished_before.items())  # nothing finished was redone or lost
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [orphans[0].number]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == orphans[0].number]
    if orphans[0].params:  # killed mid-trial: the parameters it had drawn run again (a kill between two
        # suggest calls leaves some undrawn; the retry draws those afresh)
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
        assert {k: retry[0].params[k] for k in orphans[0].params} == orphans[0].params
    else:  # killed before it drew parameters: nothing to retry
        assert retry == []


def test_dry_run_prices_and_bad_storage_is_one_line(tmp_path, hl_store):
    tmp_path, env = project(tmp_path, hl_store)
    priced = run_gwpe(["sweep", "--params", "params.yaml", "--dry-run"], cwd=tmp_path, env=env, check=True)
    assert "sweep: 3 trials x <= 2 epochs" in priced.stdout and "samples/s" in priced.stdout
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "models").exists()
    profile = tiny_profile()
    profile["distill"] = tiny_distill(storage="optuna.db")
    write_profile(tmp_path / "params.yaml", profile)
    bad = run_gwpe(["sweep", "--params", "params.yaml"], cwd=tmp_path, env=env)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "distill.sweep.storage = 'optuna.db'" in bad.stderr and "allowed: sqlite:///FILE" in bad.stderr
