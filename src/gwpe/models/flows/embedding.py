"""Context embeddings: raw strain flattened (the paper), compressed by a small Conv1d stack (its sec. V), or
projected on an SVD basis of whitened signals followed by residual blocks (DINGO, Dax et al. 2021).

Both map a context of trailing shape ``shape`` = (C, L) to a vector; they accept one observation (C, L) or a
batch (*B, C, L). The embedding is the first module of every flow model: it runs once per observation when
sampling and is trained with the flow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class FlattenEmbedding(nn.Module):
    """(*B, *shape) -> (*B, prod(shape)): the raw whitened strain as the flows' context."""

    def __init__(self, shape: Sequence[int]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.features = 1
        for s in self.shape:
            self.features *= s

    def forward(self, context: Tensor) -> Tensor:
        return context.flatten(-len(self.shape)) if len(self.shape) > 1 else context


class ConvEmbedding(nn.Module):
    """(*B, C, L) -> (*B, features): Conv1d(kernel k, stride 2, 'same' padding) + ReLU per entry of ``channels``,
    then flatten and one linear layer. L = 1024 with (16, 32, 64) channels leaves 64 x 128 before the linear map."""

    def __init__(
        self,
        shape: Sequence[int],
        features: int = 128,
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 7,
        stride: int = 2,
    ):
        super().__init__()
        in_channels, length = (int(s) for s in shape)
        self.shape = (in_channels, length)
        self.features = features
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
                nn.ReLU(),
            ]
            in_channels = out_channels
            length = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1
        if length < 1:
            raise ValueError(f"context length {shape[1]} too short for {len(channels)} stride-{stride} layers")
        self.convolutions = nn.Sequential(*layers)
        self.linear = nn.Linear(in_channels * length, features)

    def forward(self, context: Tensor) -> Tensor:
        batch = context.shape[:-2]
        h = self.convolutions(context.reshape(-1, *self.shape))
        return self.linear(h.flatten(1)).reshape(*batch, self.features)


class ResidualBlock(nn.Module):
    """x + W2 ELU(W1 LayerNorm(x)): a pre-norm residual MLP block."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(features), nn.Linear(features, hidden), nn.ELU(), nn.Linear(hidden, features)
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity: the seeded projection passes through unchanged
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class SVDEmbedding(nn.Module):
    """(*B, C, L) -> (*B, features): y = V_k^T x on the flattened strain, then ``blocks`` residual blocks.

    ``seed(signals)`` sets V_k to the first k right singular vectors of noise-free whitened training signals
    (DINGO's reduced basis): whitened noise stays N(0, 1) per coefficient (V_k is orthonormal) while the signal
    concentrates in the first coefficients. The projection is trained with the flow afterwards."""

    def __init__(
        self, shape: Sequence[int], features: int = 128, blocks: int = 2, hidden: int = 256, seed_signals: int = 4000
    ):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        inputs = 1
        for s in self.shape:
            inputs *= s
        if features > inputs:
            raise ValueError(f"svd embedding features = {features}; allowed: <= the context size {inputs}")
        self.features = features
        self.seed_signals = seed_signals
        self.projection = nn.Linear(inputs, features)
        self.blocks = nn.Sequential(*[ResidualBlock(features, hidden) for _ in range(blocks)])

    @torch.no_grad()
    def seed(self, signals: Tensor) -> None:
        """Projection := the top right singular vectors of ``signals`` (N, *shape), zero bias."""
        matrix = signals.reshape(len(signals), -1).double()
        k = min(self.features, *matrix.shape)
        _, _, v = torch.linalg.svd(matrix, full_matrices=False)
        self.projection.weight.zero_()
        self.projection.weight[:k] = v[:k].to(self.projection.weight.dtype)
        self.projection.bias.zero_()

    def forward(self, context: Tensor) -> Tensor:
        return self.blocks(self.projection(context.flatten(-len(self.shape))))


def seed_svd_embeddings(model: nn.Module, signals) -> int:
    """Seed every ``SVDEmbedding`` inside ``model`` from ``signals(n)`` (a callable giving (n, *shape) noise-free
    whitened training signals); returns how many were seeded."""
    found = [m for m in model.modules() if isinstance(m, SVDEmbedding)]
    for embedding in found:
        embedding.seed(signals(embedding.seed_signals))
    return len(found)


def build_embedding(shape: Sequence[int], config: dict | None = None) -> nn.Module:
    """``{"kind": "flatten"}`` (default), ``{"kind": "conv", "features": .., "channels": [..], "kernel_size": ..,
    "stride": ..}`` or ``{"kind": "resnet1d", "depth": .., "width": .., "features": .., ...}`` (``ResNet1DEmbedding``);
    ``shape`` is the context's trailing shape, e.g. (channels, samples)."""
    config = dict(config or {"kind": "flatten"})
    kind = config.pop("kind", "flatten")
    if kind == "flatten":
        if config:
            raise ValueError(f"flatten embedding takes no options, got {sorted(config)}")
        return FlattenEmbedding(shape)
    if kind == "conv":
        if len(shape) != 2:
            raise ValueError(f"conv embedding needs a (channels, samples) context, got shape {tuple(shape)}")
        return ConvEmbedding(shape, **config)
    if kind == "resnet1d":
        from gwpe.models.flows.resnet1d import ResNet1DEmbedding

        if len(shape) != 2:
            raise ValueError(f"resnet1d embedding needs a (channels, samples) context, got shape {tuple(shape)}")
        return ResNet1DEmbedding(shape, **config)
    if kind == "svd":
        return SVDEmbedding(shape, **config)
    raise ValueError(f"embedding kind = {kind!r}; allowed: flatten, conv, resnet1d, svd")
