import os
import time

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from gwpe.errors import SurrogateNotFoundError, WaveformError
from gwpe.waveforms.base import check_time_grid, check_waveform
from gwpe.waveforms.grid import time_grid
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend
from gwpe.waveforms.nrhybsur3dq8 import ENV_VAR, NRHybSur3dq8Backend

CORNERS = [(1.0, 0.0, 0.0), (8.0, -0.8, -0.8), (8.0, 0.8, 0.8), (1.0, 0.8, -0.8), (4.0, 0.8, 0.8), (3.3, 0.5, -0.2)]


def mismatch(a: np.ndarray, b: np.ndarray) -> float:
    """1 - Re<a, b> / (|a||b|) with no maximisation over time or phase."""
    return 1.0 - float(np.real(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("dt", [1.0, 0.1])
@pytest.mark.parametrize("params", CORNERS)
def test_amplitude_peak_is_at_t0_within_half_a_step(params, dt):
    times = time_grid(-400.0, 130.0, dt)
    h = IMRPhenomTHMBackend().h22(*params, times)
    peak_sample = times[np.argmax(np.abs(h))]
    assert abs(peak_sample) <= dt / 2
    fine = np.linspace(-3 * dt, 3 * dt, 6001)
    assert abs(fine[np.argmax(CubicSpline(times, np.abs(h))(fine))]) <= dt / 2
    assert abs(np.angle(h[np.argmin(np.abs(times))])) < 1e-9  # phase convention: arg h22(0) = 0


@pytest.mark.parametrize("params", CORNERS)
def test_spline_product_matches_direct_fine_generation(params):
    backend = IMRPhenomTHMBackend(generation_dt=1.0)
    t_start, t_end = -10000.0, 130.0
    t_direct, h_direct = backend.native(*params, t_start, t_end, dt=0.1)
    inside = (t_direct >= t_start) & (t_direct <= t_end)
    t_direct, h_direct = t_direct[inside], h_direct[inside]
    h_direct = h_direct * np.exp(-1j * CubicSpline(t_direct, np.unwrap(np.angle(h_direct)))(0.0))
    product = backend.h22(*params, t_direct)  # spline product evaluated at the direct samples' own times
    assert mismatch(h_direct, product) < 1e-6
    assert np.max(np.abs(product - h_direct)) < 1e-3 * np.max(np.abs(h_direct))


def test_equal_mass_peak_amplitude_is_physical():
    times = time_grid(-300.0, 100.0, 0.5)
    peak = np.max(np.abs(IMRPhenomTHMBackend().h22(1.0, 0.0, 0.0, times)))
    assert 0.38 < peak < 0.41  # NR: max |r h22 / M| = 0.39 for non-spinning equal masses


def test_waveform_checks_name_the_parameters():
    h = np.ones(10, dtype=complex)
    h[3] = np.nan
    with pytest.raises(WaveformError, match=r"q=2\.5, s1z=0\.1, s2z=-0\.3"):
        check_waveform(h, 2.5, 0.1, -0.3, "imrphenomthm")
    with pytest.raises(WaveformError, match="not strictly increasing at index 1"):
        check_time_grid(np.array([0.0, 1.0, 1.0, 2.0]))
    with pytest.raises(WaveformError, match="NaN"):
        IMRPhenomTHMBackend().h22(2.0, 0.0, 0.0, np.array([-10.0, np.nan, 0.0]))


def test_missing_surrogate_fails_at_once_with_instructions(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    missing = tmp_path / "nowhere" / "NRHybSur3dq8.h5"
    start = time.perf_counter()
    with pytest.raises(SurrogateNotFoundError) as info:
        NRHybSur3dq8Backend(path=str(missing))
    assert time.perf_counter() - start < 2.0  # no download attempt
    message = str(info.value)
    assert "\n" not in message and str(missing) in message
    assert "gwsurrogate.catalog.pull('NRHybSur3dq8')" in message and ENV_VAR in message


@pytest.mark.skipif(
    not os.environ.get(ENV_VAR),
    reason=f"NRHybSur3dq8 test skipped: set ${ENV_VAR} to the NRHybSur3dq8.h5 file to run it",
)
def test_nrhybsur3dq8_backend_on_the_real_file():
    times = time_grid(-2000.0, 130.0, 0.1)
    surrogate = NRHybSur3dq8Backend()
    for params in [(1.0, 0.0, 0.0), (8.0, 0.8, -0.8)]:
        h = surrogate.h22(*params, times)
        assert abs(times[np.argmax(np.abs(h))]) <= 0.05
        assert (
            mismatch(h, IMRPhenomTHMBackend().h22(*params, times)) < 5e-2
        )  # model systematics (peak-aligned, no time/phase maximisation)
