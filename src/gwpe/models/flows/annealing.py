"""Cyclic KL annealing of the CVAE loss (Green et al. sec. III B 1, after Fu et al. 2019).

    L = E[-log p(x | z, y)] + beta(epoch) * max(KL, 0.2)

beta follows (1e-5, 1/3, 2/3, 1, 1, 1) over the first six epochs, the cycle is repeated three more times
(epochs 0-23, counted from 0), and beta = 1 afterwards. "We also ignored the KL loss term whenever it was less
than 0.2" is read as the paper's code does it (``lfigw/cvae.py``: ``kl_weight * torch.max(0.2, kl_loss)``):
the batch-mean KL is floored at 0.2, so below 0.2 it contributes a constant and no gradient ("free bits" on
the batch mean), which stops the encoder being pulled onto the prior. The authors' code ramps
1e-5 + (1 - 1e-5) k/3; the paper's rounded 1/3, 2/3 are used here (a 3e-6 difference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

PAPER_CYCLE = (1e-5, 1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0, 1.0)
PAPER_CYCLES = 4
PAPER_KL_FLOOR = 0.2


def kl_weight(epoch: int, cycle: Sequence[float] = PAPER_CYCLE, cycles: int = PAPER_CYCLES) -> float:
    """beta for a 0-based ``epoch``: ``cycle[epoch % len(cycle)]`` during the first ``cycles`` cycles, then 1."""
    if epoch < 0:
        raise ValueError(f"epoch = {epoch!r}; allowed: >= 0")
    if not cycle or epoch >= len(cycle) * cycles:
        return 1.0
    return float(cycle[epoch % len(cycle)])


def annealed_kl(kl: Tensor, weight: float, floor: float = PAPER_KL_FLOOR) -> Tensor:
    """beta * max(mean KL, floor) for a batch of per-sample KL terms."""
    return weight * torch.clamp(kl.mean(), min=floor)
