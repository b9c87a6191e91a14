"""A population Monte Carlo kernel (Cappé, Guillin, Marin & Robert 2004): the mixture

    k(x) = sum_i w_i N(x; x_i, h^2 Σ_w)

of Gaussians centred on weighted draws x_i (normalised importance weights w_i), with Σ_w their weighted
covariance and h Silverman's factor (4 / ((D + 2) n_eff))^(1 / (D + 4)) at the Kish ESS n_eff. As a component
of an importance-sampling proposal it puts draws where the last round's weights were heavy, i.e. where the
target has mass the rest of the proposal under-covers (a small separate mode a flow cannot fit), in proportion
to the mass the weights found there. Draws and densities are exact, so the final weights stay unbiased.
Domain-free; ``wall`` = k folds it onto x_k <= 0 like ``flowmc.StandardisedFlow``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class WeightedKernel:
    """k(x) above; centres with w_i < ``prune`` / n are dropped (their mass is renormalised away)."""

    def __init__(self, x: Tensor, weights: Tensor, wall: int | None = None, prune: float = 1e-3):
        x, w = x.double(), weights.double()
        keep = w > prune * w.sum() / len(w)
        if not bool(keep.any()):
            raise ValueError("WeightedKernel: every weight is zero; allowed: at least one positive weight")
        w = w / w.sum()
        centred = x - w @ x
        covariance = (centred * w[:, None]).T @ centred
        effective = float(1.0 / w.square().sum())
        d = x.shape[1]
        self.bandwidth = (4.0 / ((d + 2) * effective)) ** (1.0 / (d + 4))
        self.cholesky = torch.linalg.cholesky(covariance * self.bandwidth**2 + 1e-12 * torch.eye(d, dtype=x.dtype))
        self.centres, self.weights = x[keep], w[keep] / w[keep].sum()
        self.wall = wall

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        pick = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.centres.shape[1], dtype=torch.float64, generator=generator)
        x = self.centres[pick] + noise @ self.cholesky.T
        if self.wall is not None:
            x[:, self.wall] = -x[:, self.wall].abs()
        return x

    def _unfolded(self, x: Tensor, chunk: int = 2000) -> Tensor:
        d = x.shape[1]
        log_norm = -0.5 * d * math.log(2 * math.pi) - self.cholesky.diagonal().log().sum()
        # |L^-1 (x - c)|^2 = |a|^2 + |b|^2 - 2 a.b with a = L^-1 x, b = L^-1 c: one matrix product per block
        whiten = torch.linalg.solve_triangular(self.cholesky, torch.eye(d, dtype=torch.float64), upper=False)
        b = self.centres @ whiten.T
        offset = self.weights.log() - 0.5 * b.square().sum(1)
        out = []
        for block in x.double().split(chunk):
            a = block @ whiten.T
            out.append(torch.logsumexp(offset + a @ b.T, 1) - 0.5 * a.square().sum(1) + log_norm)
        return torch.cat(out)

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.double()
        if self.wall is None:
            return self._unfolded(x)
        mirrored = x.clone()
        mirrored[:, self.wall] = -mirrored[:, self.wall]
        inside = x[:, self.wall] <= 0
        both = torch.logaddexp(self._unfolded(x), self._unfolded(mirrored))
        return torch.where(inside, both, torch.full_like(both, -math.inf))


def kernel_from_rounds(
    rounds: list[tuple[Tensor, Tensor]], wall: int | None = None, seed_draws: Tensor | None = None
) -> WeightedKernel:
    """The kernel of importance-sampling rounds' draws (x, unnormalised log weights) of one target, pooled (each
    round's weights are exact, so their union is one weighted sample); ``seed_draws``, equal-weight draws of the
    same target from elsewhere, carry half its mass."""
    centres = torch.cat([x.double() for x, _ in rounds])
    masses = torch.softmax(torch.cat([log_w.double() for _, log_w in rounds]), 0)
    if seed_draws is not None:
        centres = torch.cat([centres, seed_draws.double()])
        seeds = torch.full((len(seed_draws),), 0.5 / len(seed_draws), dtype=masses.dtype)
        masses = torch.cat([0.5 * masses, seeds])
    return WeightedKernel(centres, masses, wall)


def draw_with_kernel(base_sample, kernel: WeightedKernel, weight: float, n: int, generator=None) -> Tensor:
    """n draws of (1 - weight) base + weight kernel, in random order (each row a draw of the mixture);
    ``base_sample(m)`` draws m rows of the base."""
    taken = int((torch.rand(n, generator=generator) < weight).sum())
    draws = torch.cat([base_sample(n - taken), kernel.sample(taken, generator).to(torch.float32)])
    return draws[torch.randperm(n, generator=generator)]


def log_prob_with_kernel(base_log_prob: Tensor, kernel: WeightedKernel, weight: float, x: Tensor) -> Tensor:
    """log of (1 - weight) base + weight kernel at x, from the base's log density there (in its dtype)."""
    mixed = torch.logaddexp(math.log1p(-weight) + base_log_prob.double(), math.log(weight) + kernel.log_prob(x))
    return mixed.to(base_log_prob.dtype)
