"""How far a GNPE package's Gibbs chains are from an injection's true t_c after k sweeps (``gwpe.models.flows.gnpe``).

A GNPE posterior is drawn by Gibbs chains started from the init network q_0(t_c | x); a chain moves about one
kernel width (delta) per sweep, so chains started far out need many sweeps. For one validation injection of a
profile's flow store this prints the init network's t_c offsets from the truth (quantiles, ms) and, after each
number of sweeps, the offsets' quantiles, the fraction of chains more than --far ms from the truth and their
median m1 against the rest's. Same chains (seeded) for every sweep count.

    python benchmarks/gnpe_chains.py --params experiments/npe-quality.yaml --model maf_svd_gnpe_fold_nobn \
        --injection 18 [--chains 2000] [--sweeps 1 5 20 60] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

QUANTILES = [1, 5, 25, 50, 75, 95, 99]


def chain_offsets(params: Path, model: str, injection: int, chains: int, sweeps: list[int], far_ms: float) -> dict:
    import torch

    from gwpe.config import load_config
    from gwpe.inference.sampling import load_event
    from gwpe.models.flow_module import FlowModule

    config = load_config(params)
    gnpe = FlowModule.load_model(Path(config.flows.model_dir) / model).eval().model
    if getattr(gnpe, "tractable", True):
        raise SystemExit(f"--model {model} is not a GNPE package; allowed: a flows.models entry with a gnpe section")
    event = load_event(config, injection)
    names = list(event.names)
    tc_column, m1_column = names.index("tc"), names.index("m1")
    truth_tc = float(event.truth[tc_column])
    strain = event.strain.reshape(event.strain.shape[-2:])
    torch.manual_seed(0)
    with torch.no_grad():
        init = gnpe.init.sample(strain.unsqueeze(0), chains).reshape(-1).double() * gnpe.std + gnpe.mean
    out = {
        "model": model,
        "injection": injection,
        "truth": dict(zip(names, event.truth.tolist())),
        "kernel_ms": 1e3 * gnpe.kernel,
        "init_offset_ms": dict(zip(map(str, QUANTILES), np.percentile(1e3 * (init.numpy() - truth_tc), QUANTILES))),
        "sweeps": {},
    }
    for k in sweeps:
        torch.manual_seed(0)
        start = time.perf_counter()
        z, _ = gnpe.gibbs(strain, chains, k)
        theta = event.standardisation.inverse(z.numpy())
        offset = 1e3 * (theta[:, tc_column] - truth_tc)
        far = np.abs(offset) > far_ms
        out["sweeps"][k] = {
            "offset_ms": dict(zip(map(str, QUANTILES), np.percentile(offset, QUANTILES))),
            "far_fraction": float(far.mean()),
            "m1_median_far": float(np.median(theta[far, m1_column])) if far.any() else None,
            "m1_median_rest": float(np.median(theta[~far, m1_column])),
            "seconds": round(time.perf_counter() - start, 2),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("experiments/npe-quality.yaml"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--injection", type=int, default=0)
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--sweeps", type=int, nargs="+", default=[1, 5, 20, 60])
    parser.add_argument("--far", type=float, default=3.0, help="ms from the true t_c that counts as far")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out = chain_offsets(args.params, args.model, args.injection, args.chains, args.sweeps, args.far)
    init = out["init_offset_ms"]
    print(f"{args.model}, injection {args.injection}, kernel {out['kernel_ms']:.1f} ms, {args.chains} chains")
    print("init network t_c - truth (ms), quantiles " + ", ".join(f"{q}%: {v:.2f}" for q, v in init.items()))
    for k, row in out["sweeps"].items():
        far_m1 = "-" if row["m1_median_far"] is None else f"{row['m1_median_far']:.1f}"
        print(
            f"{k:4d} sweeps: median offset {row['offset_ms']['50']:.2f} ms, 1%: {row['offset_ms']['1']:.2f} ms, "
            f"{row['far_fraction']:.1%} of chains > {args.far:g} ms off (m1 median {far_m1} vs "
            f"{row['m1_median_rest']:.1f}), {row['seconds']} s"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
