"""Fast random-access reads from zarr stores (shared by every DataModule)."""

from __future__ import annotations

import numpy as np

from gwpe.data.integrity import raise_failures


def read_rows(array, rows: np.ndarray, rest: tuple = ()) -> list[np.ndarray]:
    """Rows ``array[r, *rest]`` of a zarr array read concurrently on zarr's event loop.

    Measured on the paper grid (101,301 samples, 32 random rows): 2 ms/row this way against 15 ms/row
    for ``get_orthogonal_selection`` and 4.5 ms/row for a loop of basic reads (blosc itself: 1.1 ms).
    Uses zarr 3's AsyncArray behind ``Array._async_array``; falls back to basic reads without it.
    """
    async_array = getattr(array, "_async_array", None)
    if async_array is None:
        return [np.ascontiguousarray(array[(int(r), *rest)]) for r in rows]
    import asyncio

    from zarr.core.sync import sync

    async def gather():
        return await asyncio.gather(*(async_array.getitem((int(r), *rest)) for r in rows))

    blocks = sync(gather())
    raise_failures(array)  # a bad chunk on a CheckedStore (gwpe.data.integrity.open_store) read as absent
    return [np.ascontiguousarray(block) for block in blocks]
