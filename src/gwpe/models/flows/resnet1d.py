"""ResNet1D embedding of multi-detector strain (Wang, Yan & Oates 2017; the teacher of the distillation study).

    h_{l+1} = relu(h_l + F(h_l; W_l)),   F = BN(Conv_k(relu(BN(Conv_k(h_l)))))              (paper eq. 1, 2)

Layout (choices the paper leaves open, written down here):
- stem: Conv1d(C_in -> width, kernel 7, stride ``stem_stride``) + BN + ReLU, so the residual stack runs on
  L / stem_stride samples (whitened BBH strain at 1024 Hz carries little above ~300 Hz);
- ``depth`` residual blocks (the paper's "ResNet layers", 7-16) of two Conv1d(kernel ``kernel_size``) each,
  all ``width`` channels (the paper's "hidden features", 70-120); every ``downsample_every``-th block halves
  the length (stride 2, 1x1 strided shortcut) while it stays >= 2 x ``pool``;
- head: adaptive average pooling to ``pool`` steps, flatten, Linear -> ``features``.
Batch normalisation uses running statistics in eval mode, like any torch ResNet.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ResidualBlock1d(nn.Module):
    """relu(x + BN(conv(relu(BN(conv(x)))))), with a strided 1x1 shortcut when the block downsamples."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        pad = kernel_size // 2
        self.residual = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size, stride=stride, padding=pad, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1
            else nn.Sequential(nn.Conv1d(channels, channels, 1, stride=stride, bias=False), nn.BatchNorm1d(channels))
        )
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.shortcut(x) + self.residual(x))


class ResNet1DEmbedding(nn.Module):
    """(*B, C, L) -> (*B, features); see the module docstring for the layout."""

    def __init__(
        self,
        shape: Sequence[int],
        depth: int = 7,
        width: int = 100,
        features: int = 128,
        kernel_size: int = 3,
        stem_stride: int = 4,
        downsample_every: int = 2,
        pool: int = 8,
    ):
        super().__init__()
        in_channels, length = (int(s) for s in shape)
        if depth < 1 or width < 1 or features < 1:
            raise ValueError(f"resnet1d needs depth, width, features >= 1, got {depth}, {width}, {features}")
        if kernel_size % 2 == 0:
            raise ValueError(f"resnet1d kernel_size = {kernel_size}; allowed: odd sizes ('same' padding)")
        self.shape = (in_channels, length)
        self.depth, self.width, self.features = depth, width, features
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, 7, stride=stem_stride, padding=3, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        length = (length - 1) // stem_stride + 1
        if length < pool:
            raise ValueError(f"context length {shape[1]} / stem_stride {stem_stride} is shorter than pool = {pool}")
        blocks = []
        for index in range(depth):
            stride = 2 if (index + 1) % max(1, downsample_every) == 0 and length >= 2 * pool else 1
            blocks.append(ResidualBlock1d(width, kernel_size, stride))
            length = (length - 1) // stride + 1
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(pool)
        self.linear = nn.Linear(width * pool, features)

    def forward(self, context: Tensor) -> Tensor:
        batch = context.shape[:-2]
        h = self.blocks(self.stem(context.reshape(-1, *self.shape)))
        return self.linear(self.pool(h).flatten(1)).reshape(*batch, self.features)
