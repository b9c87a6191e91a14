"""Chunk integrity of gwpe's zarr stores: a crc32c on every chunk, checked on every read and by ``gwpe verify``.

- Writing: ``checked(*compressors)`` appends zarr v3's ``crc32c`` codec to an array's codec chain, so every stored
  chunk (every inner chunk of a shard; shard indices carry zarr's own crc32c) ends in the crc32c of its bytes, and
  ``WRITE_ALL`` makes zarr store chunks equal to the fill value too, so a chunk missing from a finished store is
  never valid data.
- Reading: ``open_store(path)`` opens a store read-only through ``CheckedStore``, which raises ``CorruptStoreError``
  naming the array and chunk key for a missing chunk or shard, a damaged shard index, a truncated chunk or a
  checksum mismatch, where plain zarr returns the fill value (a deleted shard reads as zeros) or fails deep in its
  codec pipeline. ``check_present(path)`` stats every chunk file up front (one stat per shard: cheap at TB scale).
- Verifying: ``verify_store(path)`` reads every chunk file once (a thread pool; one file in memory per thread) and
  checks presence, shard indices and checksums; the ``gwpe verify`` stage prints its bytes and GB/s.

Stores written before checksums (no ``crc32c`` in the codec chain) still read: presence and shard indices are
checked, chunk contents are not; ``verify_store`` lists such arrays as unchecked (regenerate to add checksums).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gwpe.errors import CorruptStoreError

CHECKSUM = "crc32c"
WRITE_ALL = {"array.write_empty_chunks": True}  # zarr.config: store chunks equal to the fill value too
_EMPTY = np.uint64(2**64 - 1)  # a shard index entry of an inner chunk that was never written
_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")
ADVICE = "restore it (dvc checkout / dvc pull) or regenerate it (gwpe generate ...)"


def checked(*compressors) -> tuple:
    """``compressors`` followed by zarr's crc32c codec: what every gwpe array is created with."""
    from zarr.codecs import Crc32cCodec

    return (*compressors, Crc32cCodec())


def default_compressors() -> tuple:
    """zarr v3's default compressor (zstd level 0) plus the crc32c codec, for the small arrays (params, SNR, time)."""
    from zarr.codecs import ZstdCodec

    return checked(ZstdCodec(level=0, checksum=False))


def _crc(data: np.ndarray) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


@dataclass(frozen=True)
class ArrayLayout:
    """What integrity checks need of one array's ``zarr.json``: its grid, chunk keys and checksummed codecs."""

    store: str  # the store, for messages
    path: str  # the array inside the store ("" for a root array)
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]  # the stored unit: a shard for sharded arrays
    separator: str
    inner_shape: tuple[int, ...] | None  # sharded: the inner chunk shape
    checksum: bool  # every (inner) chunk ends in its crc32c
    index_checksum: bool
    index_at_end: bool

    @classmethod
    def from_metadata(cls, store: str, path: str, meta: dict) -> ArrayLayout | None:
        """None for what these checks do not handle (zarr v2 arrays, other chunk grids or key encodings)."""
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            return None
        grid, encoding = meta.get("chunk_grid", {}), meta.get("chunk_key_encoding", {})
        if grid.get("name") != "regular" or encoding.get("name") != "default":
            return None
        codecs = meta.get("codecs", [])
        names = [c.get("name") for c in codecs]
        inner_shape, index_checksum, index_at_end = None, False, True
        if names and names[0] == "sharding_indexed":
            config = codecs[0]["configuration"]
            inner_shape = tuple(config["chunk_shape"])
            names = [c.get("name") for c in config.get("codecs", [])]
            index_names = [c.get("name") for c in config.get("index_codecs", [])]
            if "sharding_indexed" in names or index_names[:1] != ["bytes"]:
                return None
            index_checksum = index_names[-1:] == [CHECKSUM]
            index_at_end = config.get("index_location", "end") == "end"
        return cls(
            store=store,
            path=path,
            shape=tuple(meta["shape"]),
            chunk_shape=tuple(grid["configuration"]["chunk_shape"]),
            separator=encoding.get("configuration", {}).get("separator", "/"),
            inner_shape=inner_shape,
            checksum=names[-1:] == [CHECKSUM],
            index_checksum=index_checksum,
            index_at_end=index_at_end,
        )

    @property
    def name(self) -> str:
        return self.path or "/"

    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(s / c) if c else 0 for s, c in zip(self.shape, self.chunk_shape))

    def coords(self) -> Iterator[tuple[int, ...]]:
        """Every stored unit's grid coordinates (C order)."""
        return itertools.product(*(range(n) for n in self.grid()))

    def key(self, coords: tuple[int, ...]) -> str:
        """The chunk key relative to the array, e.g. ``c/3/0/0``."""
        return self.separator.join(["c", *(str(c) for c in coords)])

    def file(self, coords: tuple[int, ...]) -> Path:
        return Path(self.store, self.path, *self.key(coords).split("/"))

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(c // i for c, i in zip(self.chunk_shape, self.inner_shape))

    @property
    def index_bytes(self) -> int:
        return 16 * math.prod(self.per_shard) + (4 if self.index_checksum else 0)

    def written(self, coords: tuple[int, ...]) -> np.ndarray:
        """Boolean (per_shard) mask: the inner chunks of shard ``coords`` that lie inside the array."""
        mask = np.ones(self.per_shard, dtype=bool)
        for axis, (shard, n, inner) in enumerate(zip(coords, self.per_shard, self.inner_shape)):
            first = np.arange(n) * inner + shard * self.chunk_shape[axis]
            index = [np.newaxis] * len(self.per_shard)
            index[axis] = slice(None)
            mask &= (first < self.shape[axis])[tuple(index)]
        return mask

    def error(self, coords: tuple[int, ...], problem: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"store {self.store}: array '{self.name}' chunk {self.key(coords)}: {problem}; the store is damaged: "
            + ADVICE
        )

    # -- checks of bytes already read -------------------------------------------------------------------------

    def check_chunk(self, coords: tuple[int, ...], data: np.ndarray, what: str = "") -> None:
        """``data``: one whole encoded (inner) chunk ending in its crc32c."""
        if not self.checksum:
            return
        if len(data) < 4:
            raise self.error(coords, f"{what}truncated ({len(data)} bytes)")
        stored = int(data[-4:].view("<u4")[0])
        computed = _crc(data[:-4])
        if stored != computed:
            raise self.error(coords, f"{what}checksum mismatch (stored crc32c {stored:08x}, computed {computed:08x})")

    def check_index(self, coords: tuple[int, ...], index: np.ndarray) -> np.ndarray:
        """Decode and check a shard index; returns its (per_shard..., 2) offsets and lengths."""
        if len(index) != self.index_bytes:
            raise self.error(coords, f"shard index truncated ({len(index)} of {self.index_bytes} bytes)")
        if self.index_checksum:
            stored, computed = int(index[-4:].view("<u4")[0]), _crc(index[:-4])
            if stored != computed:
                raise self.error(
                    coords, f"shard index checksum mismatch (stored crc32c {stored:08x}, computed {computed:08x})"
                )
        entries = index[: 16 * math.prod(self.per_shard)].view("<u8").reshape(*self.per_shard, 2)
        missing = (entries[..., 0] == _EMPTY) & self.written(coords)
        if missing.any():
            inner = tuple(int(i) for i in np.argwhere(missing)[0])
            raise self.error(coords, f"inner chunk {inner} of the shard is missing ({int(missing.sum())} missing)")
        return entries

    def check_shard(self, coords: tuple[int, ...], data: np.ndarray) -> None:
        """``data``: a whole shard file."""
        size = len(data)
        if size < self.index_bytes:
            raise self.error(coords, f"shard truncated ({size} bytes, its index alone is {self.index_bytes})")
        index = data[size - self.index_bytes :] if self.index_at_end else data[: self.index_bytes]
        entries = self.check_index(coords, index)
        limit = size - self.index_bytes if self.index_at_end else size
        inner = np.argwhere(self.written(coords))
        starts = entries[..., 0][tuple(inner.T)].astype(np.int64)
        ends = starts + entries[..., 1][tuple(inner.T)].astype(np.int64)
        if len(ends) and ends.max() > limit:
            k = int(np.argmax(ends > limit))
            raise self.error(
                coords, f"{self._inner(inner[k])}runs past the end of the shard file ({ends[k]} > {limit})"
            )
        if not self.checksum:
            return
        short = np.flatnonzero(ends - starts < 4)
        if len(short):
            raise self.error(
                coords, f"{self._inner(inner[short[0]])}truncated ({ends[short[0]] - starts[short[0]]} bytes)"
            )
        stored = data[(ends - 4)[:, None] + np.arange(4)].copy().view("<u4").ravel()  # every chunk's crc at once
        for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            if _crc(data[start : end - 4]) != stored[k]:
                self.check_chunk(coords, data[start:end], self._inner(inner[k]))  # raises, naming the chunk

    @staticmethod
    def _inner(local) -> str:
        return f"inner chunk {tuple(int(i) for i in local)} of the shard: "

    def check_file(self, coords: tuple[int, ...]) -> int:
        """Read the stored unit at ``coords`` (one shard or chunk file) and check it; returns its size in bytes."""
        return len(self.read_checked(coords))

    def read_checked(self, coords: tuple[int, ...]) -> np.ndarray:
        """The bytes of the stored unit at ``coords`` (one shard or chunk file), read whole and checked."""
        path = self.file(coords)
        try:
            with open(path, "rb", buffering=0) as handle:
                size = os.fstat(handle.fileno()).st_size
                data = np.empty(size, dtype=np.uint8)
                view, read = memoryview(data), 0
                while read < size and (n := handle.readinto(view[read:])):
                    read += n
                data = data[:read]
        except FileNotFoundError:
            raise self.error(coords, "missing (its file was deleted or never written)") from None
        if self.inner_shape is None:
            self.check_chunk(coords, data)
        else:
            self.check_shard(coords, data)
        return data


def array_layouts(store: str | Path) -> list[ArrayLayout]:
    """The layout of every array in a store (its group tree walked with zarr; chunk folders are not listed)."""
    import zarr

    store = str(store)
    try:
        root = zarr.open(store, mode="r")
        if isinstance(root, zarr.Array):
            arrays = [root]
        else:
            arrays = [node for _, node in root.members(max_depth=None) if isinstance(node, zarr.Array)]
    except Exception as exc:  # a garbled or missing zarr.json of the store or of one of its arrays
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise CorruptStoreError(
            f"store {store}: unreadable zarr metadata ({text}); the store is damaged: {ADVICE}"
        ) from None
    layouts = []
    for array in arrays:
        try:
            meta = json.loads(Path(store, array.path, "zarr.json").read_text())
        except (OSError, ValueError) as exc:
            raise CorruptStoreError(f"store {store}: array '{array.path}' has unreadable metadata ({exc})") from None
        layout = ArrayLayout.from_metadata(store, array.path, meta)
        if layout is None:
            raise CorruptStoreError(f"store {store}: array '{array.path}' has a layout gwpe cannot check (zarr v2?)")
        layouts.append(layout)
    return layouts


def check_present(store: str | Path) -> None:
    """Every chunk (shard) file of every array exists: one stat per file, no data read."""
    for layout in array_layouts(store):
        for coords in layout.coords():
            if not layout.file(coords).is_file():
                raise layout.error(coords, "missing (its file was deleted or never written)")


@dataclass
class VerifyReport:
    """What ``verify_store`` checked: arrays, chunk files, bytes read, seconds, and arrays without checksums."""

    store: str
    arrays: int
    files: int
    bytes: int
    seconds: float
    unchecked: list[str] = field(default_factory=list)

    @property
    def gb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")


def verify_store(store: str | Path, threads: int | None = None, progress: bool = False) -> VerifyReport:
    """Read every chunk file of ``store`` once and check it; raises ``CorruptStoreError`` naming the first bad one.

    Streams: ``threads`` files in flight (default: CPU count, at least 4, for I/O overlap), each read whole;
    ``progress`` shows a bar of chunk files (a TB store takes minutes).
    """
    from tqdm import tqdm

    from gwpe.data.engine import PROGRESS_DIR

    path = Path(store)
    if not (path / "zarr.json").is_file():
        raise CorruptStoreError(f"no zarr store at {path} (no zarr.json)")
    if (path / PROGRESS_DIR).exists():
        raise CorruptStoreError(
            f"store {path}: generation is unfinished ({PROGRESS_DIR} is present); rerun its gwpe generate command"
        )
    start = time.perf_counter()
    layouts = array_layouts(path)
    tasks = [(layout, coords) for layout in layouts for coords in layout.coords()]  # one entry per chunk file
    threads = threads or max(4, os.cpu_count() or 1)
    files = size = 0
    bar = tqdm(total=len(tasks), desc=f"verify {path.name}", unit="file", disable=not progress)
    with bar, ThreadPoolExecutor(threads) as pool:
        pending: set = set()
        try:
            for layout, coords in tasks:
                pending.add(pool.submit(layout.check_file, coords))
                if len(pending) >= 2 * threads:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        size += future.result()
                        files += 1
                        bar.update()
            for future in pending:
                size += future.result()
                files += 1
                bar.update()
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    unchecked = [layout.name for layout in layouts if not layout.checksum]
    return VerifyReport(str(path), len(layouts), files, size, time.perf_counter() - start, unchecked)


def _store_class():
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest
    from zarr.storage import LocalStore

    class CheckedStore(LocalStore):
        """A read-only LocalStore whose every chunk read is checked (see the module docstring).

        A bad chunk is recorded and read as absent, so zarr finishes the read normally (raising inside zarr's
        event loop would leave the read's sibling tasks pending, and their warnings on stderr at exit);
        ``raise_failures`` raises the first recorded one once the read returns (``CheckedArray`` does it)."""

        def __init__(self, root, *, read_only: bool = True):
            super().__init__(root, read_only=read_only)
            self._layouts: dict[str, ArrayLayout | None] = {}
            self._indices: dict[str, np.ndarray] = {}
            self.failures: list[CorruptStoreError] = []

        def raise_failures(self) -> None:
            if self.failures:
                first = self.failures[0]
                self.failures.clear()
                raise first

        def _layout(self, array: str) -> ArrayLayout | None:
            if array not in self._layouts:
                meta = Path(self.root, array, "zarr.json")
                try:
                    self._layouts[array] = ArrayLayout.from_metadata(
                        str(self.root), array, json.loads(meta.read_text())
                    )
                except (OSError, ValueError):
                    self._layouts[array] = None
            return self._layouts[array]

        def _locate(self, key: str):
            """(layout, grid coords) of a chunk key, None for metadata and anything else."""
            if key.endswith(_METADATA):
                return None
            parts = key.split("/")
            for i, part in enumerate(parts):
                if part == "c":
                    layout = self._layout("/".join(parts[:i]))
                    if layout is not None and layout.separator == "/" and all(p.isdigit() for p in parts[i + 1 :]):
                        return layout, tuple(int(p) for p in parts[i + 1 :])
            return None

        async def get(self, key, prototype=None, byte_range=None):
            buffer = await super().get(key, prototype, byte_range)
            located = self._locate(key)
            if located is None:
                return buffer
            try:
                self._check(*located, key, buffer, byte_range)
            except CorruptStoreError as exc:
                self.failures.append(exc)
                return None
            return buffer

        def _check(self, layout: ArrayLayout, coords: tuple[int, ...], key: str, buffer, byte_range) -> None:
            if buffer is None:
                raise layout.error(coords, "missing (its file was deleted or never written)")
            data = np.asarray(buffer.as_numpy_array()).view(np.uint8).reshape(-1)
            if layout.inner_shape is None:
                if byte_range is None:
                    layout.check_chunk(coords, data)
            elif byte_range is None:
                layout.check_shard(coords, data)
            elif (isinstance(byte_range, SuffixByteRequest) and layout.index_at_end) or (
                isinstance(byte_range, RangeByteRequest) and not layout.index_at_end and byte_range.start == 0
            ):
                if len(self._indices) > 4096:
                    self._indices.clear()
                self._indices[key] = layout.check_index(coords, data)
            elif isinstance(byte_range, RangeByteRequest):
                expected = byte_range.end - byte_range.start
                what = f"bytes {byte_range.start}-{byte_range.end} of the shard: "
                entries = self._indices.get(key)
                if entries is not None:
                    hits = np.argwhere(entries[..., 0] == np.uint64(byte_range.start))
                    if len(hits):
                        what = f"inner chunk {tuple(int(i) for i in hits[0])} of the shard: "
                if len(data) != expected:
                    raise layout.error(coords, f"{what}truncated ({len(data)} of {expected} bytes)")
                layout.check_chunk(coords, data, what)

    return CheckedStore


_CHECKED_STORE = None


def checked_store(path: str | Path):
    """A read-only ``CheckedStore`` on ``path``."""
    global _CHECKED_STORE
    if _CHECKED_STORE is None:
        _CHECKED_STORE = _store_class()
    return _CHECKED_STORE(Path(path), read_only=True)


def raise_failures(node) -> None:
    """Raise the first bad chunk a read of ``node`` (an array or group on a ``CheckedStore``) met; else nothing."""
    store = getattr(node, "store", None)
    if hasattr(store, "raise_failures"):
        store.raise_failures()


class CheckedArray:
    """A zarr array whose ``[...]`` reads raise ``CorruptStoreError`` for a bad chunk; all else is the array's."""

    def __init__(self, array):
        self._array = array

    def __getitem__(self, selection):
        data = self._array[selection]
        raise_failures(self._array)
        return data

    def __len__(self) -> int:
        return len(self._array)

    def __getattr__(self, name):
        return getattr(self._array, name)


class CheckedGroup:
    """A zarr group whose arrays are ``CheckedArray``s; all else (attrs, members) is the group's."""

    def __init__(self, group):
        self._group = group

    def __getitem__(self, name: str):
        import zarr

        node = self._group[name]
        return CheckedArray(node) if isinstance(node, zarr.Array) else CheckedGroup(node)

    def __getattr__(self, name):
        return getattr(self._group, name)


def open_store(path: str | Path) -> CheckedGroup:
    """The zarr group at ``path``, read-only, every chunk read checked (missing, truncated, checksum)."""
    import zarr

    return CheckedGroup(zarr.open_group(checked_store(path), mode="r"))
