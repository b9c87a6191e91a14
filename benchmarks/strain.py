"""Strain engine throughput, in one run: raw IMRPhenomPv2 calls/s, pipeline signals/s with 1 and 2 Dask
workers, and StrainDataModule samples/s including the train-time noise.

"raw" is lalsimulation's SimInspiralChooseFDWaveform alone in a plain loop (fresh process); a pipeline
signal adds detector projection, whitening, the inverse FFT, compression and the zarr write. Pipeline
figures exclude cluster start-up and worker imports. Passes are interleaved for --rounds rounds and the
best of each is reported (the machine may be a shared VM).

    python benchmarks/strain.py [--dataset strain-5d] [--signals 4000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

from gwpe.config import load_config
from gwpe.data.engine import open_client
from gwpe.data.strain import dataset_config, draw_parameters, generate_dataset
from gwpe.data.strain_datamodule import StrainDataModule
from gwpe.waveforms.strain import StrainGenerator, StrainSetup, as_theta


def raw_calls(generator: StrainGenerator, names: list[str], params) -> float:
    generator.polarisations(as_theta(names, params[0]))
    start = time.perf_counter()
    for row in params:
        generator.polarisations(as_theta(names, row))
    return len(params) / (time.perf_counter() - start)


def warm_up(generator: StrainGenerator, names: list[str], row) -> None:
    import zarr  # noqa: F401  (the first chunk write would otherwise pay the import)

    generator.whitened(as_theta(names, row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dataset", default="strain-5d")
    parser.add_argument("--signals", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    base = load_config(args.params)
    dataset = dataset_config(base, args.dataset).model_copy(update={"n_signals": args.signals})
    generator = StrainGenerator(StrainSetup.build(base.strain, dataset))
    names = list(dataset.parameters)
    params = draw_parameters(dataset)
    print(
        f"{args.dataset}: {args.signals} signals, {generator.setup.n_channels} x {generator.setup.n_samples} samples "
        f"(long segment {generator.setup.n_long}), chunk {base.strain.store.chunk_size}"
    )

    raw_process = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    best = {"raw": 0.0, 1: 0.0, 2: 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            best["raw"] = max(best["raw"], raw_process.submit(raw_calls, generator, names, params).result())
            for workers in (1, 2):
                compute = base.strain.compute.model_copy(update={"workers": workers, "scheduler_address": None})
                strain = base.strain.model_copy(
                    update={
                        "compute": compute,
                        "datasets": {args.dataset: dataset},
                        "store": base.strain.store.model_copy(update={"root": f"{tmp}/r{round_index}w{workers}"}),
                    }
                )
                client, cluster = open_client(compute)
                try:
                    client.run(warm_up, generator, names, params[0])
                    result = generate_dataset(base.model_copy(update={"strain": strain}), args.dataset, client=client)
                finally:
                    client.close()
                    cluster.close()
                best[workers] = max(best[workers], result.stats.items_per_second)
        raw_process.shutdown()
        print(f"raw IMRPhenomPv2 (ChooseFDWaveform, 1 core): {best['raw']:8.1f} calls/s")
        print(f"pipeline, 1 worker:                          {best[1]:8.1f} signals/s")
        print(
            f"pipeline, 2 workers:                         {best[2]:8.1f} signals/s  "
            f"({best[2] / best[1]:.2f} x 1 worker)"
        )
        for in_memory, workers in ((True, 0), (False, 0), (False, 2)):
            module = StrainDataModule(result.path, batch_size=args.batch_size, num_workers=workers, in_memory=in_memory)
            loader = module.train_dataloader()
            next(iter(loader))
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < 4.0:
                for strain_batch, _ in loader:
                    count += len(strain_batch)
            where = "in memory" if in_memory else "streamed from zarr"
            print(
                f"StrainDataModule train (fresh noise, {where}), loader workers={workers}: "
                f"{count / (time.perf_counter() - start):9.1f} samples/s"
            )


if __name__ == "__main__":
    main()
