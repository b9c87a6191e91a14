"""Flow-enhanced MCMC (the flowMC scheme of Gabrié, Rotskoff & Vanden-Eijnden; Wong, Gabrié & Foreman-Mackey),
in torch with a zuko flow. Domain-free: a batched log-density ``log_prob(x: (n, D)) -> (n,)`` is all it needs.

Each loop runs, for ``n_chains`` chains in parallel,

1. ``n_local`` local steps: MALA, x' = x + (eps^2 / 2) grad log p(x) + eps xi, accepted with the
   Metropolis-Hastings ratio including both proposal densities, when the log-density is differentiable;
   otherwise an adaptive Gaussian random walk with the chains' covariance (``local="rw"``). The step size
   adapts during training loops towards an acceptance of 0.574 (MALA) or 0.234 (random walk);
2. (training loops) ``flow_epochs`` epochs fitting a normalizing flow (zuko MAF, on standardised
   coordinates) by maximum likelihood to the chains' recent history; the standardisation is re-set to that
   history's mean and spread whenever they leave it, in a cold start (``StandardisedFlow.drifted``: its chains
   contract from the prior's width onto the posterior's; demo injection 1 learned in 14 loops, 28,944 calls,
   where a flow kept on the first loop's standardisation was still accepted at 1 % after 40);
3. ``n_global`` independence Metropolis-Hastings steps with the flow as proposal: y ~ q, accepted with
   min(1, p(y) q(x) / (p(x) q(y))). These jump between modes that local steps cannot cross. With
   ``defensive`` = a > 0 the proposal is the defensive mixture (1 - a) q + a q_T (the flow with a base
   N(0, T^2 I), ``defensive_mixture``): an independence sampler is only as good as sup p / q, and a chain
   that reaches a tail the flow under-covers sticks there; the broad part bounds p / q in the tails. On the
   demo's injection 0 (warm start, 45 production loops) a = 0.2, T = 1.5 with training to 40 % acceptance
   took max R-hat from 1.117 to 1.027 and min tail ESS from 179 to 732 in one run, to 1.085 and 273 in
   another whose training stopped on one lucky loop (hence two loops in a row now), at the same cost.
   The proposals do not depend on the chains' states, so a loop's ``n_global`` x ``n_chains`` draws, their
   log q and their log p are computed in one batch (as flowMC does) and only the accept/reject sweep is
   sequential: on the demo's injection 0 the cold start's run went from 125 s to 35 s (one flow pass and one
   likelihood map per loop instead of ten).

Training loops are followed by production loops with the flow frozen, whose samples are returned (the
chain is then a valid MCMC with a fixed mixture kernel). With ``production_local="latent"`` the production
loops' local steps are a random walk in the frozen flow's latent space (NeuTra, ``_latent_local_steps``): an
independence sampler sticks where p / q is large (measured on the demo: chains held for 30-60 steps at
1.5-2.3 sd out in the correlated q-phase-t_c tail, log p / q 2-4 above its median), and a latent walk, whose
target is close to N(0, I) there too, moves them out in a few steps. ``flow`` warm-starts the proposal from a given
distribution (e.g. an amortised NPE posterior for the event: anything with ``sample`` and ``log_prob``),
trained further unless ``train_flow=False``. Production goes on until its targets hold (an effective sample
size, and with ``convergence`` every parameter's rank-normalised split R-hat and tail ESS:
``gwpe.inference.convergence``) or its loop cap. Diagnostics: acceptance rates, Gelman-Rubin R-hat and the
convergence report (rank-normalised split R-hat, bulk / tail ESS) over chains, number of log-density
evaluations, effective sample size; a per-loop history of them.

``wall`` = k folds the proposal at x_k = 0 (``StandardisedFlow``), for a target on x_k <= 0 that meets that wall
with zero slope (the posterior at the equal-mass wall of the half-probit mass coordinate); the latent walk then
moves on the target mirrored across the wall and folds back (``_latent_local_steps``). Unfolded, a flow spills
mass past the wall and under-covers the side next to it, where the chains then stick: on demo injection 0 (warm)
the largest p / q over production states fell from 124x to 18x their mean when folded (100 loops to converge,
not 130), and on injection 1, whose 0.5 % equal-mass mode sits against the wall, a cold run's chains all visit
that mode where two of sixteen did (m1 sd error 8 -> 3.3 % at 320 loops).

``production_chains`` = k runs production on k of the training chains. Split R-hat has a noise floor: for exact
draws it is about sqrt(1 + 1 / n_eff), n_eff the effective draws per split chain, so many short chains cannot
read <= 1.01 however well they mix (64 chains at a total ESS of 5,300 read ~1.012; Margossian et al. 2024's
"nested R-hat" addresses the same regime). Fewer, longer chains lift n_eff for the same calls; training keeps
every chain, since the flow learns from all of them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from gwpe.inference.convergence import ConvergenceReport, ConvergenceTarget, diagnose
from gwpe.inference.pmc_kernel import draw_with_kernel, kernel_from_rounds, log_prob_with_kernel


@dataclass
class FlowMCResult:
    """Production samples (steps, chains, D) and their log-densities, acceptance rates, log-density
    evaluations, R-hat, the final proposal flow and the per-loop history."""

    samples: Tensor  # (steps, chains, D): production samples
    log_prob: Tensor  # (steps, chains)
    local_acceptance: float
    global_acceptance: float
    evaluations: int
    rhat: np.ndarray  # (D,) classic Gelman-Rubin over chains; the rank-normalised split one is in ``convergence``
    proposal: "StandardisedFlow"
    history: dict = field(default_factory=dict)
    convergence: ConvergenceReport | None = None  # R-hat, bulk / tail ESS of the production samples

    @property
    def converged(self) -> bool:
        return self.convergence is not None and self.convergence.converged

    def flat(self) -> Tensor:
        return self.samples.reshape(-1, self.samples.shape[-1])


class StandardisedFlow(torch.nn.Module):
    """q(x) = q_z((x - m) / s) / prod(s) with q_z a zuko MAF; m, s from the data it is fitted to.

    With ``wall`` = k the density lives on x_k <= 0, folded there: q_w(x) = q(x) + q(x') with x' = x, x'_k -> -x_k
    (normalised on the half space; draws are q's with x_k -> -|x_k|). For a target that meets a wall at x_k = 0
    with zero slope, as the posterior meets the equal-mass wall in the half-probit mass coordinate
    (``gwpe.inference.coordinates``), the mirrored density is smooth across it, which a flow represents, where
    an unfolded flow spills mass over the wall and under-covers the side next to it (adaptive importance
    sampling, ``evidence.adaptive_importance_sampling``'s ``wall``). Folding makes the map 2-to-1, so it is for
    densities and draws, not for NeuTra's latent space."""

    def __init__(self, dim: int, transforms: int = 4, hidden: tuple[int, ...] = (64, 64), wall: int | None = None):
        super().__init__()
        import zuko

        if wall is not None and not 0 <= wall < dim:
            raise ValueError(f"wall = {wall}; allowed: a column 0..{dim - 1} or None")
        self.dim, self.transforms, self.hidden, self.wall = dim, transforms, tuple(hidden), wall
        self.flow = zuko.flows.MAF(dim, 0, transforms=transforms, hidden_features=list(hidden))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def config(self) -> dict:
        return {"dim": self.dim, "transforms": self.transforms, "hidden": list(self.hidden), "wall": self.wall}

    @classmethod
    def from_state(cls, config: dict, state: dict[str, Tensor]) -> "StandardisedFlow":
        """Rebuild from ``config()`` and a state dict (tensors only: load it with ``weights_only=True``)."""
        flow = cls(config["dim"], config["transforms"], tuple(config["hidden"]), config.get("wall"))
        flow.load_state_dict(state)
        return flow

    def log_prob(self, x: Tensor) -> Tensor:
        return walled(self, x, lambda y: self.flow().log_prob((y - self.mean) / self.scale) - self.scale.log().sum())

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return fold_at_wall(self, self.flow().sample((n,)) * self.scale + self.mean)

    @torch.no_grad()
    def drifted(self, data: Tensor, factor: float = 2.0) -> bool:
        """Whether ``data`` (n, D) has left the standardisation: in some coordinate its mean lies more than one
        scale s from m, or its standard deviation is off s by more than ``factor``. A cold start's chains
        contract from the prior onto the posterior; a flow kept on the prior's standardisation must learn a
        density ~100x narrower than its base with a few epochs per loop (demo injection 1: chains within 8 nats
        of the maximum after 11 loops, flow proposals still accepted at 1 % after 40)."""
        centre, spread = data.mean(0), data.std(0)
        off_centre = ((centre - self.mean).abs() / self.scale).max()
        ratio = spread / self.scale
        return bool(off_centre > 1 or (ratio > factor).any() or (ratio < 1 / factor).any())

    def fit(
        self,
        data: Tensor,
        epochs: int,
        batch: int = 1024,
        lr: float = 1e-3,
        restandardise: bool = False,
        weights: Tensor | None = None,
    ) -> float:
        """Maximum likelihood on ``data`` (n, D), or with ``weights`` (n,) the weighted cross-entropy
        -sum w log q / sum w (importance-weighted draws); ``restandardise`` first sets m, s to the (weighted)
        mean and standard deviation."""
        if weights is not None:
            weights = (weights / weights.sum()).to(data.dtype)
        if restandardise and weights is None:
            self.mean.copy_(data.mean(0))
            self.scale.copy_(data.std(0).clamp_min(1e-12))
        elif restandardise:
            mean = (weights[:, None] * data).sum(0)
            self.mean.copy_(mean)
            self.scale.copy_((weights[:, None] * (data - mean).square()).sum(0).sqrt().clamp_min(1e-12))
        optimizer = torch.optim.Adam(self.flow.parameters(), lr=lr)
        loss = torch.tensor(float("nan"))
        for _ in range(epochs):
            for index in torch.randperm(len(data)).split(batch):
                if weights is None:
                    loss = -self.log_prob(data[index]).mean()
                else:
                    w = weights[index]
                    loss = -(w * self.log_prob(data[index])).sum() / w.sum().clamp_min(1e-300)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return float(loss.detach())


def fold_at_wall(flow, x: Tensor) -> Tensor:
    """Draws of ``flow``'s transform folded onto its half space x_k <= 0 (``StandardisedFlow`` doc)."""
    wall = getattr(flow, "wall", None)
    if wall is None:
        return x
    x = x.clone()
    x[..., wall] = -x[..., wall].abs()
    return x


def walled(flow, x: Tensor, log_density) -> Tensor:
    """``log_density`` (of the unfolded flow) folded at ``flow.wall``: log(q(x) + q(x')), -inf past the wall."""
    wall = getattr(flow, "wall", None)
    if wall is None:
        return log_density(x)
    mirrored = x.clone()
    mirrored[..., wall] = -mirrored[..., wall]
    out = torch.logaddexp(log_density(x), log_density(mirrored))
    return torch.where(x[..., wall] <= 0, out, torch.full_like(out, -math.inf))


def defensive_mixture(
    flow, n: int, broad_temperature: float = 1.5, broad_weight: float = 0.2, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(n draws, their log density) of (1 - a) q + a q_T: the flow mixed with itself at a broader base
    N(0, T^2 I), T > 1 (defensive importance sampling, Hesterberg 1995). Where q's tails are too light the
    broad part bounds the weights L pi / q_mix, at most 1/a more draws where q alone fits. The draws come
    grouped by component (q's first): only the whole set, or a random subset, is a sample of the mixture."""
    if not 0 < broad_weight < 1 or broad_temperature <= 1:
        raise ValueError(
            f"broad_weight = {broad_weight!r}, broad_temperature = {broad_temperature!r}; allowed: 0 < a < 1, T > 1"
        )
    with torch.no_grad():
        broad = torch.rand(n, generator=generator) < broad_weight
        draws = torch.cat(
            [
                tempered_sample(flow, int((~broad).sum()), 1.0),
                tempered_sample(flow, int(broad.sum()), broad_temperature),
            ]
        )
        log_q = torch.logsumexp(
            torch.stack(
                [
                    math.log1p(-broad_weight) + tempered_log_prob(flow, draws, 1.0),
                    math.log(broad_weight) + tempered_log_prob(flow, draws, broad_temperature),
                ]
            ),
            0,
        )
    return draws, log_q


def tempered_sample(flow, n: int, temperature: "float | Tensor") -> Tensor:
    """n draws from the flow with its base N(0, I) replaced by N(0, T^2 I) (T a float, or (n, 1) per draw)."""
    transform = flow.flow().transform
    z = temperature * torch.randn(n, flow.mean.shape[0])
    return fold_at_wall(flow, transform.inv(z) * flow.scale + flow.mean)


def tempered_log_prob(flow, x: Tensor, temperature: float) -> Tensor:
    """log density of the flow with its N(0, I) base replaced by N(0, T^2 I) (normalised)."""
    transform = flow.flow().transform
    d = x.shape[-1]

    def unfolded(y: Tensor) -> Tensor:
        z, ladj = transform.call_and_ladj((y - flow.mean) / flow.scale)
        log_base = (
            -0.5 * (z / temperature).square().sum(-1) - d * math.log(temperature) - 0.5 * d * math.log(2 * math.pi)
        )
        return log_base + ladj - flow.scale.log().sum()

    return walled(flow, x, unfolded)


def mixture_log_prob(flow, x: Tensor, temperature: float, broad_weight: float) -> Tensor:
    """log of (1 - a) q(x) + a q_T(x) (``defensive_mixture``'s density) with one pass through the flow: both
    parts share z = f(x) and its log-Jacobian, only the base differs."""
    transform = flow.flow().transform
    d = x.shape[-1]

    def unfolded(y: Tensor) -> Tensor:
        z, ladj = transform.call_and_ladj((y - flow.mean) / flow.scale)
        square = z.square().sum(-1)
        base = torch.logsumexp(
            torch.stack(
                [
                    math.log1p(-broad_weight) - 0.5 * square,
                    math.log(broad_weight) - 0.5 * square / temperature**2 - d * math.log(temperature),
                ]
            ),
            0,
        )
        return base - 0.5 * d * math.log(2 * math.pi) + ladj - flow.scale.log().sum()

    return walled(flow, x, unfolded)


@contextmanager
def one_thread():
    """torch on one intra-op thread inside the block: the sequential inverse of a MAF on tens of rows (D passes
    of a small MADE) only pays synchronisation for more (measured 4 ms a call with one thread, 10 ms with two,
    beside the likelihood's template workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gelman_rubin_rhat(chains: Tensor) -> np.ndarray:
    """R-hat per dimension for samples (steps, chains, D) (Gelman et al., BDA3 eq. 11.4)."""
    x = chains.double()
    n = x.shape[0]
    within = x.var(0, unbiased=True).mean(0)
    between = n * x.mean(0).var(0, unbiased=True)
    var_plus = (n - 1) / n * within + between / n
    return torch.sqrt(var_plus / within).numpy()


CHECK_GROWTH = 0.05  # production grows by this fraction between checks of FlowMC.run's stop condition


class FlowMC:
    """See the module docstring. ``log_prob`` maps (n, D) to (n,); it is called on batches of chains."""

    def __init__(
        self,
        log_prob: Callable[[Tensor], Tensor],
        dim: int,
        n_chains: int = 64,
        local: str = "mala",
        step_size: float = 0.3,
        n_local: int = 20,
        n_global: int = 10,
        training_loops: int = 10,
        production_loops: int = 10,
        flow_epochs: int = 5,
        history_loops: int = 3,
        transforms: int = 4,
        hidden: tuple[int, ...] = (64, 64),
        learning_rate: float = 1e-3,
        flow: StandardisedFlow | None = None,
        train_flow: bool = True,
        seed: int = 0,
        n_local_production: int | None = None,
        defensive: float = 0.0,
        defensive_temperature: float = 1.5,
        production_local: str = "chain",
        latent_step: float = 1.0,
        production_chains: int | None = None,
        refine_rounds: int = 0,
        refine_draws: int = 2000,
        kernel_weight: float = 0.0,
        wall: int | None = None,
    ):
        if refine_rounds < 0 or refine_draws < 2:
            raise ValueError(f"refine_rounds = {refine_rounds!r}, refine_draws = {refine_draws!r}; allowed: >= 0, >= 2")
        self.refine_rounds, self.refine_draws = int(refine_rounds), int(refine_draws)
        if not 0 <= kernel_weight < 1:
            raise ValueError(f"kernel_weight = {kernel_weight!r}; allowed: 0 <= weight < 1")
        self.kernel_weight, self.kernel = float(kernel_weight), None
        if local not in ("mala", "rw"):
            raise ValueError(f"local = {local!r}; allowed: mala, rw")
        if production_local not in ("chain", "latent") or (production_local == "latent" and local != "rw"):
            raise ValueError(
                f"production_local = {production_local!r} with local = {local!r}; allowed: chain, or latent with rw"
            )
        self.production_local, self.latent_step = production_local, float(latent_step)
        if production_chains is not None and not 2 <= production_chains <= n_chains:
            raise ValueError(f"production_chains = {production_chains!r}; allowed: 2 <= k <= n_chains ({n_chains})")
        # fewer, longer production chains: R-hat's noise floor (module doc)
        self.production_chains = n_chains if production_chains is None else int(production_chains)
        self.target, self.dim, self.n_chains, self.local = log_prob, dim, n_chains, local
        self.training_chains = n_chains
        self.step_size, self.n_local, self.n_global = step_size, n_local, n_global
        # production mixes mostly through the frozen flow's global moves; fewer local steps there cost fewer calls
        self.n_local_production = n_local if n_local_production is None else n_local_production
        self.training_loops, self.production_loops = training_loops, production_loops
        self.flow_epochs, self.history_loops, self.learning_rate = flow_epochs, history_loops, learning_rate
        # ``wall``: a new proposal is folded at it (``StandardisedFlow``); a given ``flow`` keeps its own
        self.proposal = flow if flow is not None else StandardisedFlow(dim, transforms, hidden, wall)
        self.warm = flow is not None
        self.train_flow = train_flow
        self.generator = torch.Generator().manual_seed(seed)
        self.evaluations = 0
        if not 0 <= defensive < 1 or defensive_temperature <= 1:
            raise ValueError(
                f"defensive = {defensive!r}, defensive_temperature = {defensive_temperature!r}; "
                "allowed: 0 <= a < 1, T > 1"
            )
        self.defensive, self.defensive_temperature = float(defensive), float(defensive_temperature)

    def _enter_production(self, x: Tensor, logp: Tensor, grad: Tensor | None) -> tuple:
        """Production runs on the first ``production_chains`` chains (exchangeable: every chain started from
        an independent draw and went through the same training loops)."""
        k = self.production_chains
        self.n_chains = k
        return x[:k], logp[:k], None if grad is None else grad[:k]

    def _refine_proposal(self) -> None:
        """``refine_rounds`` importance-weighted refits of the proposal at the end of training: ``refine_draws``
        draws of the global proposal, weights p / q, the flow refitted to them (weighted cross-entropy, as adaptive
        IS's rounds at beta = 1). Chain states teach the flow only where the chains already go; the weights are
        largest where q under-covers p (the defensive part's draws reach there), so each refit moves mass into the
        tails the chains rarely visit.

        With ``kernel_weight`` = b > 0 the global proposal becomes (1 - b) x the flow's + b x the PMC kernel of
        every refine round's weighted draws (``pmc_kernel.WeightedKernel``, as in adaptive IS), frozen for
        production: a small separate mode the flow cannot fit (demo injection 1's at equal mass) is then proposed
        in proportion to its weight, so chains enter and leave it through global moves instead of sticking
        there, where q << p makes leaving rare. With an unfolded flow, b = 0.3 took demo injection 1's cold run's
        m1 sd error from 8 to 1.6 % but left injection 0's runs at 4 % (chains held at the equal-mass wall and at
        q = 0.53, p / q up to 750x the mean). With the flow folded at the wall (``wall``) injection 0's warm run
        converges in 100 loops with or without it, and it takes injection 1's cold run from 3.3 to 2.0 % at 320
        loops, the equal-mass mode from 0.27 to 0.42 % (dynesty 0.46 %). Off unless asked (``flowmc.kernel_weight``;
        the demo profile sets 0.3)."""
        self.kernel, seen = None, []
        for _ in range(self.refine_rounds):
            with torch.no_grad():
                draws = self._proposal_sample(self.refine_draws)
                log_q = self._proposal_log_prob(draws).double()
            log_p, _ = self._log_prob(draws, grad=False)
            log_w = torch.where(torch.isfinite(log_p), log_p.double() - log_q, torch.full_like(log_q, -math.inf))
            if not bool(torch.isfinite(log_w).any()):
                return
            weights = torch.softmax(log_w, 0).float()
            self.proposal.fit(  # standardisation as training left it
                draws.float(), self.flow_epochs, lr=self.learning_rate, restandardise=not self.warm, weights=weights
            )
            if self.kernel_weight > 0:  # every round's weights are exact for the one target
                seen.append((draws, log_w))
                self.kernel = kernel_from_rounds(seen, self.proposal.wall)

    def _proposal_log_prob(self, x: Tensor) -> Tensor:
        if self.defensive > 0:
            flow = mixture_log_prob(self.proposal, x.float(), self.defensive_temperature, self.defensive)
        else:
            flow = self.proposal.log_prob(x)
        if self.kernel is None:
            return flow
        return log_prob_with_kernel(flow, self.kernel, self.kernel_weight, x)

    def _proposal_sample(self, n: int) -> Tensor:
        if self.kernel is None:
            return self._flow_sample(n)
        return draw_with_kernel(self._flow_sample, self.kernel, self.kernel_weight, n, self.generator)

    def _flow_sample(self, n: int) -> Tensor:
        """``n`` draws from the global proposal: the flow, or its defensive mixture (module doc) in one pass
        through the flow (a draw of q_T is the flow's inverse of T z)."""
        if self.defensive <= 0:
            return self.proposal.sample(n)
        broad = torch.rand(n, generator=self.generator) < self.defensive
        temperature = torch.where(broad, self.defensive_temperature, 1.0)[:, None]
        return tempered_sample(self.proposal, n, temperature)

    def _log_prob(self, x: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        self.evaluations += x.shape[0]
        if not grad:
            with torch.no_grad():
                return self.target(x), None
        x = x.detach().requires_grad_(True)
        value = self.target(x)
        (gradient,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), gradient.detach()

    def _local_steps(
        self, x, logp, grad, adapt: bool, steps: int
    ) -> tuple[Tensor, Tensor, Tensor | None, float, list, list]:
        accepted = 0.0
        states, state_logps = [], []
        cov_chol = None
        if self.local == "rw":
            cov = torch.cov(x.T) + 1e-9 * torch.eye(self.dim) if self.n_chains > self.dim else torch.eye(self.dim)
            cov_chol = torch.linalg.cholesky(cov * (2.38**2 / self.dim))
        target_rate = 0.574 if self.local == "mala" else 0.234
        for _ in range(steps):
            noise = torch.randn(x.shape, generator=self.generator)
            eps = self.step_size
            if self.local == "mala":
                proposal = x + 0.5 * eps**2 * grad + eps * noise
                logp_new, grad_new = self._log_prob(proposal, grad=True)
                forward = -((proposal - x - 0.5 * eps**2 * grad) ** 2).sum(-1) / (2 * eps**2)
                backward = -((x - proposal - 0.5 * eps**2 * grad_new) ** 2).sum(-1) / (2 * eps**2)
                log_alpha = logp_new - logp + backward - forward
            else:
                proposal = x + eps * noise @ cov_chol.T
                logp_new, grad_new = self._log_prob(proposal, grad=False)
                log_alpha = logp_new - logp
            accept = torch.log(torch.rand(self.n_chains, generator=self.generator)) < log_alpha
            accept &= torch.isfinite(logp_new)
            x = torch.where(accept[:, None], proposal, x)
            logp = torch.where(accept, logp_new, logp)
            if grad is not None and grad_new is not None:
                grad = torch.where(accept[:, None], grad_new, grad)
            rate = float(accept.float().mean())
            accepted += rate
            states.append(x.clone())
            state_logps.append(logp.clone())
            if adapt:  # Robbins-Monro on log(step size), towards the optimal acceptance
                self.step_size = float(math.exp(math.log(self.step_size) + 0.05 * (rate - target_rate)))
        return x, logp, grad, accepted / max(1, steps), states, state_logps

    def _latent_local_steps(self, x, logp, steps: int) -> tuple[Tensor, Tensor, None, float, list, list]:
        """Random-walk Metropolis in the frozen flow's latent space z = f((x - m) / s) (NeuTra; Hoffman et al.
        2019): the target there, p_z(z) = p(x) / |dz/dx|, is close to N(0, I) where q is close to p, so one
        fixed step 2.38 / sqrt(D) x ``latent_step`` suits every region, the tails included, where the independence
        moves stick (a chain at a point with a large p / q waits for a proposal of comparable weight).

        With the flow folded at a wall (``StandardisedFlow``) its transform is the unfolded q, which fits the
        target mirrored across the wall, p(fold(x)) on the whole space: each chain is put on either side with
        probability 1/2 (both have the same density, so the mirrored target is kept), walks there, and is folded
        back. Each of the three maps keeps the target, so the kernel does."""
        flow = self.proposal
        transform = flow.flow().transform
        scale = 2.38 / math.sqrt(self.dim) * self.latent_step
        accepted = 0.0
        states, state_logps = [], []
        with one_thread(), torch.no_grad():
            if flow.wall is not None:  # on the mirrored target p(fold(x)): each chain to either side at random
                x = x.clone()
                flip = torch.rand(self.n_chains, generator=self.generator) < 0.5
                x[flip, flow.wall] = -x[flip, flow.wall]
            z, forward_ladj = transform.call_and_ladj(((x - flow.mean) / flow.scale).float())
            log_latent = logp - forward_ladj.to(logp.dtype)
            for _ in range(steps):
                z_new = z + scale * torch.randn(z.shape, generator=self.generator)
                standard, inverse_ladj = transform.inv.call_and_ladj(z_new)
                proposal = (standard * flow.scale + flow.mean).to(x.dtype)
                finite = torch.isfinite(proposal).all(-1) & torch.isfinite(inverse_ladj)
                proposal = torch.where(finite[:, None], proposal, x)  # an overflowing inverse is rejected below
                logp_new, _ = self._log_prob(fold_at_wall(flow, proposal), grad=False)
                log_latent_new = logp_new + inverse_ladj.to(logp.dtype)
                accept = torch.log(torch.rand(self.n_chains, generator=self.generator)) < log_latent_new - log_latent
                accept &= finite & torch.isfinite(logp_new)
                x = torch.where(accept[:, None], proposal, x)
                z = torch.where(accept[:, None], z_new, z)
                logp = torch.where(accept, logp_new, logp)
                log_latent = torch.where(accept, log_latent_new, log_latent)
                accepted += float(accept.float().mean())
                states.append(fold_at_wall(flow, x).clone())
                state_logps.append(logp.clone())
        return fold_at_wall(flow, x), logp, None, accepted / max(1, steps), states, state_logps

    def _global_steps(self, x, logp, grad) -> tuple[Tensor, Tensor, Tensor | None, float, list, list]:
        """``n_global`` independence MH steps. Their proposals do not depend on the chains' states, so the block's
        draws and their log q and log p are computed in one batch (as flowMC does), and only the accept/reject
        sweep is sequential: one pass through the flow and one likelihood map a loop instead of ``n_global``."""
        steps, chains = self.n_global, self.n_chains
        if steps == 0:
            return x, logp, grad, 0.0, [], []
        with torch.no_grad():
            logq = self._proposal_log_prob(x)
            proposals = self._proposal_sample(steps * chains).to(x.dtype)
            logq_new = self._proposal_log_prob(proposals).reshape(steps, chains)
        logp_new, grad_new = self._log_prob(proposals, grad=self.local == "mala")
        proposals, logp_new = proposals.reshape(steps, chains, -1), logp_new.reshape(steps, chains)
        if grad_new is not None:
            grad_new = grad_new.reshape(steps, chains, -1)
        accepted = 0.0
        states, state_logps = [], []
        for k in range(steps):
            log_alpha = logp_new[k] - logp + logq - logq_new[k]
            accept = (torch.log(torch.rand(chains, generator=self.generator)) < log_alpha) & torch.isfinite(logp_new[k])
            x = torch.where(accept[:, None], proposals[k], x)
            logp = torch.where(accept, logp_new[k], logp)
            logq = torch.where(accept, logq_new[k], logq)
            if grad is not None:
                grad = torch.where(accept[:, None], grad_new[k], grad)
            accepted += float(accept.float().mean())
            states.append(x.clone())
            state_logps.append(logp.clone())
        return x, logp, grad, accepted / steps, states, state_logps

    def run(
        self,
        initial: Tensor,
        progress: bool = False,
        train_until: float | None = None,
        target_ess: float | None = None,
        max_production_loops: int | None = None,
        target_rhat: float | None = None,
        convergence: ConvergenceTarget | None = None,
        reported: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> FlowMCResult:
        """Training then production loops from ``initial`` (n_chains, D).

        ``train_until``: stop training once two loops in a row have their flow proposals accepted at this rate
        (the flow has learned the target), else after ``training_loops``. ``target_ess``: after
        ``production_loops``, go on until the production samples hold this effective sample size (chains x steps /
        max integrated autocorrelation time) or ``max_production_loops`` are done; ``target_rhat`` also asks every
        rank-normalised R-hat below it, ``convergence`` every R-hat and tail ESS at its target (checked only once
        the cheaper conditions hold), on ``reported(x)`` ((n, D) -> (n, P)) where given, e.g. the parameters whose
        widths are compared rather than the sampler's coordinates. ``history`` records, per loop, the phase,
        acceptance rates, cumulative log-density evaluations and, where checked, the max R-hat and min tail ESS."""
        from tqdm import tqdm

        self.n_chains = self.training_chains  # a previous run's production left it at production_chains
        x = initial.detach().clone().double() if initial.dtype == torch.float64 else initial.detach().clone().float()
        if x.shape != (self.n_chains, self.dim):
            raise ValueError(f"initial positions of shape {tuple(x.shape)}; expected ({self.n_chains}, {self.dim})")
        logp, grad = self._log_prob(x, grad=self.local == "mala")
        chain_history: list[Tensor] = []
        samples, logps, local_rates, global_rates = [], [], [], []
        log = {
            "phase": [],
            "local_acceptance": [],
            "global_acceptance": [],
            "evaluations": [],
            "ess": [],
            "max_rhat": [],
            "min_ess_tail": [],
            "restandardised": [],
        }
        most_production = max(self.production_loops, max_production_loops or 0)
        bar = tqdm(
            total=self.training_loops + self.production_loops, desc="flow-MCMC", unit="loop", disable=not progress
        )
        training, loop, produced, next_check = self.training_loops > 0, 0, 0, self.production_loops
        if not training:
            x, logp, grad = self._enter_production(x, logp, grad)
        while True:
            if not training and self.production_local == "latent":
                x, logp, grad, local_rate, states, state_logps = self._latent_local_steps(
                    x, logp, self.n_local_production
                )
            else:
                x, logp, grad, local_rate, states, state_logps = self._local_steps(
                    x, logp, grad, adapt=training, steps=self.n_local if training else self.n_local_production
                )
            restandardise = False
            if training and self.train_flow:
                chain_history.append(torch.stack(states))
                data = torch.cat(chain_history[-self.history_loops :]).reshape(-1, self.dim)
                # the flow is re-standardised on the chains' states on the first loop, then whenever they move off
                # its coordinates (``drifted``), as a cold start's chains contract onto the posterior. A warm flow
                # too: kept on the NPE draws' standardisation, which the GNPE MAF's wide t_c tail sets, demo
                # injection 0's warm run took 115,264 calls (seed 0) and > 12 min (seed 1), re-set on drift alone
                # 57,984-115,264, re-set on loop 0 as well 79,424 and 80,064 (71 and 76 s)
                restandardise = loop == 0 or self.proposal.drifted(data)
                self.proposal.fit(data.float(), self.flow_epochs, lr=self.learning_rate, restandardise=restandardise)
            x, logp, grad, global_rate, global_states, global_logps = self._global_steps(x, logp, grad)
            ess, worst_rhat, thinnest_tail = float("nan"), float("nan"), float("nan")
            mixed = False
            if not training:  # every state of the frozen-flow kernel is kept: local steps, then each global step
                samples += [*states, *global_states]
                logps += [*state_logps, *global_logps]
                global_rates.append(global_rate)
                local_rates.append(local_rate)
                produced += 1
                # the stop is checked after every CHECK_GROWTH more production (at least one loop): each check
                # reads every draw so far, and checked every loop they cost O(loops^2) (demo injection 0's warm
                # run, 293 loops: ~0.3 s a check at the end, ~50 of its 130 s)
                due = produced >= max(self.production_loops, next_check)
                if due:
                    next_check = produced + max(1, int(CHECK_GROWTH * produced))
                if due and target_ess is not None:
                    ess = effective_sample_size(torch.stack(samples))
                if due and (target_ess is None or ess >= target_ess):
                    mixed = True
                    if target_rhat is not None or convergence is not None:  # ArviZ only when it can decide
                        report = _diagnosed(torch.stack(samples), convergence, reported)
                        worst_rhat, thinnest_tail = float(np.max(report.rhat)), float(np.min(report.ess_tail))
                        mixed = (target_rhat is None or worst_rhat <= target_rhat) and (
                            convergence is None or report.converged
                        )
            for key, value in (
                ("phase", "training" if training else "production"),
                ("local_acceptance", local_rate),
                ("global_acceptance", global_rate),
                ("evaluations", self.evaluations),
                ("ess", ess),
                ("max_rhat", worst_rhat),
                ("min_ess_tail", thinnest_tail),
                ("restandardised", restandardise),
            ):
                log[key].append(value)
            loop += 1
            bar.update()
            bar.set_postfix(phase=log["phase"][-1], global_acc=f"{global_rate:.2f}", evals=self.evaluations)
            if training:
                # two loops in a row: one loop's rate over chains x global steps is noisy (a lucky loop ended
                # training with a flow accepted at 0.30 in production, R-hat 1.085, where 0.44 gave 1.027)
                rates = log["global_acceptance"][-2:]
                learned = train_until is not None and len(rates) == 2 and min(rates) >= train_until
                if learned or loop >= self.training_loops:
                    training = False
                    if self.train_flow:
                        self._refine_proposal()
                    x, logp, grad = self._enter_production(x, logp, grad)
                    bar.total = loop + self.production_loops
                    bar.refresh()
            elif produced >= self.production_loops and (mixed or produced >= most_production):
                break
            elif produced >= self.production_loops:
                bar.total += 1
        bar.close()
        stacked = torch.stack(samples)
        report = _diagnosed(stacked, convergence, reported)
        report.rounds = produced
        return FlowMCResult(
            stacked,
            torch.stack(logps),
            float(np.mean(local_rates)),
            float(np.mean(global_rates)),
            self.evaluations,
            gelman_rubin_rhat(stacked),
            self.proposal,
            log,
            report,
        )


def _diagnosed(samples: Tensor, target: ConvergenceTarget | None, reported=None) -> ConvergenceReport:
    """``diagnose`` of (steps, chains, D) samples, or of their ``reported`` columns."""
    x = samples.double().numpy()
    if reported is not None:
        steps, chains, dim = x.shape
        x = reported(x.reshape(-1, dim)).reshape(steps, chains, -1)
    return diagnose(x, target)


def effective_sample_size(chains: Tensor) -> float:
    """chains x steps / max over dimensions of the integrated autocorrelation time (emcee's estimator,
    Goodman & Weare 2010; ``tol=0`` so short chains still report) of samples (steps, chains, D)."""
    from emcee.autocorr import integrated_time

    steps = chains.shape[0]
    if steps < 4:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # a dimension no chain has moved in yet has no ACF
        tau = np.nan_to_num(integrated_time(chains.double().numpy(), tol=0), nan=float(steps))
    return float(steps * chains.shape[1] / max(1.0, float(np.max(tau))))


class LatentTransport:
    """Sampling in a flow's latent space (NeuTra; Hoffman et al. 2019, arXiv:1903.03704): with u = f^-1(z) for
    a ``StandardisedFlow`` q fitted to the target p, the latent density p_z(z) = p(f^-1(z)) |d f^-1 / d z| is
    close to N(0, I) where q is close to p, so a local or ensemble sampler there mixes in a few steps where the
    original coordinates' curved, correlated posterior took hundreds. The chain is exact for p_z, and mapped
    back it is exact for p: q only shapes the geometry, as a preconditioner."""

    def __init__(self, flow: StandardisedFlow):
        self.flow = flow
        self.mean = flow.mean.double().numpy()
        self.scale = flow.scale.double().numpy()
        self.log_scale = float(np.log(self.scale).sum())

    def to_latent(self, u: np.ndarray) -> np.ndarray:
        """z = f((u - m) / s) for rows of u (n, D)."""
        with torch.no_grad():
            x = torch.as_tensor((np.atleast_2d(u) - self.mean) / self.scale, dtype=torch.float32)
            return self.flow.flow().transform(x).double().numpy()

    def from_latent(self, z: np.ndarray, fold: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(u, log |d u / d z|) for rows of z (n, D); non-finite where the inverse overflows. A flow folded at a
        wall maps z to the whole space and u is folded back: the latent chain then samples the target mirrored
        across the wall, p(fold(u)), and its folded draws the target (``FlowMC._latent_local_steps``).
        ``fold=False``: u as the unfolded flow maps it (past the wall for part of z)."""
        with one_thread(), torch.no_grad():
            latent = torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)
            x, ladj = self.flow.flow().transform.inv.call_and_ladj(latent)
            u = x.double() * torch.as_tensor(self.scale) + torch.as_tensor(self.mean)
            if fold:
                u = fold_at_wall(self.flow, u)
        return u.numpy(), ladj.double().numpy() + self.log_scale

    def density(
        self, log_density: Callable[[np.ndarray], np.ndarray], one_side: bool = False
    ) -> Callable[[np.ndarray], np.ndarray]:
        """z -> log p(f^-1(z)) + log |d f^-1 / d z| for a batched numpy ``log_density`` of u.

        ``one_side`` (a flow folded at a wall): -inf where the unfolded flow maps z past the wall, so the chain
        samples p on the target's own side only, where p_z is close to N(0, I), not the mirrored target, whose
        second copy sits wherever the unfolded flow put its spill (a thin region of z with p_z >> N(0, I)). For
        an ensemble sampler the difference is large: emcee on demo injection 0, 32 walkers x 6,000 steps,
        mirrored: autocorrelation times 91-193 steps, R-hat 1.011-1.024, walkers 26-57 % of the time past the
        wall; one side: 22-27 steps, R-hat <= 1.005, acceptance 0.16 -> 0.28 (2026-12-07)."""
        wall = getattr(self.flow, "wall", None) if one_side else None

        def latent(z: np.ndarray) -> np.ndarray:
            u, log_jacobian = self.from_latent(z, fold=wall is None)
            out = np.full(len(u), -np.inf)
            finite = np.isfinite(log_jacobian) & np.all(np.isfinite(u), axis=1)
            if wall is not None:
                finite &= u[:, wall] <= 0
            if finite.any():
                out[finite] = log_density(u[finite]) + log_jacobian[finite]
            return out

        return latent
