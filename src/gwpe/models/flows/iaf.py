"""Conditional inverse autoregressive flow posterior p(x | y) (Kingma et al. 2016; zuko has no IAF class).

Sampling maps base noise z ~ N(0, I) to x with one MADE pass per transform (paper eqs. 3, 4):

    x_i = mu_i(z_<i, y) + sigma_i(z_<i, y) z_i,

so the IAF is zuko's MAF with every MADE inverted (``Flow([t.inv ...], base)``): drawing N posterior samples
costs ``transforms`` passes, while log p(x | y) of a given x (training, NLL) needs the inverse, ``features``
passes per transform. y is the output of the embedding (a ``ResNet1DEmbedding`` for the two-detector strain),
computed once per observation.

Tempered distributions (used for distillation, ``gwpe.models.distillation``): p_T(x | y) is the flow applied
to a base N(0, T^2 I), i.e. the base density raised to the power 1 / T^2 and renormalised - the flow analogue
of a softmax at temperature T, which raises class probabilities to 1 / T. T = 1 is the model itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from zuko.lazy import Flow

from gwpe.models.flows.made import ContextSplitMADE
from gwpe.models.flows.maf import standard_normal


def tempered_normal_log_prob(z: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """log N(z; 0, T^2 I) summed over the last dimension."""
    d = z.shape[-1]
    t = torch.as_tensor(temperature, dtype=z.dtype, device=z.device)
    return -0.5 * (z / t).square().sum(-1) - d * torch.log(t) - 0.5 * d * math.log(2 * math.pi)


class IAFPosterior(nn.Module):
    """p(x | y) as a conditional IAF on the embedded context."""

    kind = "iaf"

    def __init__(
        self,
        features: int,
        context: int,
        transforms: int = 5,
        hidden: Sequence[int] = (128, 128),
        embedding: nn.Module | None = None,
    ):
        super().__init__()
        self.features, self.context = features, context
        self.embedding = embedding if embedding is not None else nn.Identity()
        mades = []
        for i in range(transforms):
            order = torch.arange(features) if i % 2 == 0 else torch.arange(features).flip(0)
            mades.append(ContextSplitMADE(features, context, order=order, hidden_features=list(hidden)).inv)
        self.flow = Flow(mades, standard_normal(features))

    def embed(self, context: Tensor) -> Tensor:
        return self.embedding(context)

    def log_prob_embedded(self, x: Tensor, y: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        """log p_T(x | y) for an already embedded context y (broadcast against x's batch shape)."""
        transform = self.flow.transform(y)
        z, ladj = transform.call_and_ladj(x)
        return tempered_normal_log_prob(z, temperature) + ladj

    def log_prob(self, x: Tensor, context: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
        """Exact log p_T(x | y), shape (*B,)."""
        return self.log_prob_embedded(x, self.embed(context), temperature)

    def loss(self, x: Tensor, context: Tensor, epoch: int | None = None) -> Tensor:
        """-mean log p(x | y); ``epoch`` is unused."""
        return -self.log_prob(x, context).mean()

    def sample_embedded(self, y: Tensor, n: int, temperature: float | Tensor = 1.0) -> Tensor:
        """(n, *B, features) draws of p_T(. | y) (differentiable: reparametrised) for embedded y of shape (*B, C)."""
        z = torch.randn((n, *y.shape[:-1], self.features), dtype=y.dtype, device=y.device) * temperature
        return self.flow.transform(y).inv(z)

    def sample_and_log_prob_embedded(
        self, y: Tensor, n: int, temperature: float | Tensor = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Draws of p_T(. | y) with their log p_T, both from the one sampling pass per transform."""
        z = torch.randn((n, *y.shape[:-1], self.features), dtype=y.dtype, device=y.device) * temperature
        x, ladj = self.flow.transform(y).inv.call_and_ladj(z)
        return x, tempered_normal_log_prob(z, temperature) - ladj

    @torch.no_grad()
    def sample(self, context: Tensor, n: int) -> Tensor:
        """(n, *B, features) samples for context (*B, ...); the context is embedded once."""
        return self.sample_embedded(self.embed(context), n)

    def set_batchnorm_statistics(self, batches: Iterable[tuple[Tensor, Tensor]]) -> int:
        """The embedding's BatchNorm1d eval statistics := exact averages over ``batches`` of (context, x)
        (cumulative averaging, ``momentum=None``, one pass without gradients). Returns the rows seen."""
        layers = [m for m in self.embedding.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not layers:
            return 0
        was_training, momenta = self.training, [m.momentum for m in layers]
        rows = 0
        try:
            with torch.no_grad():
                self.embedding.train()
                for layer in layers:
                    layer.reset_running_stats()
                    layer.momentum = None
                for context, _ in batches:
                    self.embed(context)
                    rows += context.shape[0]
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
            self.train(was_training)
        return rows

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        """One group at ``flow_lr``."""
        return [{"name": "flow", "params": list(self.parameters()), "lr": flow_lr}]
