"""Strain datasets: noise-free whitened signals + parameters in one zarr v3 store per dataset.

Layout of ``<root>/<name>.zarr`` (N signals; rows [0, n_train) are training, the rest validation):
- ``strain``  float32 (N, D, L): whitened signal per detector (D = 1 for the "+" polarisation); one inner
              chunk per signal, one shard per ``chunk_size`` signals (written by one task);
- ``params``  float64 (N, P): drawn parameters, columns named by the ``parameters`` attribute;
- ``snr``     float64 (N,): network optimal SNR (frequency-domain formula);
- attributes: parameters, inferred parameters, standardisation (mean and std of each inferred parameter
  over the training rows), n_train, detectors, sampling, PSD, approximant, prior, provenance.
Noise is not stored: it is drawn at train time (see ``gwpe.data.strain_dataset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig, StrainDatasetConfig
from gwpe.data.checksum import tree_bytes
from gwpe.data.engine import EngineStats, code_digest, finish_store, prepare_store, run_chunks
from gwpe.data.integrity import WRITE_ALL, checked, default_compressors, open_store
from gwpe.data.strain_store import (
    PARAMS,
    SNR,
    STRAIN,
    dataset_config,
    split_sizes,  # noqa: F401 (re-exported: the dry run's caller)
    store_attributes,
    store_path,
)
from gwpe.waveforms.priors import sample_prior
from gwpe.waveforms.strain import StrainGenerator, StrainSetup


def draw_parameters(dataset: StrainDatasetConfig) -> np.ndarray:
    """The dataset's parameters, drawn from its prior with its own seed (the same on every machine)."""
    return sample_prior(dataset.prior, list(dataset.parameters), dataset.n_signals, np.random.default_rng(dataset.seed))


def create_strain_store(
    path: Path, params: np.ndarray, setup: StrainSetup, chunk_size: int, level: int, attrs: dict
) -> None:
    """Create a dataset's store: empty ``strain`` (N, D, L) float32, one shard per ``chunk_size`` signals;
    ``params`` written, ``snr`` zero-filled, ``attrs`` set. Every chunk ends in a crc32c (``gwpe.data.integrity``)."""
    import zarr
    from zarr.codecs import BloscCodec

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    shape = (len(params), setup.n_channels, setup.n_samples)
    group.create_array(
        STRAIN,
        shape=shape,
        chunks=(1, *shape[1:]),
        shards=(chunk_size, *shape[1:]),
        dtype="float32",
        compressors=checked(BloscCodec(cname="zstd", clevel=level, shuffle="shuffle")),
        fill_value=0.0,
    )
    with zarr.config.set(WRITE_ALL):
        chunks = (min(len(params), 1 << 20), params.shape[1])
        group.create_array(PARAMS, data=params, chunks=chunks, compressors=default_compressors())
    group.create_array(
        SNR,
        shape=(len(params),),
        chunks=(chunk_size,),
        dtype="float64",
        fill_value=0.0,
        compressors=default_compressors(),
    )
    group.attrs.update(attrs)


def write_strain_chunk(
    path: str, start: int, stop: int, params: np.ndarray, names: list[str], generator: StrainGenerator
) -> int:
    """Generate signals start..stop-1; write their shard and SNR chunk (runs on a Dask worker)."""
    import zarr

    strain, snr = generator.batch(params, names)
    with zarr.config.set({"codec_pipeline.batch_size": max(1, stop - start), "threading.max_workers": 1, **WRITE_ALL}):
        group = zarr.open_group(path, mode="r+")
        group[STRAIN][start:stop] = strain
        group[SNR][start:stop] = snr
    return stop - start


def strain_code_digest() -> str:
    """md5 of the code that determines a dataset's bytes (``gwpe.waveforms``, the store layout, this module
    and the engine), for resume fingerprints."""
    import sys

    import gwpe.waveforms
    from gwpe.data import strain_store

    return code_digest(gwpe.waveforms, strain_store, sys.modules[__name__], sys.modules[run_chunks.__module__])


@dataclass
class StrainResult:
    """One generated dataset: its store, signal count, engine stats, bytes on disk and network optimal SNRs."""

    path: Path
    n_signals: int
    stats: EngineStats
    bytes_on_disk: int
    snr: np.ndarray


def generate_dataset(config: ProjectConfig, name: str, client=None) -> StrainResult:
    """Generate (or resume) one strain dataset."""
    dataset = dataset_config(config, name)
    setup = StrainSetup.build(config.strain, dataset)
    generator = StrainGenerator(setup)
    params = draw_parameters(dataset)
    names = list(dataset.parameters)
    path = store_path(config, name)
    store = config.strain.store
    attrs = store_attributes(config, name, setup, params)
    fingerprint = {**attrs, "store": store.model_dump(exclude={"root"}), "code": strain_code_digest()}
    done = prepare_store(
        path,
        fingerprint,
        lambda p: create_strain_store(p, params, setup, store.chunk_size, store.compression_level, attrs),
    )
    tasks = []
    for k, start in enumerate(range(0, len(params), store.chunk_size)):
        stop = min(start + store.chunk_size, len(params))
        tasks.append((k, write_strain_chunk, (str(path.resolve()), start, stop, params[start:stop], names, generator)))
    if done:
        print(f"resuming {path}: {len(done)} of {len(tasks)} chunks already finished")
    stats = run_chunks(path, tasks, config.strain.compute, done, desc=f"strain {name}", client=client)
    finish_store(path)
    snr = open_store(path)[SNR][:]
    return StrainResult(path, len(params), stats, tree_bytes(path), snr)


def snr_summary(snr: np.ndarray) -> dict[str, float]:
    """``snr_*`` metrics of the network optimal SNRs: min, 5/25/50/75/95 % quantiles, max and mean."""
    quantiles = np.quantile(snr, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "snr_min": float(snr.min()),
        "snr_q05": quantiles[0],
        "snr_q25": quantiles[1],
        "snr_median": quantiles[2],
        "snr_q75": quantiles[3],
        "snr_q95": quantiles[4],
        "snr_max": float(snr.max()),
        "snr_mean": float(snr.mean()),
    }


def snr_histogram(snr: np.ndarray, name: str):
    """Figure: histogram of the network optimal SNRs with the median marked, titled with ``name``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    ax.hist(snr, bins=min(60, max(10, len(snr) // 20)), color="tab:blue", alpha=0.8)
    median = float(np.median(snr))
    ax.axvline(median, color="k", ls="--", lw=1, label=f"median {median:.1f}")
    ax.set_xlabel("network optimal SNR")
    ax.set_ylabel("signals")
    ax.set_title(f"{name}: {len(snr)} signals")
    ax.legend()
    return fig


def estimate_dataset(config: ProjectConfig, name: str, samples: int = 16) -> dict:
    """Per-signal CPU seconds and compressed bytes from a short timing (for --dry-run)."""
    import time

    from numcodecs import Blosc

    dataset = dataset_config(config, name)
    small = dataset.model_copy(update={"n_signals": max(samples, 2)})
    generator = StrainGenerator(StrainSetup.build(config.strain, dataset))
    params = draw_parameters(small)
    generator.batch(params[:1], list(dataset.parameters))
    start = time.process_time()
    strain, _ = generator.batch(params, list(dataset.parameters))
    seconds = (time.process_time() - start) / len(params)
    codec = Blosc(cname="zstd", clevel=config.strain.store.compression_level, shuffle=Blosc.SHUFFLE)
    compressed = sum(len(codec.encode(np.ascontiguousarray(s))) for s in strain) / len(strain)
    return {
        "cpu_seconds_per_signal": seconds,
        "bytes_per_signal": compressed + 8 * (len(dataset.parameters) + 1),
        "raw_bytes_per_signal": strain[0].nbytes,
    }
