"""Lightning module around ``WaveNetRegressor``: standardised MSE on the head targets, Adam + cosine decay.

Inputs are divided by ``input_scale`` (the RMS of training waveforms) and head targets standardised with
the training split's mean/std, both stored as buffers so a saved model carries its own normalisation.
Saved without pickle: ``save_model`` writes the state dict (tensors only, loaded with
``torch.load(weights_only=True)``) and a JSON file with the architecture and optimisation settings.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from gwpe.models.wavenet import WaveNetConfig, WaveNetRegressor, head_targets, head_to_parameters

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"


class WaveNetModule(L.LightningModule):
    def __init__(self, config: WaveNetConfig, target_mean, target_std, input_scale: float = 1.0,
                 learning_rate: float = 1e-3, max_epochs: int = 10):
        super().__init__()
        self.config = config
        self.net = WaveNetRegressor(config)
        self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32))
        self.register_buffer("input_scale", torch.as_tensor(float(input_scale), dtype=torch.float32))
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs

    @classmethod
    def from_training_parameters(cls, config: WaveNetConfig, params, waveforms=None, **kwargs) -> "WaveNetModule":
        """Target standardisation from the training split's (q, s1z, s2z); input scale from sample waveforms."""
        targets = head_targets(torch.as_tensor(np.asarray(params), dtype=torch.float64), config.head)
        scale = 1.0 if waveforms is None else float(torch.as_tensor(np.asarray(waveforms)).double().square().mean().sqrt())
        return cls(config, targets.mean(0), targets.std(0).clamp(min=1e-6), input_scale=scale or 1.0, **kwargs)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Standardised head outputs for (B, 2, L) waveforms."""
        return self.net(waveforms / self.input_scale)

    def loss(self, waveforms: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        targets = (head_targets(params.double(), self.config.head).float() - self.target_mean) / self.target_std
        return F.mse_loss(self(waveforms), targets)

    def training_step(self, batch, batch_index):
        loss = self.loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self.loss(*batch), on_epoch=True, prog_bar=True, sync_dist=True)

    @torch.no_grad()
    def predict(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Physical (q, s1z, s2z) for a batch of (B, 2, L) waveforms (float64)."""
        outputs = self(waveforms) * self.target_std + self.target_mean
        return head_to_parameters(outputs.double(), self.config.head)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def metadata(self) -> dict:
        return {"model": "wavenet", "architecture": self.config.to_dict(), "learning_rate": self.learning_rate,
                "max_epochs": self.max_epochs}

    def save_model(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write ``weights.pt`` (tensors only) and ``config.json`` (architecture + ``extra``) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps({**self.metadata(), **(extra or {})}, indent=2) + "\n")
        return folder

    @classmethod
    def load_model(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "WaveNetModule":
        """Rebuild from ``save_model``'s folder; no pickled code is executed (``weights_only=True``)."""
        folder = Path(folder)
        meta = json.loads((folder / CONFIG_FILE).read_text())
        if meta.get("model") != "wavenet":
            raise ValueError(f"{folder / CONFIG_FILE}: model = {meta.get('model')!r}; expected 'wavenet'")
        state = torch.load(folder / WEIGHTS_FILE, weights_only=True, map_location=map_location)
        module = cls(WaveNetConfig(**meta["architecture"]), state["target_mean"], state["target_std"],
                     input_scale=float(state.get("input_scale", torch.tensor(1.0))),
                     learning_rate=meta["learning_rate"], max_epochs=meta["max_epochs"])
        module.load_state_dict(state)
        return module.eval()
