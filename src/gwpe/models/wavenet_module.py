"""Lightning module that trains a ``WaveNetPredictor`` (``gwpe.models.wavenet_predictor``: architecture,
normalisation, loss and package): Adam (or LAMB) with cosine decay over ``max_epochs``."""

from __future__ import annotations

import lightning as L
import torch

from gwpe.models.package import CONFIG_FILE  # noqa: F401 (re-exported)
from gwpe.models.wavenet_predictor import PHYSICAL_BOX, WaveNetPredictor, check_box, grid_box  # noqa: F401


class WaveNetModule(WaveNetPredictor, L.LightningModule):
    """``WaveNetPredictor`` plus the training hooks; ``load_model`` on it rebuilds a trainable module."""

    def training_step(self, batch, batch_index):
        loss = self.loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self.loss(*batch), on_epoch=True, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        """Adam (or LAMB, from ``training_config``) with cosine decay over ``max_epochs``; see ``gwpe.models.optim``."""
        import math

        from gwpe.models.optim import configure

        epochs = max(1, self.max_epochs)
        return configure(
            self,
            [{"params": list(self.parameters()), "lr": self.learning_rate}],
            lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
            lambda epoch: 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)),
            self.training_config,
        )
