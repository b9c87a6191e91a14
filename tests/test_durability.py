"""No lost or crossed work (issue 25): one writer per output folder, checkpoints and packages written whole or
not at all (a real full filesystem), progress markers kept until a stage's last step, resume that survives a
deleted MLflow run, killed runs closed as KILLED, and a resumed training equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import run_in_process, tiny_profile, write_profile
from gwpe.data.splits import SplitDataModule

HERE = Path(__file__).resolve().parent


# --- a tiny Lightning fit through gwpe's own trainer (build_trainer): seconds -----------------------------------


class TinyModule(L.LightningModule):
    """A two-layer regressor that draws from the global torch RNG every step (input noise and dropout), as the
    strain datasets' fresh noise and the CVAE's sampling do."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Dropout(0.2), torch.nn.Linear(width, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = ((self.net(x + 0.1 * torch.randn_like(x)) - y) ** 2).mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", ((self.net(x) - y) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class TinyData(SplitDataModule):
    """64 training and 16 validation rows through gwpe's DDP-aware loaders (shuffled by (seed, epoch))."""

    def __init__(self):
        super().__init__(batch_size=8, num_workers=0, seed=0)

    def make_dataset(self, split: str):
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        x = torch.randn(64 if split == "train" else 16, 8, generator=generator)
        return TensorDataset(x, x.sum(1, keepdim=True))


class StopAfter(L.Callback):
    """Stands in for a kill: raises once epoch ``epoch`` is over and checkpointed (at the next epoch's start)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch + 1:
            raise RuntimeError("stopped")


def tiny_fit(checkpoint_dir: Path | None, max_epochs: int, ckpt_path=None, width: int = 32, callbacks=()):
    """Seed, build the module and fit it as ``gwpe.training.fit`` does; returns the module."""
    from gwpe.config import TrainingConfig
    from gwpe.training.trainer import build_trainer

    training = TrainingConfig(batch_size=8, max_epochs=max_epochs, accelerator="cpu", devices=1, threads=1)
    L.seed_everything(0, workers=True, verbose=False)
    module = TinyModule(width)
    trainer = build_trainer(training, checkpoint_dir, 64, progress_bar=False, extra_callbacks=list(callbacks))
    trainer.fit(module, datamodule=TinyData(), ckpt_path=ckpt_path, weights_only=True)
    return module


def test_resumed_training_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    straight = tiny_fit(tmp_path / "straight", max_epochs=3)
    with pytest.raises(RuntimeError, match="stopped"):
        tiny_fit(tmp_path / "stopped", max_epochs=3, callbacks=[StopAfter(1)])
    last = tmp_path / "stopped" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    resumed = tiny_fit(tmp_path / "stopped", max_epochs=3, ckpt_path=last)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after a resume"


# --- a checkpoint write on a full filesystem ---------------------------------------------------------------

FULL_DISK_SCRIPT = """
import hashlib, json, os, resource, sys
from pathlib import Path
import torch
sys.path.insert(0, sys.argv[2])
from test_durability import tiny_fit

folder, width, limit = Path(sys.argv[1]), 1024, int(sys.argv[3])
tiny_fit(folder, max_epochs=1, width=width)
digest = lambda p: hashlib.md5(p.read_bytes()).hexdigest()
before = {p.name: digest(p) for p in folder.iterdir()}
if limit:  # no tmpfs here: a file-size limit makes the next write fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    tiny_fit(folder, max_epochs=3, ckpt_path=folder / "last.ckpt", width=width)
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
loadable = {}
for p in folder.iterdir():
    try:
        loadable[p.name] = int(torch.load(p, weights_only=True)["epoch"])
    except Exception as exc:
        loadable[p.name] = f"{type(exc).__name__}"
after = {p.name: digest(p) for p in folder.iterdir()}
print(json.dumps({"error": error, "before": before, "after": after, "loadable": loadable}))
"""


def _can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {where}"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


def test_a_checkpoint_write_on_a_full_filesystem_keeps_the_previous_checkpoints(tmp_path):
    """A real ENOSPC: the checkpoint folder is a tmpfs of ~2.5 checkpoints, mounted in a user namespace (no root);
    $TMPDIR stays on the disk, as on a cluster whose /tmp differs from the project's filesystem. Epoch 0 fills
    two checkpoints; epoch 1's writes run out of space. Without unshare, RLIMIT_FSIZE (EFBIG) stands in."""
    size = len(_checkpoint_bytes(tmp_path / "measure"))
    folder = tmp_path / "ckpt"
    folder.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    script = [sys.executable, "-c", FULL_DISK_SCRIPT, str(folder), str(HERE)]
    if _can_mount_tmpfs(folder):
        mount = f"mount -t tmpfs -o size={int(2.5 * size) // 1024}k none {folder}"
        command = ["unshare", "-rm", "sh", "-c", f'{mount} && exec "$@"', "sh", *script, "0"]
    else:
        command = [*script, str(size // 2)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["error"] is not None and ("No space left" in report["error"] or "too large" in report["error"])
    # nothing truncated or temporary is left; the epoch-0 checkpoints are byte for byte as they were
    assert sorted(report["after"]) == ["best-epoch=000.ckpt", "last.ckpt"], report
    assert report["after"] == report["before"]
    assert report["loadable"] == {"best-epoch=000.ckpt": 0, "last.ckpt": 0}


def _checkpoint_bytes(folder: Path) -> bytes:
    tiny_fit(folder, max_epochs=1, width=1024)
    return (folder / "last.ckpt").read_bytes()


def test_a_package_write_that_fails_keeps_the_previous_package(tmp_path):
    """An EFBIG (RLIMIT_FSIZE) while saving a package over an older one leaves the older one whole."""
    script = f"""
import hashlib, json, resource, sys
from pathlib import Path
import torch
from gwpe.models.package import PackagedModel

class Model(torch.nn.Module, PackagedModel):
    model_kind = "wavenet"
    def __init__(self, n):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((n,), float(n)))
    def metadata(self):
        return {{"model": "wavenet", "n": self.w.numel()}}

folder = Path({str(tmp_path / "pkg")!r})
Model(10).save_model(folder)
before = {{p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}}
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
try:
    Model(100_000).save_model(folder)
except OSError as exc:
    print("error", exc.errno)
after = {{p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}}
print(json.dumps([before == after, sorted(after)]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "error 27"  # EFBIG
    assert json.loads(lines[-1]) == [True, ["MLmodel", "config.json", "weights.pt"]]


# --- projects on the tiny h22 grid --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def h22_data(tmp_path_factory):
    """The tiny h22 splits, generated once in-process (no MLflow run: the stores only)."""
    from gwpe.config import load_config
    from gwpe.data.h22 import generate_split

    root = tmp_path_factory.mktemp("h22")
    config = load_config(write_profile(root / "params.yaml", tiny_profile()))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for split in ("train", "validation"):
            generate_split(config, split)
    finally:
        os.chdir(cwd)
    return root / "data"


def _project(tmp_path: Path, monkeypatch, h22_data: Path | None = None, **wavenet_training) -> Path:
    profile = tiny_profile()
    profile["wavenet"]["training"].update(wavenet_training)
    write_profile(tmp_path / "params.yaml", profile)
    if h22_data is not None:
        shutil.copytree(h22_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"pid {os.getpid()} on testhost".encode())
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("folder", ["models/wavenet", "checkpoints/wavenet"])
def test_a_second_training_into_the_same_folder_fails_at_once_naming_the_holder(tmp_path, monkeypatch, capsys, folder):
    project = _project(tmp_path, monkeypatch)
    (project / folder).mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(project / folder / ".gwpe.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out, err = run_in_process(["train", "wavenet", "--params", "params.yaml", "--no-progress"], capsys)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and folder in lines[0] and f"pid {holder.pid} on testhost" in lines[0], err
        assert not (project / "mlflow.db").exists()  # failed before any run was opened
    finally:
        holder.kill()  # a killed holder leaves no stale lock: the kernel drops its flock
        holder.wait()
    from gwpe.training.locks import folder_lock

    with folder_lock(project / folder) as path:
        assert path.read_text().startswith(f"pid {os.getpid()} on ")
    assert not path.exists()  # removed on release: the folder holds only its outputs


def test_resume_survives_a_deleted_mlflow_run_and_keeps_the_checkpoint(tmp_path, monkeypatch, capsys, h22_data):
    from mlflow.tracking import MlflowClient

    import gwpe.training.trainer as trainer_module

    project = _project(tmp_path, monkeypatch, h22_data, max_epochs=2)
    real_restore_best = trainer_module.restore_best

    def crash(*args, **kwargs):  # every epoch checkpointed, the package not yet saved: an unfinished run
        raise RuntimeError("killed after the last checkpoint")

    monkeypatch.setattr(trainer_module, "restore_best", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_in_process(["train", "wavenet", "--params", "params.yaml", "--no-progress"], capsys)
    monkeypatch.setattr(trainer_module, "restore_best", real_restore_best)
    state = json.loads((project / "checkpoints" / "wavenet" / "run.json").read_text())
    assert not state["complete"]
    client = MlflowClient()
    client.delete_run(state["mlflow_run_id"])  # as the UI's delete does

    argv = ["train", "wavenet", "--params", "params.yaml", "--resume", "--no-progress"]
    code, out, err = run_in_process(argv, capsys)
    assert code == 0, err
    assert "resuming from" in out
    assert f"MLflow run {state['mlflow_run_id']} was deleted; logging to a new run" in out
    new_id = json.loads((project / "models" / "wavenet" / "config.json").read_text())["mlflow_run_id"]
    assert new_id != state["mlflow_run_id"]
    assert json.loads((project / "checkpoints" / "wavenet" / "run.json").read_text())["mlflow_run_id"] == new_id
    new_run = client.get_run(new_id)
    assert new_run.info.status == "FINISHED" and new_run.data.params  # a new run logs its params


KILLED_STAGE = """
import os, signal
from gwpe.config import load_config
from gwpe.tracking import stage_run
with stage_run(load_config("params.yaml"), "train-wavenet") as run:
    print(run.info.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_runs_left_running_by_a_killed_stage_are_closed_as_killed_on_the_next_start(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from gwpe.config import load_config
    from gwpe.tracking import stage_run

    project = _project(tmp_path, monkeypatch)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    killed_id = killed.stdout.strip()
    client = MlflowClient()
    assert client.get_run(killed_id).info.status == "RUNNING"
    # a run of the same stage whose process is alive (this one) stays RUNNING
    experiment = client.get_experiment_by_name("gwpe-test").experiment_id
    alive = client.create_run(
        experiment,
        tags={"gwpe.stage": "train-wavenet", "gwpe.host": os.uname().nodename, "gwpe.pid": str(os.getpid())},
    ).info.run_id

    with stage_run(load_config("params.yaml"), "train-wavenet") as run:
        assert run.info.run_id not in (killed_id, alive)
    out = capsys.readouterr().out
    assert f"MLflow run {killed_id} was left RUNNING by a killed process; marked KILLED" in out
    assert client.get_run(killed_id).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


# --- generation: progress markers removed only after the stage's last step ----------------------------------


def test_a_failure_after_a_complete_store_keeps_its_progress_so_the_rerun_generates_nothing(tmp_path, monkeypatch):
    from gwpe.config import load_config
    from gwpe.data.checksum import dvc_md5
    from gwpe.stages import generate_h22
    from gwpe.tracking import StageRun

    project = _project(tmp_path, monkeypatch)
    config = load_config("params.yaml")
    store = project / "data" / "h22" / "validation.zarr"

    def locked(*args, **kwargs):  # the last MLflow write of the stage, after the store is complete
        raise sqlite3.OperationalError("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(StageRun, "log_figure", locked)
        with pytest.raises(sqlite3.OperationalError):
            generate_h22.execute(config, "validation")
    progress = store / ".gwpe-progress"
    assert progress.is_dir() and sorted(p.name for p in (progress / "done").iterdir()) == ["0"]

    metrics = generate_h22.execute(config, "validation")
    assert metrics["chunks_skipped"] == metrics["chunks_total"] == 1  # nothing regenerated
    assert not progress.exists()
    assert metrics["md5"] == dvc_md5(store)  # the logged md5 is the finished store's (DVC's)
