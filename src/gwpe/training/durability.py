"""What makes a checkpoint safe to resume from: written whole or not at all, and carrying the RNG state.

- ``AtomicCheckpointIO``: Lightning's own writer stages a checkpoint in ``$TMPDIR`` and moves it into place;
  when ``$TMPDIR`` is another filesystem (a tmpfs) that move is a copy, and a full disk leaves a truncated
  ``best-epoch=*.ckpt``. Here the checkpoint goes to a temporary name beside its target and is renamed
  (``gwpe.models.atomic``): a failed write keeps the previous checkpoint as it was.
- ``RngStates``: the torch, numpy, python (and CUDA) RNG states at the moment of each checkpoint, restored when
  training resumes, so the epochs after a resume draw the same noise, dropout masks and loader seeds as an
  uninterrupted run would (the loaders' sampling order is already a function of (seed, epoch)). Every rank gets
  rank 0's states back: every rank starts from the same seed (``seed_everything``) and draws in step.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from gwpe.models.atomic import write_bytes_atomically

RNG_KEY = "gwpe_rng_states"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that writes through a temporary name in the checkpoint's folder, then renames."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomically(path, buffer.getbuffer())


def rng_states() -> dict:
    """This process's RNG states in a form ``torch.load(weights_only=True)`` reads (tensors, ints, tuples)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what ``rng_states`` recorded (CUDA states only where the same devices are present)."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state(
        (numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"])
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RngStates(Callback):
    """Saves the RNG states in every checkpoint and restores them as Lightning restores the rest of a checkpoint,
    before the fit loop creates the resumed epoch's loader iterator (which draws its base seed from torch's RNG,
    as the uninterrupted run's did right after that checkpoint was written)."""

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        if checkpoint.get(RNG_KEY) is not None:
            set_rng_states(checkpoint[RNG_KEY])
