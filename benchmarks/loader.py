"""H22DataModule read throughput (samples/s) for the default and the paper time grids.

Builds a small store for each grid in a temporary folder (IMRPhenomTHM, in parallel), then times whole
epochs of the training loader (shuffled random access, batch reads) for at least --seconds, with 0 and 2
loader workers.

    python benchmarks/loader.py [--batch-size 32] [--waveforms 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from gwpe.config import load_config
from gwpe.data.datamodule import H22DataModule
from gwpe.data.h22 import generate_split


def grid_for(n: int) -> dict:
    # 4 q values x k x k spins >= n waveforms
    k = 2
    while 4 * k * k < n:
        k += 1
    return {"q_min": 1.0, "q_max": 7.0, "dq": 2.0, "s_min": -0.8, "s_max": 0.8, "ds": 1.6 / (k - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--waveforms", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0, help="time whole epochs for at least this long")
    args = parser.parse_args()
    profiles = {"default": load_config("params.yaml"), "paper": load_config("experiments/paper.yaml")}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in profiles.items():
            h22 = config.h22.model_copy(update={
                "backend": "imrphenomthm",
                "grid": config.h22.grid.model_copy(update=grid_for(args.waveforms)),
                "store": config.h22.store.model_copy(update={"root": f"{tmp}/{name}", "chunk_size": 64}),
                "compute": config.h22.compute.model_copy(update={"workers": 2}),
            })
            generated = generate_split(config.model_copy(update={"h22": h22}), "train")
            length = h22.time.length
            print(f"{name} time grid: {length} samples/waveform ({length * 8 / 1e3:.0f} kB raw), "
                  f"{generated.n_waveforms} waveforms, {generated.bytes_on_disk / 1e6:.1f} MB on disk")
            for workers in (0, 2):
                module = H22DataModule(h22.store.root, batch_size=args.batch_size, num_workers=workers)
                loader = module.train_dataloader()
                next(iter(loader))  # start workers, open stores
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds:
                    for waveforms, _ in loader:
                        count += len(waveforms)
                seconds = time.perf_counter() - start
                print(f"  loader workers={workers}: {count / seconds:9.1f} samples/s  ({count / seconds * length * 8 / 1e6:.0f} MB/s decoded)")


if __name__ == "__main__":
    main()
