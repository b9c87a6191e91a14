"""Lightning module around ``WaveNetRegressor``: standardised MSE on the head targets, Adam + cosine decay.

Saved without pickle: ``save_model`` writes the state dict (safetensors-free ``torch.save`` of tensors only,
loaded with ``weights_only=True``) and a JSON file with the architecture and target standardisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from gwpe.models.wavenet import WaveNetConfig, WaveNetRegressor, head_targets, head_to_parameters


class WaveNetModule(L.LightningModule):
    def __init__(self, config: WaveNetConfig, target_mean, target_std, learning_rate: float = 1e-3, max_epochs: int = 10):
        super().__init__()
        self.config = config
        self.net = WaveNetRegressor(config)
        self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32))
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs

    @classmethod
    def from_training_parameters(cls, config: WaveNetConfig, params, **kwargs) -> "WaveNetModule":
        """Target standardisation from the training split's (q, s1z, s2z)."""
        targets = head_targets(torch.as_tensor(params, dtype=torch.float64), config.head)
        return cls(config, targets.mean(0), targets.std(0).clamp(min=1e-6), **kwargs)

    def loss(self, waveforms: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        targets = (head_targets(params.double(), self.config.head).float() - self.target_mean) / self.target_std
        return F.mse_loss(self.net(waveforms), targets)

    def training_step(self, batch, batch_index):
        loss = self.loss(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self.loss(*batch), on_epoch=True, prog_bar=True, sync_dist=True)

    @torch.no_grad()
    def predict(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Physical (q, s1z, s2z) for a batch of (B, 2, L) waveforms."""
        outputs = self.net(waveforms) * self.target_std + self.target_mean
        return head_to_parameters(outputs.double(), self.config.head)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.learning_rate)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def save_model(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / "weights.pt")
        (folder / "config.json").write_text(json.dumps({"model": "wavenet", "architecture": self.config.to_dict(),
                                                        "learning_rate": self.learning_rate, "max_epochs": self.max_epochs}, indent=2))

    @classmethod
    def load_model(cls, folder: str | Path) -> "WaveNetModule":
        folder = Path(folder)
        meta = json.loads((folder / "config.json").read_text())
        state = torch.load(folder / "weights.pt", weights_only=True, map_location="cpu")
        module = cls(WaveNetConfig(**meta["architecture"]), state["target_mean"], state["target_std"],
                     learning_rate=meta["learning_rate"], max_epochs=meta["max_epochs"])
        module.load_state_dict(state)
        return module.eval()
