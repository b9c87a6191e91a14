"""h22 generation throughput: raw backend (plain loop) vs the Dask pipeline with 1 and 2 workers.

Prints waveforms/s for each and the ratios pipeline/raw, measured in one run on the same waveforms.
"Steady" excludes the LocalCluster start-up (the cluster is started before the clock, as on a long run);
"end-to-end" includes it. Goal: steady pipeline >= 0.9 x raw on 1 worker and >= 1.8 x raw on 2.

    python benchmarks/generation.py [--params params.yaml] [--dq 1.0] [--ds 0.2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from gwpe.config import load_config
from gwpe.data.engine import open_client
from gwpe.data.h22 import generate_split, split_time_grid
from gwpe.waveforms import build_backend, split_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dq", type=float, default=1.0, help="grid step in q (default 1.0: 8 values)")
    parser.add_argument("--ds", type=float, default=0.2, help="grid step in spins (default 0.2: 9 values)")
    parser.add_argument("--chunk-size", type=int, default=None)
    args = parser.parse_args()

    base = load_config(args.params)
    h22 = base.h22.model_copy(update={"grid": base.h22.grid.model_copy(update={"dq": args.dq, "ds": args.ds})})
    if args.chunk_size:
        h22 = h22.model_copy(update={"store": h22.store.model_copy(update={"chunk_size": args.chunk_size})})
    params = split_parameters(h22.grid, "train")
    times = split_time_grid(h22)
    backend = build_backend(h22)
    print(f"profile {base.profile}, backend {backend.version()}, {len(params)} waveforms x {len(times)} samples, "
          f"chunk {h22.store.chunk_size}, {os.cpu_count()} CPUs")

    backend.h22(*params[0], times)  # warm-up (imports, lal caches)
    start = time.perf_counter()
    for q, s1, s2 in params:
        backend.h22(q, s1, s2, times)
    raw = len(params) / (time.perf_counter() - start)
    print(f"raw backend (plain loop, 1 core):        {raw:8.1f} waveforms/s")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            compute = h22.compute.model_copy(update={"workers": workers, "scheduler_address": None})
            config = base.model_copy(update={"h22": h22.model_copy(update={
                "compute": compute, "store": h22.store.model_copy(update={"root": f"{tmp}/w{workers}"})})})
            wall = time.perf_counter()
            client, cluster = open_client(compute)
            try:
                result = generate_split(config, "train", client=client)
            finally:
                client.close()
                cluster.close()
            end_to_end = len(params) / (time.perf_counter() - wall)
            steady = result.stats.items_per_second
            results[workers] = steady
            print(f"pipeline, {workers} worker{'s' if workers > 1 else ' '} (steady):        {steady:8.1f} waveforms/s  = {steady / raw:.2f} x raw"
                  f"   (end-to-end incl. cluster start: {end_to_end:.1f}/s = {end_to_end / raw:.2f} x)")
    print(f"goals: 1 worker >= 0.90 x raw: {'met' if results[1] >= 0.9 * raw else 'NOT met'}; "
          f"2 workers >= 1.80 x raw: {'met' if results[2] >= 1.8 * raw else 'NOT met'}")


if __name__ == "__main__":
    main()
