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
    assert physics.newtonian_chirp_time_to_frequency(18000.0, 1.0) == pytest.approx(230400.0**-0.375 / np.pi, rel=1e-12)
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


def test_effective_spins_by_hand():
    # q = 2, s1z = 0.5, s2z = -0.3: sigma_eff = (1.0 - 0.3)/3; sigma_1 = 1.375, sigma_2 = 2.5
    assert physics.sigma_eff(2.0, 0.5, -0.3) == pytest.approx(0.7 / 3.0)
    assert physics.spin_weights(2.0) == pytest.approx((1.375, 2.5))
    assert physics.hamiltonian_effective_spin(2.0, 0.5, -0.3) == pytest.approx(1.375 * 0.5 - 2.5 * 0.3)  # -0.0625
    assert physics.hamiltonian_effective_spin(1.0, 0.2, 0.2) == pytest.approx(0.7)  # 1.75 * (0.2 + 0.2)
    assert physics.chirp_mass_over_total(1.0) == pytest.approx(0.25**0.6)
    # sigma_1 + sigma_2: 1.75 + 1.75 at q = 1, 1.375 + 2.5 at q = 2, 1.09375 + 7 at q = 8
    assert physics.hamiltonian_spin_range(1.0) == pytest.approx(3.5)
    assert physics.hamiltonian_spin_range(2.0) == pytest.approx(3.875)
    assert physics.hamiltonian_spin_range(8.0) == pytest.approx(8.09375)
    # equal spins: S_eff / (sigma_1 + sigma_2) is that spin at every q, like sigma_eff
    assert physics.hamiltonian_effective_spin(5.0, -0.6, -0.6) / physics.hamiltonian_spin_range(5.0) == pytest.approx(
        -0.6
    )


def test_spin_solve_inverts_the_forward_formulas_away_from_q1():
    rng = np.random.default_rng(0)
    q = rng.uniform(1.1, 8.0, 500)
    s1, s2 = rng.uniform(-0.8, 0.8, (2, 500))
    r1, r2 = physics.solve_spins(q, physics.hamiltonian_effective_spin(q, s1, s2), physics.sigma_eff(q, s1, s2))
    np.testing.assert_allclose(r1, s1, atol=1e-10)
    np.testing.assert_allclose(r2, s2, atol=1e-10)


def test_spin_solve_at_equal_masses_returns_the_symmetric_split():
    s1, s2 = physics.solve_spins(
        1.0, physics.hamiltonian_effective_spin(1.0, 0.6, -0.2), physics.sigma_eff(1.0, 0.6, -0.2)
    )
    assert s1 == pytest.approx(0.2) and s2 == pytest.approx(0.2)  # only s1z + s2z = 0.4 is measurable
    import torch

    q = torch.tensor([1.0, 3.0], requires_grad=True)
    t1, t2 = physics.solve_spins(q, torch.tensor([0.7, 0.2]), torch.tensor([0.2, 0.1]))
    assert torch.isfinite(t1).all() and torch.isfinite(t2).all()
    (t1.sum() + t2.sum()).backward()
    assert torch.isfinite(q.grad).all()


def test_spin_system_determinant_by_hand():
    # q = 2: sigma_1 = 1 + 3/8 = 1.375, sigma_2 = 1 + 3/2 = 2.5, det = (1.375 - 2 * 2.5) / 3
    assert physics.spin_system_determinant(2.0) == pytest.approx(-3.625 / 3)
    assert physics.spin_system_determinant(1.0) == pytest.approx(0.0)


def test_ratio_range_at_chirp_mass_is_where_a_mass_bound_becomes_tight():
    # M_c = 40 in [35, 80]: m2 = 35 is the binding bound; hand check: nu = 0.5713 gives
    # m2 = 40 (1.5713)^0.2 0.5713^0.4 = 40 * 1.0946 * 0.7994 = 35.0
    nu = physics.ratio_range_at_chirp_mass(40.0, 35.0, 80.0)
    assert nu == pytest.approx(0.5713, abs=2e-4)
    m1, m2 = physics.masses_from_chirp_mass(40.0, nu)
    assert m2 == pytest.approx(35.0, rel=1e-12) and m1 < 80.0
    # M_c = 60: m1 = 80 binds instead
    m1, m2 = physics.masses_from_chirp_mass(60.0, physics.ratio_range_at_chirp_mass(60.0, 35.0, 80.0))
    assert m1 == pytest.approx(80.0, rel=1e-12) and m2 > 35.0
    # the triangle's corners: only equal masses at M_c(35, 35) and M_c(80, 80)
    for mass in (35.0, 80.0):
        assert physics.ratio_range_at_chirp_mass(physics.chirp_mass(mass, mass), 35.0, 80.0) == pytest.approx(1.0)


def test_effective_spin_and_mass_ratio_by_hand():
    # m1 = 36, m2 = 29, chi1z = 0.5, chi2z = -0.2: (18 - 5.8) / 65 = 0.187692...
    assert physics.effective_spin(36.0, 29.0, 0.5, -0.2) == pytest.approx(12.2 / 65.0, rel=1e-12)
    assert physics.effective_spin(30.0, 30.0, 0.3, 0.3) == pytest.approx(0.3, rel=1e-12)
    assert physics.mass_ratio(40.0, 30.0) == pytest.approx(0.75, rel=1e-12)
