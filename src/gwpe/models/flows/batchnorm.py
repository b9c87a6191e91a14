"""Batch-normalisation bijection for zuko flows (Papamakarios et al. 2017, MAF, appendix B; zuko has none).

In the direction the flow is trained in (data -> base for a MAF, base -> sample for an IAF) the layer maps

    y = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta,
    log|det dy/dx| = sum_i [log_gamma_i - 1/2 log(v_i + eps)],

and its inverse is x = (y - beta) exp(-log_gamma) sqrt(v + eps) + m (exact). (m, v) are

- training mode: the mean and (biased) variance of the batch being standardised; gradients flow through them,
  and the running statistics move by ``momentum`` (torch's convention: new = (1 - momentum) old + momentum batch,
  unbiased batch variance; the paper's code keeps 0.9 of the old value, i.e. momentum 0.1);
- eval mode: the running statistics, which ``set_batchnorm_statistics`` replaces by those of the whole training
  set at the end of each epoch (Green et al. sec. III B 2, following Papamakarios et al.).

A transform object built in training mode takes (m, v) from the first batch it standardises and is a fixed
bijection from then on: its inverse and later calls reuse them (the log-det treats batch statistics as
constants, the usual convention). Its inverse called before any forward call uses the running statistics,
so sampling from a flow in training mode is well defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Transform, constraints
from zuko.lazy import LazyTransform


class BatchNormTransform(LazyTransform):
    """Lazy batch-norm bijection over the last dimension (``features``); ``forward(c)`` ignores the context."""

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum = {momentum!r}; allowed: 0 < momentum <= 1")
        self.features = features
        self.momentum = momentum
        self.eps = eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self._collected: list[Tensor] | None = None  # [count, sum, sum of squares] while collecting statistics

    def extra_repr(self) -> str:
        return f"features={self.features}, momentum={self.momentum}, eps={self.eps}"

    def forward(self, c: Tensor | None = None) -> "BatchNormAffine":
        return BatchNormAffine(self)

    @torch.no_grad()
    def set_statistics(self, mean: Tensor, var: Tensor) -> None:
        """Set the running (eval-mode) statistics."""
        self.running_mean.copy_(torch.as_tensor(mean, dtype=self.running_mean.dtype))
        self.running_var.copy_(torch.as_tensor(var, dtype=self.running_var.dtype))

    @torch.no_grad()
    def set_statistics_from(self, inputs: Tensor) -> None:
        """Running statistics := mean and unbiased variance of ``inputs`` (..., features), e.g. a whole dataset."""
        flat = inputs.reshape(-1, self.features).double()
        self.set_statistics(flat.mean(0), flat.var(0))

    def start_collecting(self) -> None:
        """Until ``finish_collecting``, every standardising call uses its batch's statistics (as in training) and
        accumulates its inputs; running statistics are left alone meanwhile."""
        self._collected = [
            torch.zeros((), dtype=torch.float64),
            torch.zeros(self.features, dtype=torch.float64),
            torch.zeros(self.features, dtype=torch.float64),
        ]

    @torch.no_grad()
    def finish_collecting(self) -> int:
        """Running statistics := pooled mean and unbiased variance of everything seen since ``start_collecting``;
        returns the number of rows seen (statistics unchanged when none)."""
        collected, self._collected = self._collected, None
        if collected is None or collected[0] < 2:
            return 0 if collected is None else int(collected[0])
        n, total, squares = collected
        mean = total / n
        var = ((squares - n * mean.square()) / (n - 1)).clamp(min=0.0)
        self.set_statistics(mean, var)
        return int(n)

    @property
    def collecting(self) -> bool:
        return self._collected is not None

    def _observe(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Batch statistics of ``x`` for a standardising call in training or collecting mode."""
        flat = x.reshape(-1, self.features)
        var, mean = torch.var_mean(flat, dim=0, unbiased=False)
        with torch.no_grad():
            if self._collected is not None:
                rows = flat.detach().double()
                self._collected[0] += rows.shape[0]
                self._collected[1] += rows.sum(0).cpu()
                self._collected[2] += rows.square().sum(0).cpu()
            elif self.training:
                n = flat.shape[0]
                unbiased = var.detach() * (n / max(n - 1, 1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        return mean, var


class BatchNormAffine(Transform):
    """The bijection y = (x - m) / sqrt(v + eps) exp(log_gamma) + beta of one ``BatchNormTransform`` call."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1

    def __init__(self, module: BatchNormTransform, mean: Tensor | None = None, var: Tensor | None = None, **kwargs):
        super().__init__(**kwargs)
        self.module = module
        self.batch = module.training or module.collecting
        self.mean, self.var = mean, var

    def _statistics(self, x: Tensor | None) -> tuple[Tensor, Tensor]:
        """(m, v): fixed once chosen in batch mode (the batch standardised first, or the running statistics
        when the inverse comes first); the current running statistics in eval mode."""
        if self.mean is None:
            if not self.batch:
                return self.module.running_mean, self.module.running_var
            if x is not None:
                self.mean, self.var = self.module._observe(x)
            else:
                self.mean, self.var = self.module.running_mean.clone(), self.module.running_var.clone()
        return self.mean, self.var

    def _scale(self, var: Tensor) -> Tensor:
        """log of the per-feature slope dy/dx."""
        return self.module.log_gamma - 0.5 * torch.log(var + self.module.eps)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self._statistics(x)
        log_slope = self._scale(var)
        y = (x - mean) * log_slope.exp() + self.module.beta
        return y, log_slope.sum().expand(x.shape[:-1])

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        mean, var = self._statistics(None)
        return (y - self.module.beta) * (-self._scale(var)).exp() + mean

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        mean, var = self._statistics(x)
        return self._scale(var).sum().expand(x.shape[:-1])


def batchnorm_layers(module: nn.Module) -> list[BatchNormTransform]:
    """The ``BatchNormTransform`` layers of ``module`` in registration order."""
    return [m for m in module.modules() if isinstance(m, BatchNormTransform)]


@torch.no_grad()
def set_batchnorm_statistics(model: nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any]) -> int:
    """Set every batch-norm layer's eval statistics to the mean and variance of its inputs over ``batches``.

    One pass: ``forward(batch)`` is called for each batch with the model in eval mode and every layer
    standardising with its batch's own statistics, as in training (the paper's procedure; its code averages
    batch means and variances, here the moments are pooled exactly). Returns the number of rows the first
    layer saw. The model's train/eval mode is restored afterwards.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.start_collecting()
    try:
        for batch in batches:
            forward(batch)
    finally:
        rows = [layer.finish_collecting() for layer in layers]
        model.train(was_training)
    return rows[0]
