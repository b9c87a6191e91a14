"""H22DataModule read throughput (samples/s) for the default and the paper time grids, and per DDP rank.

Builds a small store for each grid in a temporary folder (IMRPhenomTHM, in parallel), then times whole
epochs of the training loader (shuffled random access, batch reads) for at least --seconds, with 0 and 2
loader workers. Then, on the default grid, 1 and 2 ranks (processes in a gloo process group, one loader
each, as DDP runs them): each rank's samples/s, the ratio of per-rank throughput with 2 ranks to 1 (the
goal: it does not fall), and a check that the ranks' shards of an epoch are disjoint and cover the split.

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


def rank_throughput(rank: int, world: int, root: str, batch_size: int, seconds: float, port: int, results) -> None:
    import os

    import torch.distributed as dist

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world)
    module = H22DataModule(root, batch_size=batch_size, num_workers=0)
    loader = module.train_dataloader()
    shard = list(iter(loader.sampler))
    dist.barrier()  # every rank starts timing together, as in DDP
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for waveforms, _ in loader:
            count += len(waveforms)
    results.put((rank, count / (time.perf_counter() - start), shard, len(loader.dataset)))
    dist.destroy_process_group()


def per_rank(root: str, batch_size: int, seconds: float) -> None:
    import socket

    import torch.multiprocessing as mp

    rates = {}
    for world in (1, 2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        context = mp.get_context("spawn")
        results = context.Queue()
        processes = [
            context.Process(target=rank_throughput, args=(r, world, root, batch_size, seconds, port, results))
            for r in range(world)
        ]
        for process in processes:
            process.start()
        outcome = sorted(results.get() for _ in processes)
        for process in processes:
            process.join()
        rates[world] = [rate for _, rate, _, _ in outcome]
        shards = [set(shard) for _, _, shard, _ in outcome]
        disjoint = all(not (a & b) for i, a in enumerate(shards) for b in shards[i + 1 :])
        covered = len(set().union(*shards))
        print(
            f"  {world} rank(s): per-rank {', '.join(f'{r:,.0f}' for r in rates[world])} samples/s; shards disjoint: "
            f"{disjoint}, cover {covered} of {outcome[0][3]} waveforms"
        )
    print(f"  per-rank throughput, 2 ranks / 1 rank: {min(rates[2]) / rates[1][0]:.2f} (slowest rank)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--waveforms", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=4.0, help="time whole epochs for at least this long")
    args = parser.parse_args()
    profiles = {"default": load_config("params.yaml"), "paper": load_config("experiments/paper.yaml")}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in profiles.items():
            h22 = config.h22.model_copy(
                update={
                    "backend": "imrphenomthm",
                    "grid": config.h22.grid.model_copy(update=grid_for(args.waveforms)),
                    "store": config.h22.store.model_copy(update={"root": f"{tmp}/{name}", "chunk_size": 64}),
                    "compute": config.h22.compute.model_copy(update={"workers": 2}),
                }
            )
            generated = generate_split(config.model_copy(update={"h22": h22}), "train")
            length = h22.time.length
            print(
                f"{name} time grid: {length} samples/waveform ({length * 8 / 1e3:.0f} kB raw), "
                f"{generated.n_waveforms} waveforms, {generated.bytes_on_disk / 1e6:.1f} MB on disk"
            )
            for workers in (0, 2):
                module = H22DataModule(h22.store.root, batch_size=args.batch_size, num_workers=workers)
                loader = module.train_dataloader()
                next(iter(loader))  # start workers, open stores
                count, start = 0, time.perf_counter()
                while time.perf_counter() - start < args.seconds:
                    for waveforms, _ in loader:
                        count += len(waveforms)
                seconds = time.perf_counter() - start
                print(
                    f"  loader workers={workers}: {count / seconds:9.1f} samples/s  "
                    f"({count / seconds * length * 8 / 1e6:.0f} MB/s decoded)"
                )
            if name == "default":
                print("  DDP ranks (one process each, loader workers=0):")
                per_rank(h22.store.root, args.batch_size, args.seconds)


if __name__ == "__main__":
    main()
