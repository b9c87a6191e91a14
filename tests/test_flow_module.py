"""Lightning wrapper of the flow posteriors on a real (tiny) strain store: trains, sets dataset batch-norm
statistics each epoch, saves and reloads without pickle."""

import lightning as L
import pytest
import torch

from gwpe.config import parse_config
from gwpe.data.strain import generate_dataset
from gwpe.data.strain_datamodule import StrainDataModule
from gwpe.models.flow_module import FlowModule
from gwpe.models.flows import batchnorm_layers

from conftest import tiny_profile, tiny_strain


@pytest.mark.parametrize("kind", ["maf", "cvae_plus"])
def test_flow_module_trains_on_strain_sets_batchnorm_and_reloads_without_pickle(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    profile = tiny_profile()
    profile["strain"] = tiny_strain(n_signals=48, validation_fraction=0.25)
    store = generate_dataset(parse_config(profile), "strain-5d").path
    data = StrainDataModule(store, batch_size=12, seed=0)
    options = (
        {"transforms": 2, "hidden": [32, 32]}
        if kind == "maf"
        else {"hidden": [32, 32], "transforms": 2, "flow_hidden": [32, 32], "latent": 2, "iaf_context": 2}
    )
    module = FlowModule({"kind": kind, "features": 5, "context_shape": [1, 1024], **options}, learning_rate=2e-3)
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_epochs=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    layers = batchnorm_layers(module.model)
    assert module.set_training_statistics(data.dataset("train"), batch_size=5) == 36  # every training signal, one pass
    assert layers and all(float(layer.running_var.sub(1).abs().max()) > 1e-3 for layer in layers)  # set from data

    module.save_model(tmp_path / "model")
    loaded = FlowModule.load_model(tmp_path / "model")
    module.eval()
    strain, theta = next(iter(data.val_dataloader()))
    if kind == "maf":  # exact density: identical after the round trip
        torch.testing.assert_close(loaded.model.log_prob(theta, strain), module.model.log_prob(theta, strain))
    samples = loaded.sample(strain[0], 200)
    assert samples.shape == (200, 5) and torch.isfinite(samples).all()


def test_adam_is_fused_for_cpu_float_parameters_and_follows_the_same_update_rule():
    """``models.optim.adam`` (what every gwpe training builds): fused on CPU, same trajectory as the loop
    implementation to float rounding; the default implementation for a device fused Adam does not support."""
    from gwpe.models.optim import adam

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    start = [p.detach().clone() for p in models[0].parameters()]
    optimizers = [adam(models[0].parameters(), lr=1e-2), torch.optim.Adam(models[1].parameters(), lr=1e-2)]
    assert optimizers[0].defaults["fused"] and not optimizers[1].defaults["fused"]
    x, y = torch.randn(64, 8), torch.randn(64, 2)
    for _ in range(5):
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b, a0 in zip(models[0].parameters(), models[1].parameters(), start):
        assert (a - a0).abs().mean() > 1e-2  # the weights moved by up to 5 steps of lr
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not adam([torch.nn.Parameter(torch.zeros(2, device="meta"))]).defaults["fused"]
