"""Batched torch FFT overlaps vs a straightforward per-pair numpy reference, on the same waveforms.

Pairs are (waveform, waveform of a nearby binary) from IMRPhenomTHM. The reference is np.correlate over
all integer lags in a Python loop; the batched path is ``gwpe.evaluation.overlap.overlap`` (single-precision
FFT search, exact double-precision peak, sub-sample refinement), checked equal to the reference on the
integer-lag maximum. Rates are best-of ``--repeats`` over batches of ``--batch`` pairs, reference and
batched interleaved in one run. Goal: batched >= 20 x reference.

    python benchmarks/overlap.py [--pairs 512] [--lengths default paper]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gwpe.evaluation.overlap import overlap, overlap_reference
from gwpe.waveforms.grid import time_grid
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend

SPANS = {"default": (-2000.0, 1.0), "paper": (-10000.0, 0.1)}  # (t_start / M, dt / M), t_end = 130 M


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench(span: str, pairs: int, batch: int, reference_pairs: int, repeats: int, device: str) -> None:
    t_start, dt = SPANS[span]
    times = time_grid(t_start, 130.0, dt)
    rng = np.random.default_rng(0)
    backend = IMRPhenomTHMBackend()
    params = np.column_stack([rng.uniform(1, 8, pairs), rng.uniform(-0.8, 0.8, (pairs, 2))])
    h = np.stack([backend.h22(*p, times) for p in params])
    s = np.stack([backend.h22(p[0] * 1.02, p[1] * 0.95, p[2], times) for p in params])
    ht, st = torch.as_tensor(h, device=device), torch.as_tensor(s, device=device)
    overlap(ht[:batch], st[:batch])  # warm-up (FFT plans, allocator)
    ref_best, fast_best, values = 0.0, 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        reference = [overlap_reference(a, b) for a, b in zip(h[:reference_pairs], s[:reference_pairs])]
        ref_best = max(ref_best, reference_pairs / (time.perf_counter() - start))
        _synchronize(device)
        start = time.perf_counter()
        values = torch.cat([overlap(ht[i : i + batch], st[i : i + batch])[0] for i in range(0, pairs, batch)])
        _synchronize(device)
        fast_best = max(fast_best, pairs / (time.perf_counter() - start))
    integer, _ = overlap(ht[:reference_pairs], st[:reference_pairs], refine=False)
    np.testing.assert_allclose(integer.cpu().numpy(), reference, rtol=1e-9)
    ratio = fast_best / ref_best
    print(
        f"{span:>7}: {pairs} pairs x {len(times)} samples | numpy reference {ref_best:9.1f} overlaps/s | "
        f"batched {fast_best:9.1f} overlaps/s | {ratio:6.1f} x (goal >= 20 x: {'met' if ratio >= 20 else 'NOT met'}) "
        f"| median O {np.median(values.cpu().numpy()):.6f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reference-pairs", type=int, default=32, help="the numpy reference is timed on this many")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--lengths", nargs="+", choices=sorted(SPANS), default=["default", "paper"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, {torch.get_num_threads()} torch threads")
    for span in args.lengths:
        paper = span == "paper"
        bench(
            span,
            args.pairs // 8 if paper else args.pairs,
            args.batch // 8 if paper else args.batch,
            max(2, args.reference_pairs // 8) if paper else args.reference_pairs,
            args.repeats,
            device,
        )


if __name__ == "__main__":
    main()
