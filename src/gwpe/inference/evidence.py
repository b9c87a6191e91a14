"""Evidence Z = ∫ L(θ) π(θ) dθ from samples: importance sampling of a proposal, and the learned harmonic mean.
Domain-free; every log-density is batched, (n, D) -> (n,).

- **Importance sampling** (a normalised proposal q, e.g. an NPE posterior): w_i = L π / q at θ_i ~ q,
  Z_hat = mean(w), log Z_hat with standard error sd(w) / (sqrt(n) mean(w)) (delta method), effective sample
  size (sum w)^2 / sum w^2 and sample efficiency ESS / n; resampling by the normalised weights gives
  posterior samples.
- **Learned harmonic mean** (McEwen et al. 2021, arXiv:2111.12720): with φ a normalised density fitted to
  half of the posterior samples and concentrated (a flow with its base tempered by T < 1, so φ has lighter
  tails than the posterior and the estimator's variance is finite), rho_hat = mean φ(θ_i) / (L π)(θ_i) over the
  other half estimates 1 / Z; log Z = -log rho_hat with standard error sd / (sqrt(n) rho_hat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class EvidenceEstimate:
    log_evidence: float
    standard_error: float
    effective_samples: float
    efficiency: float
    method: str


def log_mean_exp(values: Tensor) -> Tensor:
    return torch.logsumexp(values, 0) - math.log(values.shape[0])


def _log_moments(log_w: Tensor) -> tuple[float, float]:
    """(log mean w, relative standard error of the mean) computed stably in log space."""
    log_w = log_w.double()
    n = log_w.shape[0]
    log_mean = log_mean_exp(log_w)
    relative = torch.exp(log_w - log_mean)  # w / mean(w)
    return float(log_mean), float(relative.std(unbiased=True) / math.sqrt(n))


def importance_sampling(log_target: Callable[[Tensor], Tensor], samples: Tensor, log_q: Tensor,
                        resample: int = 0, generator: torch.Generator | None = None) -> tuple[EvidenceEstimate, Tensor, Tensor]:
    """(estimate, normalised weights, resampled posterior (``resample`` rows, or empty)) for θ_i ~ q."""
    with torch.no_grad():
        log_w = log_target(samples).double() - log_q.double()
    finite = torch.isfinite(log_w)
    log_w = torch.where(finite, log_w, torch.full_like(log_w, -math.inf))
    log_z, error = _log_moments(log_w[finite]) if finite.any() else (-math.inf, math.inf)
    weights = torch.softmax(log_w, 0)
    ess = float(1.0 / (weights**2).sum())
    chosen = torch.multinomial(weights.float(), resample, replacement=True, generator=generator) if resample else torch.empty(0, dtype=torch.long)
    return EvidenceEstimate(log_z, error, ess, ess / len(log_w), "importance"), weights, samples[chosen]


def learned_harmonic_mean(log_target: Callable[[Tensor], Tensor], posterior: Tensor, temperature: float = 0.8,
                          transforms: int = 3, hidden: tuple[int, ...] = (64, 64), epochs: int = 30,
                          seed: int = 0) -> EvidenceEstimate:
    """log Z from posterior samples (n, D): fit a flow on half, tempered base T < 1, estimate on the other half."""
    from gwpe.inference.flowmc import StandardisedFlow

    if not 0 < temperature <= 1:
        raise ValueError(f"temperature = {temperature!r}; allowed: 0 < T <= 1 (concentrated)")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(posterior), generator=generator)
    fit_half, estimate_half = posterior[order[: len(order) // 2]], posterior[order[len(order) // 2:]]
    torch.manual_seed(seed)
    flow = StandardisedFlow(posterior.shape[-1], transforms, hidden)
    flow.fit(fit_half.float(), epochs, lr=1e-3, restandardise=True)
    with torch.no_grad():
        log_phi = tempered_log_prob(flow, estimate_half.float(), temperature).double()
        log_ratio = log_phi - log_target(estimate_half).double()
    log_rho, error = _log_moments(log_ratio)
    n = len(estimate_half)
    return EvidenceEstimate(-log_rho, error, float(n), 1.0, "learned harmonic mean")


def tempered_log_prob(flow, x: Tensor, temperature: float) -> Tensor:
    """log density of the flow with its N(0, I) base replaced by N(0, T^2 I) (normalised)."""
    transform = flow.flow().transform
    z, ladj = transform.call_and_ladj((x - flow.mean) / flow.scale)
    d = x.shape[-1]
    log_base = -0.5 * (z / temperature).square().sum(-1) - d * math.log(temperature) - 0.5 * d * math.log(2 * math.pi)
    return log_base + ladj - flow.scale.log().sum()
