"""Contiguous rows of a gwpe waveform array read a whole shard at a time (the in-memory loads of training and
evaluation).

gwpe's waveform arrays (strain, h22) store one row per inner chunk (``gwpe.data.h22_dataset``: random access
costs one chunk). zarr 3 decodes each inner chunk through its async codec pipeline, ~0.3 ms a chunk: reading
strain-5d's 20,000 rows of 4 kB takes 5.9 s on the demo machine, and an evaluation stage opens its splits three
times. Here each shard file is read once and checked (``ArrayLayout.read_checked``: its index and every inner
chunk's crc32c, the same checks and messages as ``open_store``), then its inner chunks are blosc-decompressed
straight into the output array, shards spread over a thread pool (blosc releases the GIL). ``benchmarks/
strain_loader.py`` prints both read times. Only the layout gwpe writes is handled, ``bytes`` (little-endian) ->
``blosc`` -> ``crc32c`` inside ``sharding_indexed`` with one row per inner chunk; for anything else
``read_contiguous`` returns None and the caller reads through zarr.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gwpe.data.integrity import ArrayLayout

ROW_CODECS = ["bytes", "blosc", "crc32c"]


def _row_layout(store: Path, name: str) -> tuple[ArrayLayout, np.dtype] | None:
    meta = json.loads((store / name / "zarr.json").read_text())
    layout = ArrayLayout.from_metadata(str(store), name, meta)
    if layout is None or layout.inner_shape is None or not layout.checksum or not layout.index_at_end:
        return None
    codecs = meta["codecs"][0]["configuration"]["codecs"]
    if [c.get("name") for c in codecs] != ROW_CODECS or codecs[0].get("configuration", {}).get("endian") != "little":
        return None
    row = tuple(layout.shape[1:])
    if layout.inner_shape != (1, *row) or tuple(layout.chunk_shape[1:]) != row:
        return None
    return layout, np.dtype(meta["data_type"]).newbyteorder("<")


def read_contiguous(
    store: str | Path, name: str, start: int, stop: int, threads: int | None = None
) -> np.ndarray | None:
    """``array[start:stop]`` of array ``name`` in ``store``, checked, or None for a layout not handled here."""
    from numcodecs.blosc import decompress

    store = Path(store)
    found = _row_layout(store, name)
    if found is None:
        return None
    layout, dtype = found
    rows = layout.shape[0]
    if not 0 <= start <= stop <= rows:
        raise ValueError(f"rows {start}:{stop} of array '{name}'; allowed: 0 <= start <= stop <= {rows}")
    out = np.empty((stop - start, *layout.shape[1:]), dtype)
    if stop == start:
        return out
    flat = out.reshape(len(out), -1).view(np.uint8)
    per = layout.chunk_shape[0]
    tail = (0,) * (len(layout.shape) - 1)

    def shard(index: int) -> None:
        coords = (index, *tail)
        data = layout.read_checked(coords)
        entries = layout.check_index(coords, data[len(data) - layout.index_bytes :]).reshape(per, 2)
        first = index * per
        for r in range(max(start, first), min(stop, first + per)):
            offset, size = (int(v) for v in entries[r - first])
            decompress(data[offset : offset + size - 4], flat[r - start])  # the last 4 bytes: the crc32c

    shards = range(start // per, math.ceil(stop / per))
    with ThreadPoolExecutor(threads or min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(shard, shards))
    return out
