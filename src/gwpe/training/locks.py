"""One writer per output folder: ``<folder>/.gwpe.lock``, held with ``flock`` for as long as a stage writes there.

A second gwpe process that wants the same folder fails at once with one line naming the folder and the holder
(pid and host, written into the lock file). The kernel releases an ``flock`` when its process dies, so a killed
run never leaves a stale lock behind. The file is removed on release (a finished folder holds only its
outputs, so DVC's hash of it does not change); a process that opened the file just before it was removed sees
that it no longer names the locked file and tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from gwpe.errors import LockedError

LOCK_FILE = ".gwpe.lock"


def holder() -> str:
    """How this process names itself in a lock file: ``pid <pid> on <host>``."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _read_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    return "another process"


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``<folder>/.gwpe.lock`` (creating ``folder``); ``LockedError`` when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(
                f"{folder} is being written by {_read_holder(path)} (lock {path}); wait for it to finish, "
                "or write to another folder"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our flock: try again
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (holder() + "\n").encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


@contextlib.contextmanager
def folders_locked(*folders: str | Path | None) -> Iterator[None]:
    """Hold the locks of every folder in ``folders`` (None and repeats skipped), in order."""
    with contextlib.ExitStack() as stack:
        seen: set[Path] = set()
        for folder in folders:
            if folder is not None and Path(folder).resolve() not in seen:
                seen.add(Path(folder).resolve())
                stack.enter_context(folder_lock(folder))
        yield
