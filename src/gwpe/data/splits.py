"""Domain-free base of gwpe's DataModules: lazily opened splits, DDP-aware loaders.

Every loader uses ``DistributedSampler`` with the trainer's global rank and world size (or those of an
initialised process group, else a single rank), so each rank reads a disjoint shard of the split every
epoch (the last incomplete round is padded by repetition, as DDP needs equal batch counts). Lightning
leaves a DistributedSampler in place; it calls ``set_epoch`` on it, which reshuffles every epoch.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SplitDataModule(L.LightningDataModule):
    """Subclasses implement ``make_dataset(split)``; ``stage_splits`` maps Lightning stages to splits."""

    stage_splits: dict[str, tuple[str, ...]] = {"fit": ("train", "validation"), "validate": ("validation",)}

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.datasets: dict[str, Dataset] = {}

    def make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.datasets[split] = self.make_dataset(split)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = self.stage_splits.get(stage or "") or tuple(
            dict.fromkeys(s for v in self.stage_splits.values() for s in v)
        )
        for split in splits:
            self.dataset(split)

    def rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return trainer.global_rank, trainer.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def sampler(self, split: str, shuffle: bool) -> DistributedSampler:
        rank, world = self.rank_and_world()
        return DistributedSampler(self.dataset(split), num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed)

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            sampler=self.sampler(split, shuffle),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation", shuffle=False)
