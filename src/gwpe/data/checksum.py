"""Content checksums that match what DVC records in ``dvc.lock``.

DVC 3 hashes a file by the md5 of its bytes, and a directory by the md5 of the JSON list
``[{"md5": <file md5>, "relpath": <posix path>}, ...]`` sorted by relpath (``json.dumps(sort_keys=True)``),
suffixed with ``.dir``. Logging the same value to MLflow ties a run to the exact data version DVC holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_BLOCK = 1 << 22
# gwpe's bookkeeping inside an output folder while a stage runs (``gwpe.data.engine`` progress markers, the
# ``gwpe.training.locks`` lock file): gone when the stage succeeds, so never part of the hash DVC records
BOOKKEEPING = (".gwpe-progress", ".gwpe.lock")


def _content_files(path: Path):
    return (f for f in path.rglob("*") if f.is_file() and not set(f.relative_to(path).parts) & set(BOOKKEEPING))


def file_md5(path: str | Path) -> str:
    """md5 hex digest of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def dvc_md5(path: str | Path) -> str:
    """md5 of a file, or DVC's ``<md5>.dir`` hash of a directory tree."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    entries = sorted(
        ({"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()} for f in _content_files(path)),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def tree_bytes(path: str | Path) -> int:
    """Size in bytes of a file, or the total over every file under a directory."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in _content_files(path))
