"""The real pipeline: DVC in a git repo, `dvc repro`, MLflow runs, no-op rerun, push/pull round trip."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from gwpe.tracking.metrics_files import read_metrics

from conftest import GWPE, REPO, gwpe_env, tiny_profile, write_profile

DVC = str(Path(GWPE).with_name("dvc"))


def sh(args, cwd, env):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_repro_noop_rerun_and_push_pull_round_trip(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_profile(repo / "params.yaml", tiny_profile(compute={"workers": 1}))
    env = gwpe_env(repo, MLFLOW_TRACKING_URI="", DVC_NO_ANALYTICS="1")
    env.pop("MLFLOW_TRACKING_URI")  # the default: sqlite:///<project root>/mlflow.db
    sh(["git", "init", "-q"], repo, env)
    sh([DVC, "init", "-q"], repo, env)
    sh([DVC, "config", "core.analytics", "false"], repo, env)
    sh([DVC, "remote", "add", "-d", "local", str(remote)], repo, env)

    out = sh([DVC, "repro"], repo, env)
    for split in ("train", "validation", "test"):
        assert (repo / "data" / "h22" / f"{split}.zarr" / "h22" / "zarr.json").is_file(), out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    all_runs = client.search_runs([client.get_experiment_by_name("gwpe-test").experiment_id])
    assert sorted(r.data.tags["gwpe.stage"] for r in all_runs) == sorted(
        ["generate-h22"] * 3
        + ["generate-strain"] * 2
        + ["train-flow"] * 2
        + ["train-wavenet"]
        + ["sweep"]
        + ["sweep-trial"] * 3
        + ["train-teacher"]
        + ["train-student"] * 2
        + ["evaluate-distill"]
        + ["reference", "sample", "evidence"]
    )
    # train -> evaluate -> register: one MLflow run holds the losses, Table 1 and the registered model
    train_run = next(r for r in all_runs if r.data.tags["gwpe.stage"] == "train-wavenet")
    assert train_run.data.tags["gwpe.stage.evaluate-wavenet"] == "true"
    assert len(client.get_metric_history(train_run.info.run_id, "train_loss")) == 4  # one point per epoch
    assert train_run.data.tags["data.input.h22-train.md5"] == lock["stages"]["generate-h22@train"]["outs"][0]["md5"]
    evaluation = read_metrics(repo / "metrics" / "wavenet-eval.json")  # numbers + identifiers sidecar
    assert evaluation["median_overlap"] == pytest.approx(train_run.data.metrics["test.median_overlap"])
    champion = client.get_model_version_by_alias("gwpe-wavenet", "champion")
    assert champion.run_id == train_run.info.run_id and evaluation["registry"]["version"] == int(champion.version)
    assert {p.name for p in (repo / "plots" / "wavenet").iterdir()} >= {
        "errors-vs-q.png",
        "overlap-histograms.png",
        "overlap-spin-planes.png",
        "waveform-pairs.png",
    }
    shown = sh([DVC, "metrics", "show"], repo, env)
    for column in ("table1.delta_q.median", "table1.overlap.min", "counts.overlap_le_0.97", "baseline.median_overlap"):
        assert column in shown, shown
    # flows: train -> evaluate (p-p report) -> registered per model, champion by validation NLL
    for name in ("maf", "cvae_plus"):
        report = yaml.safe_load((repo / "metrics" / f"flow-{name}-eval.json").read_text())
        flow_run = next(r for r in all_runs if r.data.tags.get("gwpe.flow") == name)
        assert flow_run.data.tags["gwpe.stage.evaluate-flow"] == "true" and set(report["ks_pvalue"]) >= {
            "m1",
            "chirp_mass",
        }
        registered = client.get_model_version_by_alias(f"gwpe-npe-{name.replace('_', '-')}", "champion")
        assert (
            registered.run_id == flow_run.info.run_id and (repo / "plots" / "flows" / name / f"{name}-pp.png").is_file()
        )
    strain_run = next(r for r in all_runs if "data.output.strain-5d.md5" in r.data.tags)
    assert (
        strain_run.data.tags["data.output.strain-5d.md5"]
        == lock["stages"]["generate-strain@strain-5d"]["outs"][0]["md5"]
    )
    assert (
        yaml.safe_load((repo / "metrics" / "strain-5d.json").read_text())["snr_median"]
        == strain_run.data.metrics["snr_median"]
    )
    runs = [r for r in all_runs if r.data.tags["gwpe.stage"] == "generate-h22"]
    for run in runs:
        split = run.data.tags["gwpe.split"]
        stage = lock["stages"][f"generate-h22@{split}"]
        assert run.data.tags["dvc.stage"] == f"generate-h22@{split}"
        assert run.data.tags[f"data.output.h22-{split}.md5"] == stage["outs"][0]["md5"]  # MLflow -> exact DVC version

    # sweep -> teacher -> students -> report: the sweep's best parameters are what the teacher trained with
    best = yaml.safe_load((repo / "models" / "sweep" / "best.json").read_text())
    teacher = yaml.safe_load((repo / "models" / "distill" / "teacher" / "config.json").read_text())
    assert teacher["sweep"]["params"] == best["params"] and any(
        d["path"] == "models/sweep/best.json" for d in lock["stages"]["train-teacher"]["deps"]
    )
    report = yaml.safe_load((repo / "metrics" / "distill-eval.json").read_text())
    assert set(report["table2"]) == {"teacher", "student-direct", "student-distilled"}
    assert (
        client.get_model_version_by_alias("gwpe-student", "champion").run_id
        == next(r for r in all_runs if r.data.tags.get("gwpe.distill.role") == "student-distilled").info.run_id
    )
    for column in ("table2.teacher.val_nll", "comparison.parameter_reduction", "best_val_loss", "trials_complete"):
        assert column in shown, shown

    rerun = sh([DVC, "repro"], repo, env)
    assert "didn't change, skipping" in rerun and "Running stage" not in rerun
    assert len(client.search_runs([runs[0].info.experiment_id])) == len(all_runs)

    sh([DVC, "push"], repo, env)

    def tracked(root):
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for folder in ("data", "models")
            for p in (root / folder).rglob("*")
            if p.is_file() and p.name != ".gitignore"
        }

    before = tracked(repo)
    # Issue 24, friction 2: the code is committed (a clone), the pipeline's state is not; `make demo` ends with
    # scripts/demo-baseline.sh, which commits it on a branch `demo`: the DVC experiment loop has a baseline.
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    sh(["git", "add", "dvc.yaml", "params.yaml", "src", ".gitignore", ".dvc"], repo, env)
    sh(["git", "-c", "user.name=gwpe-test", "-c", "user.email=t@gwpe.invalid", "commit", "-qm", "code"], repo, env)
    baseline = sh(["bash", str(REPO / "scripts" / "demo-baseline.sh")], repo, env)
    assert "DVC baseline committed on branch demo" in baseline, baseline
    assert not sh(["git", "status", "--porcelain", "--untracked-files=all", "dvc.lock", "metrics", "plots"], repo, env)
    experiment_loop(repo, env)
    # a fresh clone of the git repo gets every dataset and model back from the DVC remote
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    assert (
        not (clone / "data" / "h22" / "train.zarr").exists() and not (clone / "models" / "distill" / "teacher").exists()
    )
    sh([DVC, "pull"], clone, env)
    after = tracked(clone)
    assert after == before and len(after) > 10
    assert {
        "models/wavenet/weights.pt",
        "models/flows/maf/weights.pt",
        "models/distill/student-distilled/weights.pt",
        "models/sweep/best.json",
        "data/strain/strain-hl.zarr/zarr.json",
        "data/sampling/strain-5d.h5",
        "data/sampling/strain-5d-evidence.h5",
    } <= set(after)
    assert "up to date" in sh([DVC, "status"], clone, env).lower()


def _leaves(tree):
    for value in tree.values():
        yield from _leaves(value) if isinstance(value, dict) else [value]


def experiment_loop(repo: Path, env: dict) -> None:
    """``dvc exp run -S`` from the committed baseline; ``dvc exp show`` has the baseline's and the experiment's
    metrics side by side (no missing cell in the metrics both produce); ``dvc metrics diff`` and ``dvc plots
    diff`` load HEAD. Ends with the workspace back at the baseline."""
    import json

    sh([DVC, "exp", "run", "-S", "wavenet.training.learning_rate=0.0005", "--name", "slower"], repo, env)
    # the experiment's MLflow run carries its name: the UI and `dvc exp show` meet on it
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("gwpe-test").experiment_id
    tagged = client.search_runs([experiment], "tags.`dvc.exp_name` = 'slower'")
    assert "train-wavenet" in {r.data.tags["gwpe.stage"] for r in tagged}, [r.data.tags for r in tagged]
    shown = subprocess.run([DVC, "exp", "show", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    base = next(r for r in rows if r["rev"] != "workspace")
    exp = next(e for e in base["experiments"] for rev in e["revs"] if rev["name"] == "slower")["revs"][0]

    def metrics(row):
        files = (row.get("data") or {}).get("metrics") or {}
        assert files and not any("error" in f for f in files.values()), json.dumps(row)[:2000]
        data = {name: f["data"] for name, f in files.items()}
        # friction 5: DVC's columns are numbers a person compares; identifiers live in metrics/*.info.json
        leaves = list(_leaves(data))
        assert leaves and all(isinstance(v, (int, float)) for v in leaves), [v for v in leaves if isinstance(v, str)]
        return data

    base_metrics, exp_metrics = metrics(base), metrics(exp)
    assert set(base_metrics) == set(exp_metrics) and "metrics/wavenet-eval.json" in base_metrics
    wavenet = "metrics/wavenet-eval.json"
    assert base_metrics[wavenet]["median_overlap"] != exp_metrics[wavenet]["median_overlap"]
    assert exp["data"]["params"]["params.yaml"]["data"]["wavenet"]["training"]["learning_rate"] == 0.0005
    diff = sh([DVC, "metrics", "diff", "--json"], repo, env)
    assert "wavenet-eval.json" in diff and "Error" not in diff, diff
    plots = sh([DVC, "plots", "diff", "-o", str(repo / "plots-diff")], repo, env)
    assert (repo / "plots-diff" / "index.html").is_file(), plots
    shutil.rmtree(repo / "plots-diff")
    sh(["git", "checkout", "--", "params.yaml"], repo, env)
    sh([DVC, "checkout", "--force"], repo, env)
    sh(["git", "checkout", "--", "metrics", "plots", "dvc.lock"], repo, env)
