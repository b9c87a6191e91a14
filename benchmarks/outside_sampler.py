"""The pipeline's own posteriors against an outside sampler (issue 26): dynesty on the same likelihood and prior.

    .venv/bin/python benchmarks/outside_sampler.py --injection 0 [--params params.yaml] [--sampling-dir DIR]
        [--reference FILE] [--nlive 1000] [--seeds 0 1] [--masses chirp_mass_ratio | components]
        [--save-draws PREFIX | --draws A.npz B.npz] [--json out.json]

``benchmarks/sampler.py`` reruns every gwpe sampler beside dynesty; this script instead reads what ``dvc repro``
(or ``gwpe sample`` + ``gwpe evidence`` on another ``sampling.injection``) wrote, so the posteriors compared are
the ones the metrics and docs quote:

- ``<sampling-dir>/<dataset>.h5``: the flow-MCMC (and emcee) chains, their bulk ESS from the file's diagnostics;
- ``<sampling-dir>/<dataset>-evidence.h5``: adaptive IS's weighted draws and the evidence estimates;
- the reference posteriors (``flows.reference.path``), group ``injection_<N>``: ``gwpe reference``'s weighted draws.

Each file is used only if it holds the requested injection. dynesty (``gwpe.inference.nested``: nlive live points,
``--sample auto``, dynesty's own choice by dimension, which is ``unif`` here (uniform draws inside multi-ellipsoid
bounds enlarged by bootstrap: no Markov chain, so no correlation between a new live point and its start); ``--sample
rslice`` is what bilby users pick in more dimensions and read log Z 0.08-0.21 high on the demo's injections in every
set of runs (docs/samplers.md); bound multi, dlogz 0.1, phi0 periodic, the masses moved in chirp mass and m2/m1 as
bilby users do, with the component-mass prior carried exactly; ``--masses components`` moves in (m1, m2)) runs on
``load_event``'s likelihood, one call at a time, with dynesty's status line (``--no-progress``: none), or its draws
are read back (``--draws``). Compared per parameter and for chirp mass: max 1-D JS (``marginal_divergences``;
weighted sets with their weights), standard deviation over dynesty's with a bootstrap error (chains redrawn at their
bulk ESS, weighted sets at their Kish ESS; both sides), and log Z with each side's stated error. dynesty enters with
its weights (its dead points, not an equal-weight resample, whose duplicates a KDE under-smooths).

One dynesty run per ``--seeds`` entry (default two), merged into one weighted set (each run's weights scaled to
1 / runs; log Z their mean). The second run's sd over the first's is reported too: on the demo's injection 0 two
runs at nlive 1,000 differ by 2-6 % in the standard deviations, about 4 of the ~1 % bootstrap errors, because
the bootstrap of one run's draws leaves out the noise of nested sampling's prior-volume weights. One run cannot
decide a 3 % agreement. The merged set's share of that noise, |r - 1| / sqrt(2) / sqrt(runs) per column from
the two runs' ratio r, is added in quadrature to every ratio's error (``merged_sd_noise``; a two-run estimate of
a scatter, itself uncertain by ~70 %).

log Z is checked a second way, with nothing of gwpe's samplers in it: plain importance sampling (``--is-draws``,
default 10^5) from a multivariate t fitted to dynesty's merged draws (``independent_is``).

phi0 is compared mod pi: the (2,2)-mode likelihood is invariant under phi0 -> phi0 + pi, so each posterior holds
two copies whose split is arbitrary, and the sd over [0, 2 pi) would measure that split, not the width. Every set
is first turned by one angle, c = arg(sum_i w_i exp(2 i phi0_i)) / 2 of dynesty's draws, to phi0 - c + pi / 2 mod
pi, so the copy sits mid-interval and no set's mass is cut at the fold. Files whose ``observation`` differs from
the event's (another dataset or noise realisation) are skipped and named.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def phase_centre(names: list[str], draws: np.ndarray, weights: np.ndarray) -> float:
    """c = arg(sum w exp(2 i phi0)) / 2: the centre of one pi-periodic copy of the phase posterior (module doc)."""
    if "phi0" not in names:
        return 0.0
    phase = np.asarray(draws, dtype=float)[:, names.index("phi0")]
    return float(np.angle(np.sum(np.asarray(weights) * np.exp(2j * phase))) / 2)


def with_chirp_mass(names: list[str], draws: np.ndarray, centre: float = 0.0) -> np.ndarray:
    """(n, P + 1): the draws with phi0 turned by ``centre`` and taken mod pi (module doc), and chirp mass."""
    from gwpe.physics import chirp_mass

    draws = np.array(draws, dtype=float)
    if "phi0" in names:
        k = names.index("phi0")
        draws[:, k] = np.mod(draws[:, k] - centre + np.pi / 2, np.pi)
    return np.column_stack([draws, chirp_mass(draws[:, names.index("m1")], draws[:, names.index("m2")])])


def pipeline_posteriors(
    sampling_dir: Path, reference: Path, dataset: str, injection: int, observation: np.ndarray | None = None
) -> tuple[dict, dict, list[str]]:
    """({label: (draws, weights or None, per-column bulk ESS or None)}, {label: (log Z, error)}, skipped files)
    from the files that hold ``injection`` (and, if given, this ``observation``)."""
    import h5py

    sets, evidences, skipped = {}, {}, []

    def matches(path: Path, group) -> bool:
        if "injection" in group.attrs and int(group.attrs["injection"]) != injection:
            return False
        held = group["observation"][()] if "observation" in group else None
        if observation is not None and held is not None and not np.allclose(held, observation):
            skipped.append(f"{path} (another observation of injection {injection})")
            return False
        return True

    chains = sampling_dir / f"{dataset}.h5"
    if chains.is_file():
        with h5py.File(chains, "r") as f:
            if matches(chains, f):
                for label, group in f.items():
                    if isinstance(group, h5py.Group) and "samples" in group:
                        ess = json.loads(group.attrs["diagnostics"]).get("ess_bulk")
                        finite = isinstance(ess, list) and all(isinstance(e, (int, float)) for e in ess)
                        sets[label] = (group["samples"][:], None, np.asarray(ess, dtype=float) if finite else None)
    evidence = sampling_dir / f"{dataset}-evidence.h5"
    if evidence.is_file():
        with h5py.File(evidence, "r") as f:
            # it holds no observation: it goes with the chains file it was computed from (its sampling_file)
            if int(f.attrs["injection"]) == injection and not any(s.startswith(str(chains)) for s in skipped):
                group = f["ais_npe"]
                sets["ais_npe"] = (group["proposal_samples"][:], group["weights"][:], None)
                estimate = json.loads(group.attrs["estimate"])
                evidences["ais_npe"] = (estimate["log_evidence"], estimate["standard_error"])
                lhm = json.loads(f.attrs["lhm"])
                evidences["lhm"] = (lhm["log_evidence"], lhm["standard_error"])
    if reference.is_file():
        with h5py.File(reference, "r") as f:
            name = f"injection_{injection}"
            if name in f and matches(reference, f[name]):
                group = f[name]
                if "weights" in group:
                    sets["reference"] = (group["draws"][:], group["weights"][:], None)
                else:
                    sets["reference"] = (group["samples"][:], None, None)
                diagnostics = json.loads(group.attrs["diagnostics"])
                if "log_evidence" in diagnostics:
                    evidences["reference"] = (diagnostics["log_evidence"], diagnostics.get("log_evidence_error"))
    return sets, evidences, skipped


def compare(
    names: list[str], sets: dict, evidences: dict, outside: dict, outside_noise: np.ndarray | None = None
) -> dict:
    """Every set against the outside draws. ``outside_noise`` (P + 1,): the relative error of the outside
    sampler's sd that its bootstrap leaves out (from its run-to-run scatter), added in quadrature."""
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.nested import std_ratios

    columns = [*names, "chirp_mass"]
    centre = phase_centre(names, outside["samples"], outside["weights"])
    reference = with_chirp_mass(names, outside["samples"], centre)
    rows = {}
    for label, (draws, weights, effective) in sets.items():
        draws = with_chirp_mass(names, draws, centre)
        js = marginal_divergences(draws, reference, weights_a=weights, weights_b=outside["weights"])[1]
        ratio, error = np.empty(len(columns)), np.empty(len(columns))
        for k in range(len(columns)):  # a chain's error from that column's own ESS
            size = None if effective is None else effective[min(k, len(effective) - 1)]
            r, e = std_ratios(draws[:, [k]], reference[:, [k]], weights, outside["weights"], effective_a=size)
            extra = 0.0 if outside_noise is None else r[0] * outside_noise[k]
            ratio[k], error[k] = r[0], float(np.hypot(e[0], extra))
        deviation = np.abs(ratio - 1)
        rows[label] = {
            "max_js": float(js.max()),
            "js": dict(zip(columns, js.round(5).tolist())),
            "sd_ratio": dict(zip(columns, ratio.round(4).tolist())),
            "sd_ratio_error": dict(zip(columns, error.round(4).tolist())),
            "max_sd_deviation": float(deviation.max()),
            "within_3_percent": bool(np.all(deviation <= 0.03)),
            "within_2_sigma": bool(np.all(deviation <= 2 * error)),
        }
    log_z = {label: {"log_evidence": z, "standard_error": e} for label, (z, e) in evidences.items()}
    log_z["dynesty"] = {"log_evidence": outside["log_evidence"], "standard_error": outside["standard_error"]}
    for label, (z, e) in evidences.items():
        combined = None if e is None else float(np.hypot(e, outside["standard_error"]))
        shift = (z - outside["log_evidence"]) / combined if combined else None
        log_z[label]["minus_dynesty_in_errors"] = shift
    return {"phase_centre": centre, "posteriors": rows, "log_z": log_z}


class HalfPhase:
    """The likelihood with phi0 read at half its value, so dynesty's [0, 2 pi) covers [0, pi) once.

    The (2,2)-mode likelihood is invariant under phi0 -> phi0 + pi, so with phi0 uniform on [0, pi) the evidence
    is the same as on [0, 2 pi) and the posterior is one of its two copies; ``unfold`` halves the draws' phase and
    puts each on either copy with probability 1/2. dynesty then bounds one copy instead of two (on injection 1
    one folded unif run needed 1.27M calls, a second stalled at 1.12M; unfolded, two were still 6-8 nats from
    the end at 1.0-1.5M; on injection 0 folding did not raise the efficiency). The
    symmetry is checked on four phases at the truth (to 1e-6 in log L) before it is used."""

    def __init__(self, likelihood, names: list[str]):
        from gwpe.errors import ConfigError

        if "phi0" not in names:
            raise ConfigError(f"--fold-phase with parameters {names}; allowed: a set holding phi0")
        self.likelihood, self.column = likelihood, names.index("phi0")

    def check(self, theta: np.ndarray) -> float:
        """max |log L(phi0 + pi) - log L(phi0)| over four phases at ``theta``."""
        probe = np.tile(np.asarray(theta, dtype=float), (4, 1))
        probe[:, self.column] = [0.3, 1.1, 2.0, 2.9]
        shifted = probe.copy()
        shifted[:, self.column] += np.pi
        return float(np.abs(self.likelihood(probe) - self.likelihood(shifted)).max())

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float)
        theta[:, self.column] /= 2.0
        return self.likelihood(theta)

    def unfold(self, samples: np.ndarray, seed: int) -> np.ndarray:
        out = np.array(samples, dtype=float)
        copy = np.random.default_rng(seed + 100).integers(0, 2, len(out))
        out[:, self.column] = out[:, self.column] / 2.0 + np.pi * copy
        return out


def dynesty_runs(
    event,
    names: list[str],
    nlive: int,
    seeds: list[int],
    saved: list[Path],
    save: Path | None,
    masses: str = "chirp_mass_ratio",
    progress: bool = True,
    sample: str = "auto",
    slices: int | None = None,
    fold_phase: bool = False,
) -> list:
    """One dict per dynesty run: read back from ``saved`` files, else run once per seed (``save``: a prefix).
    ``fold_phase``: dynesty sees phi0 on [0, pi) (``HalfPhase``), its draws put back on either copy."""
    keys = ("log_evidence", "standard_error", "evaluations", "seconds", "seed")
    runs = []
    for index, path in enumerate(saved):
        data = np.load(path)
        run = {key: data[key] for key in ("samples", "weights")}
        run.update({key: float(data[key]) if key in data else float(index) for key in keys})
        runs.append(run)
    if runs:
        return runs
    from gwpe.inference.nested import nested_sample

    for seed in seeds:
        began = time.perf_counter()
        with event.likelihood(0) as likelihood:  # dynesty asks for one point at a time
            folded = HalfPhase(likelihood, names) if fold_phase else None
            if folded is not None and (broken := folded.check(event.truth)) > 1e-6:
                raise SystemExit(f"--fold-phase: log L changes by {broken:.2e} under phi0 -> phi0 + pi; allowed: 1e-6")
            result = nested_sample(
                folded or likelihood,
                event.dataset.prior,
                names,
                nlive=nlive,
                seed=seed,
                masses=masses,
                progress=progress,
                sample=sample,
                slices=slices,
            )
        run = {
            "samples": result.samples if folded is None else folded.unfold(result.samples, seed),
            "weights": result.weights,
            "log_evidence": result.log_evidence,
            "standard_error": result.standard_error,
            "evaluations": float(result.evaluations),
            "seconds": time.perf_counter() - began,
            "seed": float(seed),
        }
        if save is not None:
            np.savez(f"{save}-seed{seed}.npz", **run)
        runs.append(run)
    return runs


def merged(runs: list[dict]) -> dict:
    """Independent runs as one weighted set (each run's weights scaled to 1 / runs), log Z their mean with the
    error of a mean of independent estimates."""
    n = len(runs)
    return {
        "samples": np.concatenate([r["samples"] for r in runs]),
        "weights": np.concatenate([np.asarray(r["weights"]) / np.sum(r["weights"]) / n for r in runs]),
        "log_evidence": float(np.mean([r["log_evidence"] for r in runs])),
        "standard_error": float(np.sqrt(np.sum([r["standard_error"] ** 2 for r in runs])) / n),
    }


def run_to_run(names: list[str], first: dict, second: dict) -> dict:
    """The outside sampler against itself: the second run's sd over the first's (+- bootstrap) and max 1-D JS.
    A scatter beyond the bootstrap error is what one run's error bar leaves out (the prior-volume noise of nested
    sampling's weights)."""
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.inference.nested import std_ratios

    centre = phase_centre(names, first["samples"], first["weights"])
    a, b = with_chirp_mass(names, first["samples"], centre), with_chirp_mass(names, second["samples"], centre)
    ratio, error = std_ratios(b, a, second["weights"], first["weights"])
    js = marginal_divergences(b, a, weights_a=second["weights"], weights_b=first["weights"])[1]
    columns = [*names, "chirp_mass"]
    return {
        "sd_ratio": dict(zip(columns, ratio.round(4).tolist())),
        "sd_ratio_error": dict(zip(columns, error.round(4).tolist())),
        "max_js": float(js.max()),
    }


def independent_is(event, names: list[str], outside: dict, n: int, seed: int, workers: int = 2) -> dict:
    """log Z by plain importance sampling from a proposal built from dynesty's draws alone (as the issue's audit
    did): a multivariate t (df 4) with 1.3^2 x their covariance, in coordinates scaled by their sds, phi0 taken
    as one pi-copy turned to its centre and put at either copy with probability 1/2 (the density summed over the
    copy's images). Nothing of gwpe's samplers enters; the weights' arithmetic is ``evidence.weighted_estimate``."""
    import torch
    from scipy import stats
    from scipy.special import logsumexp

    from gwpe.inference.evidence import weighted_estimate

    k = names.index("phi0") if "phi0" in names else None
    weights = np.asarray(outside["weights"]) / np.sum(outside["weights"])
    centre = phase_centre(names, outside["samples"], weights)

    def turned(theta: np.ndarray) -> np.ndarray:
        out = np.array(theta, dtype=float)
        if k is not None:
            out[:, k] = np.mod(out[:, k] - centre + np.pi / 2, np.pi) - np.pi / 2
        return out

    y = turned(outside["samples"])
    mean = weights @ y
    scale = np.sqrt(weights @ np.square(y - mean))
    z = (y - mean) / scale
    cov = (z.T * weights) @ z * 1.3**2
    proposal = stats.multivariate_t(loc=np.zeros(len(names)), shape=(cov + cov.T) / 2 * (4 - 2) / 4, df=4)
    rng = np.random.default_rng(seed)
    draws = mean + scale * proposal.rvs(size=n, random_state=rng)
    theta = draws.copy()
    images = [0]
    if k is not None:
        theta[:, k] = np.mod(centre + draws[:, k] + np.pi * rng.integers(0, 2, n), 2 * np.pi)
        images = range(-3, 4)
    turned_theta = turned(theta)
    shift = np.eye(len(names))[k if k is not None else 0] * np.pi
    log_q = (np.log(0.5) if k is not None else 0.0) - np.log(scale).sum()
    log_q = log_q + logsumexp([proposal.logpdf((turned_theta + j * shift - mean) / scale) for j in images], axis=0)
    began = time.perf_counter()
    with event.likelihood(workers) as likelihood:
        log_p = likelihood.log_posterior(theta)
    estimate, _, _ = weighted_estimate(torch.from_numpy(log_p - log_q), torch.from_numpy(theta))
    return {
        "log_evidence": float(estimate.log_evidence),
        "standard_error": float(estimate.standard_error),
        "effective_samples": round(float(estimate.effective_samples)),
        "draws": n,
        "pareto_k": round(float(estimate.pareto_k), 3),
        "seconds": round(time.perf_counter() - began, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--injection", type=int, required=True)
    parser.add_argument("--sampling-dir", type=Path, default=None, help="default: sampling.path")
    parser.add_argument("--reference", type=Path, default=None, help="default: flows.reference.path/<dataset>.h5")
    parser.add_argument("--nlive", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one dynesty run per seed, merged")
    parser.add_argument("--masses", default="chirp_mass_ratio", choices=["chirp_mass_ratio", "components"])
    parser.add_argument(
        "--sample", default="auto", choices=["auto", "unif", "rslice", "rwalk", "slice"], help="auto: dynesty's own"
    )
    parser.add_argument("--slices", type=int, default=None, help="rslice's slice updates (default 3 + D)")
    parser.add_argument("--fold-phase", action="store_true", help="dynesty on phi0 in [0, pi) (HalfPhase)")
    parser.add_argument("--no-progress", action="store_true", help="no dynesty status line")
    parser.add_argument("--draws", type=Path, nargs="*", default=[], help="runs saved by --save-draws: no rerun")
    parser.add_argument("--save-draws", type=Path, default=None, help="prefix: <prefix>-seed<N>.npz per run")
    parser.add_argument("--is-draws", type=int, default=100_000, help="independent IS from dynesty's draws; 0: none")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from gwpe.config import load_config
    from gwpe.inference.nested import dynesty_method
    from gwpe.inference.sampling import load_event

    config = load_config(args.params)
    dataset = config.flows.dataset
    sampling_dir = args.sampling_dir or Path(config.sampling.path)
    reference = args.reference or Path(config.flows.reference.path) / f"{dataset}.h5"
    event = load_event(config, args.injection)
    names = list(event.names)
    sets, evidences, skipped = pipeline_posteriors(sampling_dir, reference, dataset, args.injection, event.observation)
    for path in skipped:
        print(f"skipped {path}")
    if not sets:
        raise SystemExit(
            f"no posterior for injection {args.injection} in {sampling_dir} or {reference}; allowed: an injection "
            "that `gwpe sample` / `gwpe evidence` (sampling.injection) or `gwpe reference` ran on"
        )
    runs = dynesty_runs(
        event,
        names,
        args.nlive,
        args.seeds,
        args.draws,
        args.save_draws,
        args.masses,
        not args.no_progress,
        args.sample,
        args.slices,
        args.fold_phase,
    )
    columns = [*names, "chirp_mass"]
    scatter, noise = None, None
    if len(runs) > 1:  # one run's sd noise from two runs' ratio, then that of the merged set: / sqrt(runs)
        scatter = run_to_run(names, runs[0], runs[1])
        ratio = np.array([scatter["sd_ratio"][c] for c in columns])
        noise = np.abs(ratio - 1) / np.sqrt(2) / np.sqrt(len(runs))
    report = {
        "dataset": dataset,
        "injection": args.injection,
        "parameters": names,
        "dynesty": {
            "nlive": args.nlive,
            "sample": dynesty_method(len(names)) if args.sample == "auto" else args.sample,
            "slices": args.slices,
            "fold_phase": args.fold_phase,
            "masses": args.masses,
            "runs": [
                {
                    key: (int(r[key]) if key in ("seed", "evaluations") else round(float(r[key]), 4))
                    for key in ("seed", "log_evidence", "standard_error", "evaluations", "seconds")
                }
                for r in runs
            ],
        },
        **compare(names, sets, evidences, merged(runs), noise),
    }
    if args.is_draws > 0:
        plain = independent_is(event, names, merged(runs), args.is_draws, seed=max(args.seeds) + 1)
        report["independent_is"] = plain
        for value in report["log_z"].values():
            if value.get("standard_error") is not None:
                combined = float(np.hypot(value["standard_error"], plain["standard_error"]))
                value["minus_independent_is_in_errors"] = (value["log_evidence"] - plain["log_evidence"]) / combined
    if scatter is not None:
        report["dynesty"]["run_to_run"] = scatter
        report["dynesty"]["merged_sd_noise"] = dict(zip(columns, noise.round(4).tolist()))
    seeds = ", ".join(str(r["seed"]) for r in report["dynesty"]["runs"])
    print(
        f"{dataset} injection {args.injection} against dynesty (nlive {args.nlive}, {report['dynesty']['sample']}, "
        f"masses {args.masses}, seeds {seeds} merged):"
    )
    rows = dict(report["posteriors"])
    if "run_to_run" in report["dynesty"]:
        rows["dynesty run 2 / run 1"] = report["dynesty"]["run_to_run"]
    for label, row in rows.items():
        cells = " ".join(f"{c} {row['sd_ratio'][c]:.3f}+-{row['sd_ratio_error'][c]:.3f}" for c in columns)
        print(f"  {label:12s} max JS {row['max_js']:.4f}  sd / dynesty's: {cells}")
    for label, value in report["log_z"].items():
        print(f"  log Z {label:10s} {value['log_evidence']:.3f} +- {value['standard_error'] or 0:.3f}")
    if "independent_is" in report:
        plain = report["independent_is"]
        print(
            f"  log Z independent IS (t proposal from dynesty's draws) {plain['log_evidence']:.3f} +- "
            f"{plain['standard_error']:.3f}, ESS {plain['effective_samples']:,} of {plain['draws']:,}, "
            f"Pareto k {plain['pareto_k']:.2f}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    from gwpe.errors import ConfigError

    try:
        main()
    except (ConfigError, FileNotFoundError) as error:  # bad --injection, --params or --draws: one line, exit 2
        raise SystemExit(f"outside_sampler: {error}") from None
