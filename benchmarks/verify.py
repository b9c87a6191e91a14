"""How fast does ``gwpe verify`` check a store? GB/s over every chunk file (presence, shard index, crc32c).

Without a STORE, writes one with the project's own generator (``gwpe.data.strain.generate_dataset``): the tiny
profile's two-detector set at --signals signals of --duration s at 1024 Hz (default 8192 x 2 x 4096 float32, about
210 MB compressed, ~30 s to generate on 2 cores) into a temporary folder. Times ``gwpe verify`` in this process
(``gwpe.stages.verify``'s ``verify_store``) --repeat times, warm (files in the page cache: the CPU cost of the
checks) and cold (each file dropped from the page cache first with posix_fadvise, which only affects these files:
the disk's speed), and prints the best of each.

    python benchmarks/verify.py [STORE ...] [--signals 8192] [--duration 4] [--threads N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def make_store(root: Path, signals: int, duration: float) -> Path:
    """The tiny profile's strain-hl set at ``signals`` x ``duration`` s, shards of 256 signals, in-process."""
    from conftest import tiny_profile

    from gwpe.config import parse_config
    from gwpe.data.strain import generate_dataset

    profile = tiny_profile()
    profile["strain"]["store"] = {"root": str(root), "chunk_size": 256, "compression_level": 5}
    profile["strain"]["datasets"]["strain-hl"].update(n_signals=signals, duration=duration)
    start = time.perf_counter()
    result = generate_dataset(parse_config(profile), "strain-hl")
    print(f"generated {result.path}: {result.bytes_on_disk / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s")
    return result.path


def drop_from_page_cache(store: Path) -> None:
    """fsync, then posix_fadvise(DONTNEED), every file of ``store`` (these files' pages only)."""
    for path in store.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)  # just-written pages are dirty and stay cached until written back
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="*", metavar="STORE", help="zarr stores to verify (default: generate one)")
    parser.add_argument("--signals", type=int, default=8192, help="signals in the generated store (default 8192)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per generated signal (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="files read at once (default: gwpe verify's)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per mode; the best is printed (default 3)")
    args = parser.parse_args()

    from gwpe.data.integrity import verify_store

    with tempfile.TemporaryDirectory(prefix="gwpe-verify-") as tmp:
        stores = [Path(s) for s in args.stores] or [make_store(Path(tmp), args.signals, args.duration)]
        for store in stores:
            for mode in ("warm", "cold"):
                best = None
                for _ in range(args.repeat):
                    if mode == "cold":
                        drop_from_page_cache(store)
                    report = verify_store(store, args.threads)
                    best = report if best is None or report.seconds < best.seconds else best
                print(
                    f"{store} ({mode} page cache, {os.cpu_count()} CPUs): {best.files} chunk files, "
                    f"{best.bytes / 1e6:.1f} MB in {best.seconds:.3f} s = {best.gb_per_second:.2f} GB/s"
                )


if __name__ == "__main__":
    main()
