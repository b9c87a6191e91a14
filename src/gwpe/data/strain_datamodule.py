"""Train/validation loaders of a strain dataset (``StrainDataset``, ``gwpe.data.strain_dataset``, has what each
sample is: noise, phase flip and fold, standardisation), DDP-aware through ``SplitDataModule``."""

from __future__ import annotations

from pathlib import Path

from gwpe.data.splits import SplitDataModule
from gwpe.data.strain_dataset import IN_MEMORY_BYTES, StrainDataset, StrainSplits  # noqa: F401 (re-exported)
from gwpe.data.strain_store import Standardisation


class StrainDataModule(SplitDataModule):
    """Train/validation loaders of one strain dataset, DDP-aware (``SplitDataModule``)."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        in_memory: bool | None = None,
        phase_flip: bool = False,
        phase_fold: bool = False,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.path = Path(path)
        self.in_memory = in_memory
        self.phase_flip = phase_flip
        self.phase_fold = phase_fold
        self.splits = StrainSplits(path, batch_size, seed, in_memory, phase_flip, phase_fold)

    def make_dataset(self, split: str) -> StrainDataset:
        return self.splits.make_dataset(split)

    @property
    def standardisation(self) -> Standardisation:
        """The training split's standardisation, else the store's (``StrainSplits.standardisation``)."""
        train = self.datasets.get("train")
        return train.standardisation if train is not None else self.splits.standardisation
