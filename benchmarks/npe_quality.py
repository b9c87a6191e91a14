"""How close the amortised posteriors come to the likelihood's, per ablation arm (issue 23).

    python benchmarks/npe_quality.py --params experiments/npe-quality.yaml --train --json docs/data/npe-quality.json
    python benchmarks/npe_quality.py --markdown docs/data/npe-quality.json --write docs/npe-quality.md

Every entry of the profile's ``flows.models`` is an arm; all are trained on the same store with the same
epochs, batch and schedule (``--train`` runs ``gwpe generate strain``, then ``gwpe train flow`` and ``gwpe
evaluate flow`` per arm in the working directory, timed; without it the trained packages there are used). Then,
on the first ``--injections`` validation injections of the dataset (their fixed noise, as ``gwpe evaluate flow``
sees them), with the whitened Gaussian likelihood and the dataset's normalised prior:

- **raw-NPE importance sampling**: ``--samples`` draws of each arm with their density (GNPE arms: the joint
  density of the recovered proxy law, ``gwpe.models.flows.gnpe``), weights L pi / q; efficiency = ESS / n;
- **a likelihood reference per injection**: ``gwpe.inference.event_evidence.adaptive_from_npe`` (the adaptive
  importance sampling ``gwpe evidence`` runs) seeded by the arm with the highest raw efficiency on that
  injection (its importance-resampled draws when their ESS is >= 200, else its raw draws), to an ESS of
  ``--reference-ess``; exact weights, so the seed only sets its cost. Its ESS is reported;
- per arm: 1-D JS divergence (nats) of its raw draws against the reference, every parameter and chirp mass;
  90 % width of its raw draws over the reference's (weighted) 90 % width; p–p KS p-values from ``gwpe evaluate
  flow`` (``flows.evaluation.injections`` injections) and its training time.

Summaries: efficiency median and min over injections; "max JS" = per injection the largest over parameters, then
its median and worst; width ratios: median over injections per parameter. ``--markdown`` writes the docs table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHIRP = "chirp_mass"


def _run(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return round(time.perf_counter() - start, 1)


def train_arms(params: Path, models: list[str], cwd: Path) -> dict:
    """Generate the store, then train and evaluate every arm; seconds and the evaluation metrics per arm."""
    from gwpe.config import load_config

    config = load_config(params)
    out = {"generate_seconds": _run(["gwpe", "generate", "strain", "--dataset", config.flows.dataset, "--params",
                                     str(params)], cwd)}
    print(f"generate {out['generate_seconds']} s", flush=True)
    for name in models:
        metrics = cwd / "metrics" / "npe-quality" / f"{name}-eval.json"
        train = _run(["gwpe", "train", "flow", "--model", name, "--params", str(params), "--no-progress"], cwd)
        evaluate = _run(["gwpe", "evaluate", "flow", "--model", name, "--params", str(params), "--no-progress",
                         "--metrics", str(metrics), "--no-register"], cwd)
        out[name] = {"train_seconds": train, "evaluate_seconds": evaluate, "evaluation": json.loads(metrics.read_text())}
        print(f"{name}: train {train} s, evaluate {evaluate} s", flush=True)
    return out


def with_chirp_mass(theta: np.ndarray, names: list[str]) -> np.ndarray:
    from gwpe import physics

    i, j = names.index("m1"), names.index("m2")
    return np.concatenate([theta, physics.chirp_mass(theta[:, i], theta[:, j])[:, None]], axis=1)


def weighted_width(x: np.ndarray, weights: np.ndarray | None = None, level: float = 0.9) -> float:
    """Central ``level`` interval width of (weighted) draws."""
    order = np.argsort(x)
    w = np.full(len(x), 1.0 / len(x)) if weights is None else weights[order] / weights.sum()
    cdf = np.cumsum(w)
    lo, hi = np.searchsorted(cdf, (1 - level) / 2), np.searchsorted(cdf, (1 + level) / 2)
    xs = x[order]
    return float(xs[min(hi, len(xs) - 1)] - xs[min(lo, len(xs) - 1)])


def measure(params: Path, models: list[str], injections: int, samples: int, reference_ess: float, cwd: Path) -> dict:
    """Raw-NPE IS, the adaptive-IS reference and the comparisons, per injection and arm (module doc)."""
    import torch
    from tqdm.auto import tqdm

    from gwpe.config import load_config
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.coordinates import SamplerCoordinates
    from gwpe.inference.event_evidence import adaptive_from_npe
    from gwpe.inference.sampling import load_event, npe_draws
    from gwpe.models.flow_module import FlowModule
    from gwpe.waveforms.priors import log_prior_density

    os.chdir(cwd)
    config = load_config(params)
    modules = {name: FlowModule.load_model(Path(config.flows.model_dir) / name) for name in models}
    rows = []
    for index in tqdm(range(injections), desc="npe quality", unit="injection"):
        event = load_event(config, index)
        names = event.names + [CHIRP]
        row = {"injection": index, "truth": event.truth.tolist(), "arms": {}}
        with event.likelihood(config.sampling.workers) as likelihood:
            draws = {}
            for name, module in modules.items():
                start = time.perf_counter()
                theta, log_q = npe_draws(module, event, samples, seed=index)
                sample_seconds = time.perf_counter() - start
                log_target = likelihood.log_posterior(theta)
                log_w = log_target - log_q
                finite = np.isfinite(log_w)
                w = np.zeros(len(theta))
                w[finite] = np.exp(log_w[finite] - log_w[finite].max())
                ess = float(w.sum() ** 2 / (w**2).sum()) if w.sum() > 0 else 0.0
                draws[name] = (theta, w, log_target)
                row["arms"][name] = {"efficiency": ess / len(theta), "ess": ess, "sample_seconds": sample_seconds}
            best = max(modules, key=lambda m: row["arms"][m]["ess"])
            theta, w, log_target = draws[best]
            if row["arms"][best]["ess"] >= 200:
                rng = np.random.default_rng(index)
                seed_draws = theta[rng.choice(len(theta), size=len(theta), p=w / w.sum())]
            else:
                seed_draws = theta[np.isfinite(log_target)]
            log_like = log_target - log_prior_density(event.dataset.prior, event.names, theta)
            coordinates = SamplerCoordinates.walled_by_likelihood(event.names, theta, log_like)
            generator = torch.Generator().manual_seed(index)
            start = time.perf_counter()
            estimate, u, weights, _, rounds = adaptive_from_npe(
                config.sampling, likelihood, coordinates, seed_draws, ess=reference_ess, generator=generator
            )
            reference = with_chirp_mass(coordinates.to_physical(u.numpy(), np.random.default_rng(index)), event.names)
            ref_w = weights.numpy()
            row["reference"] = {
                "seeded_by": best,
                "ess": float(estimate.effective_samples),
                "efficiency": float(estimate.efficiency),
                "log_evidence": float(estimate.log_evidence),
                "seconds": round(time.perf_counter() - start, 1),
            }
            for name in modules:
                raw = with_chirp_mass(draws[name][0], event.names)
                _, js = marginal_divergences(reference, raw, weights_a=ref_w)
                row["arms"][name]["js"] = dict(zip(names, js.round(5).tolist()))
                row["arms"][name]["width_ratio"] = {
                    p: weighted_width(raw[:, k]) / weighted_width(reference[:, k], ref_w) for k, p in enumerate(names)
                }
        rows.append(row)
        summary = ", ".join(f"{m} {row['arms'][m]['efficiency']:.2%}" for m in modules)
        tqdm.write(f"injection {index}: IS efficiency {summary}; reference ESS {row['reference']['ess']:.0f}")
    return {"injections": rows}


def summarise(rows: list[dict], models: list[str]) -> dict:
    out = {}
    for name in models:
        arms = [r["arms"][name] for r in rows]
        eff = np.array([a["efficiency"] for a in arms])
        max_js = np.array([max(a["js"].values()) for a in arms])
        params = list(arms[0]["js"])
        out[name] = {
            "is_efficiency_median": float(np.median(eff)),
            "is_efficiency_min": float(eff.min()),
            "max_js_median": float(np.median(max_js)),
            "max_js_worst": float(max_js.max()),
            "js_median": {p: float(np.median([a["js"][p] for a in arms])) for p in params},
            "width_ratio_median": {p: float(np.median([a["width_ratio"][p] for a in arms])) for p in params},
            "sample_seconds_median": float(np.median([a["sample_seconds"] for a in arms])),
        }
    return out


def markdown(data: dict) -> str:
    models = list(data["summary"])
    params = list(next(iter(data["summary"].values()))["width_ratio_median"])
    lines = [
        "# NPE quality: amortised posteriors against the likelihood",
        "",
        "Generated by `benchmarks/npe_quality.py --markdown` from `docs/data/npe-quality.json` "
        f"(commit {data.get('commit', '?')}, {data.get('machine', '?')}); profile `{data['params']}`, "
        f"{data['n_injections']} validation injections, {data['samples']} draws per arm. Method: the script's "
        "docstring. Widths: the arm's raw 90 % width over the likelihood reference's (1 = as narrow as the "
        "likelihood posterior).",
        "",
        "| arm | train s | IS eff. median | IS eff. min | max JS median (nat) | max JS worst | "
        + " | ".join(f"width {p}" for p in params)
        + " | min KS p |",
        "| --- " * (6 + len(params) + 1) + "|",
    ]
    for name in models:
        s = data["summary"][name]
        training = data.get("training", {}).get(name, {})
        ks = training.get("evaluation", {}).get("ks_pvalue") or {}
        min_ks = f"{min(ks.values()):.3f}" if ks else "n/a"
        lines.append(
            f"| {name} | {training.get('train_seconds', 'n/a')} | {s['is_efficiency_median']:.2%} | "
            f"{s['is_efficiency_min']:.2%} | {s['max_js_median']:.3f} | {s['max_js_worst']:.3f} | "
            + " | ".join(f"{s['width_ratio_median'][p]:.2f}" for p in params)
            + f" | {min_ks} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("experiments/npe-quality.yaml"))
    parser.add_argument("--workdir", type=Path, default=Path("."), help="project folder the stages run in")
    parser.add_argument("--models", nargs="*", default=None, help="arms (default: every flows.models entry)")
    parser.add_argument("--train", action="store_true", help="generate, train and evaluate every arm first")
    parser.add_argument("--injections", type=int, default=20)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--reference-ess", type=float, default=2000.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="a JSON from --json: write its docs page")
    parser.add_argument("--write", type=Path, default=None, help="with --markdown: the page's path")
    args = parser.parse_args()
    if args.markdown is not None:
        text = markdown(json.loads(args.markdown.read_text()))
        if args.write is None:
            print(text)
        else:
            args.write.write_text(text)
        return 0
    from gwpe.config import load_config

    cwd = args.workdir.resolve()
    params = args.params.resolve()
    models = args.models or list(load_config(params).flows.models)
    training = train_arms(params, models, cwd) if args.train else {}
    measured = measure(params, models, args.injections, args.samples, args.reference_ess, cwd)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    data = {
        "commit": commit.stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "params": str(args.params),
        "n_injections": args.injections,
        "samples": args.samples,
        "training": training,
        "summary": summarise(measured["injections"], models),
        **measured,
    }
    print(json.dumps(data["summary"], indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
