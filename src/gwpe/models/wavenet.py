"""Physics-inspired WaveNet regressor (Khan, Huerta & Das 2020, sec. 2.2).

Root: a non-causal stack of dilated 1-D convolutions (kernel 3, "same" padding), dilation doubling up to
``dilation_limit`` and the stack repeated ``stacks`` times; each block applies the gated activation
z = tanh(W_f * x) . sigmoid(W_g * x) (eq. 1) with residual and skip connections.
Leaves: the last ``leaf_steps`` time steps of the summed skip output are flattened into two fully
connected heads: one predicts q, the other either (S_eff, sigma_eff) (``head = "physics"``, eqs. 2-3;
spins then follow from ``physics.solve_spins`` with the predicted q) or (s1z, s2z) directly
(``head = "direct"``, the paper's MSE baseline for the ablation).

S_eff's scale (``s_eff_scale``, a choice the paper leaves open): S_eff = sigma_1 s1z + sigma_2 s2z spans
+-0.8 x 3.5 at q = 1 but +-0.8 x 8.1 at q = 8, so a leaf predicting S_eff itself (``"absolute"``) must make
its output's magnitude grow with q: a product of q and the spins that a small leaf learns slowly (measured:
its S_eff came out worse than the direct head's implied one). With ``"mass_ratio"`` the leaf predicts
S_eff / (sigma_1 + sigma_2) (``physics.hamiltonian_spin_range``), a weighted mean of the spins in [-0.8, 0.8]
like sigma_eff, and S_eff is recovered with the predicted q before the spin solve. The physics is the
paper's: the leaf's two outputs are the Hamiltonian effective spin (in units of its range) and sigma_eff,
and the spins come from solving eqs. (2)-(3) at the predicted q.

Targets are standardised (mean/std from the training split) inside the module; ``predict`` returns
physical (q, s1z, s2z).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from gwpe import physics


S_EFF_SCALES = ("absolute", "mass_ratio")


@dataclass(frozen=True)
class WaveNetConfig:
    """Architecture and head of a ``WaveNetRegressor`` (module doc); checked on creation."""

    in_channels: int = 2
    channels: int = 16
    skip_channels: int = 16
    dilation_limit: int = 64
    stacks: int = 1
    leaf_steps: int = 256
    leaf_hidden: int = 64
    head: str = "physics"  # "physics": (q, S_eff, sigma_eff); "direct": (q, s1z, s2z)
    spin_loss_weight: float = 0.0  # physics head only; see gwpe.models.wavenet_predictor
    # physics head only: "absolute" predicts S_eff itself; "mass_ratio" predicts S_eff / (sigma_1 + sigma_2), S_eff in
    # units of its range at that q (module docstring). Packages saved before this option load as "absolute".
    s_eff_scale: str = "absolute"

    def __post_init__(self):
        if self.head not in ("physics", "direct"):
            raise ValueError(f"head = {self.head!r}; allowed: physics, direct")
        if self.s_eff_scale not in S_EFF_SCALES:
            raise ValueError(f"s_eff_scale = {self.s_eff_scale!r}; allowed: {', '.join(S_EFF_SCALES)}")
        if self.spin_loss_weight < 0:
            raise ValueError(f"spin_loss_weight = {self.spin_loss_weight!r}; allowed: >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


class GatedResidualBlock(nn.Module):
    """x -> (x + W_r z, W_s z) with z = tanh(W_f * x) . sigmoid(W_g * x), dilated, non-causal.

    The last block of the root has no residual map (``residual=False``): only its skip output reaches the
    leaves, so a W_r there would be a parameter without gradient (and DDP refuses those)."""

    def __init__(self, channels: int, skip_channels: int, dilation: int, residual: bool = True):
        super().__init__()
        self.filter_gate = nn.Conv1d(channels, 2 * channels, kernel_size=3, dilation=dilation, padding=dilation)
        # built even when dropped, so every other layer draws the same initial weights as in earlier releases
        # (the tiny test models are sensitive to their initialisation)
        self.residual = nn.Conv1d(channels, channels, kernel_size=1)
        if not residual:
            self.residual = None
        self.skip = nn.Conv1d(channels, skip_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, g = self.filter_gate(x).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)
        return (x if self.residual is None else x + self.residual(z)), self.skip(z)


class WaveNetRegressor(nn.Module):
    """Dilated gated-convolution root and two leaves (q; the head's spin pair): (B, 2, L) -> (B, 3) (module doc)."""

    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        self.inlet = nn.Conv1d(config.in_channels, config.channels, kernel_size=1)
        dilations = []
        while not dilations or dilations[-1] * 2 <= config.dilation_limit:
            dilations.append(1 if not dilations else dilations[-1] * 2)
        layers = [d for _ in range(config.stacks) for d in dilations]
        self.blocks = nn.ModuleList(
            GatedResidualBlock(config.channels, config.skip_channels, d, residual=i < len(layers) - 1)
            for i, d in enumerate(layers)
        )
        features = config.skip_channels * config.leaf_steps

        def leaf(outputs: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(features, config.leaf_hidden),
                nn.ReLU(),
                nn.Linear(config.leaf_hidden, outputs),
            )

        self.q_leaf = leaf(1)
        self.spin_leaf = leaf(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, L) -> (B, 3) standardised head outputs."""
        if x.shape[-1] < self.config.leaf_steps:
            raise ValueError(f"input has {x.shape[-1]} samples < leaf_steps = {self.config.leaf_steps}")
        h = self.inlet(x)
        skip = 0.0
        for block in self.blocks:
            h, s = block(h)
            skip = skip + s
        features = skip[..., -self.config.leaf_steps :]
        return torch.cat([self.q_leaf(features), self.spin_leaf(features)], dim=-1)


def head_targets(params: torch.Tensor, head: str, s_eff_scale: str = "absolute") -> torch.Tensor:
    """Physical (q, s1z, s2z) -> what the head predicts: (q, S_eff, sigma_eff) or (q, s1z, s2z);
    with ``s_eff_scale = "mass_ratio"`` the second is S_eff / (sigma_1 + sigma_2) at the true q."""
    q, s1, s2 = params.unbind(-1)
    if head == "direct":
        return params
    s_eff = physics.hamiltonian_effective_spin(q, s1, s2)
    if s_eff_scale == "mass_ratio":
        s_eff = s_eff / physics.hamiltonian_spin_range(q)
    return torch.stack([q, s_eff, physics.sigma_eff(q, s1, s2)], dim=-1)


def head_to_parameters(outputs: torch.Tensor, head: str, s_eff_scale: str = "absolute") -> torch.Tensor:
    """Physical head outputs -> (q, s1z, s2z), solving eqs. (2)-(3) at the predicted q for the physics head."""
    if head == "direct":
        return outputs
    q, s_eff, sig_eff = outputs.unbind(-1)
    q = q.clamp(min=1.0)  # q = m1/m2 >= 1 by convention
    if s_eff_scale == "mass_ratio":
        s_eff = s_eff * physics.hamiltonian_spin_range(q)
    s1, s2 = physics.solve_spins(q, s_eff, sig_eff)
    return torch.stack([q, s1, s2], dim=-1)
