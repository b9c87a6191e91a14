"""The h22 dataset: one zarr v3 store per split, filled by the chunk engine.

Layout of ``<root>/<split>.zarr``:
- ``h22``    float32 (N, 2, L): channels (Re, Im) of r h22 / M; one compressed inner chunk per waveform
             (random access reads one waveform), one shard file per ``chunk_size`` waveforms (few files at
             TB scale, and each generation task writes exactly one shard);
- ``params`` float64 (N, 3): (q, s1z, s2z), q slowest;
- ``time``   float64 (L,): t/M, amplitude peak at 0;
- attributes: backend, backend version, gwpe version, profile, split, grid and conventions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwpe.config import H22Config, ProjectConfig
from gwpe.data.checksum import tree_bytes
from gwpe.data.engine import EngineStats, finish_store, prepare_store, run_chunks
from gwpe.data.engine import code_digest as engine_code_digest
from gwpe.data.h22_store import H22, PARAMS, TIME, store_attributes, store_path
from gwpe.data.integrity import WRITE_ALL, checked, default_compressors
from gwpe.waveforms import build_backend, split_parameters, time_grid
from gwpe.waveforms.base import H22Backend


def code_digest() -> str:
    """md5 of the code that determines the bytes (the files dvc.yaml lists as the stage's deps)."""
    import sys

    import gwpe.waveforms
    from gwpe.data import h22_store

    return engine_code_digest(gwpe.waveforms, h22_store, sys.modules[__name__], sys.modules[run_chunks.__module__])


def split_time_grid(config: H22Config) -> np.ndarray:
    """The splits' time grid t/M from ``h22.time`` (t_start, t_end, dt)."""
    return time_grid(config.time.t_start, config.time.t_end, config.time.dt)


def create_h22_store(path: Path, params: np.ndarray, times: np.ndarray, config: H22Config, attrs: dict) -> None:
    """Create a split's store: empty ``h22`` (N, 2, L) float32, one shard per ``chunk_size`` waveforms;
    ``params`` and ``time`` written, ``attrs`` set. Every chunk ends in a crc32c (``gwpe.data.integrity``)."""
    import zarr
    from zarr.codecs import BloscCodec

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    length = len(times)
    group.create_array(
        H22,
        shape=(len(params), 2, length),
        chunks=(1, 2, length),
        shards=(config.store.chunk_size, 2, length),
        dtype="float32",
        compressors=checked(BloscCodec(cname="zstd", clevel=config.store.compression_level, shuffle="shuffle")),
        fill_value=0.0,
    )
    with zarr.config.set(WRITE_ALL):
        rows = min(len(params), 1 << 20)
        group.create_array(PARAMS, data=params, chunks=(rows, 3), compressors=default_compressors())
        group.create_array(TIME, data=times, chunks=(length,), compressors=default_compressors())
    group.attrs.update(attrs)


def write_h22_chunk(path: str, start: int, stop: int, params: np.ndarray, time_spec: tuple, backend: H22Backend) -> int:
    """Generate waveforms start..stop-1 and write them as one shard (runs on a Dask worker)."""
    import zarr

    data = backend.batch(params, time_grid(*time_spec))
    # Encode the shard's inner chunks as one batch on this worker's own core: zarr's defaults (one chunk per
    # batch, a thread pool) made the write 12 % of the task; batched and single-threaded it is ~4 %.
    with zarr.config.set({"codec_pipeline.batch_size": max(1, stop - start), "threading.max_workers": 1, **WRITE_ALL}):
        zarr.open_array(str(Path(path) / H22), mode="r+")[start:stop] = data
    return stop - start


def resume_fingerprint(config: ProjectConfig, attrs: dict) -> dict:
    """Everything that determines a split's bytes; a half-written store resumes only if it matches."""
    return {**attrs, "store": config.h22.store.model_dump(exclude={"root"}), "code": code_digest()}


@dataclass
class SplitResult:
    """One generated split: its store, waveform count, engine stats, bytes on disk and backend version."""

    path: Path
    n_waveforms: int
    stats: EngineStats
    bytes_on_disk: int
    backend_version: str


def generate_split(config: ProjectConfig, split: str, client=None) -> SplitResult:
    """Generate (or resume) one split of the h22 dataset."""
    h22 = config.h22
    backend = build_backend(h22)
    params = split_parameters(h22.grid, split)
    times = split_time_grid(h22)
    path = store_path(h22, split)
    attrs = store_attributes(config, split, backend)
    done = prepare_store(
        path, resume_fingerprint(config, attrs), lambda p: create_h22_store(p, params, times, h22, attrs)
    )
    size = h22.store.chunk_size
    time_spec = (h22.time.t_start, h22.time.t_end, h22.time.dt)
    tasks = []
    for k, start in enumerate(range(0, len(params), size)):
        stop = min(start + size, len(params))
        tasks.append((k, write_h22_chunk, (str(path.resolve()), start, stop, params[start:stop], time_spec, backend)))
    if done:
        print(f"resuming {path}: {len(done)} of {len(tasks)} chunks already finished")
    stats = run_chunks(path, tasks, h22.compute, done, desc=f"h22 {split}", client=client)
    finish_store(path)
    return SplitResult(path, len(params), stats, tree_bytes(path), backend.version())


def estimate_split(config: ProjectConfig, samples: int = 6, seed: int = 0) -> dict:
    """Time a few waveforms spread over the grid: per-waveform CPU seconds and compressed bytes."""
    from numcodecs import Blosc

    h22 = config.h22
    backend = build_backend(h22)
    params = split_parameters(h22.grid, "train")
    rng = np.random.default_rng(seed)
    picks = params[np.unique(np.concatenate([[0, len(params) - 1], rng.integers(0, len(params), samples)]))]
    times = split_time_grid(h22)
    backend.batch(picks[:1], times)  # warm-up: imports and caches outside the timing
    start = time.process_time()
    data = backend.batch(picks, times)
    seconds = (time.process_time() - start) / len(picks)
    # Same codec as the store (blosc zstd, byte shuffle), applied per waveform as the inner chunks are.
    codec = Blosc(cname="zstd", clevel=h22.store.compression_level, shuffle=Blosc.SHUFFLE)
    compressed = sum(len(codec.encode(np.ascontiguousarray(w))) for w in data)
    return {
        "cpu_seconds_per_waveform": seconds,
        "bytes_per_waveform": compressed / len(picks),
        "raw_bytes_per_waveform": data[0].nbytes,
    }
