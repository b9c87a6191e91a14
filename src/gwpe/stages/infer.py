"""``gwpe infer``: posterior samples (flows) or (q, s1z, s2z) (WaveNet) from strain files, with a registered model."""

from __future__ import annotations

import argparse


def main(args: argparse.Namespace) -> int:
    """``gwpe infer`` (``gwpe.inference.infer.run_infer`` is the Python API; its data-quality gate,
    ``gwpe.inference.input_gate``, prints its table on stderr and refuses with an ``InputError``: one line, exit 2)."""
    from gwpe.inference.infer import format_result, run_infer

    detectors = args.detectors.split(",") if args.detectors else None
    result = run_infer(
        args.model,
        args.strain,
        args.n_samples,
        args.out,
        sample_rate=args.sample_rate,
        detectors=detectors,
        start=args.start,
        whiten_raw=args.whiten,
        plot=not args.no_plot,
        progress=not args.no_progress,
        seed=args.seed,
        force=args.force,
        overwrite=args.overwrite,
    )
    print(format_result(result))
    return 0
