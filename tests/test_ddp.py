"""Data-parallel training on CPU (gloo): 2 ddp_spawn processes against 1 with the same global batch, for the
WaveNet and a flow; two "nodes" on loopback under torchrun; a run checkpointed by 2 processes resumes with 1;
gwpe's DDP strategy keeps buffers rank-local and averages batch-norm statistics once per epoch."""

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import GWPE, gwpe_env, run_gwpe, tiny_profile, tiny_wavenet, write_profile

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def history(env, stage, key="val_loss"):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [client.get_experiment_by_name("gwpe-test").experiment_id], f"tags.`gwpe.stage` = '{stage}'"
    )
    return runs, [m.value for m in sorted(client.get_metric_history(runs[0].info.run_id, key), key=lambda m: m.step)]


def train(tmp_path, name, model_args, section, training, data_args):
    folder = tmp_path / name
    folder.mkdir()
    profile = tiny_profile()
    if section == "wavenet":
        profile["wavenet"] = tiny_wavenet(**training)
    else:
        profile["strain"]["datasets"]["strain-5d"]["n_signals"] = 100  # 80 train, 20 validation
        profile["flows"]["models"] = {"maf": profile["flows"]["models"]["maf"]}
        profile["flows"]["training"].update({"accelerator": "cpu", **training})
    write_profile(folder / "params.yaml", profile)
    env = gwpe_env(folder)
    run_gwpe([*data_args, "--params", "params.yaml"], cwd=folder, env=env, check=True)
    result = run_gwpe(
        [*model_args, "--params", "params.yaml", "--no-progress"], cwd=folder, env=env, check=True, timeout=600
    )
    return folder, env, result


@pytest.mark.slow
@pytest.mark.parametrize("section", ["wavenet", "flow"])
def test_two_spawned_processes_match_one_with_the_same_global_batch(tmp_path, section):
    if section == "wavenet":
        model_args, data_args, batch, epochs = ["train", "wavenet"], ["generate", "h22"], 9, 4
    else:
        model_args, data_args, batch, epochs = (
            ["train", "flow", "--model", "maf"],
            ["generate", "strain", "--dataset", "strain-5d"],
            8,
            3,
        )
    common = {"max_epochs": epochs, "threads": 1}
    _, env1, _ = train(
        tmp_path, "one", model_args, section, {**common, "batch_size": 2 * batch, "devices": 1}, data_args
    )
    _, env2, result = train(
        tmp_path,
        "two",
        model_args,
        section,
        {**common, "batch_size": batch, "devices": 2, "strategy": "ddp_spawn"},
        data_args,
    )
    stage = "train-wavenet" if section == "wavenet" else "train-flow"
    runs1, losses1 = history(env1, stage, "train_loss")
    runs2, losses2 = history(env2, stage, "train_loss")
    assert len(runs2) == 1, "one MLflow run for the 2-process job (rank 0 logs)"
    assert len(losses2) == epochs and len(losses1) == epochs  # one point per epoch, from the spawned rank 0
    # same global batch, same number of steps: the losses agree within the data-order difference
    assert losses2[-1] == pytest.approx(losses1[-1], rel=0.15, abs=0.05), (losses1, losses2)
    assert losses2[-1] < losses2[0] and losses1[-1] < losses1[0]  # both learn


def kill_tree(launcher: subprocess.Popen) -> None:
    """SIGKILL a torchrun launcher and every process under it, and wait until they are gone. torchrun starts
    each worker in a session of its own, so killing the launcher's process group alone leaves the workers
    training: they then finished the run and marked it complete under the resume (a flaky CI failure)."""
    import psutil

    try:
        processes = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        processes = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    _, alive = psutil.wait_procs(processes, timeout=60)
    assert not alive, f"still running after SIGKILL: {alive}"
    launcher.wait()


@pytest.mark.slow
def test_two_loopback_nodes_under_torchrun_then_resume_with_one_process(tmp_path):
    profile = tiny_profile()
    profile["wavenet"] = tiny_wavenet(max_epochs=40, batch_size=9, devices=1, num_nodes=2, strategy="ddp", threads=1)
    write_profile(tmp_path / "params.yaml", profile)
    env = gwpe_env(tmp_path)
    run_gwpe(["generate", "h22", "--params", "params.yaml"], cwd=tmp_path, env=env, check=True)
    port = free_port()
    nodes = [
        subprocess.Popen(
            [
                TORCHRUN,
                "--nnodes=2",
                f"--node_rank={rank}",
                "--nproc_per_node=1",
                "--master_addr=127.0.0.1",
                f"--master_port={port}",
                "--no-python",
                str(GWPE),
                "train",
                "wavenet",
                "--params",
                "params.yaml",
                "--resume",
                "--no-progress",
            ],
            cwd=tmp_path,
            env=env,
            stdout=open(tmp_path / f"node{rank}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for rank in (0, 1)
    ]
    checkpoint = tmp_path / "checkpoints" / "wavenet" / "last.ckpt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not checkpoint.exists():
            assert all(n.poll() in (None, 0) for n in nodes), (tmp_path / "node0.log").read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(1.0)  # a few more epochs
    finally:
        for node in nodes:  # a node failure mid-run: its launcher and its workers
            kill_tree(node)
    assert checkpoint.exists(), (tmp_path / "node0.log").read_text()[-3000:]
    state = json.loads((tmp_path / "checkpoints" / "wavenet" / "run.json").read_text())
    assert state["complete"] is False and state["mlflow_run_id"]
    import torch

    epoch_at_kill = torch.load(checkpoint, weights_only=True, map_location="cpu")["epoch"]
    assert 0 <= epoch_at_kill < 39
    # resume on one process: only where it runs changes
    profile["wavenet"]["training"].update({"num_nodes": 1, "strategy": "auto"})
    write_profile(tmp_path / "params.yaml", profile)
    result = run_gwpe(
        ["train", "wavenet", "--params", "params.yaml", "--resume", "--no-progress"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=600,
    )
    assert "resuming from" in result.stdout
    runs, losses = history(env, "train-wavenet")
    assert len(runs) == 1 and runs[0].info.run_id == state["mlflow_run_id"]  # the same MLflow run continues
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss")}
    assert steps == set(range(40))  # epochs before the kill (2 nodes) and after the resume (1 process), one run
    assert json.loads((tmp_path / "checkpoints" / "wavenet" / "run.json").read_text())["complete"] is True
    assert (tmp_path / "models" / "wavenet" / "weights.pt").is_file()


class TinyBatchNorm(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))

    def training_step(self, batch, batch_index):
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class RecordBuffers(L.Callback):
    def __init__(self, folder, tag):
        self.folder, self.tag = folder, tag

    def on_train_end(self, trainer, module):
        torch.save(
            {k: v.clone() for k, v in module.net[1].state_dict().items() if v.is_floating_point()},
            Path(self.folder) / f"{self.tag}-{trainer.global_rank}.pt",
        )


def test_ddp_strategy_skips_the_buffer_broadcast_and_averages_batch_norm_statistics(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from gwpe.training.trainer import AverageBuffers, ddp_strategy

    strategy = ddp_strategy("ddp_spawn")
    assert strategy._ddp_kwargs == {"broadcast_buffers": False} and strategy._start_method == "spawn"
    assert ddp_strategy("auto") == "auto" and ddp_strategy("fsdp") == "fsdp"
    # ranks see different data (DistributedSampler interleaves the rows), so their running statistics differ
    x = torch.arange(64, dtype=torch.float32).repeat_interleave(3).view(64, 3) % 2 * 5 + torch.linspace(0, 1, 192).view(
        64, 3
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[RecordBuffers(tmp_path, "before"), AverageBuffers(), RecordBuffers(tmp_path, "after")],
    )
    trainer.fit(TinyBatchNorm(), DataLoader(TensorDataset(x), batch_size=8, shuffle=False))
    before = [torch.load(tmp_path / f"before-{r}.pt", weights_only=True) for r in (0, 1)]
    after = [torch.load(tmp_path / f"after-{r}.pt", weights_only=True) for r in (0, 1)]
    assert not torch.allclose(before[0]["running_mean"], before[1]["running_mean"])  # not broadcast from rank 0
    for key in ("running_mean", "running_var"):
        torch.testing.assert_close(after[0][key], after[1][key])
        torch.testing.assert_close(after[0][key], (before[0][key] + before[1][key]) / 2)
