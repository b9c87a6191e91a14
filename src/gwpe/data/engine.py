"""Domain-free engine that fills a chunked store in parallel, resumably.

A dataset is ``n_chunks`` independent tasks; task k writes chunk k of the store (disjoint regions, one
shard file each) and then drops an empty marker ``<store>/.gwpe-progress/done/<k>``, atomically. A rerun
after a crash or kill skips chunks with markers and rewrites any half-written one, so the final store is
byte-identical to an uninterrupted run. The progress folder also holds the fingerprint of everything that
determines the bytes; a store with another fingerprint is wiped and regenerated. When all chunks are done
the progress folder is removed.

Tasks run on Dask: a LocalCluster of ``workers`` processes by default, an existing scheduler when
``scheduler_address`` is set, or in-process when ``workers == 0``. Tasks carry absolute store paths: the
workers of an existing cluster run elsewhere (another directory, another node) and must see the store on a
shared file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from gwpe.config import ComputeConfig

PROGRESS_DIR = ".gwpe-progress"

# Dask defaults made waveform generation in a worker slower than a plain loop (measured with
# benchmarks/generation.py on 2 cores): the nanny's MALLOC_TRIM_THRESHOLD_=65536 switches off glibc's
# dynamic mmap threshold, so every large array is an mmap/munmap pair (~10 %); the worker's statistical
# profiler samples every thread's stack every 10 ms under the GIL (~15 %); and the event-loop tick (20 ms),
# system monitor (0.5 s) and memory monitor (0.1 s) of the scheduler, nannies and workers cost another
# ~15 % of throughput when workers fill every core. gwpe's own clusters drop the first two and slow the
# monitors (the dashboard's profile tab stays empty); workers keep the one-thread caps for BLAS/OpenMP.
WORKER_CONFIG = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.tick.limit": "30s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


@dataclass
class EngineStats:
    """Chunk counts (all, skipped as already finished), items generated and wall seconds of one ``run_chunks``."""

    chunks_total: int
    chunks_skipped: int
    items_generated: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items_generated / self.seconds if self.seconds > 0 else float("nan")


def code_digest(*modules) -> str:
    """md5 of the source files of ``modules`` (packages: every .py in them), for resume fingerprints.

    A killed run must never resume with different generating code.
    """
    import hashlib

    files: list[Path] = []
    for module in modules:
        path = Path(module.__file__)
        files += sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    digest = hashlib.md5()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def progress_dir(store: str | Path) -> Path:
    """The store's progress folder ``<store>/.gwpe-progress`` (fingerprint and done markers)."""
    return Path(store) / PROGRESS_DIR


def mark_done(store: str | Path, chunk: int) -> None:
    """Drop chunk ``chunk``'s done marker atomically (touch a temporary name, then rename it)."""
    done = progress_dir(store) / "done"
    tmp = done / f".{chunk}.tmp.{os.getpid()}"
    tmp.touch()
    os.replace(tmp, done / str(chunk))


def finished_chunks(store: str | Path) -> set[int]:
    """Indices of the chunks with done markers (none when there is no progress folder)."""
    done = progress_dir(store) / "done"
    return {int(p.name) for p in done.iterdir() if p.name.isdigit()} if done.is_dir() else set()


def prepare_store(store: str | Path, fingerprint: dict[str, Any], create: Callable[[Path], None]) -> set[int]:
    """Resume a store with the same fingerprint, else (re)create it; returns the finished chunks."""
    store = Path(store)
    marker = progress_dir(store) / "fingerprint.json"
    text = json.dumps(fingerprint, sort_keys=True, indent=1)
    if marker.is_file() and marker.read_text() == text:
        return finished_chunks(store)
    if store.exists():
        shutil.rmtree(store) if store.is_dir() else store.unlink()
    create(store)
    (progress_dir(store) / "done").mkdir(parents=True)
    marker.write_text(text)
    return set()


_DEFERRED: list[list[Path]] = []


@contextlib.contextmanager
def finish_when_done() -> Iterator[None]:
    """Inside this block ``finish_store`` only notes its store; the progress folders are removed when the block
    ends without an error. A stage wraps its last steps (MLflow logging, metrics files) in it: a failure there
    keeps the markers, so a rerun skips every chunk of the complete store instead of regenerating it."""
    pending: list[Path] = []
    _DEFERRED.append(pending)
    try:
        yield
    finally:
        _DEFERRED.pop()  # blocks nest: the innermost is last
    for store in pending:
        shutil.rmtree(progress_dir(store), ignore_errors=True)


def finish_store(store: str | Path) -> None:
    """Remove the progress folder once every chunk is written (at the end of a ``finish_when_done`` block)."""
    if _DEFERRED:
        _DEFERRED[-1].append(Path(store))
        return
    shutil.rmtree(progress_dir(store), ignore_errors=True)


def _run_and_mark(task: Callable[..., int], store: str, chunk: int, args: tuple) -> int:
    count = task(*args)
    mark_done(store, chunk)
    return count


def open_client(compute: ComputeConfig):
    """A Dask client: an existing scheduler, or a LocalCluster of worker processes (caller closes both)."""
    import dask
    from dask.distributed import Client, LocalCluster

    if compute.scheduler_address:
        return Client(compute.scheduler_address), None
    with dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=compute.workers,
            threads_per_worker=compute.threads_per_worker,
            processes=True,
            dashboard_address=":0",  # a dashboard on a free port, never a clash
            silence_logs=40,
        )
    return Client(cluster), cluster


def run_chunks(
    store: str | Path,
    tasks: Sequence[tuple[int, Callable[..., int], tuple]],
    compute: ComputeConfig,
    skip: set[int],
    desc: str = "chunks",
    client=None,
) -> EngineStats:
    """Run ``(chunk, fn, args)`` tasks not in ``skip``; fn(*args) writes the chunk, returns its item count."""
    store = str(Path(store).resolve())  # workers of an existing cluster do not share our working directory
    todo = [(k, fn, args) for k, fn, args in tasks if k not in skip]
    start = time.perf_counter()
    generated = 0
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="chunk", dynamic_ncols=True)
    try:
        if not todo:
            pass
        elif client is None and compute.workers == 0 and not compute.scheduler_address:
            for k, fn, args in todo:
                generated += _run_and_mark(fn, store, k, args)
                bar.update()
        else:
            generated = _run_on_dask(store, todo, compute, bar, client)
    finally:
        bar.close()
    return EngineStats(len(tasks), len(tasks) - len(todo), generated, time.perf_counter() - start)


def _run_on_dask(store: str, todo, compute: ComputeConfig, bar, client=None) -> int:
    from dask.distributed import as_completed

    own = client is None
    cluster = None
    if own:
        client, cluster = open_client(compute)
    futures = [client.submit(_run_and_mark, fn, store, k, args, pure=False) for k, fn, args in todo]
    generated = 0
    try:
        for future in as_completed(futures):
            generated += future.result()  # re-raises the task's own exception (one-line errors survive)
            bar.update()
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    return generated
