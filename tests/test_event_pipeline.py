"""The GW150914 event pipeline, tiny: the same stages as experiments/gw150914/dvc.yaml on the shipped GWOSC files.

prepare (real strain, off-source PSDs) -> a training set whitened with them -> an NPE (SVD embedding) ->
analyse (gwpe infer on the GWOSC files, raw-NPE IS, adaptive IS, flow-MCMC, report, bilby file) -> injections
in the real noise. The tiny profile infers 5 parameters at 256 Hz so that every step takes seconds; the
likelihood check of an injection into real noise must put the truth inside its 90 % interval.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from gwpe.tracking.metrics_files import read_metrics

from conftest import REPO, run_gwpe, tiny_sampling, write_profile


def tiny_event_profile() -> dict:
    profile = yaml.safe_load((REPO / "experiments" / "gw150914.yaml").read_text())
    profile["profile"] = "gw150914-tiny"
    profile["tracking"] = {"experiment": "gwpe-test"}
    profile["event"]["injections"] = {"count": 12, "samples": 200, "step": 0.25, "edge": 2.0, "seed": 0}
    dataset = profile["strain"]["datasets"]["gw150914"]
    dataset.update(
        parameters=["m1", "m2", "dL", "tc", "phi0"],
        n_signals=3000,
        validation_fraction=0.1,
        sample_rate=256.0,
    )
    dataset["prior"].update(mass_min=25.0, mass_max=50.0, distance_min=200.0, distance_max=800.0)
    profile["strain"]["store"]["chunk_size"] = 128
    profile["strain"]["compute"]["workers"] = 0
    model = profile["flows"]["models"]["gw150914"]
    model["options"] = {"transforms": 2, "hidden": [32, 32]}
    model["embedding"] = {"kind": "svd", "features": 32, "blocks": 1, "hidden": 32, "seed_signals": 300}
    profile["flows"]["training"].update(batch_size=128, max_epochs=10, learning_rate=0.002)
    sampling = tiny_sampling()
    sampling["model"] = "gw150914"
    sampling["path"] = "data/events/sampling"
    # a proposal flow that can follow a posterior at SNR ~25 (the shared tiny one has 1 transform of 16 units)
    sampling["npe_samples"] = 1000
    sampling["adaptive"].update(
        draws_per_round=1000, max_rounds=40, epochs=10, final_ess=300, final_batch=1000, max_final_draws=4000
    )
    sampling["adaptive"]["mcmc_steps"] = 2  # the event profile's SMC path
    sampling["flowmc"].update(transforms=3, hidden=[32, 32], warm_start_epochs=10, flow_epochs=5)
    profile["sampling"] = sampling
    return profile


@pytest.fixture(scope="module")
def event_project(tmp_path_factory):
    project = tmp_path_factory.mktemp("event")
    shutil.copytree(REPO / "data" / "gwosc", project / "data" / "gwosc")
    write_profile(project / "params.yaml", tiny_event_profile())
    for args in (
        ["event", "prepare", "--params", "params.yaml", "--metrics", "metrics/data.json", "--no-progress"],
        ["generate", "strain", "--dataset", "gw150914", "--params", "params.yaml"],
        ["train", "flow", "--model", "gw150914", "--params", "params.yaml", "--no-progress"],
    ):
        run_gwpe(args, cwd=project, check=True, timeout=600)
    return project


def test_prepare_writes_off_source_psds_that_whiten_the_event(event_project):
    record = json.loads((event_project / "data/events/GW150914/data/event.json").read_text())
    assert record["source"] == "local" and record["detectors"] == ["H1", "L1"]
    assert record["window_start_gps"] == pytest.approx(1126259462.4 - 1.6)
    assert record["psd"]["off_source_seconds"] > 20.0
    # the on-source window whitened with the off-source PSD: unit-variance noise plus GW150914 (RMS near 1)
    for rms in record["on_source_whitened_rms"].values():
        assert 0.8 < rms < 1.5
    for detector in ("H1", "L1"):
        table = np.loadtxt(event_project / f"data/events/GW150914/data/{detector}-psd.dat")
        band = (table[:, 0] > 30) & (table[:, 0] < 100)
        assert 1e-47 < np.median(table[band, 1]) < 1e-43  # O1 noise at 30-100 Hz: ASD ~ 1e-23 .. 1e-22
    for name in ("asd.png", "whitened.png", "time-frequency.png"):
        assert (event_project / "plots/events/GW150914" / name).stat().st_size > 10_000


def test_analyse_reports_npe_and_likelihood_posteriors_and_writes_a_bilby_result(event_project):
    from bilby.core.result import read_in_result

    run_gwpe(
        ["event", "analyse", "--params", "params.yaml", "--metrics", "metrics/events/GW150914.json", "--no-progress"],
        cwd=event_project,
        check=True,
        timeout=900,
    )
    metrics = read_metrics(event_project / "metrics/events/GW150914.json")
    for key in ("npe", "likelihood_checked", "flowmc_posterior"):
        for name in ("m1", "m2", "chirp_mass", "mass_ratio", "dL"):
            q = metrics[key][name]
            assert q["p05"] <= q["median"] <= q["p95"]
    assert 0 < metrics["npe_importance"]["efficiency"] <= 1 and metrics["npe_importance"]["effective_samples"] >= 1
    assert metrics["network_snr"] > 8  # GW150914 is loud even in a 256 Hz, 5-parameter toy
    assert metrics["log_bayes_factor"] > 10
    assert set(metrics["agreement_js"]) >= {"m1", "m2", "chirp_mass", "dL"}
    assert metrics["outside_prior"] == {"npe": 0.0, "adaptive_importance": 0.0, "flowmc": 0.0}
    result = read_in_result(str(event_project / "data/events/GW150914/posterior/GW150914_result.hdf5"))
    assert {"mass_1", "mass_2", "chirp_mass", "luminosity_distance", "geocent_time"} <= set(result.posterior)
    assert result.log_evidence == pytest.approx(metrics["adaptive_importance"]["log_evidence"], abs=1e-3)
    assert abs(result.posterior["geocent_time"].median() - 1126259462.4) < 0.1
    for name in ("corner.png", "whitened-ml.png"):
        assert (event_project / "plots/events/GW150914" / name).is_file()


def test_injections_into_real_noise_report_pp(event_project):
    run_gwpe(
        ["event", "injections", "--params", "params.yaml", "--metrics", "metrics/inj.json", "--no-progress"],
        cwd=event_project,
        check=True,
        timeout=600,
    )
    metrics = read_metrics(event_project / "metrics/inj.json")
    assert metrics["n_injections"] == 12 and set(metrics["ks_pvalue"]) == {"m1", "m2", "dL", "tc", "phi0"}
    assert all(0 <= p <= 1 for p in metrics["ks_pvalue"].values())
    assert isinstance(metrics["failing"], list)


def test_likelihood_posterior_recovers_an_injection_in_the_real_noise(event_project, monkeypatch):
    import dataclasses

    import torch

    from gwpe.config import load_config
    from gwpe.inference.event_injections import noise_starts, whitened_segment
    from gwpe.inference.event_posterior import (
        adaptive_posterior,
        event_for,
        read_prepared,
        reconstruct,
        weighted_quantiles,
    )
    from gwpe.inference.likelihood import DistanceMarginalisedLikelihood
    from gwpe.inference.sampling import npe_draws
    from gwpe.models.loading import load_package
    from gwpe.models.package import read_package_config

    monkeypatch.chdir(event_project)
    config = load_config("params.yaml")
    prepared = read_prepared(config)
    package = Path("models/events/gw150914")
    meta, module = read_package_config(package), load_package(package)
    spec = meta["data_spec"]
    white, start = whitened_segment(prepared["files"], spec)
    rate, n = float(spec["sample_rate"]), int(round(spec["duration"] * spec["sample_rate"]))
    window = prepared["window_start_gps"] - start
    first = noise_starts(white.shape[-1], rate, 2.0, (window, window + 2.0), config.event.injections, 1.0)[3]
    truth = np.array([[40.0, 32.0, 450.0, 1.6, 1.0]])  # m1, m2, dL, tc, phi0: network SNR ~ 15 here
    event = event_for(config, module, meta, white[:, first : first + n], package)
    template = event.generator.templates(truth, event.names)[0]
    event.observation = event.observation + template
    event.strain = torch.as_tensor(event.observation, dtype=torch.float32)
    settings = config.sampling
    theta, _ = npe_draws(module, event, settings.npe_samples, 1)
    reduced = dataclasses.replace(event, names=["m1", "m2", "tc"])  # phi0, dL marginalised, as `analyse` does
    with DistanceMarginalisedLikelihood(event.generator, reduced.names, event.observation, event.dataset.prior) as lik:
        _, _, _, estimate, draws, weights, _ = adaptive_posterior(
            reduced, settings, lik, theta[:, [0, 1, 3]], torch.Generator().manual_seed(0)
        )
        rng = np.random.default_rng(0)
        full = reconstruct(lik, draws[rng.choice(len(draws), 2000, p=weights / weights.sum())], event.names, rng)
    assert estimate.effective_samples > 50
    for k, name in enumerate(reduced.names):
        low, _, high = weighted_quantiles(draws[:, k], weights)
        truth_k = truth[0, event.names.index(name)]
        assert low <= truth_k <= high, f"{name}: truth {truth_k} outside the 90 % interval [{low}, {high}]"
    low, high = np.quantile(full[:, 2], [0.05, 0.95])  # d_L drawn back from p(d_L | theta, x)
    assert low <= truth[0, 2] <= high, f"dL: truth {truth[0, 2]} outside the 90 % interval [{low}, {high}]"
