"""tracking.wandb = offline: every stage run is mirrored into an offline W&B run (params, metrics) that
`wandb sync` can upload later; no network is touched (the base URL points at a closed port)."""

import subprocess
from pathlib import Path

from conftest import GWPE, gwpe_env, run_gwpe, tiny_profile, write_profile


def test_offline_wandb_run_mirrors_the_stage(tmp_path):
    profile = tiny_profile()
    profile["tracking"]["wandb"] = "offline"
    profile["flows"]["models"] = {"maf": profile["flows"]["models"]["maf"]}
    write_profile(tmp_path / "params.yaml", profile)
    env = gwpe_env(tmp_path, WANDB_SILENT="true", WANDB_BASE_URL="http://127.0.0.1:9")
    run_gwpe(
        ["generate", "strain", "--params", "params.yaml", "--dataset", "strain-5d"], cwd=tmp_path, env=env, check=True
    )
    run_gwpe(
        ["train", "flow", "--model", "maf", "--params", "params.yaml", "--no-progress"],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # one per stage run
    # wandb >= 0.2x writes runs as a protobuf log read by its Go core; the keys are plain UTF-8 in the records
    record = next(runs[-1].glob("run-*.wandb")).read_bytes()
    assert record.startswith(b":W&B")
    for key in (
        b"train-flow-maf",
        b"flows.training.max_epochs",
        b"val_loss",
        b"train_samples_per_second",
        b"MLflow run ",
    ):
        assert key in record, key
    dry = subprocess.run(
        [str(Path(GWPE).with_name("wandb")), "sync", "--dry-run", str(runs[-1])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0 and "Would sync 1 run" in dry.stdout + dry.stderr


def test_wandb_off_writes_nothing(tmp_path):
    write_profile(tmp_path / "params.yaml", tiny_profile())
    run_gwpe(["generate", "strain", "--params", "params.yaml", "--dataset", "strain-5d"], cwd=tmp_path, check=True)
    assert not (tmp_path / "wandb").exists()
