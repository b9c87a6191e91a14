"""dynesty's evidence in its two mass coordinates, (M_c, m2/m1) and (m1, m2), over seeds, against adaptive IS.

    .venv/bin/python benchmarks/nested_coordinates.py [--seeds 8] [--nlive 150] [--slices N] [--masses ...]
        [--json out.json]

The problem is ``tests/test_outside_sampler.py``'s (256 Hz, m1, m2, d_L free, SNR ~20): cheap enough for many
seeds, so the run-to-run scatter of log Z can be set against the error dynesty states (``logzerr``). A stated error
smaller than the scatter is one a user cannot trust. Prints per coordinate: mean log Z and its difference from
adaptive IS, the scatter over seeds, the mean stated error, and chi^2 / dof of the runs about the IS value with
their stated errors. ``--slices``: rslice's slice updates per new live point (dynesty's default 3 + D); too few
leave a new live point correlated with the one it started from, which biases nested sampling's volume estimate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def problem():
    from gwpe.config import StrainConfig, StrainDatasetConfig
    from gwpe.inference.likelihood import WhitenedGaussianLikelihood
    from gwpe.waveforms.strain import StrainGenerator, StrainSetup, as_theta

    names, truth = ["m1", "m2", "dL"], np.array([60.0, 42.0, 2200.0])
    dataset = StrainDatasetConfig(parameters=["m1", "m2", "phi0", "tc", "dL"], n_signals=2, sample_rate=256.0)
    generator = StrainGenerator(StrainSetup.build(StrainConfig(), dataset))
    signal, _ = generator.whitened(as_theta(names, truth))
    observation = signal + np.random.default_rng(7).standard_normal(signal.shape)
    return WhitenedGaussianLikelihood(generator, names, observation, prior=dataset.prior), dataset.prior, names


def adaptive_is(likelihood, prior, names) -> tuple[float, float]:
    import torch

    from gwpe.inference.evidence import adaptive_importance_sampling
    from gwpe.inference.flowmc import StandardisedFlow
    from gwpe.waveforms.priors import sample_prior

    torch.manual_seed(0)
    flow = StandardisedFlow(len(names), 2, (32, 32))
    start = sample_prior(prior, names, 2000, np.random.default_rng(2))
    flow.fit(torch.as_tensor(start, dtype=torch.float32), 10, restandardise=True)
    estimate, *_ = adaptive_importance_sampling(
        lambda x: torch.as_tensor(likelihood.log_posterior(x.numpy())),
        flow,
        draws_per_round=1000,
        ess_fraction=0.3,
        max_rounds=15,
        epochs=10,
        final_ess=4000,
        final_batch=4000,
        max_final_draws=40_000,
        generator=torch.Generator().manual_seed(3),
    )
    return float(estimate.log_evidence), float(estimate.standard_error)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--nlive", type=int, default=150)
    parser.add_argument("--sample", default="rslice", choices=["rslice", "unif", "rwalk", "slice"])
    parser.add_argument("--slices", type=int, default=None, help="rslice slice updates (default: dynesty's 3 + D)")
    parser.add_argument("--masses", nargs="+", default=None, help="chirp_mass_ratio and/or components (default both)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.seeds < 2 or args.nlive < 20:
        raise SystemExit(f"--seeds {args.seeds}, --nlive {args.nlive}: allowed --seeds >= 2 and --nlive >= 20")
    from tqdm import tqdm

    from gwpe.inference.nested import MASSES, nested_sample

    chosen = args.masses or list(MASSES)
    if not set(chosen) <= set(MASSES) or (args.slices is not None and args.slices < 1):
        raise SystemExit(f"--masses {chosen}, --slices {args.slices}: allowed masses {MASSES}, slices >= 1")

    likelihood, prior, names = problem()
    reference, reference_error = adaptive_is(likelihood, prior, names)
    print(f"adaptive IS log Z {reference:.3f} +- {reference_error:.3f}")
    report = {
        "adaptive_is": {"log_evidence": reference, "standard_error": reference_error},
        "nlive": args.nlive,
        "sample": args.sample,
        "slices": args.slices,
    }
    runs = {masses: [] for masses in chosen}
    for seed in tqdm(range(args.seeds), desc="seeds"):
        for masses in chosen:
            began = time.perf_counter()
            result = nested_sample(
                likelihood,
                prior,
                names,
                nlive=args.nlive,
                seed=seed,
                masses=masses,
                slices=args.slices,
                sample=args.sample,
            )
            runs[masses].append(
                {
                    "seed": seed,
                    "log_evidence": result.log_evidence,
                    "standard_error": result.standard_error,
                    "evaluations": result.evaluations,
                    "seconds": round(time.perf_counter() - began, 1),
                }
            )
    for masses, rows in runs.items():
        z = np.array([r["log_evidence"] for r in rows])
        stated = np.array([r["standard_error"] for r in rows])
        summary = {
            "mean_minus_is": float(z.mean() - reference),
            "error_of_mean": float(z.std(ddof=1) / np.sqrt(len(z))),
            "scatter": float(z.std(ddof=1)),
            "mean_stated_error": float(stated.mean()),
            "chi2_per_dof": float(np.mean(np.square((z - reference) / np.hypot(stated, reference_error)))),
            "mean_evaluations": float(np.mean([r["evaluations"] for r in rows])),
        }
        report[masses] = {"runs": rows, **summary}
        print(
            f"{masses:17s} mean - IS {summary['mean_minus_is']:+.3f} +- {summary['error_of_mean']:.3f}  scatter "
            f"{summary['scatter']:.3f}  stated {summary['mean_stated_error']:.3f}  chi2/dof "
            f"{summary['chi2_per_dof']:.2f}  calls {summary['mean_evaluations']:,.0f}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
