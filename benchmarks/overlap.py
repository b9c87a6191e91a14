"""Batched torch FFT overlaps vs a straightforward per-pair numpy reference, on the same waveforms.

Pairs are (test waveform, waveform of a neighbouring grid point) from IMRPhenomTHM on the default time grid
(or --t-start/--dt). The reference is np.correlate over all integer lags in a Python loop; the batched
path is ``gwpe.evaluation.overlap.overlap`` without refinement (same integer-lag maximum, checked equal)
and with the default sub-sample refinement. Goal: batched >= 20 x reference.

    python benchmarks/overlap.py [--pairs 256] [--t-start -2000] [--dt 1.0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gwpe.evaluation.overlap import overlap, overlap_reference
from gwpe.waveforms.grid import time_grid
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--t-start", type=float, default=-2000.0)
    parser.add_argument("--dt", type=float, default=1.0)
    parser.add_argument("--reference-pairs", type=int, default=32, help="the numpy reference is timed on this many")
    args = parser.parse_args()
    times = time_grid(args.t_start, 130.0, args.dt)
    rng = np.random.default_rng(0)
    backend = IMRPhenomTHMBackend()
    params = np.column_stack([rng.uniform(1, 8, args.pairs), rng.uniform(-0.8, 0.8, (args.pairs, 2))])
    h = np.stack([backend.h22(*p, times) for p in params])
    s = np.stack([backend.h22(p[0] * 1.02, p[1] * 0.95, p[2], times) for p in params])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{args.pairs} pairs x {len(times)} samples, device {device}, {torch.get_num_threads()} torch threads")

    start = time.perf_counter()
    reference = [overlap_reference(a, b) for a, b in zip(h[: args.reference_pairs], s[: args.reference_pairs])]
    ref_rate = args.reference_pairs / (time.perf_counter() - start)

    ht, st = torch.as_tensor(h, device=device), torch.as_tensor(s, device=device)
    results = {}
    for refine in (False, True):
        overlap(ht[:2], st[:2], refine=refine)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        values, _ = overlap(ht, st, refine=refine)
        if device == "cuda":
            torch.cuda.synchronize()
        results[refine] = (args.pairs / (time.perf_counter() - start), values.cpu().numpy())
    np.testing.assert_allclose(results[False][1][: args.reference_pairs], reference, rtol=1e-9)
    print(f"numpy reference (np.correlate per pair): {ref_rate:10.1f} overlaps/s")
    for refine, (rate, values) in results.items():
        print(f"batched torch FFT, refine={str(refine):<5}:      {rate:10.1f} overlaps/s = {rate / ref_rate:7.1f} x reference "
              f"(median O = {np.median(values):.6f})")
    print(f"goal >= 20 x: {'met' if results[True][0] >= 20 * ref_rate else 'NOT met'} (refined)")


if __name__ == "__main__":
    main()
