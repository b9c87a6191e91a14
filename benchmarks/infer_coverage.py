"""Calibration of `gwpe infer` on a registered strain-5d flow: injections written to files, 90 % intervals.

    .venv/bin/python benchmarks/infer_coverage.py [--model gwpe-npe-maf@champion] [--injections 40] [--samples 5000]

Draws injections from the dataset's prior (params.yaml, strain-5d), writes each as whitened strain plus one
N(0, 1) noise realisation to an HDF5 file, runs `gwpe infer` on it through the CLI and reports, per
parameter, the fraction of injections whose true value lies inside the central 90 % interval (ideal: 0.90).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from gwpe.config import load_config
from gwpe.inference.strain_files import write_strain
from gwpe.waveforms.strain import FIXED, StrainGenerator, StrainSetup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gwpe-npe-maf@champion")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--injections", type=int, default=40)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    config = load_config(args.params)
    dataset = config.strain.datasets["strain-5d"]
    generator = StrainGenerator(StrainSetup.build(config.strain, dataset))
    prior, rng = dataset.prior, np.random.default_rng(args.seed)
    gwpe = str(Path(sys.executable).with_name("gwpe"))
    inside, names = [], None
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.injections):
            m1, m2 = sorted(rng.uniform(prior.mass_min, prior.mass_max, 2), reverse=True)
            d = (rng.uniform(prior.distance_min**3, prior.distance_max**3)) ** (1 / 3)  # volumetric, as the dataset
            theta = {
                **FIXED,
                "m1": m1,
                "m2": m2,
                "phi0": rng.uniform(0, 2 * np.pi),
                "tc": rng.uniform(prior.tc_min, prior.tc_max),
                "dL": d,
            }
            signal, _ = generator.whitened(theta)
            path = write_strain(
                Path(folder) / f"injection-{k}.h5", signal + rng.standard_normal(signal.shape), dataset.sample_rate
            )
            out = Path(folder) / f"posterior-{k}.h5"
            subprocess.run(
                [
                    gwpe,
                    "infer",
                    "--model",
                    args.model,
                    "--strain",
                    str(path),
                    "--n-samples",
                    str(args.samples),
                    "--out",
                    str(out),
                    "--no-plot",
                    "--no-progress",
                    "--seed",
                    str(k),
                ],
                check=True,
                capture_output=True,
            )
            with h5py.File(out) as f:
                samples, names = f["samples"][()], list(f["samples"].attrs["parameters"])
            low, high = np.quantile(samples, [0.05, 0.95], axis=0)
            truth = np.array([theta[p] for p in names])
            inside.append((truth >= low) & (truth <= high))
    inside = np.array(inside)
    print(f"{args.model}: {args.injections} injections x {args.samples} samples, central 90 % intervals")
    for j, name in enumerate(names):
        print(f"  {name:<6} {inside[:, j].mean():.2f}")
    print(
        f"  all    {inside.mean():.2f}  (ideal 0.90; +-{1.64 * np.sqrt(0.09 / inside.size):.2f} at 90 % for this many)"
    )


if __name__ == "__main__":
    main()
