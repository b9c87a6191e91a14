"""h22 generation throughput: raw backend (plain loop) vs the Dask pipeline with 1 and 2 workers.

Prints waveforms/s for each and the ratios pipeline/raw, measured in one run on the same waveforms.
The machine may be shared (VM neighbours), so raw, 1-worker and 2-worker passes are interleaved for
``--rounds`` rounds, every round is printed, and the ratios use the best pass of each configuration.
The raw loop runs in its own fresh process (no Dask threads competing for its GIL).

"Steady" excludes the LocalCluster start-up and the workers' first imports (every worker generates one
waveform before the clock starts, as is amortised on any long run); "end-to-end" includes both.
Goal: steady pipeline >= 0.9 x raw on 1 worker and >= 1.8 x raw on 2.

    python benchmarks/generation.py [--params params.yaml] [--dq 0.5] [--ds 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from gwpe.config import load_config
from gwpe.data.engine import open_client
from gwpe.data.h22 import generate_split, split_time_grid
from gwpe.waveforms import build_backend, split_parameters


def warm_up(backend, params, times) -> None:
    import zarr  # noqa: F401  (the first chunk write would otherwise pay the import)

    backend.h22(*params, times)


def raw_loop(backend, params, times) -> float:
    """Waveforms/s of a plain loop (run in a fresh process with no Dask threads competing for the GIL)."""
    backend.h22(*params[0], times)
    start = time.perf_counter()
    for q, s1, s2 in params:
        backend.h22(q, s1, s2, times)
    return len(params) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dq", type=float, default=0.5, help="grid step in q (default 0.5: 15 values)")
    parser.add_argument("--ds", type=float, default=0.2, help="grid step in spins (default 0.2: 9 values)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    base = load_config(args.params)
    h22 = base.h22.model_copy(update={"grid": base.h22.grid.model_copy(update={"dq": args.dq, "ds": args.ds})})
    if args.chunk_size:
        h22 = h22.model_copy(update={"store": h22.store.model_copy(update={"chunk_size": args.chunk_size})})
    params = split_parameters(h22.grid, "train")
    times = split_time_grid(h22)
    backend = build_backend(h22)
    print(
        f"profile {base.profile}, backend {backend.version()}, {len(params)} waveforms x {len(times)} samples, "
        f"chunk {h22.store.chunk_size}, {os.cpu_count()} CPUs, {args.rounds} rounds"
    )

    raw_process = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    raw_process.submit(warm_up, backend, params[0], times).result()
    rates = {"raw": [], 1: [], 2: []}
    end_to_end = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            rates["raw"].append(raw_process.submit(raw_loop, backend, params, times).result())
            line = [f"round {round_index + 1}: raw {rates['raw'][-1]:6.1f}/s"]
            for workers in (1, 2):
                compute = h22.compute.model_copy(update={"workers": workers, "scheduler_address": None})
                config = base.model_copy(
                    update={
                        "h22": h22.model_copy(
                            update={
                                "compute": compute,
                                "store": h22.store.model_copy(update={"root": f"{tmp}/r{round_index}w{workers}"}),
                            }
                        )
                    }
                )
                wall = time.perf_counter()
                client, cluster = open_client(compute)
                try:
                    client.run(warm_up, backend, params[0], times)
                    startup = time.perf_counter() - wall
                    result = generate_split(config, "train", client=client)
                finally:
                    client.close()
                    cluster.close()
                rates[workers].append(result.stats.items_per_second)
                end_to_end[workers].append(len(params) / (result.stats.seconds + startup))
                line.append(
                    f"{workers} worker{'s' if workers > 1 else ' '} {rates[workers][-1]:6.1f}/s = "
                    f"{rates[workers][-1] / rates['raw'][-1]:.2f} x"
                )
            print("   ".join(line), flush=True)
    raw_process.shutdown()

    # Best of the rounds for each configuration: on a shared VM interference only ever slows a pass down.
    best = {key: max(values) for key, values in rates.items()}
    one, two = best[1] / best["raw"], best[2] / best["raw"]
    print(
        f"best of {args.rounds}: raw {best['raw']:.1f}/s; 1 worker {best[1]:.1f}/s = {one:.2f} x raw "
        f"(goal >= 0.90: {'met' if one >= 0.9 else 'NOT met'}); 2 workers {best[2]:.1f}/s = {two:.2f} x raw "
        f"(goal >= 1.80: {'met' if two >= 1.8 else 'NOT met'})"
    )
    print(
        f"end-to-end incl. cluster start and worker imports (best): 1 worker {max(end_to_end[1]):.1f}/s, "
        f"2 workers {max(end_to_end[2]):.1f}/s"
    )


if __name__ == "__main__":
    main()
