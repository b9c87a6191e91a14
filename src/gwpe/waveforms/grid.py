"""Parameter grids of Khan, Huerta & Das (2021), sec. 2.1.

Training: q in [q_min, q_max] step dq, s1z and s2z in [s_min, s_max] step ds. Validation and test use the
midpoints between consecutive training values, alternating between the two sets along every axis: the
test set takes the midpoints of even index (the first, third, ...), validation those of odd index. With
the paper's steps (0.08, 0.012) this gives 88 x 134 x 134 = 1,580,128 training waveforms, test
44 x 67 x 67 = 197,516 (the paper's number) and validation 43 x 66 x 66 = 187,308.

Values are built from integer indices (lo + k*step), never by accumulating floats, so the grids are
reproducible to the last bit and never overshoot the upper bound.
"""

from __future__ import annotations

import numpy as np

from gwpe.config import H22GridConfig

SPLITS = ("train", "validation", "test")
PARAMETER_NAMES = ("q", "s1z", "s2z")


def axis_values(lo: float, hi: float, step: float) -> np.ndarray:
    """lo, lo+step, ... <= hi (with a 1e-9 relative tolerance on the last point)."""
    count = int(np.floor((hi - lo) / step * (1.0 + 1e-12) + 1e-9)) + 1
    return lo + step * np.arange(count, dtype=np.float64)


def split_axis(values: np.ndarray, split: str) -> np.ndarray:
    """Training axis values, or the alternating midpoints for validation/test."""
    if split == "train":
        return values
    mids = 0.5 * (values[:-1] + values[1:])
    if split == "test":
        return mids[0::2]
    if split == "validation":
        return mids[1::2]
    raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def split_axes(grid: H22GridConfig, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(q values, spin values) of ``split``; the spin axis serves both s1z and s2z."""
    q = split_axis(axis_values(grid.q_min, grid.q_max, grid.dq), split)
    s = split_axis(axis_values(grid.s_min, grid.s_max, grid.ds), split)
    return q, s


def split_size(grid: H22GridConfig, split: str) -> int:
    """Number of waveforms in ``split``: len(q) x len(s)^2."""
    q, s = split_axes(grid, split)
    return len(q) * len(s) ** 2


def split_parameters(grid: H22GridConfig, split: str) -> np.ndarray:
    """(N, 3) array of (q, s1z, s2z), q slowest and s2z fastest (C order)."""
    q, s = split_axes(grid, split)
    qq, s1, s2 = np.meshgrid(q, s, s, indexing="ij")
    return np.stack([qq.ravel(), s1.ravel(), s2.ravel()], axis=1)


def time_grid(t_start: float, t_end: float, dt: float) -> np.ndarray:
    """t/M = t_start + k dt for k = 0 .. round((t_end - t_start)/dt)."""
    n = int(round((t_end - t_start) / dt)) + 1
    return t_start + dt * np.arange(n, dtype=np.float64)
