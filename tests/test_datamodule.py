import numpy as np
import torch
import zarr

from gwpe.config import parse_config
from gwpe.data.datamodule import H22DataModule, H22Dataset
from gwpe.data.h22 import generate_split

from conftest import tiny_profile


def make_splits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_config(tiny_profile())
    for split in ("train", "validation", "test"):
        generate_split(config, split)
    return tmp_path / "data" / "h22"


def test_random_access_and_batched_reads_agree_with_the_store(tmp_path, monkeypatch):
    root = make_splits(tmp_path, monkeypatch)
    raw = zarr.open_group(str(root / "train.zarr"), mode="r")
    dataset = H22Dataset(root / "train.zarr", last_samples=100)
    assert len(dataset) == 27
    waveform, params = dataset[13]
    assert waveform.shape == (2, 100) and waveform.dtype == torch.float32
    np.testing.assert_array_equal(waveform.numpy(), raw["h22"][13, :, -100:])
    np.testing.assert_allclose(params.numpy(), raw["params"][13], rtol=1e-6)
    batch = dataset.__getitems__([5, 2, 5, 26])
    for (w, _p), k in zip(batch, [5, 2, 5, 26]):
        np.testing.assert_array_equal(w.numpy(), raw["h22"][k, :, -100:])


def test_loader_with_workers_and_ddp_shards_are_disjoint(tmp_path, monkeypatch):
    root = make_splits(tmp_path, monkeypatch)
    module = H22DataModule(root, batch_size=5, num_workers=2)
    seen = torch.cat([params for _, params in module.train_dataloader()])
    assert seen.shape == (27, 3)
    reference = H22Dataset(root / "train.zarr").parameters
    assert {tuple(np.round(p, 5)) for p in seen.numpy()} == {tuple(np.round(p, 5)) for p in reference}

    module.setup("fit")
    shards = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(
            module.datasets["train"], num_replicas=2, rank=rank, shuffle=True, seed=0
        )
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 14
    assert len(set(shards[0]) | set(shards[1])) == 27  # everything covered; one index padded
    assert len(set(shards[0]) & set(shards[1])) <= 1
    val = next(iter(module.val_dataloader()))
    assert val[0].shape == (1, 2, 631)
