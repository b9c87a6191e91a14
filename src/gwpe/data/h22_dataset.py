"""Reading h22 splits: a random-access Dataset, Lightning-free (the DataModule is ``gwpe.data.datamodule``'s).

- Random access: each waveform is its own compressed inner chunk, so item i costs one chunk read. Batches
  are fetched through ``__getitems__`` (used by torch's DataLoader) as one orthogonal selection, which lets
  zarr read the chunks concurrently instead of one call per sample.
- Workers: the zarr arrays are (re)opened lazily in each process, so the Dataset pickles as a path.
- DDP: loaders shard every split across ranks without overlap (``gwpe.data.splits.SplitDataModule``).
- ``last_samples`` keeps the last N time samples of each waveform (the WaveNet "leaves" input length).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gwpe.data.h22_store import H22, PARAMS
from gwpe.data.integrity import check_present, open_store
from gwpe.data.reading import read_rows


class H22Dataset(Dataset):
    """(waveform float32 (2, L), params float32 (3,) = (q, s1z, s2z)) pairs from one zarr split."""

    def __init__(self, path: str | Path, last_samples: int | None = None):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FileNotFoundError(f"no h22 store at {self.path} (run: gwpe generate h22 --split {self.path.stem})")
        self.last_samples = last_samples
        self._pid = None
        self._h22 = None
        self._params = None
        check_present(self.path)  # a deleted shard fails here, not as zeros or in epoch N
        self._open()

    def _open(self) -> None:
        group = open_store(self.path)  # every chunk read checked: missing, truncated, checksum
        self._h22 = group[H22]
        self._params = np.asarray(group[PARAMS][:], dtype=np.float32)
        self._pid = os.getpid()
        length = self._h22.shape[-1]
        if self.last_samples is not None and not 1 <= self.last_samples <= length:
            raise ValueError(f"last_samples = {self.last_samples} is outside 1..{length} (the split's length)")
        self._time_slice = slice(length - (self.last_samples or length), length)

    def __getstate__(self):
        return {"path": self.path, "last_samples": self.last_samples, "_pid": None, "_h22": None, "_params": None}

    def _arrays(self):
        if self._pid != os.getpid():
            self._open()
        return self._h22, self._params

    def __len__(self) -> int:
        return self._arrays()[1].shape[0]

    @property
    def parameters(self) -> np.ndarray:
        return self._arrays()[1]

    def __getitem__(self, index: int):
        h22, params = self._arrays()
        waveform = h22[int(index), :, self._time_slice]
        return torch.from_numpy(np.ascontiguousarray(waveform)), torch.from_numpy(params[int(index)])

    def __getitems__(self, indices: list[int]):
        h22, params = self._arrays()
        unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
        blocks = read_rows(h22, unique, (slice(None), self._time_slice))
        return [(torch.from_numpy(blocks[j]), torch.from_numpy(params[i])) for i, j in zip(indices, inverse)]
