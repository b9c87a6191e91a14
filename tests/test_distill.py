"""ResNet1D + IAF posterior, the distillation loss and temperature schedule, JS limits, peak-memory tracking,
and the teacher -> students -> report pipeline on a tiny two-detector set."""

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from gwpe.tracking.metrics_files import read_metrics

from conftest import gwpe_env, run_gwpe, tiny_profile, write_profile
from gwpe.config import load_config
from gwpe.data.strain_dataset import StrainSplits
from gwpe.evaluation.divergence import marginal_divergences
from gwpe.evaluation.memory import PeakTensorBytes
from gwpe.models.distillation import DistillationModule, distillation_temperature, distillation_terms
from gwpe.models.flows import build_flow_model
from gwpe.models.flows.iaf import tempered_normal_log_prob
from gwpe.models.flows.resnet1d import ResNet1DEmbedding


def iaf_config(depth=2, width=8, transforms=2, hidden=16, length=256):
    return {
        "kind": "iaf",
        "features": 5,
        "context_shape": [2, length],
        "transforms": transforms,
        "hidden": [hidden, hidden],
        "embedding": {"kind": "resnet1d", "depth": depth, "width": width, "features": 8, "pool": 4},
    }


def test_temperature_rises_linearly_from_1_to_4():
    assert distillation_temperature(0.0) == 1.0 and distillation_temperature(1.0) == 4.0
    assert distillation_temperature(0.5) == pytest.approx(2.5)
    assert distillation_temperature(-1.0) == 1.0 and distillation_temperature(2.0) == 4.0  # clipped
    assert distillation_temperature(0.25, 2.0, 6.0) == pytest.approx(3.0)


def test_temperature_schedule_over_a_real_training_run():
    torch.manual_seed(0)
    teacher = build_flow_model(iaf_config()).eval()
    module = DistillationModule(iaf_config(depth=1, width=4, transforms=1, hidden=8), teacher, temperature=(1.0, 4.0))
    seen = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_index):
            seen.append(pl_module.current_temperature())

    data = torch.utils.data.TensorDataset(torch.randn(24, 2, 256), torch.randn(24, 5))
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert len(seen) == 9
    assert seen[0] == 1.0 and seen[-1] == pytest.approx(4.0)
    assert np.allclose(np.diff(seen), 3.0 / 8)  # linear in the optimisation step


def test_distillation_trains_the_student_only_and_vanishes_for_a_copy():
    torch.manual_seed(1)
    teacher = build_flow_model(iaf_config()).eval()
    strain, theta = torch.randn(6, 2, 256), torch.randn(6, 5)
    nll, kl = distillation_terms(teacher, teacher, strain, theta, temperature=3.0, teacher_samples=64)
    assert abs(kl.item()) < 1e-5  # KL(p || p) = 0 exactly, sample by sample
    module = DistillationModule(
        iaf_config(depth=1, width=4, transforms=1, hidden=8), teacher, alpha=0.5, teacher_samples=4
    )
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    nll, kl = distillation_terms(module.model, teacher, strain, theta, 2.0, 4)
    assert float(kl) > 0  # a different model is farther from the teacher
    (0.5 * nll + 0.5 * 4.0 * kl).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(
        k.startswith("_teacher") or "teacher" in k for k in module.state_dict()
    )  # the package holds the student only


def test_a_saved_student_loads_as_a_plain_flow_module(tmp_path):
    from gwpe.models.flow_module import FlowModule
    from gwpe.models.loading import load_package

    torch.manual_seed(2)
    teacher = build_flow_model(iaf_config()).eval()
    student = DistillationModule(iaf_config(depth=1, width=4, transforms=1, hidden=8), teacher)
    student.save_model(tmp_path / "student")
    strain, theta = torch.randn(3, 2, 256), torch.randn(3, 5)
    expected = student.eval().model.log_prob(theta, strain)
    for loaded in (DistillationModule.load_model(tmp_path / "student"), load_package(tmp_path / "student")):
        assert not isinstance(loaded, DistillationModule)
        torch.testing.assert_close(loaded.model.log_prob(theta, strain), expected)
    assert type(DistillationModule.load_model(tmp_path / "student")) is FlowModule


def test_iaf_tempered_density_and_sampling_agree():
    torch.manual_seed(2)
    model = build_flow_model(iaf_config()).eval()
    strain = torch.randn(3, 2, 256)
    with torch.no_grad():
        y = model.embed(strain)
        for temperature in (1.0, 2.5):
            draws, log_prob = model.sample_and_log_prob_embedded(y, 7, temperature)
            assert draws.shape == (7, 3, 5)
            expected = model.log_prob_embedded(draws, y.expand(7, *y.shape), temperature)
            assert torch.allclose(log_prob, expected, atol=1e-4)
    z = torch.tensor([[1.0, -2.0]])
    # hand value: log N(z; 0, 4 I) = -(1 + 4) / 8 - 2 log 2 - log(2 pi)
    assert float(tempered_normal_log_prob(z, 2.0)) == pytest.approx(-5 / 8 - 2 * math.log(2) - math.log(2 * math.pi))


def test_resnet1d_embedding_shapes_and_bad_kernel():
    net = ResNet1DEmbedding((2, 1024), depth=5, width=12, features=32, stem_stride=4, downsample_every=2, pool=8)
    assert net(torch.randn(3, 2, 1024)).shape == (3, 32)
    assert net(torch.randn(2, 1024)).shape == (32,)
    strides = [b.residual[0].stride[0] for b in net.blocks]
    assert strides == [1, 2, 1, 2, 1]  # every second block halves 256 -> 128 -> 64
    with pytest.raises(ValueError, match="kernel_size = 4"):
        ResNet1DEmbedding((2, 1024), kernel_size=4)


def test_js_divergence_of_identical_is_zero_and_of_disjoint_is_ln2():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 2))
    _, js_same = marginal_divergences(a, a.copy())
    assert np.allclose(js_same, 0.0, atol=1e-12)
    _, js_disjoint = marginal_divergences(a, a + 100.0)
    assert np.allclose(js_disjoint, math.log(2), atol=1e-6)


def test_peak_tensor_bytes_counts_what_is_held_at_once():
    with PeakTensorBytes() as tracker:
        a = torch.ones(1_000_000)  # 4 MB
        del a
        b = torch.ones(500_000)  # 2 MB, after a is freed
        c = b * 2  # + 2 MB
        del b, c
    assert tracker.peak == 4_000_000
    assert tracker.live == 0


@pytest.fixture(scope="module")
def distill_project(tmp_path_factory):
    """A tiny project with the two-detector set generated and the sweep run (3 trials)."""
    tmp_path = tmp_path_factory.mktemp("distill")
    write_profile(tmp_path / "params.yaml", tiny_profile())
    env = gwpe_env(tmp_path)
    run_gwpe(
        ["generate", "strain", "--params", "params.yaml", "--dataset", "strain-hl"], cwd=tmp_path, env=env, check=True
    )
    run_gwpe(
        ["sweep", "--params", "params.yaml", "--metrics", "metrics/sweep.json", "--no-progress"],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    return tmp_path, env


@pytest.mark.slow
def test_teacher_students_report_and_registry(distill_project, monkeypatch):
    tmp_path, env = distill_project
    best = json.loads((tmp_path / "models" / "sweep" / "best.json").read_text())
    run_gwpe(["train", "teacher", "--params", "params.yaml", "--no-progress"], cwd=tmp_path, env=env, check=True)
    teacher = json.loads((tmp_path / "models" / "distill" / "teacher" / "config.json").read_text())
    assert teacher["flow"]["embedding"]["depth"] == best["params"]["depth"]
    assert teacher["flow"]["embedding"]["width"] == best["params"]["width"]
    assert teacher["flow"]["transforms"] == best["params"]["transforms"]
    assert (
        teacher["learning_rate"] == pytest.approx(best["params"]["learning_rate"]) and teacher["schedule"] == "cosine"
    )
    for mode in ("distilled", "direct"):
        run_gwpe(
            ["train", "student", "--mode", mode, "--params", "params.yaml", "--no-progress"],
            cwd=tmp_path,
            env=env,
            check=True,
        )
    bad = run_gwpe(["train", "student", "--mode", "tiny", "--params", "params.yaml"], cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "invalid choice: 'tiny'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    result = run_gwpe(
        ["evaluate", "distill", "--params", "params.yaml", "--metrics", "metrics/distill-eval.json", "--no-progress"],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert "student-distilled" in result.stdout and "relative error" in result.stdout
    report = read_metrics(tmp_path / "metrics" / "distill-eval.json")
    table = report["table2"]
    assert set(table) == {"teacher", "student-direct", "student-distilled"}
    assert (
        table["student-distilled"]["parameters"]
        == table["student-direct"]["parameters"]
        < table["teacher"]["parameters"]
    )
    assert report["comparison"]["parameter_reduction"] == pytest.approx(
        1 - table["student-distilled"]["parameters"] / table["teacher"]["parameters"]
    )
    for row in table.values():
        assert np.isfinite(row["val_nll"]) and row["latency_ms"] > 0 and row["peak_memory_mb"] > row["weights_mb"]
    for divergence in report["js_teacher_student"].values():
        assert set(divergence["mean"]) == {"m1", "m2", "chi1z", "chi2z", "dL"}
        assert all(0 <= v <= math.log(2) + 1e-9 for v in divergence["max"].values())
    assert {p.name for p in (tmp_path / "plots" / "distill").iterdir()} == {
        "corner-0.png",
        "js.png",
        "relative-errors.png",
    }
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for name, role in (("gwpe-teacher", "teacher"), ("gwpe-student", "student-distilled")):
        champion = client.get_model_version_by_alias(name, "champion")
        meta = json.loads((tmp_path / "models" / "distill" / role / "config.json").read_text())
        assert champion.run_id == meta["mlflow_run_id"] and report["registry"][role]["version"] == int(champion.version)
        assert float(champion.tags["val_nll"]) == pytest.approx(table[role]["val_nll"])
    # benchmarks/npe_quality.py --teacher measures this package beside the NPEs: its own p-p test, reproducible
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    monkeypatch.chdir(tmp_path)
    import npe_quality

    config = load_config(tmp_path / "params.yaml")
    folder = npe_quality.teacher_folder(config)
    first = npe_quality.package_calibration(config, folder, config.distill.dataset)
    assert set(first["ks_pvalue"]) == {"m1", "m2", "chi1z", "chi2z", "dL", "chirp_mass"}
    assert all(0.0 <= v <= 1.0 for v in first["ks_pvalue"].values())
    validation = len(StrainSplits(tmp_path / "data" / "strain" / "strain-hl.zarr", batch_size=8).dataset("validation"))
    assert first["n_injections"] == min(config.flows.evaluation.injections, validation)
    assert npe_quality.package_calibration(config, folder, config.distill.dataset) == first
    with pytest.raises(SystemExit, match="distill.dataset 'strain-hl' is not flows.dataset 'strain-5d'"):
        npe_quality.check_teacher_store(config)
