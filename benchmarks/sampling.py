"""Posterior sampling time for one observation on one CPU core: gwpe's sampler vs zuko's own, same model.

The paper-size models (MAF: 5 MADE units of 3 x 512 with batch norm; CVAE+: Gaussian parts of 1024, IAF and
MAFs of 5 units) conditioned on 1 s of whitened strain at 1024 Hz. gwpe's sampler (``model.sample``)
evaluates the strain's contribution once per observation and each hidden unit once per autoregressive pass
(``gwpe.models.flows.fast_sampling``); the naive path is ``flow(context).sample((n,))``, which redoes the
1024-wide context matmul for every sample in every pass. Both draw from the same seed and are checked equal.
Untrained weights: the cost does not depend on them. Goal (issue 5): MAF 10^4 samples <= 0.5 s (naive ~5.6 s).

    python benchmarks/sampling.py [--sizes 10000 50000] [--repeats 3] [--naive-max 10000]
"""

from __future__ import annotations

import argparse
import time

import torch

from gwpe.models.flows import build_flow_model

MODELS = {
    "MAF (strain-5d)": {"kind": "maf", "features": 5, "context_shape": [1, 1024]},
    "CVAE+ (strain-5d)": {"kind": "cvae_plus", "features": 5, "context_shape": [1, 1024]},
    "CVAE+ (strain-8d)": {
        "kind": "cvae_plus",
        "features": 8,
        "context_shape": [1, 1024],
        "latent": 16,
        "transforms": 10,
        "iaf_context": 16,
        "frozen_prior": True,
    },
}


def best_of(repeats: int, draw) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        torch.manual_seed(1)
        start = time.perf_counter()
        out = draw()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--naive-max", type=int, default=10_000, help="time zuko's sampler only up to this many samples"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 CPU thread; best of {args.repeats}")
    print(f"{'model':<18} {'samples':>8} {'gwpe [s]':>9} {'zuko [s]':>9} {'speed-up':>9}  max |diff|")
    for name, config in MODELS.items():
        torch.manual_seed(0)
        model = build_flow_model(config).eval()
        strain = torch.randn(1, *config["context_shape"])
        for n in args.sizes:
            fast, samples = best_of(args.repeats, lambda model=model, strain=strain, n=n: model.sample(strain, n))
            line = f"{name:<18} {n:>8,} {fast:>9.3f}"
            if n <= args.naive_max and hasattr(model, "sample_naive"):
                naive, reference = best_of(1, lambda model=model, strain=strain, n=n: model.sample_naive(strain, n))
                line += f" {naive:>9.3f} {naive / fast:>8.1f}x  {float((samples - reference).abs().max()):.1e}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
