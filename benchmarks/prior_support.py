"""Posterior samples outside the prior, per model and per code path, on a demo-built project (issue 21).

For every posterior package of the project (``models/flows/*``, ``models/distill/*``) and the first
``--injections`` validation injections of its dataset (the store's fixed validation noise), ``--samples`` draws
per injection through the code paths users see: ``gwpe infer`` (``inference.infer.sample_flow``, the function
that writes the user's file) and ``gwpe evaluate flow|distill`` (``evaluation.flow.posterior_samples``), and
counts the fraction outside the prior's support (``waveforms.priors.log_prior_density`` = -inf), split by
cause: m1 < m2, a mass outside its range, d_L, t_c, anything else (angles, spins). Importance sampling
(``gwpe evidence``): its proposal draws and resampled posterior in the project's evidence file.

Run it on a project built before the support bijections and on one built after (packages saved before load
unbounded, as they were trained), then ``--markdown`` prints the before/after table for the README:

    python benchmarks/prior_support.py --project DIR --json after.json [--injections 200] [--samples 1000]
    python benchmarks/prior_support.py --markdown before.json after.json [--write docs/prior-support.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def causes(prior, names: list[str], theta: np.ndarray) -> dict[str, float]:
    """Fractions of ``theta`` (n, P) outside the prior, in total and by cause (a draw can have several)."""
    from gwpe.waveforms.priors import log_prior_density

    column = {name: theta[:, i] for i, name in enumerate(names)}
    out = {"any": float(np.mean(~np.isfinite(log_prior_density(prior, names, theta))))}
    if "m1" in column and "m2" in column:
        out["m1 < m2"] = float(np.mean(column["m1"] < column["m2"]))
        masses = np.stack([column["m1"], column["m2"]], 1)
        out["mass range"] = float(np.mean(((masses < prior.mass_min) | (masses > prior.mass_max)).any(1)))
    if "dL" in column:
        out["dL"] = float(np.mean((column["dL"] < prior.distance_min) | (column["dL"] > prior.distance_max)))
    if "tc" in column:
        out["tc"] = float(np.mean((column["tc"] < prior.tc_min) | (column["tc"] > prior.tc_max)))
    return out


def measure_package(folder: Path, project: Path, injections: int, samples: int) -> dict:
    """Both code paths' outside-prior fractions for one package (mean and worst over injections)."""
    import torch
    from tqdm import tqdm

    from gwpe.data.strain_store import recorded_prior
    from gwpe.data.strain_datamodule import StrainDataModule
    from gwpe.evaluation.flow import posterior_samples
    from gwpe.inference.infer import sample_flow
    from gwpe.models.flow_module import FlowModule

    module = FlowModule.load_model(folder)
    meta = json.loads((folder / "config.json").read_text())
    store = project / "data" / "strain" / f"{meta['dataset']}.zarr"
    data = StrainDataModule(store, batch_size=256, seed=0)
    validation, standardisation = data.dataset("validation"), data.standardisation
    names = list(standardisation.parameters)
    prior = recorded_prior(meta["data_spec"])
    n = min(injections, len(validation))
    paths: dict[str, list[dict]] = {"infer": [], "evaluate": []}
    torch.manual_seed(0)
    for index in tqdm(range(n), desc=folder.name, unit="injection"):
        strain = validation[index][0]
        paths["infer"].append(causes(prior, names, sample_flow(module, meta, np.asarray(strain), samples, False)))
        paths["evaluate"].append(causes(prior, names, posterior_samples(module, standardisation, strain, samples)))
    summary = {"dataset": meta["dataset"], "injections": n, "samples": samples}
    summary["parameterisation"] = module.parameterisation
    for path, rows in paths.items():
        summary[path] = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        summary[path]["worst injection"] = float(max(row["any"] for row in rows))
    return summary


def measure_evidence(project: Path) -> dict:
    """Outside-prior fractions of the IS proposal draws and resampled posteriors in the evidence files."""
    import h5py

    from gwpe.data.strain_store import recorded_prior

    out = {}
    for path in sorted((project / "data" / "sampling").glob("*-evidence.h5")):
        with h5py.File(path, "r") as h5:
            names = [str(n) for n in h5.attrs["parameters"]]
            dataset = str(h5.attrs["dataset"])
            spec = json.loads((project / "models" / "flows" / "maf" / "config.json").read_text())["data_spec"]
            prior = recorded_prior(spec)
            for method in ("is_npe", "ais_npe"):
                if method in h5:
                    out[f"{dataset} {method}"] = {
                        part: causes(prior, names, h5[method][key][()])["any"]
                        for part, key in (("proposal", "proposal_samples"), ("resampled", "resampled"))
                    }
    return out


def markdown(before: dict, after: dict) -> str:
    """The README's before/after table: mean fraction of samples outside the prior, worst injection."""
    lines = [
        "| model | path | before: outside prior (worst injection) | after |",
        "| --- | --- | --- | --- |",
    ]
    for name in after["packages"]:
        for path in ("infer", "evaluate"):
            a = after["packages"][name][path]
            b = before["packages"].get(name, {}).get(path)
            cell = f"{b['any']:.2%} ({b['worst injection']:.0%})" if b else "-"
            lines.append(f"| {name} | {path} | {cell} | {a['any']:.2%} ({a['worst injection']:.0%}) |")
    for name, row in after["evidence"].items():
        b = before["evidence"].get(name)
        cell = f"{b['proposal']:.2%} / {b['resampled']:.2%}" if b else "-"
        lines.append(f"| {name} | proposal / resampled | {cell} | {row['proposal']:.2%} / {row['resampled']:.2%} |")
    n = {v["injections"] for v in after["packages"].values()}
    lines.append("")
    lines.append(
        f"Validation injections per model: {', '.join(map(str, sorted(n)))}; "
        f"{next(iter(after['packages'].values()))['samples']:,} samples each."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--injections", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), default=None)
    parser.add_argument("--write", type=Path, default=None, help="with --markdown: write the docs page here")
    args = parser.parse_args()
    if args.markdown:
        before, after = (json.loads(p.read_text()) for p in args.markdown)
        table = markdown(before, after)
        if args.write:
            sources = " and ".join(f"`{p}`" for p in args.markdown)
            args.write.write_text(
                "# Posterior samples outside the prior, before and after the support bijections (issue 21)\n\n"
                f"Generated by `python benchmarks/prior_support.py --markdown ... --write {args.write}` from "
                f"{sources} (do not edit by hand). Mean fraction of each model's samples outside the prior's "
                "support, worst validation injection in brackets; before: packages of a demo built before the "
                "bijections (unbounded flows), after: a fresh-clone demo with them. `infer` is the function that "
                "writes `gwpe infer`'s file, `evaluate` the one `gwpe evaluate flow|distill` calibrates with. "
                "`ais_npe proposal` is adaptive importance sampling's own proposal flow in sampler coordinates, "
                "not a posterior model: its draws outside the prior get weight 0 (an efficiency cost); the "
                "resampled posterior, what the stage outputs, has none.\n\n" + table + "\n"
            )
        print(table)
        return 0
    project = args.project.resolve()
    folders = sorted(p.parent for p in project.glob("models/flows/*/config.json"))
    folders += sorted(p.parent for p in project.glob("models/distill/*/config.json"))
    if not folders:
        print(f"no posterior packages under {project}/models (run make demo there first)", file=sys.stderr)
        return 2
    result = {"project": str(project), "packages": {}, "evidence": measure_evidence(project)}
    for folder in folders:
        name = f"{folder.parent.name}/{folder.name}"
        result["packages"][name] = measure_package(folder, project, args.injections, args.samples)
        row = result["packages"][name]
        print(
            f"{name:<28} infer {row['infer']['any']:.3%} (worst {row['infer']['worst injection']:.1%}), "
            f"evaluate {row['evaluate']['any']:.3%}; {row['parameterisation'][:60]}",
            flush=True,
        )
    for name, row in result["evidence"].items():
        print(f"{name:<28} IS proposal {row['proposal']:.3%}, resampled {row['resampled']:.3%}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
