"""zuko's conditional MADE with its first layer split into a feature part and a context part.

zuko evaluates a conditional MADE's hyper-network on the concatenation [x, c] (``meta``):

    h_1 = relu((W_1 * M_1) [x; c] + b_1)

so back-propagation computes dL/d[x; c] = g (W_1 * M_1) for all F + C input columns whenever x requires a
gradient (every MADE unit after the first: its input is the previous unit's output). For raw strain, C = 1024
and F = 5, so that is a (B x 512) @ (512 x 1029) matmul per unit per step, spent on a gradient nobody needs:
the strain is data (measured with ``benchmarks/flow_step.py``: 7-8 % of a training step of the default MAF,
batch 256 on CPU). Here

    h_1 = relu((W_x * M_x) x + W_c c + b_1)

with W_1 = [W_x, W_c]; zuko connects every hidden unit to every context column (M_c = 1, checked at
construction), so no mask is applied to W_c. Autograd then computes d/dc only when c requires it (a learned
embedding does), and the concatenated copy of c per step is gone. Same parameters, masks and state-dict keys
as zuko's class, so saved models load either way and ``fast_sampling.made_inverse`` applies unchanged; the
output equals zuko's up to the order of float summation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Transform
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.nn import MaskedLinear
from zuko.transforms import DependentTransform
from zuko.utils import unpack


class ContextSplitMADE(MaskedAutoregressiveTransform):
    """``MaskedAutoregressiveTransform`` whose first layer treats features and context separately (see module)."""

    def __init__(self, features: int, context: int = 0, **kwargs) -> None:
        super().__init__(features, context, **kwargs)
        self.features = features
        first = self.hyper[0]
        # Fall back to zuko's path for anything unusual (residual nets, masked context, no context).
        self.split = context > 0 and isinstance(first, MaskedLinear) and bool(first.mask[:, features:].all())

    def meta(self, c: Tensor | None, x: Tensor) -> Transform:
        if c is None or not self.split:
            return super().meta(c, x)
        first = self.hyper[0]
        f = self.features
        # The sum broadcasts the batch shapes of x and c, as zuko's concatenation does.
        phi = F.linear(x, first.mask[:, :f] * first.weight[:, :f]) + F.linear(c, first.weight[:, f:], first.bias)
        for layer in list(self.hyper)[1:]:
            phi = layer(phi)
        phi = phi.unflatten(-1, (-1, self.total))
        phi = unpack(phi, self.shapes)
        return DependentTransform(self.univariate(*phi), 1)


@contextmanager
def zuko_made(module: nn.Module) -> Iterator[None]:
    """Within the block every ``ContextSplitMADE`` in ``module`` runs zuko's own concatenating ``meta`` (the
    naive reference the fast sampler is measured against: it re-reads the context for every sample)."""
    mades = [m for m in module.modules() if isinstance(m, ContextSplitMADE)]
    states = [m.split for m in mades]
    for m in mades:
        m.split = False
    try:
        yield
    finally:
        for m, state in zip(mades, states):
            m.split = state
