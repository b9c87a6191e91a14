"""Event results: bilby result files (written by gwpe, read by bilby itself) and the event-report figures."""

import re

import numpy as np
import pytest
from bilby.core.result import read_in_result

from gwpe.errors import InputError
from gwpe.evaluation.event_posterior_plots import (
    PUBLISHED_BAND_GID,
    PUBLISHED_LABEL,
    PUBLISHED_MEDIAN_GID,
    event_corner,
    sky_credible_areas,
    sky_map,
    southern_fraction,
)
from gwpe.inference.result_file import BILBY_NAMES, read_result, with_derived, write_bilby_result

NAMES = ["m1", "m2", "chi1z", "chi2z", "dL", "tc", "phi0", "theta_jn", "ra", "dec", "psi"]
GPS_START = 1126259446.0  # GW150914's 16 s window would start here; tc ~ 16.4 s after it


def synthetic_samples(n=200, seed=0):
    rng = np.random.default_rng(seed)
    samples = np.column_stack(
        [
            rng.uniform(33, 42, n),
            rng.uniform(25, 32, n),
            rng.uniform(-0.5, 0.5, n),
            rng.uniform(-0.5, 0.5, n),
            rng.uniform(200, 600, n),
            rng.uniform(16.40, 16.44, n),
            rng.uniform(0, 2 * np.pi, n),
            rng.uniform(0, np.pi, n),
            rng.uniform(0, 2 * np.pi, n),
            rng.uniform(-1.5, 1.5, n),
            rng.uniform(0, np.pi, n),
        ]
    )
    return samples


def test_with_derived_adds_chirp_mass_ratio_and_effective_spin():
    columns = with_derived(np.array([[36.0, 29.0, 0.3, -0.2]]), ["m1", "m2", "chi1z", "chi2z"])
    assert list(columns) == ["m1", "m2", "chi1z", "chi2z", "chirp_mass", "mass_ratio", "chi_eff"]
    assert columns["chirp_mass"][0] == pytest.approx((36 * 29) ** 0.6 / 65**0.2)
    assert columns["mass_ratio"][0] == pytest.approx(29 / 36)
    assert columns["chi_eff"][0] == pytest.approx((36 * 0.3 - 29 * 0.2) / 65)
    assert set(with_derived(np.ones((3, 2)), ["m1", "dL"])) == {"m1", "dL"}
    with pytest.raises(InputError):
        with_derived(np.ones((3, 2)), ["m1", "m2", "dL"])


@pytest.mark.parametrize("suffix", [".hdf5", ".json"])
def test_bilby_reads_the_written_result(tmp_path, monkeypatch, suffix):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    samples = synthetic_samples()
    columns = with_derived(samples, NAMES)
    meta = {"gwpe_version": "0.1.0", "event": "GW150914", "detectors": ["H1", "L1"], "data_md5": "ab" * 16}
    path = tmp_path / "results" / f"GW150914_npe{suffix}"
    written = write_bilby_result(
        path,
        columns,
        label="GW150914_npe",
        sampler="gwpe-npe",
        log_evidence=-8000.5,
        log_evidence_err=0.12,
        log_noise_evidence=-8300.25,
        meta=meta,
        gps_offset=GPS_START,
        priors={"m1": (10.0, 80.0), "tc": (16.2, 16.6)},
    )
    assert written == path and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert list(workdir.iterdir()) == []  # nothing stray in the working directory

    result = read_in_result(filename=str(path))
    posterior = result.posterior
    assert set(posterior.columns) == {BILBY_NAMES[name] for name in columns}
    for name in NAMES:
        if name != "tc":
            np.testing.assert_array_equal(posterior[BILBY_NAMES[name]].to_numpy(), columns[name])
    np.testing.assert_allclose(posterior["geocent_time"].to_numpy(), samples[:, 5] + GPS_START, rtol=0, atol=1e-6)
    m1, m2, chi1, chi2 = samples[0, 0], samples[0, 1], samples[0, 2], samples[0, 3]
    row = posterior.iloc[0]
    assert row["chirp_mass"] == pytest.approx((m1 * m2) ** 0.6 / (m1 + m2) ** 0.2, rel=1e-12)
    assert row["mass_ratio"] == pytest.approx(m2 / m1, rel=1e-12) and row["mass_ratio"] <= 1
    assert row["chi_eff"] == pytest.approx((m1 * chi1 + m2 * chi2) / (m1 + m2), rel=1e-12)

    assert result.log_evidence == pytest.approx(-8000.5)
    assert result.log_evidence_err == pytest.approx(0.12)
    assert result.log_noise_evidence == pytest.approx(-8300.25)
    assert result.log_bayes_factor == pytest.approx(299.75)
    assert result.label == "GW150914_npe" and result.sampler == "gwpe-npe"
    assert result.meta_data["event"] == "GW150914" and result.meta_data["data_md5"] == meta["data_md5"]
    assert list(result.meta_data["detectors"]) == ["H1", "L1"]
    assert result.meta_data["gwpe_version"] == "0.1.0"
    assert set(result.search_parameter_keys) == {BILBY_NAMES[name] for name in NAMES}
    assert (result.priors["mass_1"].minimum, result.priors["mass_1"].maximum) == (10.0, 80.0)
    assert result.priors["geocent_time"].minimum == pytest.approx(GPS_START + 16.2)

    again = read_result(path)
    np.testing.assert_array_equal(again.posterior["mass_1"].to_numpy(), columns["m1"])


def test_result_without_priors_or_evidence_round_trips(tmp_path):
    path = write_bilby_result(tmp_path / "r.json", {"m1": np.array([36.0, 37.0])}, label="x", sampler="npe")
    result = read_in_result(filename=str(path))
    assert list(result.posterior["mass_1"]) == [36.0, 37.0] and np.isnan(result.log_bayes_factor)


def test_bad_suffix_and_bad_input_are_one_line_input_errors(tmp_path):
    columns = {"m1": np.ones(3)}
    with pytest.raises(InputError, match=r"\.txt.*\.hdf5, \.json") as caught:
        write_bilby_result(tmp_path / "result.txt", columns, label="x", sampler="npe")
    assert "\n" not in str(caught.value) and not (tmp_path / "result.txt").exists()
    with pytest.raises(InputError, match="mass1"):
        write_bilby_result(tmp_path / "r.json", {"mass1": np.ones(3)}, label="x", sampler="npe")
    with pytest.raises(InputError, match="lengths"):
        write_bilby_result(tmp_path / "r.json", {"m1": np.ones(3), "m2": np.ones(2)}, label="x", sampler="npe")
    with pytest.raises(InputError, match="JSON"):
        write_bilby_result(tmp_path / "r.json", columns, label="x", sampler="npe", meta={"f": object()})
    with pytest.raises(InputError, match="does not exist") as caught:
        read_result(tmp_path / "missing.hdf5")
    assert "\n" not in str(caught.value)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable bilby result") as caught:
        read_result(tmp_path / "broken.json")
    assert "\n" not in str(caught.value)


def test_event_corner_overlays_posteriors_and_marks_published_intervals():
    rng = np.random.default_rng(3)
    labels = ["chirp_mass", "mass_ratio", "chi_eff", "dL"]
    centre, width = np.array([30.0, 0.8, -0.05, 420.0]), np.array([1.5, 0.1, 0.1, 150.0])
    npe = centre + width * rng.standard_normal((4000, 4))
    adaptive = centre + 0.8 * width * rng.standard_normal((3000, 4))
    published = {"chirp_mass": (28.0, 30.0, 32.5), 3: (230.0, 410.0, 570.0)}
    figure = event_corner(
        {"NPE": npe, "adaptive IS": adaptive},
        labels,
        published=published,
        weights={"adaptive IS": rng.uniform(0.5, 1.5, 3000)},
        title="GW150914",
    )
    assert len(figure.axes) == len(labels) ** 2
    axes = np.array(figure.axes).reshape(4, 4)
    for k, has_band in enumerate([True, False, False, True]):
        gids = [artist.get_gid() for artist in axes[k, k].patches + axes[k, k].lines]
        assert (PUBLISHED_BAND_GID in gids) == has_band and (PUBLISHED_MEDIAN_GID in gids) == has_band
    legend_texts = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert PUBLISHED_LABEL in legend_texts and any(text.startswith("NPE") for text in legend_texts)
    assert f"{np.median(npe[:, 3]):.0f}" in axes[3, 3].get_title()
    assert any("50 % and 90 %" in text.get_text() for text in figure.texts)
    with pytest.raises(InputError, match="published key"):
        event_corner({"NPE": npe}, labels, published={"m1": (1.0, 2.0, 3.0)})


def summary_fraction(figure) -> float:
    (summary,) = [text for text in figure.texts if text.get_gid() == "sky-summary"]
    return float(re.search(r"P\(dec < 0\) = ([0-9.]+)", summary.get_text()).group(1))


def test_sky_map_is_mollweide_and_reports_the_southern_mass():
    rng = np.random.default_rng(4)
    ra = np.mod(rng.normal(2.2, 0.3, 5000), 2 * np.pi)
    dec = np.clip(rng.normal(-0.4, 0.5, 5000), -np.pi / 2, np.pi / 2)
    figure = sky_map(ra, dec, label="NPE", title="GW150914")
    assert figure.axes[0].name == "mollweide"
    assert summary_fraction(figure) == pytest.approx(np.mean(dec < 0), abs=6e-4)
    weights = rng.uniform(0, 1, 5000)
    weighted = sky_map(ra, dec, weights=weights)
    assert summary_fraction(weighted) == pytest.approx(weights[dec < 0].sum() / weights.sum(), abs=6e-4)
    assert southern_fraction(dec, weights) == pytest.approx(weights[dec < 0].sum() / weights.sum())
    with pytest.raises(InputError, match="radians"):
        sky_map(ra, np.degrees(dec))


def test_sky_credible_area_of_a_narrow_gaussian_spot():
    sigma = 0.1  # rad; the 90 % region of a 2-D Gaussian covers 2 pi sigma^2 ln 10 sr
    rng = np.random.default_rng(5)
    ra = np.pi + sigma * rng.standard_normal(40000)
    dec = sigma * rng.standard_normal(40000)
    expected = 2 * np.pi * sigma**2 * np.log(10) * np.degrees(1) ** 2
    areas = sky_credible_areas(ra, dec)
    assert expected < areas[0.9] < 1.35 * expected  # binning and smoothing only widen it
    assert areas[0.5] < areas[0.9]
