"""Context embeddings: raw strain flattened (the paper) or compressed by a small Conv1d stack (its sec. V).

Both map a context of trailing shape ``shape`` = (C, L) to a vector; they accept one observation (C, L) or a
batch (*B, C, L). The embedding is the first module of every flow model: it runs once per observation when
sampling and is trained with the flow.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    raise ValueError(f"embedding kind = {kind!r}; allowed: flatten, conv, resnet1d")
