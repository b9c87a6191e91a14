"""Posterior sampling time for one observation on one CPU core: gwpe's sampler vs zuko's own, same model.

The paper-size models (MAF: 5 MADE units of 3 x 512 with batch norm; CVAE+: Gaussian parts of 1024, IAF and
MAFs of 5 units) conditioned on 1 s of whitened strain at 1024 Hz. gwpe's sampler (``model.sample``)
evaluates the strain's contribution once per observation and each hidden unit once per autoregressive pass
(``gwpe.models.flows.fast_sampling``); the naive path is ``flow(context).sample((n,))``, which redoes the
1024-wide context matmul for every sample in every pass. Both draw from the same seed and are checked equal.
Untrained weights: the cost does not depend on them. Goal (issue 5): MAF 10^4 samples <= 0.5 s (naive ~5.6 s).

"bounded" is the same model, same weights, wrapped on the prior's support (``gwpe.models.flows.support``: the
float64 logit / chirp-mass-triangle map of every draw, what trained models do since issue 21); its column is
the ratio of its time to the unbounded draw's, measured in the same run (goal: <= 1.10 for 10^4 samples).

    python benchmarks/sampling.py [--sizes 10000 50000] [--repeats 3] [--naive-max 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from gwpe.config import StrainPriorConfig
from gwpe.models.flows import build_flow_model
from gwpe.models.flows.support import ParameterSupport, SupportedPosterior
from gwpe.waveforms.priors import sample_prior, support_pieces

PARAMETERS = {5: ["m1", "m2", "phi0", "tc", "dL"], 8: ["m1", "m2", "phi0", "tc", "dL", "chi1z", "chi2z", "theta_jn"]}


def on_support(model, features: int) -> SupportedPosterior:
    """``model`` (its own weights) wrapped on the strain prior's support, standardised as a store would be."""
    names, prior = PARAMETERS[features], StrainPriorConfig()
    theta = sample_prior(prior, names, 20_000, np.random.default_rng(0))
    support = {
        "parameters": names,
        "mean": theta.mean(0).tolist(),
        "std": theta.std(0).tolist(),
        "pieces": support_pieces(prior, names),
    }
    return SupportedPosterior(model, ParameterSupport(support)).eval()


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
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 CPU thread; best of {args.repeats}")
    print(
        f"{'model':<18} {'samples':>8} {'gwpe [s]':>9} {'bounded':>9} {'ratio':>6} {'zuko [s]':>9} {'speed-up':>9}"
        "  max |diff|"
    )
    rows = []
    for name, config in MODELS.items():
        torch.manual_seed(0)
        model = build_flow_model(config).eval()
        bounded = on_support(model, config["features"])
        strain = torch.randn(1, *config["context_shape"])
        for n in args.sizes:
            # interleaved, so drifts of the machine's speed hit both alike
            fast, samples = best_of(args.repeats, lambda model=model, strain=strain, n=n: model.sample(strain, n))
            support, _ = best_of(args.repeats, lambda model=bounded, strain=strain, n=n: model.sample(strain, n))
            fast = min(fast, best_of(args.repeats, lambda model=model, strain=strain, n=n: model.sample(strain, n))[0])
            row = {"model": name, "samples": n, "seconds": fast, "bounded_seconds": support, "ratio": support / fast}
            line = f"{name:<18} {n:>8,} {fast:>9.3f} {support:>9.3f} {support / fast:>6.3f}"
            if n <= args.naive_max and hasattr(model, "sample_naive"):
                naive, reference = best_of(1, lambda model=model, strain=strain, n=n: model.sample_naive(strain, n))
                line += f" {naive:>9.3f} {naive / fast:>8.1f}x  {float((samples - reference).abs().max()):.1e}"
                row["naive_seconds"] = naive
            rows.append(row)
            print(line, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            summary = {"torch": torch.__version__, "threads": 1, "repeats": args.repeats, "rows": rows}
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
