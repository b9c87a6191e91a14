"""Conditional masked autoregressive flow posterior p(x | y) (Green et al. sec. II C, III B 2; Papamakarios et al.).

    log p(x | y) = log N(f^{-1}(x | y); 0, I) + log |det d f^{-1} / dx|                        (eqs. 2, 20, 21)

f^{-1} is zuko's stack of MADE units (three hidden layers each, ReLU, affine univariate maps u_i =
x_i exp(alpha_i) + mu_i, eqs. 17-19, orders alternating ascending/descending), every unit followed by a
``BatchNormTransform``, so batch norm sits between units and between the last unit and the base (in the
generative direction: between the base and the first unit), as in the paper and its code. The context y is
the output of an embedding (raw strain flattened, or a Conv1d stack) computed once per observation.

``sample`` inverts with ``fast_sampling.flow_inverse`` (context seen once per observation); ``sample_naive``
is zuko's ``flow(y).sample``, kept for comparison. Importing zuko turns off argument validation of all
``torch.distributions`` in the process (zuko's choice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from zuko.distributions import DiagNormal
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.lazy import Flow, UnconditionalDistribution

from gwpe.models.flows.batchnorm import BatchNormTransform, set_batchnorm_statistics
from gwpe.models.flows.fast_sampling import flow_inverse


def maf_transforms(features: int, context: int, transforms: int = 5, hidden: Sequence[int] = (512, 512, 512),
                   batchnorm: bool = True, momentum: float = 0.1) -> list[nn.Module]:
    """[MADE_0, BN_0, MADE_1, BN_1, ...] in zuko's data -> base order (each MADE conditioned on ``context``)."""
    layers: list[nn.Module] = []
    for i in range(transforms):
        order = torch.arange(features) if i % 2 == 0 else torch.arange(features).flip(0)
        layers.append(MaskedAutoregressiveTransform(features, context, order=order, hidden_features=list(hidden)))
        if batchnorm:
            layers.append(BatchNormTransform(features, momentum=momentum))
    return layers


def standard_normal(features: int) -> UnconditionalDistribution:
    return UnconditionalDistribution(DiagNormal, torch.zeros(features), torch.ones(features), buffer=True)


class MAFPosterior(nn.Module):
    """p(x | y) as a conditional MAF on the embedded context."""

    kind = "maf"

    def __init__(self, features: int, context: int, transforms: int = 5, hidden: Sequence[int] = (512, 512, 512),
                 batchnorm: bool = True, embedding: nn.Module | None = None, momentum: float = 0.1):
        super().__init__()
        self.features, self.context = features, context
        self.embedding = embedding if embedding is not None else nn.Identity()
        self.flow = Flow(maf_transforms(features, context, transforms, hidden, batchnorm, momentum), standard_normal(features))

    def embed(self, context: Tensor) -> Tensor:
        return self.embedding(context)

    def log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        """Exact log p(x | y), shape (*B,)."""
        return self.flow(self.embed(context)).log_prob(x)

    def loss(self, x: Tensor, context: Tensor, epoch: int | None = None) -> Tensor:
        """Cross-entropy estimate -mean log p(x | y) (eq. 9); ``epoch`` is unused."""
        return -self.log_prob(x, context).mean()

    @torch.no_grad()
    def sample(self, context: Tensor, n: int, noise: Tensor | None = None) -> Tensor:
        """(n, *B, features) samples for context (*B, ...); B empty for one observation. ``noise``: base draws
        (n, *B, features), else drawn like zuko's ``flow(y).sample((n,))`` (same values for the same RNG state)."""
        y = self.embed(context)
        u = self.flow(y).base.rsample((n,)) if noise is None else noise
        return flow_inverse(self.flow.transform.transforms, u, y)

    @torch.no_grad()
    def sample_naive(self, context: Tensor, n: int) -> Tensor:
        """zuko's own sampler: every autoregressive pass re-reads the context for every sample."""
        return self.flow(self.embed(context)).sample((n,))

    def set_batchnorm_statistics(self, batches: Iterable[tuple[Tensor, Tensor]]) -> int:
        """Batch-norm eval statistics := those of the data in ``batches`` of (context, x) pairs, as the strain
        datasets yield them (see ``batchnorm.set_batchnorm_statistics``). Returns the number of rows seen."""
        return set_batchnorm_statistics(self, batches, lambda batch: self.log_prob(batch[1], batch[0]))

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        """One group at the paper's MAF learning rate (4e-4)."""
        return [{"name": "flow", "params": list(self.parameters()), "lr": flow_lr}]


def build_maf(features: int, context: int, transforms: int = 5, hidden: Sequence[int] = (512, 512, 512),
              batchnorm: bool = True, embedding: nn.Module | None = None, momentum: float = 0.1) -> MAFPosterior:
    """The paper's MAF: ``transforms`` MADE units of ``hidden`` layers with batch norm, conditioned on the
    ``context``-dimensional output of ``embedding`` (identity when None)."""
    return MAFPosterior(features, context, transforms, hidden, batchnorm, embedding, momentum)
