import numpy as np
import pytest
import torch

from gwpe.evaluation.overlap import overlap, overlap_reference
from gwpe.waveforms.grid import time_grid
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend

TIMES = time_grid(-600.0, 130.0, 1.0)


@pytest.fixture(scope="module")
def waveforms():
    backend = IMRPhenomTHMBackend()
    return np.stack([backend.h22(*p, TIMES) for p in [(1.5, 0.2, -0.4), (4.0, 0.6, 0.1), (7.0, -0.5, 0.5)]])


def test_shifted_and_rotated_copy_has_unit_overlap_and_the_shift_is_recovered(waveforms):
    padded = np.concatenate([np.zeros((3, 80)), waveforms, np.zeros((3, 80))], axis=1)
    shifts = np.array([-37, 5, 61])
    shifted = np.stack([np.roll(w, k) * np.exp(1j * phi) for w, k, phi in zip(padded, shifts, (0.3, -2.0, 1.1))])
    value, lag = overlap(shifted, padded)
    np.testing.assert_allclose(value.numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(lag.numpy(), shifts, atol=1e-9)


def test_subsample_shift_is_not_penalised_with_refinement(waveforms):
    backend = IMRPhenomTHMBackend()
    shifted = backend.h22(4.0, 0.6, 0.1, TIMES + 0.5)  # the same binary half a sample later
    coarse, _ = overlap(waveforms[1:2], shifted[None], refine=False)
    fine, lag = overlap(waveforms[1:2], shifted[None])
    assert coarse.item() < 0.999  # half a sample of phase error at merger costs >1e-3 without interpolation
    assert fine.item() > 0.9998  # what is left is the truncated edges of the two windows
    assert lag.item() == pytest.approx(0.5, abs=0.1)


def test_overlap_is_symmetric_bounded_and_matches_the_reference(waveforms):
    h = torch.as_tensor(waveforms)
    s = torch.as_tensor(np.roll(waveforms, 1, axis=0))
    forward, _ = overlap(h, s, refine=False)
    backward, _ = overlap(s, h, refine=False)
    np.testing.assert_allclose(forward.numpy(), backward.numpy(), rtol=1e-12)
    assert torch.all(forward <= 1.0 + 1e-12) and torch.all(forward > 0)
    reference = [overlap_reference(a, b) for a, b in zip(waveforms, np.roll(waveforms, 1, axis=0))]
    np.testing.assert_allclose(forward.numpy(), reference, rtol=1e-9)
    refined, _ = overlap(h, s)
    assert torch.all(refined >= forward) and torch.all(refined <= 1.0)
    np.testing.assert_allclose(refined.numpy(), overlap(s, h)[0].numpy(), rtol=1e-9)
    stored = np.stack([waveforms.real, waveforms.imag], axis=1).astype(np.float32)  # (B, 2, L) as in the store
    np.testing.assert_allclose(overlap(stored, stored)[0].numpy(), 1.0, atol=1e-6)


def test_blocks_do_not_change_the_result(waveforms, monkeypatch):
    """A batch spanning several FFT blocks (and a partial last one) gives each pair's own overlap and lag."""
    import gwpe.evaluation.overlap as module

    rng = np.random.default_rng(3)
    h = np.concatenate([waveforms] * 3)  # 9 pairs
    s = np.stack([np.roll(w, k) * np.exp(1j * p) for w, k, p in zip(h, rng.integers(-20, 20, 9), rng.uniform(0, 6, 9))])
    s = s + 0.05 * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    whole, whole_lag = overlap(h, s)
    monkeypatch.setattr(module, "BLOCK_ROWS", 4)
    blocked, blocked_lag = overlap(h, s)
    single = [overlap(a[None], b[None]) for a, b in zip(h, s)]
    np.testing.assert_allclose(blocked.numpy(), whole.numpy(), rtol=1e-12)
    np.testing.assert_allclose(blocked_lag.numpy(), whole_lag.numpy(), atol=1e-9)
    np.testing.assert_allclose(blocked.numpy(), [v.item() for v, _ in single], rtol=1e-12)
    assert overlap(h[:0], s[:0])[0].shape == (0,)
