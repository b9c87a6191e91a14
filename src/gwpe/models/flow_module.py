"""Lightning module that trains a ``FlowPosterior`` (``gwpe.models.flow_posterior`` has the model, its losses,
schedules and package): the training and validation steps, batch-norm statistics and the optimiser."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from gwpe.models.flow_posterior import PAPER_FLOW_LR, FlowPosterior

__all__ = ["PAPER_FLOW_LR", "FlowModule", "FlowPosterior"]


class FlowModule(FlowPosterior, L.LightningModule):
    """``FlowPosterior`` plus the training hooks; ``load_model`` on it rebuilds a trainable module."""

    def training_step(self, batch, batch_index):
        strain, theta = batch
        loss = self.model.loss(theta, strain, epoch=self.current_epoch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_index):
        strain, theta = batch
        # the MAF's fitted flow, without its phase images (~5x the cost): the quantity the training loss follows
        log_prob = getattr(self.model, "flow_log_prob", self.model.log_prob)
        loss = -log_prob(theta, strain).mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        # the same number under what it is, so charts of several kinds never mix an NLL with an ELBO bound
        self.log(self.validation_meaning, loss, on_epoch=True, prog_bar=False, sync_dist=True)

    @torch.no_grad()
    def set_training_statistics(self, dataset, batch_size: int = 256) -> int:
        """Batch-norm statistics from every sample of ``dataset`` (the training split); returns the rows seen."""
        loader = DataLoader(dataset, batch_size=batch_size)
        return self.model.set_batchnorm_statistics(
            (strain.to(self.device), theta.to(self.device)) for strain, theta in loader
        )

    def configure_optimizers(self):
        import math

        from gwpe.models.optim import configure

        scale = self.learning_rate / PAPER_FLOW_LR
        groups = [
            {**g, "lr": g["lr"] * scale} for g in self.model.parameter_groups(gaussian_lr=1e-4, flow_lr=PAPER_FLOW_LR)
        ]
        epochs = self.trainer.max_epochs if self._trainer is not None and self.trainer.max_epochs else 1
        if self.schedule == "cosine":

            def scheduler(optimizer):
                return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))

            def factor(epoch):
                return 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / max(1, epochs)))
        else:

            def scheduler(optimizer):
                return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, self.halve_every), gamma=0.5)

            def factor(epoch):
                return 0.5 ** (epoch // max(1, self.halve_every))

        return configure(self, groups, scheduler, factor, self.training_config)
