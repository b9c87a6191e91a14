"""Numerical guards (issue 25): a diverged training stops with one line and saves nothing, config validation
refuses NaN/inf, missing sections never mean paper scale, duplicate keys and binary params files are one-line
errors, and the WaveNet predictor returns physical values on every path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from gwpe.config import load_config, parse_config
from gwpe.errors import ConfigError, GwpeError, PackageError
from gwpe.models.package import CONFIG_FILE, WEIGHTS_FILE, PackagedModel

from conftest import REPO, tiny_profile

# --- case 1: a training that goes to NaN/inf ------------------------------------------------------------------------


class TinyRegressor(PackagedModel, L.LightningModule):
    """y = w.x on 3 features; ``poison_step``: an unused weight turns NaN at that step (loss stays finite)."""

    model_kind = "flow"

    def __init__(self, poison_step: int | None = None):
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
        self.spare = torch.nn.Parameter(torch.zeros(2))
        self.poison_step = poison_step

    def training_step(self, batch, batch_index):
        x, y = batch
        if self.poison_step is not None and self.global_step >= self.poison_step:
            with torch.no_grad():
                self.spare.fill_(float("nan"))
        loss = F.mse_loss(self.net(x).squeeze(-1), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_index):
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x).squeeze(-1), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def metadata(self) -> dict:
        return {"model": self.model_kind}


class TinyData(L.LightningDataModule):
    """16 training and 8 validation rows; ``bad`` puts ``value`` into one target of that split."""

    def __init__(self, bad: str | None = None, value: float = math.inf):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.sets = {}
        for split, n in (("train", 16), ("validation", 8)):
            x = torch.randn(n, 3, generator=generator)
            y = x.sum(-1)
            if split == bad:
                y[5] = value
            self.sets[split] = TensorDataset(x, y)

    def dataset(self, split: str):
        return self.sets[split]

    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.sets["validation"], batch_size=4)


class FakeRun:
    info = SimpleNamespace(run_id=None)

    def log_dataset(self, *args, **kwargs):
        pass

    def log_metrics(self, *args, **kwargs):
        pass

    def log_artifact(self, *args, **kwargs):
        pass


def fit_job(tmp_path: Path, data, module_factory):
    from gwpe.config import TrainingConfig
    from gwpe.training.fit import FitJob

    training = TrainingConfig(batch_size=4, max_epochs=3, accelerator="cpu", devices=1, seed=0)
    return FitJob(
        stage="unit-fit",
        run_name="unit-fit",
        data=data,
        inputs={},
        model_config={"unit": 1},
        training=training,
        checkpoint_dir=tmp_path / "checkpoints",
        model_dir=tmp_path / "model",
        registered_name="unit",
        make_module=module_factory,
        package_extra=lambda module, data, md5, metrics: {},
    )


@pytest.mark.parametrize(
    "bad, poison, quantity",
    [
        ("train", None, "train_loss = inf"),
        ("validation", None, "val_loss = inf"),
        (None, 2, "weights"),
    ],
)
def test_a_diverged_fit_stops_with_one_line_and_saves_no_package(tmp_path, bad, poison, quantity):
    from gwpe.training.fit import finish_fit, start_fit

    job = fit_job(tmp_path, TinyData(bad), lambda data: TinyRegressor(poison_step=poison))
    session = start_fit(job, resume=False)
    with pytest.raises(GwpeError) as error:
        finish_fit(session, FakeRun(), progress_bar=False)
    message = str(error.value)
    assert "\n" not in message and quantity in message and "epoch 0" in message, message
    if poison is not None:
        assert "spare" in message  # names the non-finite weight tensor
    assert not (tmp_path / "model" / WEIGHTS_FILE).exists() and not (tmp_path / "model" / CONFIG_FILE).exists()
    for checkpoint in (tmp_path / "checkpoints").glob("*.ckpt"):  # any checkpoint kept is from a finite epoch
        state = torch.load(checkpoint, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), checkpoint


def test_a_finite_fit_still_saves_its_package(tmp_path):
    from gwpe.training.fit import finish_fit, start_fit

    session = start_fit(fit_job(tmp_path, TinyData(), lambda data: TinyRegressor()), resume=False)
    result = finish_fit(session, FakeRun(), progress_bar=False)
    assert (result.model_dir / WEIGHTS_FILE).is_file() and math.isfinite(result.metrics["val_loss"])


def test_save_model_refuses_non_finite_weights_and_writes_nothing(tmp_path):
    module = TinyRegressor()
    with torch.no_grad():
        module.net.weight[0, 1] = float("nan")
        module.spare[0] = float("-inf")
    with pytest.raises(PackageError) as error:
        module.save_model(tmp_path / "model")
    message = str(error.value)
    assert "\n" not in message and "net.weight" in message and "2 of" in message, message
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


# --- case 2: NaN and inf in the config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, value, key",
    [
        ("distill.student.temperature", [math.nan, 4.0], "distill.student.temperature.0"),
        ("distill.student.temperature", [1.0, math.inf], "distill.student.temperature.1"),
        ("sampling.flowmc.step_size", math.inf, "sampling.flowmc.step_size"),  # only a lower bound
        ("sampling.adaptive.final_ess", math.nan, "sampling.adaptive.final_ess"),
        ("strain.datasets.strain-5d.prior.tc_max", math.nan, "strain.datasets.strain-5d.prior.tc_max"),
        ("wavenet.evaluation.q_slices", [2.0, -math.inf], "wavenet.evaluation.q_slices.1"),
        ("event.published.m1", [30.0, math.nan, 40.0], "event.published.m1.1"),
    ],
)
def test_config_rejects_nan_and_inf_everywhere(path, value, key):
    profile = tiny_profile()
    *parents, name = path.split(".")
    node = profile
    for part in parents:
        node = node.setdefault(part, {})
    node[name] = value
    with pytest.raises(ConfigError) as error:
        parse_config(profile, "unit.yaml")
    message = str(error.value)
    bad = "nan" if any(map(math.isnan, np.atleast_1d(value))) else "inf"
    assert "\n" not in message and key in message and bad in message and "finite" in message, message


def test_config_rejects_nan_in_a_yaml_file(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text("profile: unit\ndistill:\n  student:\n    temperature: [.nan, 4]\n")
    with pytest.raises(ConfigError, match=r"distill\.student\.temperature\.0 = nan"):
        load_config(path)


# --- case 3: a missing h22 section ------------------------------------------------------------------------------------


def test_a_profile_without_h22_gets_the_small_default_grid_not_the_papers():
    from gwpe.waveforms.grid import split_size

    missing = parse_config({"profile": "default"})
    default = load_config(REPO / "params.yaml")
    assert split_size(missing.h22.grid, "train") < 10_000  # the paper's grid is 1,580,128 waveforms
    assert missing.h22.grid == default.h22.grid and missing.h22.time == default.h22.time
    paper = load_config(REPO / "experiments" / "paper.yaml")  # paper scale is always written out
    assert split_size(paper.h22.grid, "train") == 1_580_128 and paper.h22.time.length == 101_301


# --- case 4 and 5: duplicate keys and binary params files -----------------------------------------------------------


def test_duplicate_yaml_keys_are_refused_with_key_and_line(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text("profile: unit\nwavenet:\n  training:\n    max_epochs: 5\n    batch_size: 8\n    max_epochs: 50\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and "duplicate key 'max_epochs'" in message and "line 6" in message, message
    path.write_text("profile: unit\nh22:\n  backend: imrphenomthm\nprofile: other\n")
    with pytest.raises(ConfigError, match=r"line 4.*duplicate key 'profile'"):
        load_config(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(
        "profile: unit\nwavenet:\n  training: &t\n    max_epochs: 5\n    batch_size: 8\n"
        "flows:\n  training:\n    <<: *t\n    max_epochs: 7\n"
    )
    config = load_config(path)
    assert config.flows.training.max_epochs == 7 and config.flows.training.batch_size == 8


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" + bytes(range(256)),  # not UTF-8
        b"profile: unit\x00\x01\x02\ntracking: {}\n",  # UTF-8, but control characters YAML forbids
        b"\xff\xfep\x00r\x00",  # UTF-16 byte-order mark
    ],
)
def test_a_binary_params_file_is_one_line(tmp_path, content):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message


def test_cli_prints_a_binary_params_file_as_one_line(tmp_path, capsys):
    from gwpe.cli import main

    path = tmp_path / "params.yaml"
    path.write_bytes(bytes(range(256)))
    code = main(["generate", "h22", "--params", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("gwpe: error: ") and err.count("\n") == 1, err


# --- case 6: WaveNet predictions are physical -----------------------------------------------------------------------


def wild_wavenet(head: str, **kwargs):
    """A tiny WaveNet whose standardisation puts predictions far outside the physical box."""
    from gwpe.models.wavenet import WaveNetConfig
    from gwpe.models.wavenet_module import WaveNetModule

    config = WaveNetConfig(channels=4, skip_channels=4, dilation_limit=2, leaf_steps=8, leaf_hidden=8, head=head)
    torch.manual_seed(0)
    mean = [20.0, -22.2, 5.0] if head == "direct" else [20.0, -3.0, 4.0]
    return WaveNetModule(config, target_mean=mean, target_std=[5.0, 20.0, 20.0], **kwargs).eval()


@pytest.mark.parametrize("head", ["physics", "direct"])
def test_wavenet_predictions_are_physical_and_match_table1_clipping(tmp_path, head):
    from gwpe.evaluation.wavenet import clip_to_grid
    from gwpe.models.wavenet_module import WaveNetModule, grid_box

    module = wild_wavenet(head)
    waveforms = torch.randn(64, 2, 32)
    raw = module(waveforms) * module.target_std + module.target_mean
    assert (raw[:, 1:].abs() > 1).any() or head == "physics"  # the test really feeds unphysical outputs
    predicted = module.predict(waveforms)
    assert torch.isfinite(predicted).all()
    assert (predicted[:, 0] >= 1).all() and (predicted[:, 1:].abs() <= 1).all()  # no grid known: physical box

    # a trained model knows its grid (training passes it; a package from before it was written has it under
    # h22.grid): load_model, and so load_wavenet and gwpe infer, clips as Table 1 does
    config = parse_config(tiny_profile())
    grid = config.h22.grid
    trained = wild_wavenet(head, parameter_box=grid_box(grid))
    trained.save_model(tmp_path / "model", extra={"h22": {"grid": grid.model_dump()}})
    old = json.loads((tmp_path / "model" / CONFIG_FILE).read_text())
    del old["parameter_box"]
    trained.save_model(tmp_path / "old", extra=old)
    (tmp_path / "old" / CONFIG_FILE).write_text(json.dumps(old))
    for folder in ("model", "old"):
        predicted = WaveNetModule.load_model(tmp_path / folder).predict(waveforms).numpy()
        assert predicted[:, 0].min() >= grid.q_min and predicted[:, 0].max() <= grid.q_max
        assert predicted[:, 1:].min() >= grid.s_min and predicted[:, 1:].max() <= grid.s_max
        np.testing.assert_array_equal(predicted, clip_to_grid(predicted, config))
        np.testing.assert_array_equal(predicted, trained.predict(waveforms).numpy())
        assert (np.abs(predicted[:, 1:]) == grid.s_max).any()  # the wild outputs were really clipped


def test_wavenet_estimate_in_gwpe_infer_is_physical():
    from gwpe.inference.infer import wavenet_estimate

    estimate = wavenet_estimate(wild_wavenet("direct"), np.random.default_rng(0).normal(size=(2, 32)))
    assert estimate["q"] >= 1 and abs(estimate["s1z"]) <= 1 and abs(estimate["s2z"]) <= 1
