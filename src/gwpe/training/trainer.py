"""``build_trainer``: a Lightning Trainer from a ``TrainingConfig``, from a laptop CPU to multi-node DDP.

Checkpoints: ``last.ckpt`` is rewritten at the end of every epoch (the resume point) and the best epoch by
validation loss is kept (``best-epoch=NNN.ckpt``). Per-epoch metrics go to the active MLflow run from global rank 0.
"""

from __future__ import annotations

import time
import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

from gwpe.config import TrainingConfig
from gwpe.training.durability import AtomicCheckpointIO, RngStates


class MLflowEpochMetrics(Callback):
    """Logs train/val losses, learning rate and throughput at each epoch's end (step = epoch), from global
    rank 0: to ``run_id`` through the tracking client when given (works in ddp_spawn children, which do not
    inherit the parent's active run), else to the active run (mirrored to W&B when one is open)."""

    def __init__(self, samples_per_epoch: int, run_id: str | None = None, tracking_uri: str | None = None):
        self.samples_per_epoch = samples_per_epoch
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._start = None

    def on_train_epoch_start(self, trainer, module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        import mlflow

        from gwpe.tracking import log_metrics

        active = mlflow.active_run()
        if active is None and self.run_id is None:
            return
        seconds = time.perf_counter() - (self._start or time.perf_counter())
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(("train_", "val_")) and not k.endswith("_step") and v.numel() == 1
        }
        metrics["learning_rate"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        metrics["epoch_seconds"] = seconds
        metrics["train_samples_per_second"] = self.samples_per_epoch / max(seconds, 1e-9)
        if active is not None and (self.run_id is None or active.info.run_id == self.run_id):
            log_metrics(metrics, step=trainer.current_epoch)
        else:
            from mlflow.entities import Metric
            from mlflow.tracking import MlflowClient

            now = int(time.time() * 1000)
            MlflowClient(self.tracking_uri).log_batch(
                self.run_id, metrics=[Metric(k, float(v), now, trainer.current_epoch) for k, v in metrics.items()]
            )


class AverageBuffers(Callback):
    """Averages every floating-point buffer (batch-norm running statistics) over the ranks once per epoch,
    before validation and at the end of the fit, so validation, checkpoints and the saved model see one set.

    The companion of ``ddp_strategy``'s ``broadcast_buffers=False``: DDP's default copies rank 0's buffers
    to every rank at each forward pass, which for the MAF is 5.3 MB of constant MADE masks per step."""

    def _average(self, trainer, module):
        if trainer.world_size < 2:
            return
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if not buffers:
            return
        flat = torch.cat([b.detach().reshape(-1).double() for b in buffers])
        flat = trainer.strategy.reduce(flat, reduce_op="mean")
        offset = 0
        for b in buffers:
            b.copy_(flat[offset : offset + b.numel()].view_as(b))
            offset += b.numel()

    def on_validation_epoch_start(self, trainer, module):
        if not trainer.sanity_checking:
            self._average(trainer, module)

    def on_train_end(self, trainer, module):
        self._average(trainer, module)


def ddp_strategy(name: str):
    """Lightning's strategy ``name``; the DDP ones ("ddp", "ddp_spawn", ...) without the per-step broadcast of
    buffers (``AverageBuffers`` keeps the ranks' batch-norm statistics together instead).

    Measured (``benchmarks/ddp_cpu.py``, MAF, 2 CPU processes): the broadcast of the MADE masks costs about a
    tenth of each step on gloo, the same order as the 21 MB gradient all-reduce itself."""
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

    # the registry's own get() builds the strategy; its dict entry says what it would build
    entry = StrategyRegistry[name] if isinstance(name, str) and name in StrategyRegistry else None
    if entry is None or entry["strategy"] is not DDPStrategy:
        return name
    return DDPStrategy(**entry["init_params"], broadcast_buffers=False)


def _tracking_uri() -> str:
    from gwpe.tracking import tracking_uri

    return tracking_uri()


def best_checkpoint(trainer: L.Trainer) -> tuple[str | None, float | None]:
    """(path, validation loss) of the best epoch so far, or (None, None)."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor == "val_loss" and callback.best_model_score is not None:
            return callback.best_model_path or None, float(callback.best_model_score)
    return None, None


def restore_best(trainer: L.Trainer, module: L.LightningModule) -> int | None:
    """Load the best epoch's weights into ``module`` (weights_only); returns that epoch, or None."""
    path, _ = best_checkpoint(trainer)
    if not path or not Path(path).is_file():
        return None
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    module.load_state_dict(checkpoint["state_dict"])
    return int(checkpoint["epoch"])


def compiled(module: L.LightningModule, training: TrainingConfig):
    """``torch.compile(module)`` when ``training.compile``; Lightning unwraps it for checkpoints, and the
    original module shares the trained weights."""
    return torch.compile(module) if training.compile else module


class _DropAdverts(logging.Filter):
    """Lightning >= 2.6 prints a "litlogger" advert on every Trainer (18 lines in a demo's DVC log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_DropAdverts())
# Lightning 2.6 on torch 2.13: a deprecation inside Lightning itself, printed once per stage; nothing for users to do
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def build_trainer(
    training: TrainingConfig,
    checkpoint_dir: str | Path | None,
    samples_per_epoch: int,
    progress_bar: bool = True,
    extra_callbacks: list[Callback] | None = None,
    run_id: str | None = None,
) -> L.Trainer:
    """``checkpoint_dir=None``: no checkpoints (sweep trials). ``run_id``: the MLflow run epoch metrics go to."""
    if training.threads:
        torch.set_num_threads(training.threads)
    # run.json sits beside the checkpoints on purpose (see gwpe.training.checkpoints)
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    checkpoints: list[Callback] = (
        []
        if checkpoint_dir is None
        else [
            # The resume point. Not `save_last=True` on the best-model callback: Lightning 2.6 then rewrites
            # last.ckpt only in epochs where the monitored loss improved.
            ModelCheckpoint(
                dirpath=str(checkpoint_dir),
                filename="last",
                monitor=None,
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            ),
            ModelCheckpoint(
                dirpath=str(checkpoint_dir),
                filename="best-{epoch:03d}",
                monitor="val_loss",
                mode="min",
                save_top_k=1,
                every_n_epochs=1,
                enable_version_counter=False,
            ),
            RngStates(),  # RNG states in every checkpoint, restored on resume (gwpe.training.durability)
        ]
    )
    callbacks: list[Callback] = [
        *checkpoints,
        MLflowEpochMetrics(samples_per_epoch, run_id=run_id, tracking_uri=_tracking_uri() if run_id else None),
        AverageBuffers(),
        *(extra_callbacks or []),
    ]
    if progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, samples_per_epoch // training.batch_size // 20)))
    return L.Trainer(
        max_epochs=training.max_epochs,
        accelerator=training.accelerator,
        devices=training.devices,
        num_nodes=training.num_nodes,
        strategy=ddp_strategy(training.strategy),
        precision=training.precision,
        accumulate_grad_batches=training.accumulate_grad_batches,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],  # checkpoints written to a temporary name, then renamed
        logger=False,
        enable_checkpointing=checkpoint_dir is not None,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        deterministic=False,
        num_sanity_val_steps=0,
    )
