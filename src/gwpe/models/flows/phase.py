"""A periodic coordinate with a discrete shift symmetry, imposed on a density on R^F (domain-free).

A flow's density q lives on R^F, but a phase is an angle: x_k in [low, low + P). Wrapping the flow's draws
onto the circle, x_k -> low + (x_k - low) mod P, and, where the target is invariant under x_k -> x_k + P / c,
first adding j P / c with j uniform in {0, ..., c - 1}, gives draws of the density

    q_sym(x) = (1 / c) sum_{i in Z} q(x + i (P / c) e_k),      x_k in [low, low + P),

normalised on the circle (each image i = j + c m is one shift j and one wrap m). Both maps can only bring q
closer to a target p that is periodic and invariant: KL(p || q_sym) <= KL(p || q) (data processing for the
wrap, and convexity of KL in q for the average over shifts, since p equals each shifted copy of itself).

Gravitational waves: the coalescence phase phi0 has period 2 pi, and a signal with only the (2, +-2) modes
(h+, hx proportional to exp(2 i phi0): aligned-spin IMRPhenomPv2, every gwpe strain dataset) is unchanged by
phi0 -> phi0 + pi, so c = 2. Measured on the default profile's MAF (300 injections x 1,000 draws): 8 % of the
raw flow's phi0 draws fell outside [0, 2 pi) and the phi0 p-p KS p-value was 0.069 (U-shaped ranks); wrapped
and symmetrised, the same draws gave 0.68, and the validation NLL went from 0.079 to -0.082.

``log_prob`` sums the images |i| <= c M (M = ``wraps``): the flow's mass more than M periods off the circle is
dropped. Measured on the default MAF's validation split: M = 1 was up to 0.007 nats off, M = 2 agrees with
M = 3 to 6e-8, so 2 is the default. Folded draws are exact for any M.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


class PeriodicSymmetry:
    """x_k periodic on [low, low + period), target invariant under x_k -> x_k + period / copies."""

    def __init__(self, index: int, low: float, period: float, copies: int = 1, wraps: int = 2):
        if period <= 0 or copies < 1 or wraps < 0:
            raise ValueError(
                f"phase: period = {period}, copies = {copies}, wraps = {wraps}; "
                "allowed: period > 0, copies >= 1, wraps >= 0"
            )
        self.index, self.low, self.period, self.copies, self.wraps = (
            int(index),
            float(low),
            float(period),
            int(copies),
            int(wraps),
        )

    @classmethod
    def from_config(cls, config: dict | None) -> "PeriodicSymmetry | None":
        return None if config is None else cls(**config)

    def offsets(self) -> Tensor:
        """(i P / c for |i| <= c M): the images summed by ``log_prob``."""
        span = self.copies * self.wraps
        return torch.arange(-span, span + 1, dtype=torch.float64) * (self.period / self.copies)

    def fold(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draws of q (shape (..., F)) -> draws of q_sym: shift x_k by j P / c (j uniform), wrap onto the circle."""
        if self.copies > 1:
            x = x.clone()
            j = torch.randint(self.copies, x[..., self.index].shape, generator=generator, device=x.device)
            x[..., self.index] += j.to(x.dtype) * (self.period / self.copies)
        return self.fold_onto_circle(x)

    def fold_onto_circle(self, x: Tensor) -> Tensor:
        """x_k -> low + (x_k - low) mod P (a copy)."""
        x = x.clone()
        x[..., self.index] = self.low + torch.remainder(x[..., self.index] - self.low, self.period)
        return x

    def log_prob(self, log_prob: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        """log q_sym(x) from ``log_prob`` = log q, evaluated once on every image stacked in a leading dim (so
        a context broadcast against x is embedded once); x_k outside the circle is first wrapped onto it."""
        x = self.fold_onto_circle(x)
        offsets = self.offsets().to(dtype=x.dtype, device=x.device)
        images = x.unsqueeze(0).repeat(len(offsets), *([1] * x.dim()))
        images[..., self.index] += offsets.view(-1, *([1] * (x.dim() - 1)))
        return torch.logsumexp(log_prob(images), dim=0) - math.log(self.copies)

    def config(self) -> dict:
        return {"index": self.index, "low": self.low, "period": self.period, "copies": self.copies, "wraps": self.wraps}
