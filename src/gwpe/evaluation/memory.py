"""Peak tensor memory of a computation on CPU, where torch keeps no allocator statistics. Domain-free.

``PeakTensorBytes`` is a ``TorchDispatchMode``: every tensor an aten op returns that owns its storage (not a
view) adds its storage's bytes to a live count, and a finalizer subtracts them when the tensor is freed, so
``peak`` is the largest number of bytes held at once by tensors created inside the block (the CPU analogue of
``torch.cuda.max_memory_allocated`` for that block; tensors that existed before, e.g. weights, are not
counted, nor is allocator slack).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakTensorBytes(TorchDispatchMode):
    """``with PeakTensorBytes() as tracker: ...``; then ``tracker.peak`` (bytes) and ``tracker.live``."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._storages.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor._base is None and not tensor.is_meta:
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key in self._storages:  # an in-place or out= op returned memory already counted
                    continue
                nbytes = storage.nbytes()
                self._storages.add(key)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, key, nbytes)
        return out
