"""Diagonal-Gaussian MLPs of the CVAE (Green et al. sec. III B 1) with a first layer split by input.

    h_1 = relu(sum_k W_k a_k + b),  h_{i+1} = relu(W_{i+1} h_i + b_{i+1}),  (mu, sigma, h) = (., softplus(.) + 1e-5, .)

The first layer of an MLP on the concatenation [a_1, ..., a_K] is the sum of one linear map per input, so each
input is multiplied at its own batch shape and the results are broadcast: when sampling, the strain context y
(one row per observation) passes through its 2048 x m block once, not once per latent sample z.
The scale parametrisation softplus + 1e-5 is the paper authors' (their code, ``lfigw/cvae.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SplitInputMLP(nn.Module):
    """MLP on the concatenation of several inputs, each broadcast from its own batch shape."""

    def __init__(self, inputs: Sequence[int], outputs: int, hidden: Sequence[int] = (2048, 2048, 2048)):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer")
        self.inputs = tuple(int(i) for i in inputs)
        self.first = nn.ModuleList(nn.Linear(n, hidden[0], bias=(k == 0)) for k, n in enumerate(self.inputs))
        layers: list[nn.Module] = [nn.ReLU()]
        for before, after in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(before, after), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], outputs))
        self.rest = nn.Sequential(*layers)

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} inputs, got {len(inputs)}")
        h = None
        for layer, a in zip(self.first, inputs):
            h = layer(a) if h is None else h + layer(a)
        return self.rest(h)


class GaussianMLP(nn.Module):
    """(a_1, ..., a_K) -> (mu, sigma[, h]): a diagonal Gaussian over ``features`` and ``extra`` context outputs."""

    def __init__(
        self, inputs: Sequence[int], features: int, hidden: Sequence[int] = (2048, 2048, 2048), extra: int = 0
    ):
        super().__init__()
        self.features, self.extra = features, extra
        self.net = SplitInputMLP(inputs, 2 * features + extra, hidden)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        loc, raw, extra = self.net(*inputs).split([self.features, self.features, self.extra], dim=-1)
        return loc, F.softplus(raw) + 1e-5, extra


def diag_normal_log_prob(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log N(x; mu, diag sigma^2), summed over the last dimension."""
    return (-0.5 * ((x - loc) / scale).square() - scale.log() - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)


def diag_normal_kl(loc_q: Tensor, scale_q: Tensor, loc_p: Tensor, scale_p: Tensor) -> Tensor:
    """KL(N(mu_q, s_q^2) || N(mu_p, s_p^2)) summed over the last dimension:
    sum [log(s_p/s_q) + (s_q^2 + (mu_q - mu_p)^2) / (2 s_p^2) - 1/2]."""
    return (
        torch.log(scale_p / scale_q) + (scale_q.square() + (loc_q - loc_p).square()) / (2 * scale_p.square()) - 0.5
    ).sum(-1)
