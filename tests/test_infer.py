"""``gwpe infer`` and ``gwpe models`` on a tiny trained MAF (local SQLite tracking store): file formats,
whitening of raw strain, calibration over a batch of injections, and a table of bad inputs, each a one-line
error with a non-zero exit."""

import json
import shutil
import pickle

import h5py
import numpy as np
import pytest

from conftest import gwpe_env, run_gwpe, run_in_process, tiny_profile, write_profile
from gwpe.config import StrainPriorConfig, load_config
from gwpe.inference.infer import whiten
from gwpe.inference.strain_files import read_strain, write_strain
from gwpe.waveforms.priors import log_prior_density
from gwpe.waveforms.strain import FIXED, StrainGenerator, StrainSetup


@pytest.fixture(scope="module")
def flow_project(tmp_path_factory):
    """strain-5d (tiny), a MAF trained and evaluated: registered as gwpe-npe-maf with alias champion."""
    root = tmp_path_factory.mktemp("infer")
    profile = tiny_profile()
    profile["strain"]["datasets"]["strain-5d"]["n_signals"] = 60
    profile["flows"]["models"] = {"maf": profile["flows"]["models"]["maf"]}
    profile["flows"]["training"]["max_epochs"] = 4
    write_profile(root / "params.yaml", profile)
    env = gwpe_env(root)
    for args in (
        ["generate", "strain", "--dataset", "strain-5d"],
        ["train", "flow", "--model", "maf", "--no-progress"],
        ["evaluate", "flow", "--model", "maf", "--no-progress"],
    ):
        run_gwpe([*args, "--params", "params.yaml"], cwd=root, env=env, check=True)
    config = load_config(root / "params.yaml")
    setup = StrainSetup.build(config.strain, config.strain.datasets["strain-5d"])
    return root, env, config, StrainGenerator(setup)


def injection(generator, rng, config):
    prior = config.strain.datasets["strain-5d"].prior
    m1, m2 = sorted(rng.uniform(prior.mass_min, prior.mass_max, 2), reverse=True)
    theta = {
        **FIXED,
        "m1": m1,
        "m2": m2,
        "phi0": rng.uniform(0, 2 * np.pi),
        "tc": rng.uniform(prior.tc_min, prior.tc_max),
        "dL": rng.uniform(prior.distance_min, prior.distance_max),
    }
    signal, _ = generator.whitened(theta)
    return theta, signal + rng.standard_normal(signal.shape)


def test_models_list_shows_the_champion(flow_project):
    root, env, _, _ = flow_project
    result = run_gwpe(["models", "list", "--json"], cwd=root, env=env, check=True)
    rows = json.loads(result.stdout)
    assert [(r["name"], r["version"], r["aliases"], r["metric"]) for r in rows] == [
        ("gwpe-npe-maf", 1, ["champion"], "val_nll")
    ]
    table = run_gwpe(["models", "list"], cwd=root, env=env, check=True).stdout
    assert "gwpe-npe-maf" in table and "champion" in table


def test_infer_formats_agree_and_record_provenance(flow_project, tmp_path):
    root, env, config, generator = flow_project
    rng = np.random.default_rng(5)
    theta, strain = injection(generator, rng, config)
    np.save(tmp_path / "event.npy", strain)
    write_strain(tmp_path / "event.h5", strain, 1024.0, start_time=1126259462.0)
    header = "# Gravitational wave strain for H1_GWOSC_1KHZ_R1 for GPS 1126259462 - 1126259463 at 1024Hz\n"
    (tmp_path / "event.txt").write_text(header + "\n".join(f"{v:.17g}" for v in strain[0]) + "\n")
    outputs = {}
    scratch = tmp_path / "scratch"  # the pulled package's temporary folder goes here, and must be gone after
    scratch.mkdir()
    for name, extra in (("event.npy", ["--sample-rate", "1024"]), ("event.h5", []), ("event.txt", [])):
        out = tmp_path / f"{name}.h5"
        result = run_gwpe(
            [
                "infer",
                "--model",
                "gwpe-npe-maf@champion",
                "--strain",
                str(tmp_path / name),
                "--n-samples",
                "3000",
                "--out",
                str(out),
                "--seed",
                "1",
                "--no-progress",
                *extra,
            ],
            cwd=tmp_path,
            env={**env, "TMPDIR": str(scratch)},
            check=True,
        )
        assert not list(scratch.glob("gwpe-model-*"))
        assert "median" in result.stdout and "m1" in result.stdout
        with h5py.File(out) as f:
            outputs[name] = f["samples"][()]
            assert list(f["samples"].attrs["parameters"]) == ["m1", "m2", "phi0", "tc", "dL"]
            assert list(f["samples"].attrs["units"]) == ["Msun", "Msun", "rad", "s", "Mpc"]
            assert f.attrs["model"] == "models:/gwpe-npe-maf/1" and f.attrs["model_version"] == 1
            assert len(f.attrs["input_md5"]) == 32 and f.attrs["mlflow_run_id"]
            checks = {c["name"]: c["status"] for c in json.loads(f.attrs["checks"])}
            assert checks["sample rate"] == "pass" and checks["noise PSD"] == "not run"  # the window only
            assert {"signal SNR", "prior bounds"} <= set(checks) and json.loads(f.attrs["forced_checks"]) == []
            assert f.attrs["parameterisation"].startswith("bounded: (m1, m2) -> (chirp mass")
            names = ["m1", "m2", "phi0", "tc", "dL"]
            assert np.isfinite(log_prior_density(StrainPriorConfig(), names, outputs[name])).all()
        assert "check" in result.stderr and "sample rate" in result.stderr  # the table, on stderr
        assert (tmp_path / f"{name}.png").is_file()
    assert outputs["event.npy"].shape == (3000, 5)
    np.testing.assert_allclose(outputs["event.npy"], outputs["event.h5"], rtol=1e-5)  # same data, same seed
    # Issue 24, friction 10: the same samples as a bilby result (bilby/PESummary), derived parameters included
    from bilby.core.result import read_in_result

    from gwpe import physics

    bilby_result = read_in_result(str(tmp_path / "event.h5_result.hdf5"))
    posterior = bilby_result.posterior
    m1, m2 = outputs["event.h5"][:, 0], outputs["event.h5"][:, 1]
    np.testing.assert_allclose(posterior["mass_1"], m1)
    np.testing.assert_allclose(posterior["chirp_mass"], physics.chirp_mass(m1, m2))
    assert (posterior["mass_ratio"] <= 1).all() and "luminosity_distance" in posterior
    # the HDF5 input knows its GPS start: geocent_time is GPS; the .npy input does not: window seconds
    np.testing.assert_allclose(posterior["geocent_time"], outputs["event.h5"][:, 3] + 1126259462.0)
    assert read_in_result(str(tmp_path / "event.npy_result.hdf5")).posterior["geocent_time"].max() < 10
    assert "chirp_mass" in result.stdout  # the derived parameters' quantiles are printed too
    np.testing.assert_allclose(outputs["event.npy"], outputs["event.txt"], rtol=1e-5)


def test_whitening_raw_strain_reproduces_the_dataset_convention(flow_project):
    _, _, config, generator = flow_project
    setup = generator.setup
    theta = {**FIXED, "m1": 60.0, "m2": 45.0, "phi0": 1.0, "tc": 0.75, "dL": 1200.0}
    expected, _ = generator.whitened(theta)
    raw = np.fft.irfft(generator.detector_frequency_series(theta), n=setup.n_long) / setup.dt  # strain, ~1e-21
    assert np.abs(raw).max() < 1e-19
    spec = {"psd": setup.psd_name, "f_min": setup.f_min}
    start = int(round(setup.pad * setup.sample_rate))
    window = whiten(raw, setup.sample_rate, spec)[:, start : start + setup.n_samples]
    assert np.corrcoef(window[0], expected[0])[0, 1] > 0.999
    np.testing.assert_allclose(np.linalg.norm(window), np.linalg.norm(expected), rtol=1e-2)


def test_raw_segment_is_whitened_and_windowed_by_gwpe_infer(flow_project, tmp_path):
    root, env, config, generator = flow_project
    setup = generator.setup
    theta = {**FIXED, "m1": 62.0, "m2": 41.0, "phi0": 2.0, "tc": 0.72, "dL": 1100.0}
    raw = np.fft.irfft(generator.detector_frequency_series(theta), n=setup.n_long) / setup.dt
    gps0 = 1126259000.0
    write_strain(tmp_path / "raw.h5", raw[0], setup.sample_rate, start_time=gps0)
    out = tmp_path / "raw-out.h5"
    run_gwpe(
        [
            "infer",
            "--model",
            "gwpe-npe-maf@champion",
            "--strain",
            str(tmp_path / "raw.h5"),
            "--whiten",
            "--start",
            str(gps0 + setup.pad),
            "--n-samples",
            "500",
            "--out",
            str(out),
            "--no-plot",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    with h5py.File(out) as f:
        assert f["samples"].shape == (500, 5) and bool(f.attrs["whitened_here"])
    unwhitened = run_gwpe(
        [
            "infer",
            "--model",
            "gwpe-npe-maf@champion",
            "--strain",
            str(tmp_path / "raw.h5"),
            "--start",
            str(gps0 + setup.pad),
            "--out",
            str(tmp_path / "x.h5"),
        ],
        cwd=tmp_path,
        env=env,
    )
    assert unwhitened.returncode == 2 and "looks unwhitened" in unwhitened.stderr and "--whiten" in unwhitened.stderr


def test_raw_strain_at_a_multiple_of_the_rate_is_decimated_with_an_antialiasing_filter(flow_project, tmp_path):
    """GWOSC-like raw strain at 4x the model's rate: decimated (FIR low-pass), whitened, windowed; the window equals
    the one cut from the same strain at the model's rate. Other rates, and whitened strain at 4x, are refused."""
    from scipy.signal import resample_poly

    from gwpe.errors import InputError
    from gwpe.inference.infer import flow_input
    from gwpe.inference.strain_files import StrainInput

    root, env, config, generator = flow_project
    setup = generator.setup
    theta = {**FIXED, "m1": 55.0, "m2": 40.0, "phi0": 1.0, "tc": 0.75, "dL": 1000.0}
    raw = np.fft.irfft(generator.detector_frequency_series(theta), n=setup.n_long) / setup.dt
    fast = resample_poly(raw, 4, 1, axis=-1)  # band-limited below the model's Nyquist frequency: exact up to the FIR
    spec = {**json.loads((root / "models/flows/maf/config.json").read_text())["data_spec"]}
    gps0 = 1126259000.0
    direct = flow_input(StrainInput(raw, setup.sample_rate, gps0, None, ["x"], "0"), spec, gps0 + setup.pad, True)
    decimated = flow_input(
        StrainInput(fast, 4 * setup.sample_rate, gps0, None, ["x"], "0"), spec, gps0 + setup.pad, True
    )
    assert decimated.shape == direct.shape
    assert np.max(np.abs(decimated - direct)) < 0.02 * np.max(np.abs(direct))
    for rate, whiten_raw, message in ((3000.0, True, "integer multiple"), (4 * setup.sample_rate, False, "--whiten")):
        with pytest.raises(InputError, match=message):
            flow_input(StrainInput(fast, rate, gps0, None, ["x"], "0"), spec, gps0 + setup.pad, whiten_raw)

    write_strain(tmp_path / "fast.h5", fast[0], 4 * setup.sample_rate, start_time=gps0)
    out = tmp_path / "fast-out.h5"
    result = run_gwpe(
        [
            "infer",
            "--model",
            "gwpe-npe-maf@champion",
            "--strain",
            str(tmp_path / "fast.h5"),
            "--whiten",
            "--start",
            str(gps0 + setup.pad),
            "--n-samples",
            "200",
            "--out",
            str(out),
            "--no-plot",
            "--no-progress",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert f"resampled {4 * setup.sample_rate:g} Hz -> {setup.sample_rate:g} Hz" in result.stderr
    with h5py.File(out) as f:
        assert bool(f.attrs["resampled_here"]) and f.attrs["input_sample_rate"] == 4 * setup.sample_rate
        assert f["samples"].shape == (200, 5)
        assert json.loads(f.attrs["forced_checks"]) == []

    # strain 100 x louder than the model's PSD (real detector noise against a design curve): refused, naming the
    # check, and nothing written; --force runs it and records the failed check
    write_strain(tmp_path / "loud.h5", 100 * fast[0], 4 * setup.sample_rate, start_time=gps0)
    args = [
        "infer",
        "--model",
        "gwpe-npe-maf@champion",
        "--strain",
        str(tmp_path / "loud.h5"),
        "--whiten",
        "--start",
        str(gps0 + setup.pad),
        "--n-samples",
        "200",
        "--out",
        str(tmp_path / "loud-out.h5"),
        "--no-plot",
        "--no-progress",
    ]
    refused = run_gwpe(args, cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "gwpe: error: noise check failed: whitened strain has RMS" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1  # the one-line refusal, nothing else
    assert not (tmp_path / "loud-out.h5").exists()
    forced = run_gwpe([*args, "--force"], cwd=tmp_path, env=env, check=True)
    assert "gwpe: warning: noise check failed" in forced.stderr
    assert "on-source RMS" in forced.stderr and "FAIL" in forced.stderr  # the check table
    with h5py.File(tmp_path / "loud-out.h5") as f:
        assert json.loads(f.attrs["forced_checks"])[0].startswith("noise check failed")
        checks = {c["name"]: c for c in json.loads(f.attrs["checks"])}
        assert checks["on-source RMS"]["status"] == "FAIL" and checks["sample rate"]["status"] == "pass"
        # 4 s of strain around a 1-s window: too little off-source data for the noise checks
        assert checks["noise PSD"]["status"] == "not run"


def test_intervals_cover_most_injections(flow_project, tmp_path, capsys, monkeypatch):
    """90 % intervals of gwpe infer's samples contain the injected parameters for most of a batch of
    injections written to files (the tiny 4-epoch model is broad, so this checks calibration, not precision)."""
    root, env, config, generator = flow_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    rng = np.random.default_rng(2024)
    covered, total = 0, 0
    for k in range(12):
        theta, strain = injection(generator, rng, config)
        write_strain(tmp_path / f"inj{k}.h5", strain, 1024.0)
        out = tmp_path / f"inj{k}-samples.h5"
        code, _, err = run_in_process(
            [
                "infer",
                "--model",
                "gwpe-npe-maf@champion",
                "--strain",
                str(tmp_path / f"inj{k}.h5"),
                "--n-samples",
                "2000",
                "--out",
                str(out),
                "--no-plot",
                "--no-progress",
            ],
            capsys,
        )
        assert code == 0, err
        with h5py.File(out) as f:
            samples, names = f["samples"][()], list(f["samples"].attrs["parameters"])
        low, high = np.quantile(samples, [0.05, 0.95], axis=0)
        truth = np.array([theta[p] for p in names])
        covered += int(np.sum((truth >= low) & (truth <= high)))
        total += len(names)
    fraction = covered / total
    print(f"90 % interval coverage over {total} (injection, parameter) pairs: {fraction:.2f}")
    assert fraction >= 0.7


def test_promote_and_pull_into_another_directory(flow_project, tmp_path):
    root, env, _, _ = flow_project
    result = run_gwpe(
        ["models", "promote", "gwpe-npe-maf", "1", "--alias", "production"], cwd=tmp_path, env=env, check=True
    )
    assert "gwpe-npe-maf@production -> version 1" in result.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_gwpe(["models", "pull", "gwpe-npe-maf@production", "--dest", "pulled"], cwd=elsewhere, env=env, check=True)
    package = next((elsewhere / "pulled").rglob("config.json")).parent
    meta = json.loads((package / "config.json").read_text())
    assert (
        meta["model"] == "flow" and meta["gwpe_version"] and meta["data_md5"] and meta["standardisation"]["parameters"]
    )
    assert meta["data_spec"]["sample_rate"] == 1024.0 and meta["data_spec"]["psd"] == "aLIGOZeroDetHighPower"
    rows = json.loads(run_gwpe(["models", "list", "--json"], cwd=elsewhere, env=env, check=True).stdout)
    assert rows[0]["aliases"] == ["champion", "production"]


def _bad_inputs(tmp_path, root, generator, config):
    """(name, argv, expected text) for each bad input; files are written here."""
    rng = np.random.default_rng(0)
    _, strain = injection(generator, rng, config)
    good = write_strain(tmp_path / "good.h5", strain, 1024.0)
    write_strain(tmp_path / "rate.h5", strain, 2048.0)
    write_strain(tmp_path / "rate-odd.h5", strain, 1500.0)
    write_strain(tmp_path / "short.h5", strain[:, :1000], 1024.0)
    nan = strain.copy()
    nan[0, 17] = np.nan
    write_strain(tmp_path / "nan.h5", nan, 1024.0)
    (tmp_path / "empty.h5").write_bytes(b"")
    write_strain(tmp_path / "two.h5", np.concatenate([strain, strain]), 1024.0)
    np.save(tmp_path / "norate.npy", strain)
    np.savez(tmp_path / "nokey.npz", data=strain)
    (tmp_path / "words.txt").write_text("0.1\n0.2\nnot-a-number\n")
    write_strain(tmp_path / "raw.h5", strain * 1e-21, 1024.0)
    (tmp_path / "event.csv").write_text("1,2,3\n")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((root / "models" / "flows" / "maf" / "config.json").read_text())
    (corrupt / "weights.pt").write_bytes(b"\x80\x04not a torch file")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "config.json").write_text((root / "models" / "flows" / "maf" / "config.json").read_text())

    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    (evil / "weights.pt").write_bytes(pickle.dumps({"x": Payload()}))
    halfway = tmp_path / "halfway"
    halfway.mkdir()
    (halfway / "weights.pt").write_bytes(b"")

    # issue 25: mis-scaled or garbage whitened strain ran and wrote nonsense (exit 0)
    write_strain(tmp_path / "x100.h5", strain * 100, 1024.0)
    write_strain(tmp_path / "x001.h5", strain * 0.01, 1024.0)
    garbage = strain.copy()
    garbage[0, 100:108] = 7e142  # what 64 random bytes inside the HDF5 dataset read as
    write_strain(tmp_path / "garbage.h5", garbage, 1024.0)
    (tmp_path / "kept.h5").write_bytes(b"an earlier result")
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "pulled").mkdir()
    (tmp_path / "pulled" / "config.json").write_text("the user's own file")
    (tmp_path / "a-file").write_text("not a folder")
    bad_psd = tmp_path / "bad-psd"
    shutil.copytree(root / "models" / "flows" / "maf", bad_psd)
    meta = json.loads((bad_psd / "config.json").read_text())
    meta["data_spec"]["psd"] = "aLIGOZeroDetNope"
    (bad_psd / "config.json").write_text(json.dumps(meta))

    def infer(model, path, *extra):
        return ["infer", "--model", model, "--strain", str(path), "--out", str(tmp_path / "o.h5"), *extra]

    def infer_to(out, *extra):
        return ["infer", "--model", "gwpe-npe-maf@champion", "--strain", str(good), "--out", str(out), *extra]

    champion = "gwpe-npe-maf@champion"
    return [
        (
            "whitened strain at twice the rate",
            infer(champion, tmp_path / "rate.h5"),
            "sample rate 2048 Hz for whitened strain; the model expects 1024 Hz: pass the raw strain with --whiten",
        ),
        (
            "rate not a multiple",
            infer(champion, tmp_path / "rate-odd.h5", "--whiten"),
            "sample rate 1500 Hz; allowed: the model's 1024 Hz or an integer multiple of it",
        ),
        ("wrong length", infer(champion, tmp_path / "short.h5"), "1000 samples"),
        ("NaN", infer(champion, tmp_path / "nan.h5"), "NaN or inf at sample 17 of channel 0"),
        ("empty file", infer(champion, tmp_path / "empty.h5"), "file is empty"),
        ("wrong detector count", infer(champion, tmp_path / "two.h5"), "2 channel(s); the model expects 1"),
        (
            "missing sample rate",
            infer(champion, tmp_path / "norate.npy"),
            "no sample rate in the file; pass --sample-rate",
        ),
        ("npz without strain", infer(champion, tmp_path / "nokey.npz"), "no array named 'strain'"),
        (
            "text not numeric",
            infer(champion, tmp_path / "words.txt", "--sample-rate", "1024"),
            "a line is not a number",
        ),
        ("unwhitened strain", infer(champion, tmp_path / "raw.h5"), "looks unwhitened"),
        ("unknown format", infer(champion, tmp_path / "event.csv"), "unknown strain format '.csv'"),
        ("missing file", infer(champion, tmp_path / "nope.h5"), "does not exist"),
        ("window outside data", infer(champion, good, "--start", "5"), "lies outside the data"),
        ("no samples", infer(champion, good, "--n-samples", "0"), "--n-samples = 0"),
        (
            "bad output suffix",
            ["infer", "--model", champion, "--strain", str(good), "--out", str(tmp_path / "o.txt")],
            "a .h5 or .hdf5 file",
        ),
        (
            "output is the input",
            ["infer", "--model", champion, "--strain", str(good), "--out", str(good)],
            "is one of the input files",
        ),
        (
            "unknown model",
            infer("gwpe-nope@champion", good),
            "db; registered: gwpe-npe-maf",
        ),
        ("unknown alias", infer("gwpe-npe-maf@best", good), "has no alias 'best'; aliases: champion (v1)"),
        ("unknown version", infer("gwpe-npe-maf/7", good), "has no version 7; versions: 1"),
        ("reference without alias", infer("gwpe-npe-maf", good), "allowed: NAME@ALIAS"),
        ("corrupt package", infer(str(corrupt), good), "is not a tensors-only state dict"),
        ("pickled code in weights", infer(str(evil), good), "is not a tensors-only state dict"),
        ("package without config", infer(str(halfway), good), "has no config.json"),
        ("promote unknown version", ["models", "promote", "gwpe-npe-maf", "9", "--alias", "x"], "has no version 9"),
        ("promote numeric alias", ["models", "promote", "gwpe-npe-maf", "1", "--alias", "12"], "alias = '12'"),
        (
            "pull unknown model",
            ["models", "pull", "gwpe-nope@champion", "--dest", str(tmp_path / "p")],
            "no registered model",
        ),
        ("bad detectors flag", infer(champion, good, "--detectors", "H1,L1"), "names 2 channels but the files hold 1"),
        ("whitened strain x100", infer(champion, tmp_path / "x100.h5"), "the whitened input has RMS"),
        ("whitened strain x0.01", infer(champion, tmp_path / "x001.h5"), "the whitened input has RMS"),
        ("garbage values in the file", infer(champion, tmp_path / "garbage.h5"), "the whitened input has RMS"),
        ("--whiten on whitened strain", infer(champion, good, "--whiten"), "noise check failed"),
        ("output exists", infer_to(tmp_path / "kept.h5"), "exists; allowed: a new file name, or --overwrite"),
        ("output is a folder", infer_to(tmp_path / "folder.h5"), "is a folder"),
        ("output folder unwritable", infer_to("/proc/gwpe/o.h5"), "cannot write into /proc/gwpe"),
        ("pull into a non-empty folder", ["models", "pull", champion, "--out", str(tmp_path / "pulled")], "not empty"),
        ("unknown PSD in a package", infer(str(bad_psd), good), "data_spec.psd = 'aLIGOZeroDetNope'"),
        ("pull onto a file", ["models", "pull", champion, "--out", str(tmp_path / "a-file")], "is a file"),
    ]


def test_bad_inputs_fail_with_one_line(flow_project, tmp_path, capsys, monkeypatch):
    root, env, config, generator = flow_project
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    monkeypatch.chdir(tmp_path)
    cases = _bad_inputs(tmp_path, root, generator, config)
    assert len(cases) >= 15
    failures = []
    for name, argv, expected in cases:
        code, out, err = run_in_process(argv, capsys)
        lines = err.strip().splitlines()
        if code == 0 or len(lines) != 1 or expected not in lines[0] or "pickled code ran" in out:
            failures.append(f"{name}: exit {code}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "o.h5").exists()  # nothing was written for any bad input
    assert (tmp_path / "kept.h5").read_bytes() == b"an earlier result"  # nor anything overwritten
    assert (tmp_path / "pulled" / "config.json").read_text() == "the user's own file"
    # and through the installed console script, two of them
    by_name = {case[0]: case for case in cases}
    for name, argv, expected in (cases[0], by_name["promote unknown version"], by_name["whitened strain x100"]):
        result = run_gwpe(argv, cwd=tmp_path, env=env)
        assert result.returncode == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()], name
        assert expected in result.stderr


def test_unreachable_server_is_one_line(tmp_path):
    env = gwpe_env(tmp_path, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    write_strain(tmp_path / "s.h5", np.zeros((1, 1024)), 1024.0)
    for argv in (
        ["models", "list"],
        [
            "infer",
            "--model",
            "gwpe-npe-maf@champion",
            "--strain",
            str(tmp_path / "s.h5"),
            "--out",
            str(tmp_path / "o.h5"),
        ],
    ):
        result = run_gwpe(argv, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "tracking server http://127.0.0.1:9 unreachable" in result.stderr


def test_read_strain_stacks_gwosc_files_per_detector(tmp_path):
    for detector, value in (("H1", 1.0), ("L1", 2.0)):
        with h5py.File(tmp_path / f"{detector}.hdf5", "w") as f:
            d = f.create_dataset("strain/Strain", data=np.full(2048, value))
            d.attrs["Xspacing"] = 1 / 2048
            f["meta/GPSstart"] = 1126259446
            f["meta/Detector"] = detector
    strain = read_strain([tmp_path / "H1.hdf5", tmp_path / "L1.hdf5"])
    assert strain.data.shape == (2, 2048) and strain.sample_rate == 2048.0 and strain.start_time == 1126259446
    assert strain.detectors == ["H1", "L1"] and strain.data[1, 0] == 2.0
