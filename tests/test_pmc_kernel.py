"""The PMC kernel (gwpe.inference.pmc_kernel): a normalised density whose draws follow it, folded at a wall."""

import pytest
import torch

from gwpe.inference.pmc_kernel import WeightedKernel


def box_integral(kernel, low=(-6.0, -6.0), high=(6.0, 6.0), n=240):
    """Midpoint rule on an n x n grid (no cell straddles the wall at 0)."""
    axes = [low[i] + (high[i] - low[i]) * (torch.arange(n, dtype=torch.float64) + 0.5) / n for i in range(2)]
    grid = torch.cartesian_prod(*axes)
    return float(kernel.log_prob(grid).exp().sum()) * (high[0] - low[0]) * (high[1] - low[1]) / n**2


@pytest.mark.parametrize("wall", [None, 1])
def test_weighted_kernel_is_a_normalised_density_its_draws_follow(wall):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, dtype=torch.float64, generator=generator) * torch.tensor([1.0, 0.5]) + torch.tensor(
        [0.0, -1.0]
    )
    if wall is not None:
        x[:, wall] = -x[:, wall].abs()
    weights = torch.rand(300, dtype=torch.float64, generator=generator)
    weights[:100] = 0.0  # dropped centres
    kernel = WeightedKernel(x, weights, wall=wall)
    assert len(kernel.centres) == 200 and 0.3 < kernel.bandwidth < 0.7
    assert box_integral(kernel) == pytest.approx(1.0, abs=2e-3)
    draws = kernel.sample(20_000, torch.Generator().manual_seed(1))
    if wall is not None:
        assert bool((draws[:, wall] <= 0).all())
        assert bool(torch.isinf(kernel.log_prob(torch.tensor([[0.0, 0.5]], dtype=torch.float64))).all())
    # draws follow the density: the share of draws in a box is the integral of k over it (folded draws included)
    box = (draws[:, 0] > 0) & (draws[:, 1] > -1.0) & (draws[:, 1] < 0.0)
    mass = box_integral(kernel, (0.0, -1.0), (6.0, 0.0))
    assert 0.1 < mass < 0.5 and float(box.double().mean()) == pytest.approx(mass, abs=0.012)


def test_weighted_kernel_rejects_all_zero_weights():
    with pytest.raises(ValueError, match="every weight is zero"):
        WeightedKernel(torch.randn(10, 2), torch.zeros(10))
