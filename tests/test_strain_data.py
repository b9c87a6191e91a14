"""Strain stores, the CLI stage, and the training-time noise path."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from mlflow.tracking import MlflowClient

from gwpe.config import parse_config
from gwpe.data.strain import generate_dataset
from gwpe.data.strain_datamodule import StrainDataModule, StrainDataset
from gwpe.tracking.metrics_files import read_metrics

from conftest import run_gwpe, tiny_profile, tiny_strain


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return generate_dataset(parse_config(tiny_profile()), "strain-5d")


def test_store_holds_signals_parameters_snr_and_standardisation(store):
    group = zarr.open_group(str(store.path), mode="r")
    attrs = dict(group.attrs)
    assert group["strain"].shape == (12, 1, 1024) and group["params"].shape == (12, 5)
    assert attrs["parameters"] == ["m1", "m2", "phi0", "tc", "dL"] and attrs["n_train"] == 10
    train = group["params"][:10]
    np.testing.assert_allclose(attrs["standardisation"]["mean"], train.mean(axis=0))
    np.testing.assert_allclose(attrs["standardisation"]["std"], train.std(axis=0))
    norms = np.linalg.norm(group["strain"][:].astype(np.float64), axis=(1, 2))
    np.testing.assert_allclose(norms, group["snr"][:], rtol=0.02)  # window norm = optimal SNR (minus early inspiral)
    assert np.all(group["params"][:, 0] >= group["params"][:, 1])


def test_training_noise_is_fresh_validation_noise_is_fixed(store):
    train = StrainDataset(store.path, "train")
    clean = zarr.open_group(str(store.path), mode="r")["strain"][3]
    first, second = train[3][0].numpy(), train[3][0].numpy()
    assert not np.allclose(first, second)  # a new realisation every time the sample is drawn
    noise = first - clean
    assert abs(noise.mean()) < 0.15 and noise.std() == pytest.approx(1.0, abs=0.1)

    validation = StrainDataset(store.path, "validation")
    streamed = StrainDataset(store.path, "validation", in_memory=False)  # the path large splits take
    np.testing.assert_array_equal(validation[1][0].numpy(), streamed[1][0].numpy())
    np.testing.assert_array_equal(
        validation.__getitems__([1, 0])[0][0].numpy(), streamed.__getitems__([1, 0])[0][0].numpy()
    )
    module_a = StrainDataModule(store.path, batch_size=1, num_workers=0)
    module_b = StrainDataModule(store.path, batch_size=2, num_workers=2)
    batch_a = torch.cat([x for x, _ in module_a.val_dataloader()])
    batch_b = torch.cat([x for x, _ in module_b.val_dataloader()])
    torch.testing.assert_close(batch_a, batch_b)  # same realisation whatever the batching and workers


def test_batched_reads_equal_item_by_item_reads(store):
    """__getitems__ gathers a batch and draws its noise in one call: same values as one item at a time."""
    train = StrainDataset(store.path, "train")
    indices = [7, 2, 2, 9]
    torch.manual_seed(5)
    items = [train[i] for i in indices]
    torch.manual_seed(5)
    batch = train.__getitems__(indices)
    for (x, theta), (y, phi) in zip(items, batch):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
        torch.testing.assert_close(theta, phi, rtol=0, atol=0)
    assert not torch.equal(batch[1][0], batch[2][0])  # a repeated index still gets its own noise
    validation = StrainDataset(store.path, "validation")
    for fixed in (validation, StrainDataset(store.path, "validation", in_memory=False)):
        batch = fixed.__getitems__([1, 0])
        torch.testing.assert_close(batch[0][0], validation[1][0], rtol=0, atol=0)
        noise = batch[1][0].numpy() - zarr.open_group(str(store.path), mode="r")["strain"][10]
        np.testing.assert_allclose(
            noise, np.random.default_rng([0, 0]).standard_normal(noise.shape, dtype=np.float32), atol=1e-6
        )


def test_targets_are_standardised_and_map_back_to_physical_units(store):
    module = StrainDataModule(store.path, batch_size=4)
    targets = torch.cat([theta for _, theta in module.train_dataloader()])
    assert targets.shape == (10, 5)
    np.testing.assert_allclose(targets.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(targets.std(0, unbiased=False).numpy(), 1.0, atol=1e-5)
    physical = module.standardisation.inverse(targets)
    params = zarr.open_group(str(store.path), mode="r")["params"][:10]
    assert {round(float(m), 4) for m in physical[:, 0]} == {round(float(m), 4) for m in params[:, 0]}


def test_cli_stage_logs_snr_distribution_and_rejects_unknown_dataset(tmp_path, tiny_params):
    result = run_gwpe(
        ["generate", "strain", "--metrics", "metrics/{dataset}.json", "--plots", "plots/{dataset}-snr.json"],
        tmp_path,
        check=True,
    )
    metrics = read_metrics(tmp_path / "metrics" / "strain-5d.json")
    assert metrics["n_signals"] == 12 and metrics["snr_q25"] <= metrics["snr_median"] <= metrics["snr_q75"]
    histogram = json.loads((tmp_path / "plots" / "strain-5d-snr.json").read_text())
    assert sum(row["signals"] for row in histogram) == 12
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs(
        [client.get_experiment_by_name("gwpe-test").experiment_id], "tags.`gwpe.dataset` = 'strain-5d'"
    )[0]
    assert run.data.metrics["snr_median"] == pytest.approx(metrics["snr_median"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/strain-5d-snr.png"]
    assert "strain-5d: 12 signals" in result.stdout

    bad = run_gwpe(["generate", "strain", "--dataset", "strain-9d"], tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "gwpe: error: --dataset = 'strain-9d'; allowed (strain.datasets): strain-5d, strain-hl"


def test_strain_config_errors_name_key_and_value():
    from gwpe.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"strain\.datasets\.strain-5d\.detectors\.0 = 'K1': Input should be 'H1', 'L1' or 'V1'"
    ):
        parse_config({**tiny_profile(), "strain": tiny_strain(detectors=["K1"])})
    with pytest.raises(ConfigError, match=r"inferred parameters \['chi1z'\] are not among the drawn parameters"):
        parse_config({**tiny_profile(), "strain": tiny_strain(inferred=["chi1z"])})


def test_dry_run_prices_the_paper_strain_sets(tmp_path):
    from conftest import REPO

    result = run_gwpe(
        ["generate", "strain", "--params", str(REPO / "experiments" / "paper.yaml"), "--dry-run"], tmp_path, check=True
    )
    assert (
        "900,000" in result.stdout
        and "100,000" in result.stdout
        and "strain-hl" in result.stdout
        and "CPU-hours" in result.stdout
    )
    assert not (tmp_path / "data").exists()


def test_phase_flip_moves_phi0_by_pi_half_the_time_on_training_targets_only(store):
    params = zarr.open_group(str(store.path), mode="r")["params"][:]
    train = StrainDataset(store.path, "train", phase_flip=True)
    torch.manual_seed(0)
    phi0 = np.array([train.standardisation.inverse(train[2][1].numpy().astype(np.float64))[2] for _ in range(400)])
    stored = params[2, 2]
    flipped = (stored + np.pi) % (2 * np.pi)
    is_stored, is_flipped = np.isclose(phi0, stored, atol=1e-5), np.isclose(phi0, flipped, atol=1e-5)
    assert np.all(is_stored | is_flipped) and 160 < is_flipped.sum() < 240
    other = train.standardisation.inverse(train[2][1].numpy().astype(np.float64))
    np.testing.assert_allclose(np.delete(other, 2), np.delete(params[2], 2), rtol=1e-5)  # only phi0 moves
    module = StrainDataModule(store.path, batch_size=4, phase_flip=True)
    validation = torch.cat([theta for _, theta in module.val_dataloader()])
    np.testing.assert_allclose(module.standardisation.inverse(validation.double()).numpy(), params[10:], rtol=1e-5)


def test_phase_fold_maps_phi0_onto_one_copy_in_both_training_splits_and_needs_a_pi_symmetric_maf(store):
    params = zarr.open_group(str(store.path), mode="r")["params"][:]
    module = StrainDataModule(store.path, batch_size=4, phase_fold=True)
    for split, rows in (("train", params[:10]), ("validation", params[10:])):
        data = module.dataset(split)
        theta = data.standardisation.inverse(torch.from_numpy(data.targets).double()).numpy()
        assert np.all((theta[:, 2] >= 0) & (theta[:, 2] < np.pi))
        np.testing.assert_allclose(theta[:, 2], rows[:, 2] % np.pi, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.delete(theta, 2, axis=1), np.delete(rows, 2, axis=1), rtol=1e-5)
    assert np.any(params[:, 2] >= np.pi)  # so the fold moved something
    with pytest.raises(ValueError, match="phase_flip and phase_fold both set"):
        StrainDataset(store.path, "train", phase_flip=True, phase_fold=True)
    profile = tiny_profile()
    profile["flows"]["models"]["maf"]["phase_fold"] = True
    assert parse_config(profile).flows.models["maf"].phase_fold
    from gwpe.errors import ConfigError

    profile["flows"]["phase_symmetry"] = "periodic"
    with pytest.raises(ConfigError, match=r"flows.models.maf.phase_fold = true .* allowed: kind maf, phase_symm"):
        parse_config(profile)


def test_training_in_memory_reaches_the_reader_and_leaves_the_fingerprint(tmp_path, monkeypatch, hl_store):
    """``training.in_memory`` (the quality profile holds 1.6 GB in memory; rows read from zarr cost ~2 ms each):
    false streams the split from the store, null holds a small one in memory, and neither changes what is
    computed, so a checkpoint resumes across it."""
    import shutil

    from gwpe.training.distill import teacher_job

    shutil.copytree(hl_store, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    profile = tiny_profile()
    best = Path(profile["distill"]["sweep"]["best_params"])
    best.parent.mkdir(parents=True)
    best.write_text(json.dumps({"params": {"depth": 1, "width": 4, "transforms": 1, "learning_rate": 0.001}}))
    fingerprints = set()
    for in_memory, held in ((False, False), (None, True), (True, True)):
        profile["distill"]["training"]["in_memory"] = in_memory
        config = parse_config(profile)
        job = teacher_job(config)
        assert job.data.in_memory is in_memory
        assert (job.data.make_dataset("train")._memory is not None) is held
        fingerprints.add(json.dumps(config.distill.training.fingerprint_fields(), sort_keys=True))
    assert len(fingerprints) == 1
