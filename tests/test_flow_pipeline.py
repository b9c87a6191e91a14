"""`gwpe train flow` / `gwpe evaluate flow` on a real tiny strain store: MLflow run, p–p report, registry."""

import json
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from gwpe.tracking.metrics_files import read_metrics

from conftest import run_gwpe, run_in_process, tiny_profile, tiny_sampling, tiny_strain, write_profile


def _project(tmp_path):
    profile = tiny_profile()
    profile["strain"] = tiny_strain(n_signals=48, validation_fraction=0.25)
    profile["flows"] = {
        "dataset": "strain-5d",
        # evaluation_injections overrides flows.evaluation.injections for this model
        "models": {
            "maf": {"kind": "maf", "options": {"transforms": 2, "hidden": [32, 32]}, "evaluation_injections": 11}
        },
        "training": {"batch_size": 12, "max_epochs": 3, "learning_rate": 0.002, "seed": 0, "num_workers": 0},
        "evaluation": {"injections": 10, "samples": 200},
        "reference": {"injections": 1, "walkers": 12, "steps": 60, "burn": 20, "workers": 0, "flow_samples": 500},
    }
    profile["sampling"] = tiny_sampling()
    write_profile(tmp_path / "params.yaml", profile)
    run_gwpe(["generate", "strain", "--params", "params.yaml", "--dataset", "strain-5d"], cwd=tmp_path, check=True)
    return tmp_path


@pytest.mark.usefixtures("one_torch_thread")  # sample and evidence also run in this process below
def test_train_and_evaluate_flow_report_calibration_and_register(tmp_path, capsys, monkeypatch):
    project = _project(tmp_path)
    out = run_gwpe(
        ["train", "flow", "--model", "maf", "--params", "params.yaml", "--no-progress"], cwd=project, check=True
    )
    assert "train flow maf: 3 epochs" in out.stdout
    config = json.loads((project / "models" / "flows" / "maf" / "config.json").read_text())
    assert config["model"] == "flow" and config["standardisation"]["parameters"] == ["m1", "m2", "phi0", "tc", "dL"]
    # flows.phase_symmetry defaults to pi: phi0's circle [0, 2 pi) in the model's standardised units, 2 copies
    mean, std = config["standardisation"]["mean"][2], config["standardisation"]["std"][2]
    phase = config["flow"]["phase"]
    assert phase["index"] == 2 and phase["copies"] == 2
    assert abs(phase["low"] + mean / std) < 1e-12 and abs(phase["period"] - 2 * 3.141592653589793 / std) < 1e-12

    out = run_gwpe(
        [
            "evaluate",
            "flow",
            "--model",
            "maf",
            "--params",
            "params.yaml",
            "--metrics",
            "metrics/maf.json",
            "--no-progress",
        ],
        cwd=project,
        check=True,
    )
    metrics = read_metrics(project / "metrics" / "maf.json")
    assert set(metrics["ks_pvalue"]) == {"m1", "m2", "phi0", "tc", "dL", "chirp_mass"}
    assert all(0 <= p <= 1 for p in metrics["ks_pvalue"].values()) and metrics["n_injections"] == 11
    assert all(0 < w for w in metrics["width90_over_prior"].values())
    assert "Table III" in out.stdout and (project / "plots" / "flows" / "maf-pp.png").stat().st_size > 10_000
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("gwpe-npe-maf", "champion")
    assert champion.run_id == config["mlflow_run_id"] and metrics["registry"] == {
        "name": "gwpe-npe-maf",
        "version": 1,
        "champion": True,
    }
    run = client.get_run(config["mlflow_run_id"])
    assert run.data.metrics["test.val_nll"] == metrics["val_nll"]
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3  # one point per epoch
    table3 = metrics["table3"]
    assert set(table3) == {"train_loss", "test_loss"} and table3["test_loss"] == metrics["val_nll"]  # MAF: loss = NLL
    assert "Train loss" in out.stdout and (project / "plots" / "flows" / "maf-corner-0.png").stat().st_size > 10_000
    assert "reference" not in metrics

    # the reference (adaptive IS from the NPE by default) for validation injection 0; a 3-epoch toy NPE misses the
    # posterior, so its bridge stalls and the injection falls back to emcee (convergence checked), said and recorded
    out = run_gwpe(
        ["reference", "--params", "params.yaml", "--no-progress", "--metrics", "metrics/reference.json"],
        cwd=project,
        check=True,
    )
    diagnostics = read_metrics(project / "metrics" / "reference.json")["injections"][0]
    assert (
        diagnostics["index"] == 0
        and diagnostics["method"] == "emcee"
        and diagnostics["fallback_from"]["method"] == "adaptive_is"
        and not diagnostics["fallback_from"]["converged"]
        and 0 < diagnostics["acceptance"] < 1
        and diagnostics["likelihood_evaluations"] > 12 * 30
    )
    assert not diagnostics["converged"] and "NOT CONVERGED" in out.stderr  # 60 steps: said, never silent
    assert "falling back to emcee for this injection" in out.stderr
    run_gwpe(
        [
            "evaluate",
            "flow",
            "--model",
            "maf",
            "--params",
            "params.yaml",
            "--metrics",
            "metrics/maf.json",
            "--no-progress",
            "--no-register",
        ],
        cwd=project,
        check=True,
    )
    reference = read_metrics(project / "metrics" / "maf.json")["reference"]
    assert set(reference["max_js"]) == {"m1", "m2", "phi0", "tc", "dL"}
    assert all(0 <= v <= 0.6932 for v in reference["max_js"].values())
    assert max(reference["max_js"].values()) > 0.05  # a 3-epoch toy flow is far from the likelihood posterior
    assert (project / "plots" / "flows" / "maf-corner-0.png").stat().st_size > 10_000

    # evidence before sampling: one line; then flow-MCMC (warm, cold), emcee, IS of the NPE and the LHM
    monkeypatch.chdir(project)  # the one-line errors run in this process: same code path, no interpreter start
    code, _, err = run_in_process(["evidence", "--params", "params.yaml"], capsys)
    assert code != 0 and "run `gwpe sample" in err and len(err.strip().splitlines()) == 1
    run_gwpe(
        [
            "sample",
            "--params",
            "params.yaml",
            "--no-progress",
            "--metrics",
            "metrics/sampling.json",
            "--plots-dir",
            "plots/sampling",
        ],
        cwd=project,
        check=True,
    )
    sampling = read_metrics(project / "metrics" / "sampling.json")
    assert set(sampling["methods"]) == {"flowmc_warm", "flowmc_cold", "emcee"}
    warm = sampling["methods"]["flowmc_warm"]
    assert 1 <= warm["training_loops"] <= 3 and 2 <= warm["production_loops"] <= 3
    assert (
        0 < warm["evaluations_to_learn"] < warm["evaluations"] and warm["template_evaluations"] <= warm["evaluations"]
    )
    assert all(0 <= v <= 0.6932 for v in sampling["methods"]["emcee"]["js_vs_flowmc_warm"].values())
    import h5py
    import numpy as np

    with h5py.File(project / "data" / "sampling" / "strain-5d.h5") as h5:
        samples, log_l = h5["flowmc_warm/samples"][()], h5["flowmc_warm/log_likelihood"][()]
        assert (
            samples.shape == (warm["production_loops"] * (5 + 4) * 8, 5)  # 8 production chains of 16
            and np.all(np.isfinite(log_l))
            and np.all(log_l < 0)
        )
        assert np.all(samples[:, 0] >= samples[:, 1]) and np.all((samples[:, 2] >= 0) & (samples[:, 2] < 2 * np.pi))
        # the chains moved in the probit mass coordinates (sampling.mass_coordinates' default), recorded for the
        # evidence stage, which rebuilds the same coordinates: they map the stored sampler samples onto the samples
        from gwpe.config import load_config
        from gwpe.inference.coordinates import SamplerCoordinates

        prior = load_config(project / "params.yaml").strain.datasets["strain-5d"].prior
        bounds = json.loads(h5["flowmc_warm"].attrs["mass_bounds"])
        assert bounds == [prior.mass_min, prior.mass_max]
        coordinates = SamplerCoordinates(["m1", "m2", "phi0", "tc", "dL"], mass_bounds=bounds)
        masses = coordinates.to_physical(h5["flowmc_warm/sampler_samples"][()])[:, :2]
        np.testing.assert_allclose(masses, samples[:, :2], rtol=1e-9)
    out = run_gwpe(
        ["evidence", "--params", "params.yaml", "--metrics", "metrics/evidence.json", "--plots-dir", "plots/evidence"],
        cwd=project,
        check=True,
    )
    evidence = read_metrics(project / "metrics" / "evidence.json")
    assert set(evidence["evidence"]) == {"is_npe", "ais_npe", "lhm"} and "log Z =" in out.stdout
    # issue 26: the LHM's chains and their convergence, the IS weights' tail index, MCMC widths against adaptive IS
    assert evidence["evidence"]["lhm"]["draws"] == "warm flow-MCMC chains"
    assert evidence["evidence"]["lhm"]["chains_converged"] == sampling["methods"]["flowmc_warm"]["converged"]
    estimates = evidence["evidence"]
    assert all(estimates[m]["error_trusted"] == (estimates[m]["pareto_k"] <= 0.7) for m in ("is_npe", "ais_npe"))
    widths = evidence["sd_ratio_vs_ais_npe"]
    assert set(widths) == {"flowmc_warm", "flowmc_cold", "emcee"} and "sd / adaptive IS's" in out.stdout
    keys = {"chirp_mass", "standard_error", "sd_error", "max_deviation", "within_3_percent", "within_2_sigma"}
    assert all(keys <= set(w) and w["chirp_mass"] > 0 for w in widths.values())
    for estimate in evidence["evidence"].values():
        assert (
            np.isfinite(estimate["log_evidence"]) and estimate["standard_error"] > 0 and 0 < estimate["efficiency"] <= 1
        )
    assert set(evidence["js_vs_flowmc_warm"]) == {"is_npe", "ais_npe", "flowmc_cold", "emcee"}
    adaptive = evidence["evidence"]["ais_npe"]
    assert 1 <= adaptive["rounds"] <= 4 and 0 < adaptive["beta_reached"] <= 1 and adaptive["final_draws"] <= 400
    # template calls: every draw inside the prior and the phase window (the others cost none)
    assert 0 < adaptive["likelihood_evaluations"] <= adaptive["evaluations_in_rounds"] + adaptive["final_draws"]
    with h5py.File(project / "data" / "sampling" / "strain-5d-evidence.h5") as h5:
        rounds = json.loads(h5["ais_npe"].attrs["rounds"])
        assert len(rounds) == adaptive["rounds"] + 1 and h5["ais_npe/weights"][()].sum() == pytest.approx(1.0)
    for plot in ("corner.png", "adaptive.png"):
        assert (project / "plots" / "evidence" / plot).stat().st_size > 10_000
    assert (project / "plots" / "sampling" / "convergence.png").stat().st_size > 10_000
    # docs/samplers.md's generator on these metrics, a second injection's folder as its --more
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from sampler_report import report

    page = report(project / "metrics", [project / "metrics"])
    assert page.count("| flowmc_cold | ") == 4 and "## Injection 0 (" in page and "### Evidence" in page
    assert f"| flowmc_warm | {warm['evaluations']:,} |" in page
    # benchmarks/outside_sampler.py reads these files; with the warm chains as the "outside" draws it must read
    # ratio 1 and JS 0 for them, and its log Z offsets in the stated errors
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from outside_sampler import compare, independent_is, pipeline_posteriors

    sampling_dir = project / "data" / "sampling"
    sets, evidences, skipped = pipeline_posteriors(sampling_dir, project / "missing.h5", "strain-5d", 0)
    assert {"flowmc_warm", "flowmc_cold", "ais_npe"} <= set(sets) and set(evidences) == {"ais_npe", "lhm"}
    assert pipeline_posteriors(sampling_dir, project / "missing.h5", "strain-5d", 1) == ({}, {}, [])
    with h5py.File(sampling_dir / "strain-5d.h5") as h5:
        other = h5["observation"][()] + 1.0
    assert pipeline_posteriors(sampling_dir, project / "missing.h5", "strain-5d", 0, other)[0] == {}
    chains = sets["flowmc_warm"][0]
    outside = {"samples": chains, "weights": np.full(len(chains), 1 / len(chains)), "equal": chains}
    outside |= {"log_evidence": evidences["ais_npe"][0] + 0.2, "standard_error": 0.1}
    compared = compare(list(sampling["parameters"]), sets, evidences, outside)
    assert compared["posteriors"]["flowmc_warm"]["max_js"] < 1e-6
    assert set(compared["posteriors"]["flowmc_warm"]["sd_ratio"].values()) == {1.0}
    from gwpe.config import load_config
    from gwpe.inference.sampling import load_event

    event = load_event(load_config(project / "params.yaml"), 0)  # the log Z check from the outside draws alone
    plain = independent_is(event, list(sampling["parameters"]), outside, 400, seed=0, workers=0)
    assert np.isfinite(plain["log_evidence"]) and 0 < plain["standard_error"] < np.inf and plain["draws"] == 400
    shift = compared["log_z"]["ais_npe"]["minus_dynesty_in_errors"]
    assert shift == pytest.approx(-0.2 / np.hypot(evidences["ais_npe"][1], 0.1))
    dynesty_run = {
        "seed": 0,
        "log_evidence": outside["log_evidence"],
        "standard_error": 0.1,
        "evaluations": 1,
        "seconds": 1.0,
    }
    by_itself = compared["posteriors"]["flowmc_warm"]
    (project / "outside.json").write_text(
        json.dumps(
            {
                "dataset": "strain-5d",
                "injection": 0,
                "parameters": list(sampling["parameters"]),
                "dynesty": {
                    "nlive": 10,
                    "sample": "rslice",
                    "runs": [dynesty_run, dynesty_run],
                    "run_to_run": by_itself,
                },
                **compared,
            }
        )
    )
    page = report(project / "metrics", [], [project / "outside.json"])
    assert "## Against the outside sampler (dynesty)" in page and "| flowmc_warm | 1.000 +- " in page
    assert "seeds 0, 0 merged" in page and "| dynesty seed 0 / seed 0 | 1.000 +- " in page
    stages = {run.data.tags.get("gwpe.stage"): run for run in client.search_runs([run.info.experiment_id])}
    assert stages["sample"].data.metrics["methods.flowmc_warm.evaluations"] == warm["evaluations"]
    assert "evidence.is_npe.log_evidence" in stages["evidence"].data.metrics
    # sampling.compare: the warm flow-MCMC alone (the demo profile's budget drops emcee); evidence follows suit
    import yaml

    alone = yaml.safe_load((project / "params.yaml").read_text())
    alone["sampling"]["compare"] = []
    write_profile(project / "alone.yaml", alone)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    for verb in ("sample", "evidence"):  # in this process: the same code path without two interpreter starts
        code, _, err = run_in_process(
            [verb, "--params", "alone.yaml", "--no-progress", "--metrics", f"metrics/{verb}-alone.json"], capsys
        )
        assert code == 0, err
    alone_sampling = read_metrics(project / "metrics" / "sample-alone.json")
    assert set(alone_sampling["methods"]) == {"flowmc_warm"} and "warm_start" not in alone_sampling
    alone_evidence = read_metrics(project / "metrics" / "evidence-alone.json")
    assert set(alone_evidence["sd_ratio_vs_ais_npe"]) == {"flowmc_warm"}
    assert set(alone_evidence["js_vs_flowmc_warm"]) == {"is_npe", "ais_npe"}
    text = (project / "params.yaml").read_text().replace("injection: 0", "injection: 99")
    (project / "params.yaml").write_text(text)
    code, _, err = run_in_process(["sample", "--params", "params.yaml"], capsys)
    assert code != 0 and "sampling.injection = 99; allowed: 0 .. 11" in err and len(err.strip().splitlines()) == 1
    (project / "params.yaml").write_text(text.replace("model: maf", "model: cvae"))
    code, _, err = run_in_process(["sample", "--params", "params.yaml"], capsys)
    assert code != 0 and "sampling.model = 'cvae'; allowed: maf (flows.models of kind maf" in err
    assert (project / "data" / "sampling" / "strain-5d.h5").stat().st_size > 0  # what was written survives


def test_unknown_flow_model_is_one_line_error(tmp_path, capsys, monkeypatch):
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    code, _, err = run_in_process(["train", "flow", "--model", "nope", "--params", "params.yaml"], capsys)
    assert code != 0 and "flow model = 'nope'; allowed: maf" in err
    assert len(err.strip().splitlines()) == 1


def test_reference_with_burn_not_below_steps_is_one_line_error(tmp_path, capsys, monkeypatch):
    project = _project(tmp_path)
    text = (project / "params.yaml").read_text().replace("burn: 20", "burn: 60")
    (project / "params.yaml").write_text(text)
    monkeypatch.chdir(project)
    code, _, err = run_in_process(["reference", "--params", "params.yaml"], capsys)
    assert code != 0 and "flows.reference.burn = 60; allowed: < flows.reference.steps = 60" in err
    assert len(err.strip().splitlines()) == 1 and not (project / "data" / "reference").exists()


def test_dry_run_prices_cvae_on_strain_8d_without_data(tmp_path):
    profile = tiny_profile()
    profile["strain"] = tiny_strain(parameters=["m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn"])
    profile["flows"] = {
        "dataset": "strain-5d",
        "models": {"cvae": {"kind": "cvae", "options": {"hidden": [64, 64, 64], "latent": 16}}},
        "training": {"batch_size": 16, "max_epochs": 5},
    }
    write_profile(tmp_path / "params.yaml", profile)
    out = run_gwpe(
        ["train", "flow", "--model", "cvae", "--params", "params.yaml", "--dry-run"], cwd=tmp_path, check=True
    )
    assert (
        "cvae (cvae) on strain-5d" in out.stdout
        and "8 parameters inferred from strain of shape (1, 1024)" in out.stdout
    )
    assert "samples/s" in out.stdout and "for 5 epochs" in out.stdout and not (tmp_path / "models").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_phase_fold_trains_on_one_phi0_copy_and_the_package_samples_both(tmp_path, capsys, monkeypatch):
    import numpy as np
    import torch
    import yaml

    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.data.strain_store import Standardisation
    from gwpe.models.flow_module import FlowModule

    project = _project(tmp_path)
    profile = yaml.safe_load((project / "params.yaml").read_text())
    profile["flows"]["models"]["maf"]["phase_fold"] = True
    write_profile(project / "params.yaml", profile)
    monkeypatch.chdir(project)
    argv = ["train", "flow", "--model", "maf", "--params", "params.yaml", "--no-progress"]
    code, out, err = run_in_process(argv, capsys)
    assert code == 0, err
    config = json.loads((project / "models" / "flows" / "maf" / "config.json").read_text())
    assert config["phase_fold"] is True and config["flow"]["phase"]["copies"] == 2
    module = FlowModule.load_model(project / "models" / "flows" / "maf")
    strain, _ = StrainDataset(project / "data" / "strain" / "strain-5d.zarr", "validation", seed=0)[0]
    torch.manual_seed(0)
    draws = module.model.sample(strain, 4000).double()
    phi0 = Standardisation.from_attrs(config).inverse(draws)[:, 2].numpy()
    # trained on [0, pi) only, the folded posterior still puts half its draws in [pi, 2 pi)
    assert np.all((phi0 >= 0) & (phi0 < 2 * np.pi)) and 0.45 < np.mean(phi0 >= np.pi) < 0.55
