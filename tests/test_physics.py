import lal
import numpy as np
import pytest

from gwpe import physics


def test_mass_ratio_conventions_by_hand():
    m1, m2 = physics.component_masses(3.0, 40.0)
    assert (m1, m2) == pytest.approx((30.0, 10.0))
    assert physics.symmetric_mass_ratio(1.0) == 0.25
    assert physics.symmetric_mass_ratio(3.0) == pytest.approx(3.0 / 16.0)
    assert physics.symmetric_mass_ratio(8.0) == pytest.approx(8.0 / 81.0)


def test_newtonian_chirp_frequency_by_hand():
    # q = 1: eta = 1/4; 256 * 0.25 * 18000 / 5 = 230400; 230400^(-3/8) = 0.0097514...; / pi = 0.0031040...
    assert physics.newtonian_chirp_time_to_frequency(18000.0, 1.0) == pytest.approx(230400.0 ** -0.375 / np.pi, rel=1e-12)
    assert physics.newtonian_chirp_time_to_frequency(18000.0, 1.0) == pytest.approx(0.0031040, rel=1e-4)
    # inverting back gives tau = 5 / (256 eta) (pi M f)^(-8/3)
    mf = physics.newtonian_chirp_time_to_frequency(5000.0, 4.0)
    assert 5.0 / (256.0 * 0.16) * (np.pi * mf) ** (-8.0 / 3.0) == pytest.approx(5000.0, rel=1e-12)


def test_geometric_units_match_lal_constants():
    assert physics.MTSUN_SI == lal.MTSUN_SI
    assert physics.MRSUN_SI == lal.MRSUN_SI
    assert physics.PC_SI == lal.PC_SI
    assert physics.seconds_per_M(50.0) == pytest.approx(50 * 4.925490947641267e-06)
    assert physics.strain_to_geometric(10.0, 1476.6250380501247 * 10.0) == pytest.approx(1.0)
