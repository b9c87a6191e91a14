"""The data-quality gate of ``gwpe infer`` (``gwpe.inference.input_gate``): each check on synthetic data (coloured
Gaussian noise with the model's PSD passes; 10x the PSD, a glitch, a short input, samples piled at a bound and an
SNR outside the training range do not), and GW150914 from GWOSC through ``gwpe infer`` with a tiny two-detector
model: refused in one line naming the PSD mismatch; with ``--force`` it runs, records the failures, and every
sample lies inside the prior."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import gwpe_env, run_gwpe, tiny_profile, write_profile
from gwpe.config import StrainPriorConfig
from gwpe.data.strain_store import UNITS, recorded_prior
from gwpe.errors import InputError
from gwpe.inference.input_gate import (
    FAIL,
    FLAG,
    NOT_RUN,
    PASS,
    check_input,
    check_posterior,
    checks_json,
    enforce,
    format_checks,
    generator_of,
    piling_check,
    snr_check,
    support_check,
)
from gwpe.inference.strain_files import StrainInput
from gwpe.waveforms.priors import log_prior_density, sample_prior
from gwpe.waveforms.strain import FIXED
from gwpe.waveforms.whitening import psd

GWOSC = Path(__file__).parents[1] / "data" / "gwosc"
GW150914 = [GWOSC / "H-H1_LOSC_4_V2-1126259446-32.hdf5", GWOSC / "L-L1_LOSC_4_V2-1126259446-32.hdf5"]
GW150914_START = 1126259461.7  # merger (GPS 1126259462.42) 0.72 s into the tiny model's 1-s window, as t_c in its prior
RATE = 1024.0
SPEC = {
    "approximant": "IMRPhenomPv2",
    "psd": "aLIGOZeroDetHighPower",
    "f_min": 20.0,
    "f_ref": 20.0,
    "sample_rate": RATE,
    "duration": 1.0,
    "detectors": ["H1", "L1"],
    "reference_gps": 1126259462.0,
    "inferred": ["m1", "m2", "chi1z", "chi2z", "dL"],
    "units": UNITS,
    "prior": StrainPriorConfig().model_dump(),
}
INFERRED = SPEC["inferred"]


def coloured(seed: int, seconds: float, scale: float = 1.0, rate: float = RATE) -> np.ndarray:
    """(2, L) Gaussian noise with ``scale`` x the model's PSD above f_min (none below): whitening it with the
    model's PSD gives N(0, 1) per sample in band."""
    n = int(round(seconds * rate))
    frequencies = np.fft.rfftfreq(n, 1 / rate)
    s_n = psd(SPEC["psd"], frequencies, SPEC["f_min"])
    s_n[~np.isfinite(s_n)] = 0.0
    white = np.random.default_rng(seed).standard_normal((2, n))
    return np.fft.irfft(np.fft.rfft(white) * np.sqrt(scale * s_n * rate / 2), n=n)


def strain(data: np.ndarray, rate: float = RATE) -> StrainInput:
    return StrainInput(data, rate, 0.0, ["H1", "L1"], ["synthetic"], "0")


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def test_noise_coloured_by_the_model_psd_passes():
    gate = check_input(strain(coloured(0, 16.0)), SPEC, start=7.5, whiten_raw=True)
    checks = by_name(gate.checks)
    assert gate.window.shape == (2, 1024) and not gate.failed
    assert [c.status for c in gate.checks] == [PASS] * 5
    for label in ("H1", "L1"):
        assert 0.8 < checks["noise PSD"].numbers["median_ratio"][label] < 1.2
        assert 0.85 < checks["noise variance"].numbers["variance"][label] < 1.1  # 1 - 2 f_min / fs = 0.96
        assert abs(checks["noise normality"].numbers["excess_kurtosis"][label]) < 0.2
    assert enforce(gate.checks, force=False) == []
    table = format_checks(gate.checks)
    assert table.splitlines()[0].split()[:4] == ["check", "value", "allowed", "status"]
    assert "noise PSD" in table and "0.5-2x over 20-461 Hz" in table
    assert [c["name"] for c in json.loads(checks_json(gate.checks))] == [c.name for c in gate.checks]


def test_a_psd_ten_times_the_model_s_fails_naming_the_psd():
    gate = check_input(strain(coloured(1, 16.0, scale=10.0)), SPEC, start=7.5, whiten_raw=True)
    checks = by_name(gate.checks)
    assert checks["noise PSD"].status == FAIL and checks["noise variance"].status == FAIL
    assert checks["noise normality"].status == PASS  # louder, still Gaussian
    assert 8 < checks["noise PSD"].numbers["median_ratio"]["H1"] < 12
    with pytest.raises(InputError) as refused:
        enforce(gate.checks, force=False)
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith("noise check failed: PSD mismatch: H1 off-source PSD is ")
    assert "x the model's aLIGOZeroDetHighPower over 20-461 Hz" in line and "(allowed 0.5-2x" in line
    assert "also failed: noise variance, on-source RMS" in line and "--force" in line
    forced = enforce(gate.checks, force=True)
    assert len(forced) == 3 and forced[0].startswith("noise check failed: PSD mismatch")


def test_already_whitened_input_is_compared_with_unit_white_noise():
    rng = np.random.default_rng(2)
    good = check_input(strain(rng.standard_normal((2, 12 * 1024))), SPEC, start=5.0)
    assert not good.failed and by_name(good.checks)["on-source RMS"].status == PASS
    for scale in (100.0, 0.01):  # issue 25: a mis-scaled whitened input ran (d_L 7,232 Mpc, m1 -373 Msun)
        window = rng.standard_normal((2, 1024)) * scale
        rms = by_name(check_input(strain(window), SPEC).checks)["on-source RMS"]
        assert rms.status == FAIL and "the whitened input has RMS" in rms.message
    loud = check_input(strain(3 * rng.standard_normal((2, 12 * 1024))), SPEC, start=5.0)
    psd_check = by_name(loud.checks)["noise PSD"]
    assert psd_check.status == FAIL and "unit-variance white noise (2/sample_rate)" in psd_check.message
    assert 7 < psd_check.numbers["median_ratio"]["L1"] < 11


def test_a_glitch_fails_normality():
    data = np.random.default_rng(3).standard_normal((2, 16 * 1024))
    data[1, 2 * 1024] = 40.0  # off-source, one sample of 40 sigma
    gate = check_input(strain(data), SPEC, start=7.5)
    checks = by_name(gate.checks)
    assert [c.name for c in gate.failed] == ["noise normality"]
    assert checks["noise normality"].numbers["excess_kurtosis"]["L1"] > 50
    assert abs(checks["noise normality"].numbers["excess_kurtosis"]["H1"]) < 0.2
    with pytest.raises(InputError, match=r"^noise check failed: whitened off-source noise is not Gaussian: excess "):
        enforce(gate.checks, force=False)
    inside = data.copy()  # the same glitch inside the window is no off-source problem
    inside[1, 2 * 1024] = 0.0
    inside[1, int(7.7 * 1024)] = 40.0
    assert not check_input(strain(inside), SPEC, start=7.5).failed


def test_window_only_input_runs_no_noise_check_but_the_on_source_rms():
    rng = np.random.default_rng(4)
    gate = check_input(strain(rng.standard_normal((2, 1024))), SPEC)
    checks = by_name(gate.checks)
    for name in ("noise PSD", "noise variance", "noise normality"):
        assert checks[name].status == NOT_RUN and "only the model's window" in checks[name].detail
    assert not gate.failed
    loud = check_input(strain(100 * coloured(5, 1.0)), SPEC, whiten_raw=True)
    assert [c.name for c in loud.failed] == ["on-source RMS"]
    with pytest.raises(InputError, match="^noise check failed: whitened strain has RMS"):
        enforce(loud.checks, force=False)
    short = check_input(strain(coloured(6, 3.0)), SPEC, start=1.0, whiten_raw=True)
    assert by_name(short.checks)["noise PSD"].status == NOT_RUN
    assert "Welch segments" in by_name(short.checks)["noise PSD"].detail


def test_sample_rate_four_times_the_model_s_is_decimated_and_checked():
    gate = check_input(strain(coloured(7, 16.0, rate=4 * RATE), rate=4 * RATE), SPEC, start=7.5, whiten_raw=True)
    rate_check = by_name(gate.checks)["sample rate"]
    assert rate_check.status == PASS and rate_check.numbers["decimation"] == 4
    assert "resampled 4096 Hz -> 1024 Hz (anti-aliasing FIR, decimation by 4)" in rate_check.detail
    assert not gate.failed and gate.window.shape == (2, 1024)
    with pytest.raises(InputError, match="sample rate 3000 Hz; allowed: the model's 1024 Hz or an integer multiple"):
        check_input(strain(coloured(7, 4.0), rate=3000.0), SPEC, start=1.5, whiten_raw=True)


def test_samples_piled_at_a_prior_bound_are_flagged_not_refused():
    prior = StrainPriorConfig()
    rng = np.random.default_rng(8)
    samples = sample_prior(prior, INFERRED, 4000, rng)
    broad = piling_check(samples, INFERRED, SPEC)
    assert broad.status == PASS and max(max(e.values()) for e in broad.numbers["fractions"].values()) < 0.05
    samples[:1200, INFERRED.index("dL")] = rng.uniform(2990.0, 3000.0, 1200)  # 30 % in the top 1 % of d_L
    piled = piling_check(samples, INFERRED, SPEC)
    assert piled.status == FLAG and 0.3 <= piled.numbers["fractions"]["dL"]["upper"] < 0.33
    assert piled.numbers["flagged"] == ["dL 31% at the upper bound of [1000, 3000] Mpc"]  # 30 % + the prior's ~2 %
    assert piled.message.startswith("posterior piled against a prior bound: dL 31% at the upper bound")
    assert enforce([piled], force=False) == []  # a flag is no failure
    phases = np.column_stack([np.zeros(100), np.full(100, 40.0), np.full(100, 40.0)])  # phi0 at 0: periodic, ignored
    assert piling_check(phases, ["phi0", "m1", "m2"], SPEC).status == PASS


def test_signal_snr_against_the_training_range():
    theta = {"m1": 60.0, "m2": 45.0, "chi1z": 0.1, "chi2z": -0.2, "dL": 1500.0}
    generator = generator_of(SPEC)
    window, snr = generator.whitened({**FIXED, **theta})
    long_segment = generator.long_segment({**FIXED, **theta})
    # the frequency-domain formula of the store's snr array is sqrt(sum x^2) of the whitened long segment
    np.testing.assert_allclose(np.sqrt(np.sum(long_segment**2)), snr, rtol=1e-3)
    assert 0.8 * snr < np.sqrt(np.sum(window**2)) <= snr  # the window misses only the early inspiral
    rng = np.random.default_rng(9)
    samples = np.array([theta[p] for p in INFERRED]) * (1 + 0.01 * rng.standard_normal((501, len(INFERRED))))
    samples[:, INFERRED.index("m1")] = np.maximum(samples[:, INFERRED.index("m1")], samples[:, INFERRED.index("m2")])
    around = {"min": snr / 3, "p01": snr / 2, "median": snr, "p99": 2 * snr, "max": 3 * snr}
    check = snr_check(samples, INFERRED, SPEC, around)
    assert check.status == PASS and abs(check.numbers["snr"] - snr) < 0.05 * snr
    quiet = {"min": 4 * snr, "p01": 5 * snr, "median": 10 * snr, "p99": 30 * snr, "max": 40 * snr}
    check = snr_check(samples, INFERRED, SPEC, quiet)
    assert check.status == FAIL and check.allowed == f"{5 * snr / 1.5:.3g}-{60 * snr:.3g}"
    with pytest.raises(InputError, match="^signal check failed: optimal SNR .* of the template at the posterior"):
        enforce([check], force=False)
    assert snr_check(samples, INFERRED, SPEC, None).status == NOT_RUN
    outside = samples.copy()
    outside[:, INFERRED.index("dL")] = -5000.0
    assert "outside the model's prior" in snr_check(outside, INFERRED, SPEC, around).message
    names = [c.name for c in check_posterior(samples, INFERRED, SPEC, around)]
    assert names == ["prior support", "signal SNR", "prior bounds"]
    assert support_check(samples, INFERRED, SPEC).status == PASS
    assert support_check(outside, INFERRED, SPEC).status == FAIL  # issue 25: extrapolated samples were written
    broken = samples.copy()
    broken[3, 0] = np.nan
    with pytest.raises(InputError, match="non-finite samples"):
        support_check(broken, INFERRED, SPEC)


@pytest.fixture(scope="module")
def hl_model(tmp_path_factory, hl_store):
    """A tiny MAF on the two-detector (H1, L1) set at 1024 Hz (4096 / 4): its package folder, project and env."""
    root = tmp_path_factory.mktemp("gate")
    shutil.copytree(hl_store, root / "data")
    profile = tiny_profile()
    profile["flows"]["dataset"] = "strain-hl"
    profile["flows"]["models"] = {"maf": profile["flows"]["models"]["maf"]}
    write_profile(root / "params.yaml", profile)
    env = gwpe_env(root)
    run_gwpe(
        ["train", "flow", "--model", "maf", "--no-progress", "--params", "params.yaml"], cwd=root, env=env, check=True
    )
    return root / "models" / "flows" / "maf", root, env


def test_gw150914_is_refused_for_its_psd_and_forced_stays_in_the_prior(hl_model, tmp_path):
    package, root, env = hl_model
    meta = json.loads((package / "config.json").read_text())
    assert meta["data_spec"]["detectors"] == ["H1", "L1"] and 4096 % meta["data_spec"]["sample_rate"] == 0
    out = tmp_path / "gw150914.h5"
    args = [
        "infer",
        "--model",
        str(package),
        "--strain",
        *map(str, GW150914),
        "--whiten",
        "--start",
        str(GW150914_START),
        "--n-samples",
        "2000",
        "--out",
        str(out),
        "--seed",
        "0",
        "--no-plot",
        "--no-progress",
    ]
    refused = run_gwpe(args, cwd=tmp_path, env=env)
    lines = refused.stderr.strip().splitlines()
    print(refused.stderr)
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("gwpe: error: noise check failed: PSD mismatch: H1 off-source PSD is ")
    assert "the model's aLIGOZeroDetHighPower over 20-461 Hz" in lines[0] and "--force" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())

    forced = run_gwpe([*args, "--force"], cwd=tmp_path, env=env, check=True)
    print(forced.stderr)
    assert "resampled 4096 Hz -> 1024 Hz" in forced.stderr and "gwpe: warning: noise check failed" in forced.stderr
    with h5py.File(out) as f:
        samples, names = f["samples"][()], list(f["samples"].attrs["parameters"])
        checks = {c["name"]: c for c in json.loads(f.attrs["checks"])}
        forced_checks = json.loads(f.attrs["forced_checks"])
        json.loads(f.attrs["prior_bound_flags"])
    assert samples.shape == (2000, len(names))
    assert checks["noise PSD"]["status"] == FAIL and checks["sample rate"]["status"] == PASS
    assert set(checks) == {
        "sample rate",
        "noise PSD",
        "noise variance",
        "noise normality",
        "on-source RMS",
        "prior support",
        "signal SNR",
        "prior bounds",
    }
    assert forced_checks[0].startswith("noise check failed: PSD mismatch")
    prior = recorded_prior(meta["data_spec"])
    density = log_prior_density(prior, names, samples)
    assert np.all(np.isfinite(density)), f"{np.mean(~np.isfinite(density)):.1%} of the samples outside the prior"
    for path in GW150914:  # the inputs are untouched
        assert path.stat().st_size > 1_000_000
