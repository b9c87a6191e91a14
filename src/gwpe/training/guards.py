"""``NonFiniteGuard``: stop a fit whose loss or weights become NaN or infinite, before anything is saved.

A diverged training (a corrupted input value, a learning rate too high) used to run to its last epoch and save an
all-NaN package with exit status 0. The guard checks

- the training loss of every optimisation step (``on_train_batch_end``),
- the epoch's ``train_loss`` and ``val_loss`` (``on_validation_end`` / ``on_train_epoch_end``), and
- every floating-point parameter and buffer of the module once per epoch (before the checkpoints are written:
  Lightning runs checkpoint callbacks after all others), so a checkpoint kept on disk is always a finite epoch,

and raises ``TrainingDivergedError``, one line naming the quantity, its value, the epoch and the step. The fit
stops there: ``finish_fit`` never reaches the package save (which refuses non-finite tensors itself, see
``gwpe.models.package``), and the CLI prints the line and exits non-zero. Under DDP the per-step decision is
reduced over the ranks, so every rank stops at the same step instead of one rank waiting for the others.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Callback

from gwpe.errors import TrainingDivergedError
from gwpe.models.package import describe_non_finite, non_finite_tensors

ADVICE = "no model package was saved; check the inputs for NaN/inf values or lower training.learning_rate"
EPOCH_METRICS = ("train_loss", "val_loss")


def _loss_value(outputs) -> torch.Tensor | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs if isinstance(outputs, torch.Tensor) else None


class NonFiniteGuard(Callback):
    """Raises ``TrainingDivergedError`` on a non-finite training step loss, epoch loss or weight (module doc)."""

    def _where(self, trainer, batch_index: int | None = None) -> str:
        batch = f", batch {batch_index}" if batch_index is not None else ""
        return f"epoch {trainer.current_epoch}, step {trainer.global_step}{batch}"

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        loss = _loss_value(outputs)
        if loss is None:
            return
        finite = bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:  # every rank stops together (a lone raise would leave the others waiting)
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            value = float(loss.detach().float().reshape(-1)[0]) if loss.numel() else math.nan
            raise TrainingDivergedError(
                f"training diverged: train_loss = {value} at {self._where(trainer, batch_index)}; {ADVICE}"
            )

    def _check_metrics(self, trainer, names: tuple[str, ...]) -> None:
        for name in names:
            value = trainer.callback_metrics.get(name)
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not bool(torch.isfinite(value)):
                raise TrainingDivergedError(
                    f"training diverged: {name} = {float(value)} at {self._where(trainer)}; {ADVICE}"
                )

    def _check_weights(self, trainer, module) -> None:
        names, bad, total = non_finite_tensors(module.state_dict())
        if names:
            raise TrainingDivergedError(
                f"training diverged: {describe_non_finite(names, bad, total)} at {self._where(trainer)}; {ADVICE}"
            )

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        self._check_metrics(trainer, ("val_loss",))
        self._check_weights(trainer, module)

    def on_train_epoch_end(self, trainer, module):
        self._check_metrics(trainer, EPOCH_METRICS)
        self._check_weights(trainer, module)

    def on_train_end(self, trainer, module):
        self._check_weights(trainer, module)
