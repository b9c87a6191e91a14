"""Files that appear whole or not at all: write to a temporary name in the same folder, fsync, then rename.

``os.replace`` within one folder (one filesystem) is atomic: a reader sees the old file or the new one, never
a truncated one, and a write that fails (a full disk, a quota, a killed process) leaves the previous file as it
was. The temporary names (``.<name>.tmp-<pid>``) are removed when a write fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: str | Path) -> Path:
    """``<folder>/.<name>.tmp-<pid>``: beside ``path`` (same filesystem), hidden, one per process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replaced_together(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path for each of ``paths``; once the body has written them all, each is synced and
    renamed over its target. If the body or a sync fails, no target is touched and the temporaries are
    removed. ``OSError``\\ s name the target that failed (``filename``)."""
    targets = [Path(p) for p in paths]
    temporaries = [temporary_name(p) for p in targets]
    try:
        yield temporaries
        for temporary, target in zip(temporaries, targets):
            try:
                _fsync(temporary)
            except OSError as error:
                raise OSError(error.errno, error.strerror, str(target)) from error
        for temporary, target in zip(temporaries, targets):
            os.replace(temporary, target)
        for folder in dict.fromkeys(t.parent for t in targets):
            with contextlib.suppress(OSError):  # not every filesystem syncs folders
                _fsync(folder)
    finally:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                temporary.unlink()


def write_bytes_atomically(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` through a temporary name (``replaced_together``)."""
    path = Path(path)
    with replaced_together(path) as (temporary,):
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from error
