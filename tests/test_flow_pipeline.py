"""`gwpe train flow` / `gwpe evaluate flow` on a real tiny strain store: MLflow run, p–p report, registry."""

import json

from mlflow.tracking import MlflowClient

from conftest import run_gwpe, tiny_profile, tiny_strain, write_profile


def _project(tmp_path):
    profile = tiny_profile()
    profile["strain"] = tiny_strain(n_signals=48, validation_fraction=0.25)
    profile["flows"] = {
        "dataset": "strain-5d",
        "models": {"maf": {"kind": "maf", "options": {"transforms": 2, "hidden": [32, 32]}}},
        "training": {"batch_size": 12, "max_epochs": 3, "learning_rate": 0.002, "seed": 0, "num_workers": 0},
        "evaluation": {"injections": 10, "samples": 200},
    }
    write_profile(tmp_path / "params.yaml", profile)
    run_gwpe(["generate", "strain", "--params", "params.yaml", "--dataset", "strain-5d"], cwd=tmp_path, check=True)
    return tmp_path


def test_train_and_evaluate_flow_report_calibration_and_register(tmp_path):
    project = _project(tmp_path)
    out = run_gwpe(["train", "flow", "--model", "maf", "--params", "params.yaml", "--no-progress"], cwd=project, check=True)
    assert "train flow maf: 3 epochs" in out.stdout
    config = json.loads((project / "models" / "flows" / "maf" / "config.json").read_text())
    assert config["model"] == "flow" and config["standardisation"]["parameters"] == ["m1", "m2", "phi0", "tc", "dL"]

    out = run_gwpe(["evaluate", "flow", "--model", "maf", "--params", "params.yaml", "--metrics", "metrics/maf.json",
                    "--no-progress"], cwd=project, check=True)
    metrics = json.loads((project / "metrics" / "maf.json").read_text())
    assert set(metrics["ks_pvalue"]) == {"m1", "m2", "phi0", "tc", "dL", "chirp_mass"}
    assert all(0 <= p <= 1 for p in metrics["ks_pvalue"].values()) and metrics["n_injections"] == 10
    assert all(0 < w for w in metrics["width90_over_prior"].values())
    assert "Table III" in out.stdout and (project / "plots" / "flows" / "maf-pp.png").stat().st_size > 10_000
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("gwpe-npe-maf", "champion")
    assert champion.run_id == config["mlflow_run_id"] and metrics["registry"] == {"name": "gwpe-npe-maf", "version": 1, "champion": True}
    run = client.get_run(config["mlflow_run_id"])
    assert run.data.metrics["test.val_nll"] == metrics["val_nll"]
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3  # one point per epoch


def test_unknown_flow_model_is_one_line_error(tmp_path):
    project = _project(tmp_path)
    out = run_gwpe(["train", "flow", "--model", "nope", "--params", "params.yaml"], cwd=project)
    assert out.returncode != 0 and "flow model = 'nope'; allowed: maf" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_dry_run_prices_cvae_on_strain_8d_without_data(tmp_path):
    profile = tiny_profile()
    profile["strain"] = tiny_strain(parameters=["m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn"])
    profile["flows"] = {"dataset": "strain-5d", "models": {"cvae": {"kind": "cvae", "options": {"hidden": [64, 64, 64], "latent": 16}}},
                        "training": {"batch_size": 16, "max_epochs": 5}}
    write_profile(tmp_path / "params.yaml", profile)
    out = run_gwpe(["train", "flow", "--model", "cvae", "--params", "params.yaml", "--dry-run"], cwd=tmp_path, check=True)
    assert "cvae (cvae) on strain-5d" in out.stdout and "8 parameters inferred from strain of shape (1, 1024)" in out.stdout
    assert "samples/s" in out.stdout and "for 5 epochs" in out.stdout and not (tmp_path / "models").exists()
