"""The pipeline's own posteriors against an outside sampler (issue 26): dynesty on the same likelihood and prior.

    .venv/bin/python benchmarks/outside_sampler.py --injection 0 [--params params.yaml] [--sampling-dir DIR]
        [--reference FILE] [--nlive 1000] [--seed 0] [--save-draws dyn.npz | --draws dyn.npz] [--json out.json]

``benchmarks/sampler.py`` reruns every gwpe sampler beside dynesty; this script instead reads what ``dvc repro``
(or ``gwpe sample`` + ``gwpe evidence`` on another ``sampling.injection``) wrote, so the posteriors compared are
the ones the metrics and docs quote:

- ``<sampling-dir>/<dataset>.h5``: the flow-MCMC (and emcee) chains, their bulk ESS from the file's diagnostics;
- ``<sampling-dir>/<dataset>-evidence.h5``: adaptive IS's weighted draws and the evidence estimates;
- the reference posteriors (``flows.reference.path``), group ``injection_<N>``: ``gwpe reference``'s weighted draws.

Each file is used only if it holds the requested injection. dynesty (``gwpe.inference.nested``: nlive live points,
rslice, bound multi, dlogz 0.1, phi0 periodic) runs on ``load_event``'s likelihood, one call at a time, or its draws
are read back (``--draws``). Compared per parameter and for chirp mass: max 1-D JS (``marginal_divergences``; weighted
sets with their weights), standard deviation over dynesty's with a bootstrap error (chains redrawn at their bulk ESS,
weighted sets at their Kish ESS; both sides), and log Z with each side's stated error. phi0 is compared mod pi:
the (2,2)-mode likelihood is invariant under phi0 -> phi0 + pi, so each posterior holds two copies whose split
is arbitrary; the sd over [0, 2 pi) would measure that split, not the width.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def with_chirp_mass(names: list[str], draws: np.ndarray) -> np.ndarray:
    from gwpe.physics import chirp_mass

    draws = np.array(draws, dtype=float)
    if "phi0" in names:
        draws[:, names.index("phi0")] = np.mod(draws[:, names.index("phi0")], np.pi)
    return np.column_stack([draws, chirp_mass(draws[:, names.index("m1")], draws[:, names.index("m2")])])


def pipeline_posteriors(sampling_dir: Path, reference: Path, dataset: str, injection: int) -> tuple[dict, dict]:
    """({label: (draws, weights or None, effective size or None)}, {label: (log Z, error)}) from the files."""
    import h5py

    sets, evidences = {}, {}
    chains = sampling_dir / f"{dataset}.h5"
    if chains.is_file():
        with h5py.File(chains, "r") as f:
            if int(f.attrs["injection"]) == injection:
                for label, group in f.items():
                    if isinstance(group, h5py.Group) and "samples" in group:
                        ess = json.loads(group.attrs["diagnostics"]).get("min_ess_bulk")
                        ess = float(ess) if isinstance(ess, (int, float)) and np.isfinite(ess) and ess >= 2 else None
                        sets[label] = (group["samples"][:], None, ess)
    evidence = sampling_dir / f"{dataset}-evidence.h5"
    if evidence.is_file():
        with h5py.File(evidence, "r") as f:
            if int(f.attrs["injection"]) == injection:
                group = f["ais_npe"]
                sets["ais_npe"] = (group["proposal_samples"][:], group["weights"][:], None)
                estimate = json.loads(group.attrs["estimate"])
                evidences["ais_npe"] = (estimate["log_evidence"], estimate["standard_error"])
                lhm = json.loads(f.attrs["lhm"])
                evidences["lhm"] = (lhm["log_evidence"], lhm["standard_error"])
    if reference.is_file():
        with h5py.File(reference, "r") as f:
            if f"injection_{injection}" in f:
                group = f[f"injection_{injection}"]
                if "weights" in group:
                    sets["reference"] = (group["draws"][:], group["weights"][:], None)
                else:
                    sets["reference"] = (group["samples"][:], None, None)
                diagnostics = json.loads(group.attrs["diagnostics"])
                if "log_evidence" in diagnostics:
                    evidences["reference"] = (diagnostics["log_evidence"], diagnostics.get("log_evidence_error"))
    return sets, evidences


def compare(names: list[str], sets: dict, evidences: dict, outside: dict) -> dict:
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.nested import std_ratios

    columns = [*names, "chirp_mass"]
    reference = with_chirp_mass(names, outside["samples"])
    equal = with_chirp_mass(names, outside["equal"])
    rows = {}
    for label, (draws, weights, effective) in sets.items():
        draws = with_chirp_mass(names, draws)
        js = marginal_divergences(draws, equal, weights_a=weights)[1]
        ratio, error = std_ratios(draws, reference, weights, outside["weights"], effective_a=effective)
        rows[label] = {
            "max_js": float(js.max()),
            "js": dict(zip(columns, js.round(5).tolist())),
            "sd_ratio": dict(zip(columns, ratio.round(4).tolist())),
            "sd_ratio_error": dict(zip(columns, error.round(4).tolist())),
            "max_sd_deviation": float(np.max(np.abs(ratio - 1))),
            "within_3_percent": bool(np.all(np.abs(ratio - 1) <= 0.03)),
            "within_2_sigma": bool(np.all(np.abs(ratio - 1) <= 2 * error)),
        }
    log_z = {label: {"log_evidence": z, "standard_error": e} for label, (z, e) in evidences.items()}
    log_z["dynesty"] = {"log_evidence": outside["log_evidence"], "standard_error": outside["standard_error"]}
    for label, (z, e) in evidences.items():
        combined = float(np.hypot(e or 0.0, outside["standard_error"]))
        log_z[label]["minus_dynesty_in_errors"] = float((z - outside["log_evidence"]) / combined)
    return {"posteriors": rows, "log_z": log_z}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--injection", type=int, required=True)
    parser.add_argument("--sampling-dir", type=Path, default=None, help="default: sampling.path")
    parser.add_argument("--reference", type=Path, default=None, help="default: flows.reference.path/<dataset>.h5")
    parser.add_argument("--nlive", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=Path, default=None, help="dynesty draws saved by --save-draws: no rerun")
    parser.add_argument("--save-draws", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from gwpe.config import load_config
    from gwpe.inference.sampling import load_event

    config = load_config(args.params)
    dataset = config.flows.dataset
    sampling_dir = args.sampling_dir or Path(config.sampling.path)
    reference = args.reference or Path(config.flows.reference.path) / f"{dataset}.h5"
    event = load_event(config, args.injection)
    names = list(event.names)
    sets, evidences = pipeline_posteriors(sampling_dir, reference, dataset, args.injection)
    if not sets:
        raise SystemExit(
            f"no posterior for injection {args.injection} in {sampling_dir} or {reference}; allowed: an injection "
            "that `gwpe sample` / `gwpe evidence` (sampling.injection) or `gwpe reference` ran on"
        )
    if args.draws is not None:
        saved = np.load(args.draws)
        outside = {key: saved[key] for key in ("samples", "weights", "equal")}
        outside.update({key: float(saved[key]) for key in ("log_evidence", "standard_error", "evaluations", "seconds")})
    else:
        from gwpe.inference.nested import nested_sample

        began = time.perf_counter()
        with event.likelihood(0) as likelihood:  # dynesty asks for one point at a time
            result = nested_sample(likelihood, event.dataset.prior, names, nlive=args.nlive, seed=args.seed)
        outside = {
            "samples": result.samples,
            "weights": result.weights,
            "equal": result.equal_samples,
            "log_evidence": result.log_evidence,
            "standard_error": result.standard_error,
            "evaluations": float(result.evaluations),
            "seconds": time.perf_counter() - began,
        }
        if args.save_draws is not None:
            np.savez(args.save_draws, **outside)
    report = {
        "dataset": dataset,
        "injection": args.injection,
        "parameters": names,
        "dynesty": {
            "nlive": args.nlive,
            "sample": "rslice",
            "seed": args.seed,
            "evaluations": int(outside["evaluations"]),
            "seconds": round(float(outside["seconds"]), 1),
        },
        **compare(names, sets, evidences, outside),
    }
    print(f"{dataset} injection {args.injection} against dynesty (nlive {args.nlive}, seed {args.seed}):")
    columns = [*names, "chirp_mass"]
    for label, row in report["posteriors"].items():
        cells = " ".join(f"{c} {row['sd_ratio'][c]:.3f}+-{row['sd_ratio_error'][c]:.3f}" for c in columns)
        print(f"  {label:12s} max JS {row['max_js']:.4f}  sd / dynesty's: {cells}")
    for label, value in report["log_z"].items():
        print(f"  log Z {label:10s} {value['log_evidence']:.3f} +- {value['standard_error'] or 0:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
