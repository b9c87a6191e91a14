"""Evidence Z = ∫ L(θ) π(θ) dθ from samples: importance sampling of a proposal, and the learned harmonic mean.
Domain-free; every log-density is batched, (n, D) -> (n,).

- **Importance sampling** (a normalised proposal q, e.g. an NPE posterior): w_i = L π / q at θ_i ~ q,
  Z_hat = mean(w), log Z_hat with standard error sd(w) / (sqrt(n) mean(w)) (delta method), effective sample
  size (sum w)^2 / sum w^2 and sample efficiency ESS / n; resampling by the normalised weights gives
  posterior samples. The delta-method error assumes the weights have a finite variance, which a proposal with
  too light tails breaks silently; the Pareto-k tail index (``pareto_k``) checks it.
- **Adaptive importance sampling** from an initial proposal q_0 (the NPE posterior for the event, distilled
  into a small flow): the geometric bridge p_β ∝ q_0^(1-β) (L π)^β is followed from β = 0 (q_0 itself) to
  β = 1 (the posterior), each step as large as keeps half the draws' ESS; at each step the flow is refitted
  to the weighted draws. Only likelihood calls and the NPE enter, so the result is independent of any MCMC
  (unless MCMC draws are handed in as ``seed_draws``: they shape the proposal, never the weights). The last
  proposal is then importance-sampled as above, with exact weights.
- **Learned harmonic mean** (McEwen et al. 2021, arXiv:2111.12720): with φ a normalised density fitted to
  half of the posterior samples and concentrated (a flow with its base tempered by T < 1, so φ has lighter
  tails than the posterior and the estimator's variance is finite), rho_hat = mean φ(θ_i) / (L π)(θ_i) over the
  other half estimates 1 / Z; log Z = -log rho_hat with standard error sd / (sqrt(n) rho_hat).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from gwpe.inference.flowmc import defensive_mixture, mixture_log_prob, tempered_log_prob, tempered_sample
from gwpe.inference.pmc_kernel import draw_with_kernel, kernel_from_rounds, log_prob_with_kernel


@dataclass
class EvidenceEstimate:
    """log Z with its standard error, the effective sample size, the efficiency ESS / n and the method."""

    log_evidence: float
    standard_error: float
    effective_samples: float
    efficiency: float
    method: str
    pareto_k: float = float("nan")  # importance sampling: PSIS tail index of the weights (Vehtari et al. 2024)


def log_mean_exp(values: Tensor) -> Tensor:
    """log mean exp(values) over dim 0, computed stably: logsumexp(values) - log n."""
    return torch.logsumexp(values, 0) - math.log(values.shape[0])


def _log_moments(log_w: Tensor) -> tuple[float, float]:
    """(log mean w, relative standard error of the mean) computed stably in log space."""
    log_w = log_w.double()
    n = log_w.shape[0]
    log_mean = log_mean_exp(log_w)
    relative = torch.exp(log_w - log_mean)  # w / mean(w)
    return float(log_mean), float(relative.std(unbiased=True) / math.sqrt(n))


def importance_sampling(
    log_target: Callable[[Tensor], Tensor],
    samples: Tensor,
    log_q: Tensor,
    resample: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[EvidenceEstimate, Tensor, Tensor]:
    """(estimate, normalised weights, resampled posterior (``resample`` rows, or empty)) for θ_i ~ q."""
    with torch.no_grad():
        log_w = log_target(samples).double() - log_q.double()
    return weighted_estimate(log_w, samples, resample, generator)


def weighted_estimate(
    log_w: Tensor, samples: Tensor, resample: int = 0, generator: torch.Generator | None = None
) -> tuple[EvidenceEstimate, Tensor, Tensor]:
    """``importance_sampling`` from log weights log(L π / q) already computed at ``samples``."""
    log_w = log_w.double()
    finite = torch.isfinite(log_w)
    log_w = torch.where(finite, log_w, torch.full_like(log_w, -math.inf))
    # a draw outside the target's support (log L pi = -inf) is a zero weight: it counts in the mean. Averaging
    # over the finite weights only biased log Z up by -log(finite fraction): +0.08 on the demo injection,
    # where 7 % of the adaptive proposal's draws fall outside the prior or the phase window
    log_z, error = _log_moments(log_w) if finite.any() else (-math.inf, math.inf)
    weights = torch.softmax(log_w, 0)
    ess = float(1.0 / (weights**2).sum())
    chosen = (
        torch.multinomial(weights.float(), resample, replacement=True, generator=generator)
        if resample
        else torch.empty(0, dtype=torch.long)
    )
    estimate = EvidenceEstimate(log_z, error, ess, ess / len(log_w), "importance", pareto_k(log_w))
    return estimate, weights, samples[chosen]


def pareto_k(log_w: Tensor) -> float:
    """The Pareto-smoothed IS tail index k of the weights (Vehtari, Simpson, Gelman, Yao & Gabry 2024, via ArviZ):
    a generalised Pareto fitted to the largest weights. k < 0.5: the weights' variance is finite and the delta-
    method error of log Z holds; 0.5-0.7: finite mean, the error is optimistic; k > 0.7: the proposal's tails
    are too light for the estimate or its error to be trusted, whatever the ESS says."""
    import warnings

    import arviz
    import numpy as np

    finite = log_w[torch.isfinite(log_w)].double().numpy()
    if len(finite) < 10:
        return float("nan")
    with warnings.catch_warnings():  # ArviZ warns on k > 0.7 itself; the caller reports k
        warnings.simplefilter("ignore")
        return float(arviz.psislw(np.asarray(finite), reff=1.0)[1])


def learned_harmonic_mean(
    log_target: Callable[[Tensor], Tensor] | None,
    posterior: Tensor,
    temperature: float = 0.8,
    transforms: int = 3,
    hidden: tuple[int, ...] = (64, 64),
    epochs: int = 30,
    seed: int = 0,
    log_target_values: Tensor | None = None,
    in_support: Callable[[Tensor], Tensor] | None = None,
    support_draws: int = 100_000,
    effective_fraction: float = 1.0,
    groups: Tensor | None = None,
) -> EvidenceEstimate:
    """log Z from posterior samples (n, D): fit a flow on half, tempered base T < 1, estimate on the other half.

    ``log_target_values`` (n,): log(L pi) already known at the samples (an MCMC records it), so no target
    evaluation is repeated; else ``log_target`` is called on the estimation half. The standard error assumes
    independent samples: thin correlated chains to about their effective sample size first.

    ``in_support`` (x -> bool mask) for a target with bounded support (a prior edge, a folded phase window):
    the flow spreads a mass m < 1 over the support, so the ratio's mean is m / Z, not 1 / Z. m is measured by
    drawing ``support_draws`` points from the concentrated flow (no target calls) and log Z = log m - log
    rho_hat; its binomial error is added to the standard error.

    ``groups`` (n,): samples with one label go to the same half (the chain index of MCMC samples: a chain
    repeats a state after each rejection, and a flow fitted to one copy and evaluated on another is too high
    there, biasing log Z low); default: a random split of the samples."""
    from gwpe.inference.flowmc import StandardisedFlow

    if not 0 < temperature <= 1:
        raise ValueError(f"temperature = {temperature!r}; allowed: 0 < T <= 1 (concentrated)")
    generator = torch.Generator().manual_seed(seed)
    if groups is None:
        order = torch.randperm(len(posterior), generator=generator)
        fit_index, estimate_index = order[: len(order) // 2], order[len(order) // 2 :]
    else:
        groups = torch.as_tensor(groups)
        if groups.shape != (len(posterior),):
            raise ValueError(
                f"groups has shape {tuple(groups.shape)}; allowed: ({len(posterior)},), one label per sample"
            )
        labels = groups.unique()
        if len(labels) < 2:
            raise ValueError("groups has one label; allowed: at least two (e.g. the chain index of each sample)")
        chosen = labels[torch.randperm(len(labels), generator=generator)[: len(labels) // 2]]
        in_fit = torch.isin(groups, chosen)
        fit_index, estimate_index = torch.nonzero(in_fit).squeeze(1), torch.nonzero(~in_fit).squeeze(1)
    fit_half, estimate_half = posterior[fit_index], posterior[estimate_index]
    torch.manual_seed(seed)
    flow = StandardisedFlow(posterior.shape[-1], transforms, hidden)
    flow.fit(fit_half.float(), epochs, lr=1e-3, restandardise=True)
    with torch.no_grad():
        log_phi = tempered_log_prob(flow, estimate_half.float(), temperature).double()
        known = log_target_values[estimate_index] if log_target_values is not None else log_target(estimate_half)
        log_ratio = log_phi - known.double()
    if not 0 < effective_fraction <= 1:
        raise ValueError(f"effective_fraction = {effective_fraction!r}; allowed: 0 < ESS / n <= 1")
    log_rho, error = _log_moments(log_ratio)
    error /= math.sqrt(effective_fraction)
    n = len(estimate_half)
    log_mass = 0.0
    if in_support is not None:
        with torch.no_grad():
            inside = in_support(tempered_sample(flow, support_draws, temperature)).double().mean()
        if inside <= 0:
            raise ValueError("the concentrated flow puts no mass inside the target's support; check in_support")
        log_mass = float(torch.log(inside))
        error = math.hypot(error, math.sqrt(float((1 - inside) / (inside * support_draws))))
    return EvidenceEstimate(
        log_mass - log_rho, error, n * effective_fraction, effective_fraction, "learned harmonic mean"
    )


class AnnealingStalled(RuntimeError):
    """Adaptive IS asked to stop (``on_stall="raise"``) when its bridge has not reached beta = 1 after its rounds:
    the initial proposal misses the posterior. Carries the beta reached, the evaluations spent and the rounds."""

    def __init__(self, beta: float, evaluations: int, rounds: list):
        super().__init__(f"adaptive importance sampling stalled at beta = {beta:.3g} after {evaluations:,} evaluations")
        self.beta, self.evaluations, self.rounds = beta, evaluations, rounds


@dataclass
class AdaptiveRound:
    """One round of adaptive IS: β reached, its draws' ESS / n (bridge and posterior), evaluations so far."""

    beta: float  # bridge exponent reached in this round
    ess_fraction: float  # ESS / n of the round's draws for the bridge target at beta
    posterior_ess_fraction: float  # ESS / n of the same draws for the posterior (beta = 1)
    evaluations: int  # target evaluations so far


def bridge_log_weights(log_initial: Tensor, log_target: Tensor, log_q: Tensor, beta: float) -> Tensor:
    """log of q_0^(1-β) (L π)^β / q at draws from q; -inf where the target is (outside its support)."""
    inside = torch.isfinite(log_target)
    return torch.where(
        inside,
        (1 - beta) * log_initial + beta * torch.where(inside, log_target, 0.0) - log_q,
        torch.full_like(log_q, -math.inf),
    )


def ess_fraction_of(log_w: Tensor) -> float:
    """Kish ESS / n of unnormalised log weights."""
    w = torch.softmax(log_w, 0)
    return float(1.0 / (w.square().sum() * len(w)))


def bridge_exponent(log_initial: Tensor, log_target: Tensor, log_q: Tensor, beta: float, ess_fraction: float) -> float:
    """The largest β' in [β, 1] whose bridge weights q_0^(1-β') (L π)^β' / q keep ESS / n >= ``ess_fraction``
    (bisection; β itself when even that falls short, so the round refits without moving)."""

    def fraction(b: float) -> float:
        return ess_fraction_of(bridge_log_weights(log_initial, log_target, log_q, b))

    if fraction(1.0) >= ess_fraction:
        return 1.0
    low, high = beta, 1.0
    for _ in range(30):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if fraction(middle) >= ess_fraction else (low, middle)
    return low


def move_particles(
    log_target: Callable[[Tensor], Tensor],
    initial,
    x: Tensor,
    values: Tensor,
    beta: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, int]:
    """(moved particles, their log targets, target evaluations): ``steps`` random-walk Metropolis steps of every
    row of ``x`` on log pi_beta = (1 - beta) log q_0 + beta log(L pi); Gaussian steps with the particles'
    covariance times 2.38^2 / D, scaled by s: s halved when fewer than 15 % of a step's moves are accepted,
    raised by 1.5 above 40 %."""
    n, d = x.shape
    with torch.no_grad():
        log_initial = initial.log_prob(x.float()).double()
    current = (1 - beta) * log_initial + beta * torch.where(torch.isfinite(values), values, -math.inf)
    covariance = torch.cov(x.T) + 1e-12 * torch.eye(d, dtype=x.dtype)
    cholesky = torch.linalg.cholesky(covariance * 2.38**2 / d)
    scale = 0.5
    for _ in range(steps):
        proposal = x + scale * torch.randn(n, d, dtype=x.dtype, generator=generator) @ cholesky.T
        with torch.no_grad():
            target = log_target(proposal).double()
            log_initial = initial.log_prob(proposal.float()).double()
        candidate = (1 - beta) * log_initial + beta * torch.where(torch.isfinite(target), target, -math.inf)
        accept = torch.log(torch.rand(n, dtype=x.dtype, generator=generator)) < candidate - current
        accept &= torch.isfinite(candidate)
        x = torch.where(accept[:, None], proposal, x)
        values = torch.where(accept, target, values)
        current = torch.where(accept, candidate, current)
        rate = float(accept.double().mean())
        scale *= 0.5 if rate < 0.15 else (1.5 if rate > 0.4 else 1.0)
    return x, values, steps * n


def smc_anneal(
    log_target: Callable[[Tensor], Tensor],
    initial,
    n: int,
    ess_fraction: float,
    max_rounds: int,
    mcmc_steps: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
    sweeps: int = 1,
) -> tuple[Tensor, list[AdaptiveRound], float]:
    """(particles at the last beta, rounds, beta reached): sequential Monte Carlo from q_0 = ``initial`` along
    q_0^(1-beta) (L pi)^beta. n draws of q_0; each round moves beta as far as the incremental weights
    exp((beta' - beta)(log L pi - log q_0)) of the particles keep ESS / n >= ``ess_fraction``, resamples and
    moves them (``move_particles``). The particles never depend on a flow fit, so beta always advances.
    At beta = 1 they are moved 5 x ``mcmc_steps`` to decorrelate the resampled duplicates, then ``sweeps``
    sets (each ``mcmc_steps`` further on) are returned together: n x ``sweeps`` states of the posterior for a
    flow to be fitted to (4,000 particles were too few for 9 dimensions on GW150914)."""
    from tqdm.auto import tqdm

    with torch.no_grad():
        x = initial.sample(n).double()
        values = log_target(x).double()
    evaluations, beta, rounds = n, 0.0, []
    bar = tqdm(total=max_rounds, desc="SMC", unit="round", disable=not progress)
    for _ in range(max_rounds):
        with torch.no_grad():
            log_initial = initial.log_prob(x.float()).double()
        gap = torch.where(torch.isfinite(values), values - log_initial, torch.full_like(values, -math.inf))

        def fraction(b: float, start: float = beta, gap: Tensor = gap) -> float:
            return ess_fraction_of((b - start) * gap) if b > start else 1.0

        if fraction(1.0) >= ess_fraction:
            new = 1.0
        else:
            low, high = beta, 1.0
            for _ in range(40):
                middle = 0.5 * (low + high)
                low, high = (middle, high) if fraction(middle) >= ess_fraction else (low, middle)
            new = max(low, beta + 1e-6)
        log_w = (new - beta) * gap
        if not bool(torch.isfinite(log_w).any()):  # no particle inside the target's support: nothing to resample
            raise AnnealingStalled(beta, evaluations, rounds)
        pick = torch.multinomial(torch.softmax(log_w, 0).float(), n, replacement=True, generator=generator)
        beta = new
        x, values, calls = move_particles(log_target, initial, x[pick], values[pick], beta, mcmc_steps, generator)
        evaluations += calls
        rounds.append(AdaptiveRound(beta, ess_fraction_of(log_w), float("nan"), evaluations))
        bar.update()
        bar.set_postfix(beta=f"{beta:.3g}")
        if beta >= 1.0:
            break
    bar.close()
    if beta >= 1.0:  # decorrelate the resampled duplicates before a flow is fitted to them
        x, values, calls = move_particles(log_target, initial, x, values, 1.0, 5 * mcmc_steps, generator)
        evaluations += calls
        sets = [x]
        for _ in range(sweeps - 1):
            x, values, calls = move_particles(log_target, initial, x, values, 1.0, mcmc_steps, generator)
            evaluations += calls
            sets.append(x)
        x = torch.cat(sets)
        rounds.append(AdaptiveRound(1.0, 1.0, float("nan"), evaluations))
    return x, rounds, beta


def weighted_sd_error(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Relative standard error of each column's standard deviation estimated from importance-weighted draws:
    with normalised weights w, s^2 = sum w (x - mu)^2 is a self-normalised IS estimate whose variance is
    ~ sum w^2 ((x - mu)^2 - s^2)^2 (the delta method for ratio estimators, Owen 2013 ch. 9), and
    se(s) / s = se(s^2) / (2 s^2). For equal weights this is sqrt((kurtosis - 1) / 4n): a heavy tail (demo
    injection 1's m1, kurtosis 8) needs 4x the draws of a Gaussian for the same error."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    centred = np.square(x - w @ x)
    variance = w @ centred
    return 0.5 * np.sqrt(np.square(w) @ np.square(centred - variance)) / variance


def adaptive_importance_sampling(
    log_target: Callable[[Tensor], Tensor],
    flow,
    draws_per_round: int = 4000,
    ess_fraction: float = 0.5,
    max_rounds: int = 25,
    refine_rounds: int = 1,
    epochs: int = 20,
    final_ess: float = 1000.0,
    final_batch: int = 5000,
    max_final_draws: int = 50_000,
    resample: int = 0,
    final_sd_error: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    mcmc_steps: int = 0,
    particle_sweeps: int = 1,
    on_stall: str = "sample",
    wall: int | None = None,
    kernel_weight: float = 0.0,
    sd_of: Callable[[np.ndarray], np.ndarray] | None = None,
    seed_draws: Tensor | None = None,
) -> tuple[EvidenceEstimate, Tensor, Tensor, Tensor, list[AdaptiveRound]]:
    """(estimate, final draws, their normalised weights, resampled posterior, rounds) — module doc.

    ``mcmc_steps`` > 0 anneals by sequential Monte Carlo instead (``smc_anneal``: ``draws_per_round`` particles
    of the initial flow, reweighted, resampled and moved by that many random-walk Metropolis steps per round)
    and fits the flow to the particles at β = 1, then ``refine_rounds`` refits on its own draws. Reweighting flow
    draws cannot put draws where the flow has none; the moves do, which is what a rough likelihood (real noise,
    two detectors, SNR ~25) needs: there the flow rounds stalled at β = 0.008. The final draws' weights stay
    exact: the moves only shape the proposal.

    ``flow`` (a ``StandardisedFlow`` fitted to the initial proposal, e.g. NPE draws) is adapted in place:
    each round draws ``draws_per_round`` from its defensive mixture, moves β as far as ``ess_fraction``
    allows and refits the flow to the bridge-weighted draws (``epochs``, warm-started). After β reaches 1,
    ``refine_rounds`` more rounds refit at β = 1. The final importance sampling draws ``final_batch`` at a
    time until the ESS reaches ``final_ess`` (and, with ``final_sd_error``, every coordinate's sd is known to that
    relative standard error: ``weighted_sd_error``; of the columns of ``sd_of(draws)`` if given, the quantities
    reported, e.g. physical masses where the draws are in other coordinates) or ``max_final_draws``. Warns when
    β has not reached 1 after ``max_rounds`` (the initial proposal misses the posterior: more rounds, or a broader
    start); with ``on_stall="raise"`` it raises ``AnnealingStalled`` there instead of spending the final draws,
    for a caller that has another sampler to fall back on.

    ``wall`` = k: the target lives on u_k <= 0 and meets that wall with zero slope (the equal-mass wall of the
    half-probit mass coordinate). Once β reaches 1 the flow is folded there (``StandardisedFlow.wall``) for the
    refits and the final draws: folding gives back the mass an unfolded flow spills past the wall, and its fit
    covers the side next to it. Demo injection 0 (q up to 0.998), evidence stage: efficiency 45 -> 63 %, Pareto
    k 0.63 -> 0.51, every standard deviation within 1.2 % of dynesty's (nlive 1,000; before 2.2 %), same
    likelihood calls; the reference stage's run on it went 64 -> 49 % the other way, so efficiency changes of
    this size are within run-to-run scatter. Injection 1 is unchanged: its thin equal-mass ridge (0.46 % of
    dynesty's mass) is a mode of its own that the flow does not model, folded or not. The annealing itself stays
    unfolded (it only has to reach the posterior).

    ``kernel_weight`` = b > 0: from the second round on every proposal, the final one included, is
    (1 - b) x the flow's defensive mixture + b x the population Monte Carlo kernel (``pmc_kernel.WeightedKernel``)
    of the last round's bridge-weighted draws; at β = 1, of every round at β = 1 so far (exact weights of the one
    target). A flow refitted to weighted draws drops a small separate mode it cannot represent, and the final
    draws then miss it or hit it with a few huge weights; the kernel keeps drawing wherever earlier rounds found
    weight, in proportion to it. The proposal's density includes it, so the weights stay exact. Demo injection 1's
    equal-mass mode (0.5 % of the mass, 6 sd out in q), weight at m1 < 67 Msun: 0.04-0.56 % over five seeds
    without, 0.47-0.66 % over five with b = 0.3 (dynesty 0.46 %, flow-MCMC 0.43-0.62 %); but the evidence
    stage's own run read 0.13 %: a kernel learns the mode's mass from the few rounds' draws that hit it, and an
    under-estimate there perpetuates itself (weights up to 15 x the mean in the mode). ``seed_draws`` (n, D),
    posterior draws from elsewhere (``gwpe evidence`` hands in the warm flow-MCMC's), carry half the kernel's
    mass at β = 1 with equal weights, so a mode they visit is proposed in proportion to its mass, though only as
    tightly as the global bandwidth allows: injection 1's mode, 2-3 x narrower than it in q and phase, then held
    0.31 % of the weight with weights up to 16 x the mean (Pareto k 0.46)."""
    import copy

    from tqdm.auto import tqdm

    if not 0 < ess_fraction < 1:
        raise ValueError(f"ess_fraction = {ess_fraction!r}; allowed: 0 < fraction < 1")
    if on_stall not in ("sample", "raise"):
        raise ValueError(f"on_stall = {on_stall!r}; allowed: 'sample', 'raise'")
    if not 0 <= kernel_weight < 1:
        raise ValueError(f"kernel_weight = {kernel_weight!r}; allowed: 0 <= weight < 1")
    initial = copy.deepcopy(flow).requires_grad_(False)
    kernel, seen = None, []  # the PMC kernel of the rounds at beta = 1 and their draws (docstring)

    def propose(n: int) -> tuple[Tensor, Tensor]:
        if kernel is None:
            x, log_q = defensive_mixture(flow, n, generator=generator)
            return x, log_q.double()
        with torch.no_grad():
            x = draw_with_kernel(
                lambda m: defensive_mixture(flow, m, generator=generator)[0], kernel, kernel_weight, n, generator
            )
            log_q = log_prob_with_kernel(mixture_log_prob(flow, x, 1.5, 0.2).double(), kernel, kernel_weight, x)
        return x, log_q

    rounds: list[AdaptiveRound] = []
    beta, evaluations, at_one = 0.0, 0, 0
    if mcmc_steps > 0:
        particles, rounds, beta = smc_anneal(
            log_target,
            initial,
            draws_per_round,
            ess_fraction,
            max_rounds,
            mcmc_steps,
            generator,
            progress,
            particle_sweeps,
        )
        evaluations = rounds[-1].evaluations
        if beta >= 1.0 and wall is not None:
            flow.wall = wall
        flow.fit(particles.float(), epochs, restandardise=True)
        max_rounds = refine_rounds if beta >= 1.0 else 0  # then refit at beta = 1 on the flow's own draws
        at_one = 1
    bar = tqdm(total=max_rounds, desc="adaptive IS", unit="round", disable=not progress)
    for _ in range(max_rounds):
        x, log_q = propose(draws_per_round)
        with torch.no_grad():
            values = log_target(x.double()).double()
            log_initial = initial.log_prob(x).double()
        evaluations += len(x)
        beta = bridge_exponent(log_initial, values, log_q, beta, ess_fraction)
        log_w = bridge_log_weights(log_initial, values, log_q, beta)
        weights = torch.softmax(log_w, 0)
        rounds.append(
            AdaptiveRound(
                beta,
                ess_fraction_of(log_w),
                ess_fraction_of(bridge_log_weights(log_initial, values, log_q, 1.0)),
                evaluations,
            )
        )
        bar.update()
        bar.set_postfix(beta=f"{beta:.3g}", ess=f"{rounds[-1].posterior_ess_fraction:.3f}")
        if beta >= 1.0 and wall is not None:
            flow.wall = wall  # the posterior's wall from here on (docstring)
        flow.fit(x.float(), epochs, restandardise=True, weights=weights.float())
        if kernel_weight > 0:  # this round's bridge-weighted draws, with every earlier round's at beta = 1
            seen = [(b, a, w) for b, a, w in seen if b == beta] + [(beta, x, log_w)]
            at_posterior = beta >= 1.0
            kernel = kernel_from_rounds(
                [(a, w) for _, a, w in seen],
                wall if at_posterior else None,
                seed_draws if at_posterior else None,  # posterior draws: half the kernel at beta = 1
            )
        if beta >= 1.0:
            at_one += 1
            if at_one > refine_rounds:
                break
    bar.close()
    if beta < 1.0 and on_stall == "raise":
        raise AnnealingStalled(beta, evaluations, rounds)
    if beta < 1.0:  # the final weights are still exact, only fewer of them count
        warnings.warn(
            f"adaptive importance sampling reached beta = {beta:.3g} < 1 after {max_rounds} rounds; the final "
            "proposal is importance-sampled as it is (raise max_rounds for a higher efficiency)",
            stacklevel=2,
        )
    draws, log_ws = [], []
    total_ess = 0.0
    sd_error = float("inf")
    while sum(len(d) for d in draws) < max_final_draws and (
        total_ess < final_ess or (final_sd_error is not None and sd_error > final_sd_error)
    ):
        x, log_q = propose(min(final_batch, max_final_draws - sum(len(d) for d in draws)))
        with torch.no_grad():
            log_ws.append(log_target(x.double()).double() - log_q.double())
        draws.append(x.double())
        evaluations += len(x)
        w = torch.softmax(torch.cat(log_ws), 0)
        total_ess = float(1.0 / w.square().sum())
        if final_sd_error is not None:
            pooled = torch.cat(draws).numpy()
            sd_error = float(weighted_sd_error(pooled if sd_of is None else sd_of(pooled), w.numpy()).max())
    samples = torch.cat(draws)
    estimate, weights, resampled = weighted_estimate(torch.cat(log_ws), samples, resample, generator)
    rounds.append(AdaptiveRound(1.0, estimate.efficiency, estimate.efficiency, evaluations))
    return estimate, samples, weights, resampled, rounds
