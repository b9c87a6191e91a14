"""``gwpe verify STORE [STORE ...]``: read every chunk of each zarr store once and check it (see
``gwpe.data.integrity``): present, shard index intact, crc32c right. One line per store; exit 0 when all are fine,
else one ``gwpe: error:`` line per bad store naming the array and chunk key, and ``CorruptStoreError``'s exit code."""

from __future__ import annotations

import argparse
import sys


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def main(args: argparse.Namespace) -> int:
    """``gwpe verify``."""
    from gwpe.data.integrity import verify_store
    from gwpe.errors import ConfigError, CorruptStoreError

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads = {args.threads}; allowed: an integer >= 1")
    failed = 0
    for store in args.stores:
        try:
            report = verify_store(store, args.threads, progress=not args.no_progress)
        except CorruptStoreError as exc:
            print(f"gwpe: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"{report.store}: ok, {report.arrays} arrays, {report.files} chunk files, {_size(report.bytes)} "
            f"checked in {report.seconds:.2f} s ({report.gb_per_second:.2f} GB/s)"
        )
        if report.unchecked:
            print(
                f"{report.store}: no checksums in array(s) {', '.join(report.unchecked)} (written before gwpe stored "
                "crc32c per chunk): only presence and shard indices checked; regenerate the store to add them",
                file=sys.stderr,
            )
    return CorruptStoreError.exit_code if failed else 0
