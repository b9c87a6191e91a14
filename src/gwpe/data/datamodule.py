"""The h22 splits as a Lightning DataModule: train/validation/test loaders of ``H22Dataset``
(``gwpe.data.h22_dataset``), sharded across DDP ranks without overlap (``gwpe.data.splits.SplitDataModule``)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from gwpe.data.h22_dataset import H22Dataset
from gwpe.data.h22_store import split_path
from gwpe.data.splits import SplitDataModule
from gwpe.waveforms.grid import SPLITS

__all__ = ["H22DataModule", "H22Dataset"]


class H22DataModule(SplitDataModule):
    """Train/validation/test h22 splits from ``root`` with DDP-aware sharding (``SplitDataModule``)."""

    stage_splits = {
        "fit": ("train", "validation"),
        "validate": ("validation",),
        "test": ("test",),
        "predict": ("test",),
    }

    def __init__(
        self,
        root: str | Path = "data/h22",
        batch_size: int = 32,
        num_workers: int = 0,
        last_samples: int | None = None,
        seed: int = 0,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.root = Path(root)
        self.last_samples = last_samples

    def make_dataset(self, split: str) -> H22Dataset:
        if split not in SPLITS:
            raise ValueError(f"split = {split!r}; allowed: {', '.join(SPLITS)}")
        return H22Dataset(split_path(self.root, split), self.last_samples)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)
