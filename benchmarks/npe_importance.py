"""Importance sampling of the trained NPE posterior with the whitened Gaussian likelihood, for one injection.

    .venv/bin/python benchmarks/npe_importance.py [--model models/flows/maf] [--injection 0] [--samples 20000]

Draws from the packaged flow for a validation injection of its dataset (the fixed validation noise the flows
are evaluated on), weights them by prior x likelihood / q, and prints the sample efficiency (ESS / n), the
log-evidence with its standard error and the likelihood evaluations per second (batched, 2 processes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gwpe.config import load_config
from gwpe.data.strain_datamodule import StrainDataModule
from gwpe.inference.evidence import importance_sampling
from gwpe.inference.likelihood import WhitenedGaussianLikelihood
from gwpe.models.flow_module import FlowModule
from gwpe.waveforms.strain import StrainGenerator, StrainSetup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/flows/maf")
    parser.add_argument("--injection", type=int, default=0)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = load_config(args.params)
    dataset = config.strain.datasets[config.flows.dataset]
    module = FlowModule.load_model(args.model)
    data = StrainDataModule(f"{config.strain.store.root}/{config.flows.dataset}.zarr", seed=config.flows.training.seed)
    standardisation = data.standardisation
    strain, theta = data.dataset("validation")[args.injection]
    names = list(standardisation.parameters)
    torch.manual_seed(0)
    with torch.no_grad():
        z = module.sample(strain, args.samples)
        log_q = module.model.log_prob(z, strain.unsqueeze(0).expand(args.samples, *strain.shape)).double()
    physical = standardisation.inverse(z.double())
    log_q = log_q - float(np.log(standardisation.std).sum())  # density of the physical parameters
    generator = StrainGenerator(StrainSetup.build(config.strain, dataset))
    with WhitenedGaussianLikelihood(generator, names, strain.numpy().astype(np.float64), prior=dataset.prior,
                                    workers=args.workers) as likelihood:
        start = time.perf_counter()
        estimate, weights, _ = importance_sampling(lambda x: torch.as_tensor(likelihood.log_posterior(x.numpy())), physical, log_q)
        seconds = time.perf_counter() - start
        evaluations = likelihood.evaluations
    truth = standardisation.inverse(np.asarray(theta, dtype=float))
    print(f"{args.model} on {config.flows.dataset} validation injection {args.injection} (truth {dict(zip(names, [round(float(v), 3) for v in truth]))})")
    print(f"  {args.samples:,} NPE samples: ESS {estimate.effective_samples:,.0f}, sample efficiency {100 * estimate.efficiency:.2f} %")
    print(f"  log Z = {estimate.log_evidence:.3f} +- {estimate.standard_error:.3f}")
    print(f"  {evaluations:,} likelihood evaluations in {seconds:.1f} s ({evaluations / seconds:,.0f}/s, {args.workers} processes)")


if __name__ == "__main__":
    main()
