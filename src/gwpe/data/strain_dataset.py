"""The strain datasets' samples: stored whitened signals plus noise drawn at read time (Green et al. 2020, sec. III.A).

Lightning-free (evaluation and inference read it without importing Lightning); the DDP-aware loaders are
``gwpe.data.strain_datamodule.StrainDataModule``'s.

Stored signals are noise-free and whitened, so noise is N(0, 1) per sample and drawn at train time:
- training: a fresh realisation for every sample on every epoch (torch's per-worker, per-epoch RNG);
- validation/test: a fixed realisation per sample, seeded by (seed, index), identical across runs,
  loader workers and batch sizes, so validation losses are comparable between runs.
- ``phase_flip``: each training sample's phi0 target becomes phi0 + pi (mod 2 pi) with probability 1/2, drawn
  afresh every time. Exact for signals carrying only the (2, +-2) modes, e.g. IMRPhenomPv2 with aligned spins
  (h+, hx ∝ exp(2 i phi0), ``gwpe.waveforms.strain``): with phi0 uniform the pairs (phi0 + pi, x) and (phi0, x)
  have the same joint distribution, so the flow sees both copies of the posterior's two modes equally often
  instead of one per stored signal.
- ``phase_fold``: every phi0 target, training and validation, becomes phi0 mod pi. Same condition: the posterior
  then holds two equal copies, phi0 and phi0 + pi, and the raw flow trained on [0, 2 pi) has to learn both (and
  their wrap-around pieces); folded, it is shown one. The MAF's ``phase`` symmetry (``models/flows/phase.py``,
  2 copies) restores the other at sampling and in log q: q_sym(phi0) = (1/2) sum_i q(phi0 + i pi), so
  KL(p || q_sym) <= KL(p_fold || q), the training loss (equal where q keeps its mass in [0, pi)). Only the
  training job sets it; evaluation and inference read the stored truths. Measured on the quality profile's
  no-batch-norm GNPE arm (same store and schedule, 2 cores): validation NLL -11.78 after 24 epochs folded against
  -7.57 unfolded and -7.72 unfolded after 44 epochs (a perfect fit's folded NLL is log 2 below its unfolded one,
  so the fold gains ~3.5 nats); docs/npe-quality-full.md has what it does to the posteriors.
Splits up to IN_MEMORY_BYTES are held in memory (random access from the zarr store costs ~2 ms a row);
larger ones are read per batch. Targets are the inferred parameters standardised with the training split's mean
and std stored in the dataset (``Standardisation.inverse`` maps model outputs back to physical units).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gwpe.data.integrity import check_present, open_store
from gwpe.data.reading import read_rows
from gwpe.data.shard_reader import read_contiguous
from gwpe.data.strain_store import INFERRED, N_TRAIN, PARAMETERS, PARAMS, SNR, STRAIN, Standardisation

IN_MEMORY_BYTES = 1 << 30  # splits up to 1 GiB of float32 strain are read into memory once (per loader worker)


class StrainDataset(Dataset):
    """(noisy whitened strain float32 (D, L), standardised inferred parameters float32 (P,)) pairs."""

    def __init__(
        self,
        path: str | Path,
        split: str,
        noise: str = "auto",
        seed: int = 0,
        in_memory: bool | None = None,
        phase_flip: bool = False,
        phase_fold: bool = False,
    ):
        self.path = Path(path)
        if phase_flip and phase_fold:
            raise ValueError("phase_flip and phase_fold both set; allowed: at most one")
        self.phase_flip = phase_flip
        self.phase_fold = phase_fold
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(
                f"no strain store at {self.path} (run: gwpe generate strain --dataset {self.path.stem})"
            )
        if split not in ("train", "validation"):
            raise ValueError(f"split = {split!r}; allowed: train, validation")
        self.split = split
        self.noise = {"auto": "fresh" if split == "train" else "fixed"}.get(noise, noise)
        if self.noise not in ("fresh", "fixed", "none"):
            raise ValueError(f"noise = {noise!r}; allowed: auto, fresh, fixed, none")
        self.seed = seed
        self.in_memory = in_memory
        self._pid = None
        check_present(self.path)  # a deleted shard fails here, not as zeros or in epoch N
        self._open()

    def _open(self) -> None:
        group = open_store(self.path)  # every chunk read checked: missing, truncated, checksum
        attrs = dict(group.attrs)
        self.standardisation = Standardisation.from_attrs(attrs)
        columns = [attrs[PARAMETERS].index(p) for p in attrs[INFERRED]]
        n_train = attrs[N_TRAIN]
        rows = slice(0, n_train) if self.split == "train" else slice(n_train, group[PARAMS].shape[0])
        self.offset = rows.start
        self.targets = self.standardisation.forward(group[PARAMS][rows][:, columns]).astype(np.float32)
        names = list(self.standardisation.parameters)
        self._phi0 = None
        if "phi0" in names:
            k = names.index("phi0")
            self._phi0 = (k, float(self.standardisation.mean[k]), float(self.standardisation.std[k]))
        if self.phase_fold:
            if self._phi0 is None:
                raise ValueError(f"phase_fold: {self.path.name} does not infer phi0 (inferred: {', '.join(names)})")
            k, mean, std = self._phi0
            self.targets[:, k] = (((self.targets[:, k] * std + mean) % np.pi) - mean) / std
        self.snr = group[SNR][rows]
        self._strain = group[STRAIN]
        self._memory = None
        split_bytes = (rows.stop - rows.start) * int(np.prod(self._strain.shape[1:])) * 4
        self._noisy_memory = False
        if self.in_memory or (self.in_memory is None and split_bytes <= IN_MEMORY_BYTES):
            # one contiguous read, a shard at a time (zarr's per-chunk path is 11x slower here); random access is
            # then free
            self._memory = read_contiguous(self.path, STRAIN, rows.start, rows.stop)
            if self._memory is None:  # a layout the shard reader does not handle
                self._memory = self._strain[rows]
            if self.noise == "fixed":
                # the fixed realisation of every row added once here, not re-drawn each epoch (same values)
                shape = self._memory.shape[1:]
                self._memory = (
                    np.stack([row + self._noise(i, shape) for i, row in enumerate(self._memory)])
                    if len(self._memory)
                    else self._memory
                )
                self._noisy_memory = True
        self._pid = os.getpid()

    def __getstate__(self):
        return {
            "path": self.path,
            "split": self.split,
            "noise": self.noise,
            "seed": self.seed,
            "in_memory": self.in_memory,
            "phase_flip": self.phase_flip,
            "phase_fold": self.phase_fold,
            "_pid": None,
        }

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def _array(self):
        if self._pid != os.getpid():
            self._open()
        return self._strain

    def __len__(self) -> int:
        return len(self.targets)

    def _noise(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        if self.noise == "fixed":
            return np.random.default_rng([self.seed, index]).standard_normal(shape, dtype=np.float32)
        return torch.randn(shape).numpy()

    def _item(self, index: int, signal: np.ndarray):
        if self.noise != "none" and not self._noisy_memory:
            signal = signal + self._noise(index, signal.shape)
        target = self.targets[index]
        if self.phase_flip and self._phi0 is not None and torch.rand(()) < 0.5:
            k, mean, std = self._phi0
            target = target.copy()
            target[k] = (((target[k] * std + mean) + np.pi) % (2.0 * np.pi) - mean) / std
        return torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32)), torch.from_numpy(target)

    def __getitem__(self, index: int):
        if self._memory is not None:
            return self._item(int(index), self._memory[int(index)])
        return self._item(int(index), self._array()[self.offset + int(index)])

    def __getitems__(self, indices: list[int]):
        if self._memory is not None:
            if self.phase_flip:  # per-item draws keep the flips interleaved with the noise, as before
                return [self._item(int(i), self._memory[int(i)]) for i in indices]
            # one gather and one noise draw for the whole batch: torch.randn of (B, D, L) is the same stream
            # as B draws of (D, L), so batches are identical to item-by-item ones, only faster
            index = np.asarray(indices, dtype=np.int64)
            strain = torch.from_numpy(np.ascontiguousarray(self._memory[index], dtype=np.float32))
            if self.noise == "fresh":
                strain += torch.randn(strain.shape)
            return list(zip(strain.unbind(0), torch.from_numpy(self.targets[index]).unbind(0)))
        unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
        blocks = read_rows(self._array(), unique + self.offset)
        return [self._item(int(i), blocks[j]) for i, j in zip(indices, inverse)]


class StrainSplits:
    """The train and validation ``StrainDataset`` of one store, each opened on first use, with the store's
    standardisation and a validation loader: what evaluation reads, without Lightning (``StrainDataModule``
    holds one and adds the DDP-aware loaders)."""

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 256,
        seed: int = 0,
        in_memory: bool | None = None,
        phase_flip: bool = False,
        phase_fold: bool = False,
    ):
        self.path = Path(path)
        self.batch_size = batch_size
        self.seed = seed
        self.in_memory = in_memory
        self.phase_flip = phase_flip
        self.phase_fold = phase_fold
        self.datasets: dict[str, StrainDataset] = {}

    def make_dataset(self, split: str) -> StrainDataset:
        """``phase_flip`` applies to the training split only: validation targets stay the stored truths;
        ``phase_fold`` to both, so the validation loss is the training loss."""
        return StrainDataset(
            self.path,
            split,
            seed=self.seed,
            in_memory=self.in_memory,
            phase_flip=self.phase_flip and split == "train",
            phase_fold=self.phase_fold,
        )

    def dataset(self, split: str) -> StrainDataset:
        if split not in self.datasets:
            self.datasets[split] = self.make_dataset(split)
        return self.datasets[split]

    @property
    def standardisation(self) -> Standardisation:
        """The store's standardisation, from its attributes (an evaluation reads no training rows for it)."""
        train = self.datasets.get("train")
        return train.standardisation if train is not None else Standardisation.of_store(self.path)

    def val_dataloader(self):
        """The validation split in order, in ``batch_size`` batches (one process)."""
        from torch.utils.data import DataLoader

        return DataLoader(self.dataset("validation"), batch_size=self.batch_size)
