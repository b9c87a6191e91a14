import numpy as np
import pytest

from gwpe.config import H22GridConfig, load_config
from gwpe.waveforms.grid import axis_values, split_parameters, split_size, time_grid

from conftest import REPO


def test_paper_profile_counts_match_the_paper():
    grid = load_config(REPO / "experiments" / "paper.yaml").h22.grid
    assert split_size(grid, "test") == 197_516  # Khan, Huerta & Das: 44 x 67 x 67
    assert split_size(grid, "train") == 88 * 134 * 134 == 1_580_128  # "~1.5 million"
    assert split_size(grid, "validation") == 43 * 66 * 66 == 187_308  # "~190,000"


def test_axis_values_are_exact_and_never_overshoot():
    q = axis_values(1.0, 8.0, 0.08)
    assert len(q) == 88 and q[-1] == pytest.approx(7.96) and q[-1] <= 8.0
    np.testing.assert_array_equal(q, 1.0 + 0.08 * np.arange(88))
    s = axis_values(-0.8, 0.8, 0.4)
    np.testing.assert_allclose(s, [-0.8, -0.4, 0.0, 0.4, 0.8], atol=1e-15)  # inclusive end point


def test_validation_and_test_alternate_between_training_values():
    grid = H22GridConfig(dq=1.0, ds=0.4)
    train = split_parameters(grid, "train")
    test = split_parameters(grid, "test")
    validation = split_parameters(grid, "validation")
    np.testing.assert_allclose(np.unique(test[:, 0]), [1.5, 3.5, 5.5, 7.5])
    np.testing.assert_allclose(np.unique(validation[:, 0]), [2.5, 4.5, 6.5])
    np.testing.assert_allclose(np.unique(test[:, 1]), [-0.6, 0.2])
    np.testing.assert_allclose(np.unique(validation[:, 2]), [-0.2, 0.6])

    def as_set(a):
        return {tuple(np.round(row, 9)) for row in a}

    assert (
        not as_set(train) & as_set(test)
        and not as_set(train) & as_set(validation)
        and not as_set(test) & as_set(validation)
    )
    assert len(train) == split_size(grid, "train") == 8 * 5 * 5
    assert train[1].tolist() == pytest.approx([1.0, -0.8, -0.4])  # s2z varies fastest


def test_time_grid_contains_zero_and_ends():
    t = time_grid(-10000.0, 130.0, 0.1)
    assert len(t) == 101_301
    assert t[0] == -10000.0 and t[-1] == pytest.approx(130.0, abs=1e-9)
    assert np.min(np.abs(t)) < 1e-9
