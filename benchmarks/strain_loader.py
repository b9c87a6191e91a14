"""Is the strain loader ever the bottleneck of ``gwpe train flow``? Loader time per batch against step time.

For one profile's flow dataset (its store must exist: ``gwpe generate strain``), times
- the training loader as ``gwpe train flow`` builds it (``StrainDataModule``: shuffled, fresh noise per batch,
  ``flows.training.num_workers`` workers) over --batches batches: ms per batch and signals/s;
- one optimisation step (loss, backward, the module's optimiser) of every arm of ``flows.models`` (or --models)
  on batches from that loader, the arm built as ``gwpe train flow`` builds it (support, phase symmetry, GNPE,
  SVD embedding seeded): ms per step;
and prints the loader's share of an epoch, loader / (loader + step), per arm (same run, same threads).

    python benchmarks/strain_loader.py --params experiments/npe-quality.yaml [--batches 40] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def loader_batches(data, batches: int) -> tuple[list, float]:
    """The first ``batches`` training batches and the median seconds each took to produce."""
    loader = data.train_dataloader()
    out, times = [], []
    iterator = iter(loader)
    start = time.perf_counter()
    for _ in range(batches):
        out.append(next(iterator))
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return out, statistics.median(times[1:])  # the first batch includes worker start and the shuffle


def step_seconds(module, batches: list) -> float:
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    times = []
    for strain, theta in batches:
        start = time.perf_counter()
        optimizer.zero_grad()
        module.model.loss(theta, strain, epoch=0).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])  # the first steps warm up


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("experiments/npe-quality.yaml"))
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from gwpe.config import load_config
    from gwpe.training.flow import flow_job

    config = load_config(args.params)
    models = args.models or list(config.flows.models)
    batch = config.flows.training.batch_size
    first = flow_job(config, models[0])
    first.data.setup("fit")
    batches, loader_s = loader_batches(first.data, args.batches)
    result = {
        "params": str(args.params),
        "batch_size": batch,
        "num_workers": config.flows.training.num_workers,
        "loader_ms_per_batch": round(1e3 * loader_s, 2),
        "loader_signals_per_s": round(batch / loader_s),
        "arms": {},
    }
    print(f"loader: {1e3 * loader_s:.1f} ms per batch of {batch} ({batch / loader_s:,.0f} signals/s)")
    for name in models:
        module = flow_job(config, name).make_module(None)
        step = step_seconds(module, batches)
        share = loader_s / (loader_s + step)
        result["arms"][name] = {"step_ms": round(1e3 * step, 1), "loader_share": round(share, 4)}
        print(f"{name}: step {1e3 * step:.1f} ms; loader share of an epoch {share:.1%}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
