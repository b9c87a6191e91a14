"""Lightning module around the zuko posterior models (MAF, CVAE, CVAE+) of ``gwpe.models.flows``.

Batches are (whitened strain (B, D, L), standardised parameters (B, P)) from ``StrainDataModule``; the
model learns p(theta | strain). Training loss: the model's own (-log q for the MAF; reconstruction + annealed
KL for the CVAEs, Green et al. sec. III B). Validation: ``val_loss`` = mean -log q(theta | strain) (exact for
the MAF's flow, the negative ELBO for the CVAEs: comparable across kinds as an upper bound), the column of the
paper's Table III; it is also logged as ``val_nll`` or ``val_neg_elbo``, its meaning. A MAF with a ``phase``
symmetry is evaluated (``gwpe evaluate flow``) with its wrapped,
symmetrised density; during training ``val_loss`` is the flow's own, as the training loss is.

Batch norm (Green et al., after Papamakarios et al.): in training each BatchNormTransform standardises with
its batch and moves running statistics by momentum; validation during training uses those running
statistics. The paper resets them to the statistics of the whole training set at each epoch's end; only the
saved model's statistics outlive the next epoch's momentum updates, so ``set_training_statistics`` does that
once, on the selected epoch, before saving (one pass without gradients). Measured on the default profile:
validation NLL 0.061 with whole-set statistics, 0.145-0.153 with those of a 4,096-signal subset.

Optimiser: Adam over the model's parameter groups (CVAE+: 1e-4 Gaussian parts, 4e-4 flow parts; scaled by
``learning_rate / 4e-4`` so one number moves both). ``schedule``: "step" halves the learning rate every
``halve_every`` epochs (Green et al.: 80); "cosine" decays it as lr_0 (1 + cos(pi e / E)) / 2 over the E epochs
of the fit (the ResNet1D+IAF study's eq. 8). Saved without pickle: ``weights.pt`` (tensors,
``weights_only``) + ``config.json``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from gwpe.config import TrainingConfig
from gwpe.models.flows import build_flow_model
from gwpe.models.package import PackagedModel

PAPER_FLOW_LR = 4e-4


class FlowModule(PackagedModel, L.LightningModule):
    """Lightning module that trains a ``gwpe.models.flows`` posterior q(theta | strain) (module doc)."""

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

    @property
    def validation_meaning(self) -> str:
        """``val_nll`` (exact -log q) or ``val_neg_elbo`` (the CVAEs' bound on it): what ``val_loss`` is."""
        return "val_neg_elbo" if str(self.flow_config.get("kind", "")).startswith("cvae") else "val_nll"

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
    def load_model(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> "FlowModule":
        """Rebuild from ``save_model``'s folder; no pickled code is executed (``weights_only=True``)."""
        meta, state = cls.read_package(folder, map_location)
        module = FlowModule(
            meta["flow"],
            learning_rate=meta["learning_rate"],
            halve_every=meta["halve_every"],
            schedule=meta.get("schedule", "step"),
        )
        module.load_state_dict(state)
        return module.eval()
