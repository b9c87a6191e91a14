"""``WaveNetRegressor`` with its normalisation, loss and package; standardised MSE on the head targets.

Physics head loss (choice documented here; the paper gives no formula): the standardised MSE of
(q, S_eff, sigma_eff) plus ``spin_loss_weight`` x the standardised MSE of the spins solved from the predicted
(S_eff, sigma_eff) at the *true* q (eqs. 2-3). The first term alone is the paper's loss; it treats an error in
S_eff alike at every q, although the solve multiplies it by 1/|det|, which grows without bound as q -> 1.
The second term weights each waveform's effective-spin error by how much it moves the spins; using the true
q keeps its gradient finite, and waveforms at the singular point (|det| < tolerance, q = 1) are left to the
first term. ``spin_loss_weight = 0`` reproduces the paper's loss.

Inputs are divided by ``input_scale`` (the RMS of training waveforms) and head targets standardised with
the training split's mean/std, both stored as buffers so a saved model carries its own normalisation.
Saved without pickle: ``save_model`` writes the state dict (tensors only, loaded with
``torch.load(weights_only=True)``) and a JSON file with the architecture and optimisation settings.

Predictions are physical (``predict``): q and both spins are clipped to ``parameter_box``, the box of the grid the
model was trained on (q in [q_min, q_max], spins in [s_min, s_max]; the same clip as Table 1 in
``gwpe.evaluation.wavenet``), or, for a model that does not know its grid, the physical box q >= 1, |chi| <= 1.
Every path (``gwpe evaluate wavenet``, ``gwpe infer``, ``load_wavenet``) therefore returns the same values; the raw
network outputs are ``forward``'s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gwpe import physics
from gwpe.config import TrainingConfig
from gwpe.models.package import CONFIG_FILE, PackagedModel  # noqa: F401 (CONFIG_FILE: re-exported)
from gwpe.models.wavenet import WaveNetConfig, WaveNetRegressor, head_targets, head_to_parameters


PHYSICAL_BOX = {"q": [1.0, None], "spin": [-1.0, 1.0]}  # q = m1/m2 >= 1, |chi| <= 1 (None: no upper bound)


def grid_box(grid) -> dict | None:
    """``parameter_box`` of a training grid (an ``H22GridConfig`` or its dict), the box Table 1 clips to."""
    if grid is None:
        return None
    get = grid.get if isinstance(grid, dict) else lambda key: getattr(grid, key)
    return {"q": [float(get("q_min")), float(get("q_max"))], "spin": [float(get("s_min")), float(get("s_max"))]}


def check_box(box: dict) -> dict:
    """A ``parameter_box`` inside the physical one: q_low >= 1, -1 <= s_low <= s_high <= 1."""
    (q_low, q_high), (s_low, s_high) = box["q"], box["spin"]
    q_high = None if q_high is None or math.isinf(q_high) else float(q_high)
    box = {"q": [max(1.0, float(q_low)), q_high], "spin": [max(-1.0, float(s_low)), min(1.0, float(s_high))]}
    if (q_high is not None and q_high < box["q"][0]) or box["spin"][0] > box["spin"][1]:
        raise ValueError(f"parameter_box {box} is empty")
    return box


class WaveNetPredictor(PackagedModel, torch.nn.Module):
    """``WaveNetRegressor`` with its input and target normalisation: loss, ``predict``, package (module doc).
    Lightning-free, so evaluation and inference load it without importing Lightning; ``WaveNetModule`` trains it."""

    model_kind = "wavenet"

    def __init__(
        self,
        config: WaveNetConfig,
        target_mean,
        target_std,
        input_scale: float = 1.0,
        learning_rate: float = 1e-3,
        max_epochs: int = 10,
        spin_std=(1.0, 1.0),
        training: TrainingConfig | None = None,
        parameter_box: dict | None = None,
    ):
        super().__init__()
        self.parameter_box = check_box(parameter_box or PHYSICAL_BOX)
        self.training_config = training  # optimiser, warm-up and batch scaling; None: Adam, no warm-up
        self.config = config
        self.net = WaveNetRegressor(config)
        self.register_buffer("target_mean", torch.as_tensor(target_mean, dtype=torch.float32))
        self.register_buffer("target_std", torch.as_tensor(target_std, dtype=torch.float32))
        self.register_buffer("input_scale", torch.as_tensor(float(input_scale), dtype=torch.float32))
        self.register_buffer("spin_std", torch.as_tensor(spin_std, dtype=torch.float32))
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs

    @classmethod
    def from_training_parameters(cls, config: WaveNetConfig, params, waveforms=None, **kwargs) -> "WaveNetPredictor":
        """Target standardisation from the training split's (q, s1z, s2z); input scale from sample waveforms."""
        params = torch.as_tensor(np.asarray(params), dtype=torch.float64)
        targets = head_targets(params, config.head, config.s_eff_scale)
        scale = (
            1.0 if waveforms is None else float(torch.as_tensor(np.asarray(waveforms)).double().square().mean().sqrt())
        )
        return cls(
            config,
            targets.mean(0),
            targets.std(0).clamp(min=1e-6),
            input_scale=scale or 1.0,
            spin_std=params[:, 1:].std(0).clamp(min=1e-6),
            **kwargs,
        )

    @property
    def device(self) -> torch.device:
        """Where the weights are (a Lightning module's ``device``, kept without Lightning)."""
        return self.target_mean.device

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Standardised head outputs for (B, 2, L) waveforms."""
        return self.net(waveforms / self.input_scale)

    def loss(self, waveforms: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        params = params.double()
        outputs = self(waveforms)
        targets = (
            head_targets(params, self.config.head, self.config.s_eff_scale).float() - self.target_mean
        ) / self.target_std
        loss = F.mse_loss(outputs, targets)
        if self.config.head == "physics" and self.config.spin_loss_weight > 0:
            loss = loss + self.config.spin_loss_weight * self.spin_consistency(outputs, params)
        return loss

    def spin_consistency(self, outputs: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Standardised MSE of the spins solved from predicted (S_eff, sigma_eff) at the true q (module doc)."""
        q = params[:, 0]
        regular = physics.spin_system_determinant(q).abs() >= physics.SPIN_SOLVE_SINGULAR_TOLERANCE
        if not bool(regular.any()):
            return outputs.sum() * 0.0
        physical = outputs.double() * self.target_std.double() + self.target_mean.double()
        at_true_q = torch.stack([q[regular], physical[regular, 1], physical[regular, 2]], dim=-1)
        spins = head_to_parameters(at_true_q, "physics", self.config.s_eff_scale)[:, 1:]
        residual = (spins - params[regular, 1:]) / self.spin_std.double()
        return residual.square().mean().to(outputs.dtype)

    @torch.no_grad()
    def predict(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Physical (q, s1z, s2z) for a batch of (B, 2, L) waveforms (float64), clipped to ``parameter_box``."""
        outputs = self(waveforms) * self.target_std + self.target_mean
        params = head_to_parameters(outputs.double(), self.config.head, self.config.s_eff_scale)
        (q_low, q_high), (s_low, s_high) = self.parameter_box["q"], self.parameter_box["spin"]
        q = params[:, 0].clamp(min=q_low, max=None if q_high is None else q_high)
        return torch.cat([q[:, None], params[:, 1:].clamp(min=s_low, max=s_high)], dim=-1)

    def metadata(self) -> dict:
        return {
            "model": self.model_kind,
            "architecture": self.config.to_dict(),
            "learning_rate": self.learning_rate,
            "max_epochs": self.max_epochs,
            "parameter_box": self.parameter_box,
        }

    @classmethod
    def load_model(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "WaveNetPredictor":
        """Rebuild from ``save_model``'s folder; no pickled code is executed (``weights_only=True``)."""
        meta, state = cls.read_package(folder, map_location)
        state.setdefault("spin_std", torch.ones(2))  # models saved before the spin term
        module = cls(
            WaveNetConfig(**meta["architecture"]),
            state["target_mean"],
            state["target_std"],
            input_scale=float(state.get("input_scale", torch.tensor(1.0))),
            learning_rate=meta["learning_rate"],
            max_epochs=meta["max_epochs"],
            parameter_box=meta.get("parameter_box") or grid_box(meta.get("h22", {}).get("grid")),
        )
        last = len(module.net.blocks) - 1  # packages from before the last block lost its unused residual map
        state = {k: v for k, v in state.items() if not k.startswith(f"net.blocks.{last}.residual.")}
        module.load_state_dict(state)
        return module.eval()
