"""A zuko posterior model (MAF, CVAE, CVAE+) of ``gwpe.models.flows`` with its package, without Lightning.

``FlowPosterior`` holds the model q(theta | strain) for batches of whitened strain (B, D, L) and standardised
parameters (B, P), draws from it (``sample``: inside the prior's support for models built on it) and saves and
loads it without pickle: ``weights.pt`` (tensors, ``weights_only``) + ``config.json`` (``metadata``). Evaluation,
inference and serving load this class, so their processes never import Lightning (~2.5 s each);
``gwpe.models.flow_module.FlowModule`` subclasses it with the training and validation steps, batch-norm
statistics, the optimiser and its schedules.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gwpe.config import TrainingConfig
from gwpe.models.flows import build_flow_model
from gwpe.models.package import PackagedModel

PAPER_FLOW_LR = 4e-4


class FlowPosterior(PackagedModel, torch.nn.Module):
    """A ``gwpe.models.flows`` posterior q(theta | strain) with its package: ``sample``, ``metadata``, ``load_model``.
    Lightning-free, so evaluation and inference load it without importing Lightning; ``FlowModule`` trains it."""

    model_kind = "flow"

    def __init__(
        self,
        flow_config: dict,
        learning_rate: float = PAPER_FLOW_LR,
        halve_every: int = 80,
        schedule: str = "step",
        training: TrainingConfig | None = None,
    ):
        super().__init__()
        if schedule not in ("step", "cosine"):
            raise ValueError(f"schedule = {schedule!r}; allowed: step, cosine")
        self.model = build_flow_model(flow_config)
        self.flow_config = self.model.config
        self.learning_rate = learning_rate
        self.halve_every = halve_every
        self.schedule = schedule
        self.training_config = training  # optimiser, warm-up and batch scaling; None: Adam, no warm-up

    @property
    def device(self) -> torch.device:
        """Where the weights are (a Lightning module's ``device``, kept without Lightning)."""
        return next(self.parameters()).device

    @property
    def validation_meaning(self) -> str:
        """``val_nll`` (exact -log q) or ``val_neg_elbo`` (the CVAEs' bound on it): what ``val_loss`` is."""
        return "val_neg_elbo" if str(self.flow_config.get("kind", "")).startswith("cvae") else "val_nll"

    @property
    def parameterisation(self) -> str:
        """Where the model's draws and density live: on the prior's support (its bijections) or, for packages
        saved before gwpe enforced the support, unbounded standardised parameters."""
        from gwpe.models.flows.support import parameterisation

        return parameterisation(self.model)

    @torch.no_grad()
    def sample(self, strain: torch.Tensor, n: int) -> torch.Tensor:
        """n standardised posterior samples (n, P) for one observation (D, L) (fast sampler, eval mode); float64
        inside the prior's support for models built on it."""
        self.model.eval()
        return self.model.sample(strain.unsqueeze(0).to(self.device), n).reshape(n, -1)

    def metadata(self) -> dict:
        return {
            "model": self.model_kind,
            "flow": self.flow_config,
            "learning_rate": self.learning_rate,
            "halve_every": self.halve_every,
            "schedule": self.schedule,
        }

    @classmethod
    def load_model(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "FlowPosterior":
        """Rebuild from ``save_model``'s folder; no pickled code is executed (``weights_only=True``)."""
        meta, state = cls.read_package(folder, map_location)
        module = cls(
            meta["flow"],
            learning_rate=meta["learning_rate"],
            halve_every=meta["halve_every"],
            schedule=meta.get("schedule", "step"),
        )
        module.load_state_dict(state)
        return module.eval()
