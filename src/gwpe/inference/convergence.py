"""Convergence of MCMC output, checked rather than assumed: rank-normalised split R-hat and bulk / tail effective
sample sizes (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, "Rank-normalization, folding, and
localization"), computed by ArviZ (``arviz.rhat(method="rank")``, ``arviz.ess(method="bulk" / "tail")``).

Every MCMC output of gwpe (emcee in ``gwpe sample`` and ``gwpe reference``, flow-MCMC in ``gwpe sample`` and
the event pipeline) is judged against one ``ConvergenceTarget``: every parameter's R-hat <= ``rhat`` (1.01,
the paper's recommendation) and its tail ESS (the worse of the 5 % and 95 % quantiles' ESS) >= ``tail_ess``;
with ``sd_error`` set, also every parameter's Monte Carlo standard error of its standard deviation relative to
that sd (``arviz.mcse(method="sd")``, from the ESS of the centred squares) <= ``sd_error``. That is the figure
a width comparison needs: a heavy-tailed marginal (demo injection 1's m1, kurtosis 8) reads a 3 % error in its
sd at a bulk ESS of 2,000, where ``1 / sqrt(2 ESS)`` would promise 1.6 %.
Samplers extend their chains in rounds (``extend_until_converged``) until the target is met or a cap is hit;
at the cap the run is recorded with ``converged: false`` and the figures, and ``warn_unconverged`` prints one
line on stderr: never silently.

An ensemble's walkers (emcee) are treated as chains, as ArviZ's ``from_emcee`` does; they are not independent,
so their R-hat is, if anything, optimistic only when all walkers are stuck together, which the tail ESS (through
the autocorrelation) still catches.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class ConvergenceTarget:
    """What counts as converged: max R-hat and min tail ESS over the parameters."""

    rhat: float = 1.01
    tail_ess: float = 400.0
    sd_error: float | None = None  # max relative MC standard error of each parameter's sd; None: not asked


@dataclass
class ConvergenceReport:
    """Per-parameter rank-normalised split R-hat, bulk and tail ESS of one chain set, and the verdict."""

    rhat: np.ndarray  # (P,)
    ess_bulk: np.ndarray  # (P,)
    ess_tail: np.ndarray  # (P,)
    target: ConvergenceTarget
    draws: int  # per chain
    chains: int
    rounds: int = 1  # extension rounds run (1: the first stretch only)
    history: list = field(default_factory=list)  # per round: draws, max R-hat, min bulk / tail ESS
    sd_error: np.ndarray | None = None  # (P,) MC standard error of each sd / that sd

    @property
    def converged(self) -> bool:
        return bool(
            np.all(np.isfinite(self.rhat))
            and float(np.max(self.rhat)) <= self.target.rhat
            and float(np.min(self.ess_tail)) >= self.target.tail_ess
            and (self.target.sd_error is None or float(np.max(self.sd_error)) <= self.target.sd_error)
        )

    def summary(self) -> dict:
        """JSON-ready: the verdict, the target, per-parameter figures and their worst values."""
        return {
            "converged": self.converged,
            "max_rhat": _finite(np.max(self.rhat)),
            "min_ess_bulk": _finite(np.min(self.ess_bulk)),
            "min_ess_tail": _finite(np.min(self.ess_tail)),
            "rhat": [_finite(v) for v in self.rhat],  # rank-normalised split R-hat
            "ess_bulk": [_finite(v) for v in self.ess_bulk],
            "ess_tail": [_finite(v) for v in self.ess_tail],
            "max_sd_error": _finite(np.max(self.sd_error)),
            "sd_error": [_finite(v) for v in self.sd_error],  # MC standard error of each sd, relative
            "target_rhat": self.target.rhat,
            "target_tail_ess": self.target.tail_ess,
            "target_sd_error": self.target.sd_error,
            "draws_per_chain": int(self.draws),
            "chains": int(self.chains),
            "convergence_rounds": int(self.rounds),
            "convergence_history": self.history,
        }


def _finite(value) -> float:
    """A float for JSON, which has no inf / NaN: +-inf and NaN (no chain has moved yet) as +-1e300."""
    value = float(value)
    return value if np.isfinite(value) else (1e300 if value > 0 or np.isnan(value) else -1e300)


def diagnose(chains: np.ndarray, target: ConvergenceTarget | None = None) -> ConvergenceReport:
    """Rank-normalised split R-hat, bulk and tail ESS and the relative MC standard error of the sd per parameter
    of ``chains`` (draws, chains, P)."""
    chains = np.asarray(chains, dtype=np.float64)
    if chains.ndim != 3:
        raise ValueError(f"chains of shape {chains.shape}; expected (draws, chains, parameters)")
    draws, n_chains, dim = chains.shape
    target = target or ConvergenceTarget()
    if draws < 4:  # split chains need a few draws each; nothing is known yet
        nan = np.full(dim, np.inf)
        return ConvergenceReport(nan, np.zeros(dim), np.zeros(dim), target, draws, n_chains, sd_error=nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # arviz's import-time FutureWarning; constant chains' divide-by-zero
        import arviz as az

        dataset = az.convert_to_dataset(np.ascontiguousarray(chains.transpose(1, 0, 2)))  # (chain, draw, P)
        rhat = np.asarray(az.rhat(dataset, method="rank")["x"].values, dtype=np.float64)
        bulk = np.asarray(az.ess(dataset, method="bulk")["x"].values, dtype=np.float64)
        tail = np.asarray(az.ess(dataset, method="tail")["x"].values, dtype=np.float64)
        sd_mcse = np.asarray(az.mcse(dataset, method="sd")["x"].values, dtype=np.float64)
        sd_error = sd_mcse / chains.reshape(-1, dim).std(axis=0)
    # a parameter no chain has moved in yet has no R-hat (0 / 0): not converged
    rhat = np.where(np.isfinite(rhat), rhat, np.inf)
    sd_error = np.where(np.isfinite(sd_error), sd_error, np.inf)
    return ConvergenceReport(
        rhat, np.nan_to_num(bulk, nan=0.0), np.nan_to_num(tail, nan=0.0), target, draws, n_chains, sd_error=sd_error
    )


def extend_until_converged(
    advance: Callable[[], np.ndarray], target: ConvergenceTarget, max_rounds: int
) -> ConvergenceReport:
    """Call ``advance()`` (runs one more stretch of the sampler and returns every kept draw so far, (draws,
    chains, P)) until ``diagnose`` says converged or ``max_rounds`` calls are done; the report of the last."""
    if max_rounds < 1:
        raise ValueError(f"max_rounds = {max_rounds}; allowed: >= 1")
    history = []
    for _ in range(max_rounds):
        report = diagnose(advance(), target)
        history.append(
            {
                "draws": int(report.draws),
                "max_rhat": _finite(np.max(report.rhat)),
                "min_ess_bulk": _finite(np.min(report.ess_bulk)),
                "min_ess_tail": _finite(np.min(report.ess_tail)),
                "max_sd_error": _finite(np.max(report.sd_error)),
            }
        )
        if report.converged:
            break
    report.rounds, report.history = len(history), history
    return report


def warn_unconverged(label: str, report: ConvergenceReport, names: list[str] | None = None, stream=None) -> bool:
    """One line on stderr when ``report`` is not converged (which parameter, R-hat and tail ESS against the
    target); returns whether it warned."""
    if report.converged:
        return False
    names = names or [f"x{i}" for i in range(len(report.rhat))]
    worst = int(np.argmax(report.rhat))
    thin = int(np.argmin(report.ess_tail))
    noisy = int(np.argmax(report.sd_error))
    sd_part = (
        ""
        if report.target.sd_error is None
        else f", max sd error {np.max(report.sd_error):.3f} ({names[noisy]}; target <= {report.target.sd_error})"
    )
    print(
        f"WARNING: {label} NOT CONVERGED after {report.rounds} round(s), {report.draws} draws x {report.chains} "
        f"chains: max R-hat {np.max(report.rhat):.3f} ({names[worst]}; target <= {report.target.rhat}), "
        f"min tail ESS {np.min(report.ess_tail):.0f} ({names[thin]}; target >= {report.target.tail_ess:.0f})"
        f"{sd_part}; recorded as converged: false",
        file=stream or sys.stderr,
        flush=True,
    )
    return True
