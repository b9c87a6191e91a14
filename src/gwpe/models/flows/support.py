"""Posteriors on the prior's support: a fixed bijection between the support and R^F around any posterior model.

A model with ``support`` learns q_u(u | y) over unbounded coordinates u = T(x), x the standardised parameters
(z = (theta - mean) / std, what the data modules yield); the posterior over x is the change of variables

    log p(x | y) = log q_u(T(x) | y) + log |det dT/dx|,        x = T^{-1}(u),  u ~ q_u(. | y),

so every draw lies inside the support and ``log_prob`` is the normalised density on it, Jacobian included (p-p
tests, importance weights, JS and evidences keep their meaning). Pieces of T, each on its own columns:

- ``interval`` [a, b] (a bounded parameter): s = (theta - a) / (b - a), u = Phi^{-1}(s) (probit, Phi the
  standard normal CDF); log |du/dtheta| = -log(b - a) - log phi(u) = -log(b - a) + u^2 / 2 + log(2 pi) / 2.
  With ``power`` p, s = (theta^p - a^p) / (b^p - a^p), the CDF of a prior ~ theta^(p-1) (d_L's volumetric
  prior, p = 3), so that prior maps to exactly N(0, 1) and the flow learns how the data move the posterior
  away from it; log |ds/dtheta| = log p + (p - 1) log theta - log(b^p - a^p).
  Probit, not logit: a posterior that stays high up to a bound (the data pushing against the prior, e.g.
  d_L at its upper end for a quiet signal, m2 near m1 for equal masses) becomes a tail in u with the shape of
  dtheta/du; the probit's is Gaussian, which the flows' Gaussian base and affine maps represent, the logit's
  exponential. Measured on the demo's MAF: the logit left its validation NLL at 1.07 nat (0.14 unbounded),
  worst for truths near a bound (+138 nat at d_L = 1003 Mpc). A uniform prior maps to exactly N(0, 1);
- ``mass_triangle`` (m1, m2) on {a <= m2 <= m1 <= b} (the strain priors' masses; bilby's and DINGO's
  sampling coordinates): the chirp mass M_c through a scaled probit over its whole range
  [M_c(a, a), M_c(b, b)], then nu = m2 / m1 through a scaled probit over its range at that M_c,
  [nu_min(M_c), 1] (``physics.ratio_range_at_chirp_mass``, by bisection: m1 <= b and m2 >= a);
  |d(m1, m2)/d(M_c, nu)| = m1^2 / M_c. The map is triangular (M_c, then nu given M_c), so its Jacobian is the
  product of the two diagonal terms. The data measure M_c best, so the flow sees the narrow chirp-mass
  posterior along one coordinate of its own, whatever nu; scaling M_c by its range at each nu instead (the
  first version) bent that ridge and widened the demo MAF's chirp-mass intervals by 17 %;
- ``periodic`` [a, b) (an angle whose periodicity the model handles itself, the MAF's phi0 ``phase``
  symmetry): u = x, no Jacobian; draws are wrapped into [a, b) in physical units (the model's own fold works in
  standardised units, where an ulp can land a draw at 2 pi + 1e-16), and log p = -inf outside [a, b];
- columns in no piece stay as they are (u = x): unbounded parameters.

T works in float64 and measures s from the nearer bound (Phi^{-1}(1 - s') = -Phi^{-1}(s'), so both edges keep
full precision). Points within ``TOLERANCE`` (in s, the unit interval) outside the support, which float32
rounding of prior draws on the edge produces, are clamped to [``EDGE``, 1 - ``EDGE``]; points farther out have
log p = -inf. Draws are exactly inside: theta = a + (b - a) Phi(u) never leaves [a, b].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.special import ndtr, ndtri

from gwpe import physics

TOLERANCE = 1e-6  # float32 z of a prior draw on the edge lands up to ~1e-7 of the range outside it
EDGE = 1e-12  # clamp of s in the probit: |u| <= 7.03
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)
PIECES = ("interval", "mass_triangle", "periodic")


def _probit(theta: Tensor, low, high) -> tuple[Tensor, Tensor, Tensor]:
    """(u = Phi^{-1}((theta - low) / (high - low)), log |du/ds| = u^2 / 2 + log(2 pi) / 2, inside the tolerated
    support); s measured from the nearer bound and clamped into [EDGE, 1 - EDGE]."""
    below, above = (theta - low) / (high - low), (high - theta) / (high - low)
    inside = (below >= -TOLERANCE) & (above >= -TOLERANCE)
    below, above = below.clamp(EDGE, 1.0), above.clamp(EDGE, 1.0)
    u = torch.where(below < 0.5, ndtri(below), -ndtri(above))
    return u, 0.5 * u.square() + HALF_LOG_TWO_PI, inside


def _normal_cdf(u: Tensor, low, high) -> tuple[Tensor, Tensor]:
    """(theta = low + (high - low) Phi(u), from the nearer bound; log |dtheta/du| without log(high - low))."""
    theta = torch.where(u < 0, low + (high - low) * ndtr(u), high - (high - low) * ndtr(-u))
    return theta, -0.5 * u.square() - HALF_LOG_TWO_PI


def chirp_range(low: float, high: float) -> tuple[float, float]:
    """(M_c(low, low), M_c(high, high)): the chirp masses of the triangle low <= m2 <= m1 <= high."""
    return float(physics.chirp_mass(low, low)), float(physics.chirp_mass(high, high))


class ParameterSupport(nn.Module):
    """T: standardised parameters x -> unbounded u (module doc), from a JSON-able config:

    {"parameters": [...], "mean": [...], "std": [...],
     "pieces": [{"kind": "interval", "index": k, "low": a, "high": b, "power": p (optional, 1)},
                {"kind": "mass_triangle", "index": [i_m1, i_m2], "low": a, "high": b}, ...]}
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = check_support(config)
        self.register_buffer("mean", torch.tensor(self.config["mean"], dtype=torch.float64), persistent=False)
        self.register_buffer("std", torch.tensor(self.config["std"], dtype=torch.float64), persistent=False)
        self.pieces = self.config["pieces"]
        columns = []
        for piece in self.pieces:
            if piece["kind"] != "periodic":
                columns += piece["index"] if piece["kind"] == "mass_triangle" else [piece["index"]]
        self.columns = sorted(columns)  # the columns T changes; the others pass through
        self.log_std = float(self.std[self.columns].log().sum()) if columns else 0.0

    def describe(self) -> str:
        """One line naming the parameterisation, e.g. for ``gwpe infer``'s output."""
        names = self.config["parameters"]
        parts = []
        for piece in self.pieces:
            if piece["kind"] == "interval":
                power = piece.get("power", 1.0)
                of = names[piece["index"]] + (f"^{power:g}" if power != 1.0 else "")
                parts.append(f"{of} probit[{piece['low']:g}, {piece['high']:g}]")
            elif piece["kind"] == "periodic":
                parts.append(f"{names[piece['index']]} periodic[{piece['low']:g}, {piece['high']:g})")
            else:
                i, j = piece["index"]
                parts.append(
                    f"({names[i]}, {names[j]}) -> (chirp mass, {names[j]}/{names[i]}) probit on the triangle "
                    f"{piece['low']:g} <= {names[j]} <= {names[i]} <= {piece['high']:g}"
                )
        periodic = [piece["index"] for piece in self.pieces if piece["kind"] == "periodic"]
        rest = [names[k] for k in range(len(names)) if k not in self.columns and k not in periodic]
        return "bounded: " + "; ".join(parts) + (f"; unchanged: {', '.join(rest)}" if rest else "")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(u = T(x) in float64, log |det du/dx| with -inf outside the support), batch shape of x."""
        x = x.double()
        theta = x * self.std + self.mean
        u = x.clone()
        ladj = torch.full(x.shape[:-1], self.log_std, dtype=torch.float64, device=x.device)
        inside = torch.isfinite(x).all(-1)
        for piece in self.pieces:
            low, high = piece["low"], piece["high"]
            if piece["kind"] == "periodic":
                k, span = piece["index"], TOLERANCE * (high - low)
                ok = (theta[..., k] >= low - span) & (theta[..., k] <= high + span)
            elif piece["kind"] == "interval":
                k = piece["index"]
                power = piece.get("power", 1.0)
                if power == 1.0:
                    u[..., k], log_du, ok = _probit(theta[..., k], low, high)
                    ladj = ladj - math.log(high - low) + log_du
                else:  # s = (theta^p - a^p) / (b^p - a^p): the CDF of a prior p theta^(p-1) on [a, b]
                    value = theta[..., k].clamp_min(0.5 * low)
                    u[..., k], log_du, ok = _probit(value**power, low**power, high**power)
                    log_ds = math.log(power) + (power - 1) * value.log() - math.log(high**power - low**power)
                    ladj = ladj + log_ds + log_du
            else:
                i, j = piece["index"]
                m1, m2 = theta[..., i], theta[..., j]
                span = TOLERANCE * (high - low)
                ok = (m2 >= low - span) & (m1 <= high + span) & (m2 <= m1 + span)
                chirp_low, chirp_high = chirp_range(low, high)
                chirp = physics.chirp_mass(m1.clamp(low, high), m2.clamp(low, high))
                u[..., i], log_du_chirp, _ = _probit(chirp, chirp_low, chirp_high)
                chirp, _ = _normal_cdf(u[..., i], chirp_low, chirp_high)  # as clamped, so the pieces agree
                nu_low = physics.ratio_range_at_chirp_mass(chirp, low, high)
                width = (1.0 - nu_low).clamp_min(1e-12)
                u[..., j], log_du_nu, _ = _probit(m2 / m1.clamp_min(0.5 * low), nu_low, nu_low + width)
                nu, _ = _normal_cdf(u[..., j], nu_low, nu_low + width)
                ladj = ladj - physics.log_jacobian_masses_chirp_mass(chirp, nu)
                ladj = ladj - math.log(chirp_high - chirp_low) + log_du_chirp - width.log() + log_du_nu
            inside = inside & ok
        u = torch.where(inside[..., None], u, torch.zeros_like(u))
        return u, torch.where(inside, ladj, torch.full_like(ladj, -math.inf))

    def inverse(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(x = T^{-1}(u) in float64, log |det dx/du|); every x lies inside the support."""
        u = u.double()
        theta = u * self.std + self.mean
        ladj = torch.full(u.shape[:-1], -self.log_std, dtype=torch.float64, device=u.device)
        for piece in self.pieces:
            low, high = piece["low"], piece["high"]
            if piece["kind"] == "periodic":
                continue  # wrapped below, after the other columns
            if piece["kind"] == "interval":
                k = piece["index"]
                power = piece.get("power", 1.0)
                if power == 1.0:
                    theta[..., k], log_dtheta = _normal_cdf(u[..., k], low, high)
                    ladj = ladj + math.log(high - low) + log_dtheta
                else:
                    value, log_dvalue = _normal_cdf(u[..., k], low**power, high**power)
                    theta[..., k] = (value ** (1 / power)).clamp(low, high)
                    log_dtheta = (1 / power - 1) * value.log() - math.log(power)
                    ladj = ladj + math.log(high**power - low**power) + log_dvalue + log_dtheta
            else:
                i, j = piece["index"]
                chirp_low, chirp_high = chirp_range(low, high)
                chirp, log_dchirp = _normal_cdf(u[..., i], chirp_low, chirp_high)
                nu_low = physics.ratio_range_at_chirp_mass(chirp, low, high)
                width = (1.0 - nu_low).clamp_min(1e-300)
                nu, log_dnu = _normal_cdf(u[..., j], nu_low, nu_low + width)
                m1, m2 = physics.masses_from_chirp_mass(chirp, nu)
                m1 = m1.clamp(low, high)  # float64 rounding at the corners, never more than an ulp
                theta[..., i], theta[..., j] = m1, torch.minimum(m2.clamp(low, high), m1)
                ladj = ladj + math.log(chirp_high - chirp_low) + log_dchirp + width.log() + log_dnu
                ladj = ladj + physics.log_jacobian_masses_chirp_mass(chirp, nu)
        x = u.clone()
        x[..., self.columns] = (theta[..., self.columns] - self.mean[self.columns]) / self.std[self.columns]
        for piece in self.pieces:
            if piece["kind"] == "periodic":
                k, low, high = piece["index"], piece["low"], piece["high"]
                wrapped = low + torch.remainder(theta[..., k] - low, high - low)
                inside = (theta[..., k] >= low) & (theta[..., k] < high)
                x[..., k] = torch.where(inside, x[..., k], (wrapped - self.mean[k]) / self.std[k])
        return self._inside_after_rounding(x), ladj

    def _inside_after_rounding(self, x: Tensor) -> Tensor:
        """x moved by an ulp where x * std + mean (float64, what every caller computes) would round past a
        bound it reached exactly (u far out, sigmoid saturated): draws stay inside after the way back. Skipped
        for x that carries gradients (an ulp does not matter there, in-place edits would)."""
        if x.requires_grad:
            return x
        physical = lambda k: x[..., k] * self.std[k] + self.mean[k]  # noqa: E731
        up, down = x.new_tensor(math.inf), x.new_tensor(-math.inf)
        for _ in range(4):  # an ulp per pass; one pass almost always, none needed as a rule
            moved = False
            for piece in self.pieces:
                low, high = piece["low"], piece["high"]
                if piece["kind"] in ("interval", "periodic"):
                    checks = [(piece["index"], low, high)]
                else:
                    checks = [(piece["index"][0], low, high), (piece["index"][1], low, high)]
                for k, lo, hi in checks:
                    value = physical(k)
                    below, above = value < lo, value > hi
                    if bool((below | above).any()):
                        moved = True
                        x[..., k] = torch.where(below, torch.nextafter(x[..., k], up), x[..., k])
                        x[..., k] = torch.where(above, torch.nextafter(x[..., k], down), x[..., k])
                if piece["kind"] == "mass_triangle":
                    i, j = piece["index"]
                    crossed = physical(j) > physical(i)
                    if bool(crossed.any()):
                        moved = True
                        x[..., j] = torch.where(crossed, torch.nextafter(x[..., j], down), x[..., j])
            if not moved:
                break
        return x


def check_support(config: dict) -> dict:
    """The support config with its types checked; raises ValueError naming what is wrong."""
    for key in ("parameters", "mean", "std", "pieces"):
        if key not in config:
            raise ValueError(f"support config needs {key!r}")
    features = len(config["parameters"])
    if len(config["mean"]) != features or len(config["std"]) != features:
        raise ValueError(f"support: mean and std need {features} entries (one per parameter)")
    if any(not s > 0 for s in config["std"]):
        raise ValueError(f"support: std = {config['std']}; allowed: all > 0")
    used: set[int] = set()
    for piece in config["pieces"]:
        if piece.get("kind") not in PIECES:
            raise ValueError(f"support piece kind = {piece.get('kind')!r}; allowed: {', '.join(PIECES)}")
        index = piece["index"] if piece["kind"] == "mass_triangle" else [piece["index"]]
        if any(not 0 <= k < features for k in index) or used & set(index):
            raise ValueError(f"support piece index = {piece['index']!r}; allowed: distinct columns 0 .. {features - 1}")
        used |= set(index)
        if not piece.get("power", 1.0) > 0 or (piece.get("power", 1.0) != 1.0 and not piece["low"] > 0):
            raise ValueError(f"support piece power = {piece.get('power')!r}; allowed: > 0, with low > 0 unless 1")
        if not piece["low"] < piece["high"] or (piece["kind"] == "mass_triangle" and not piece["low"] > 0):
            raise ValueError(f"support piece bounds [{piece['low']}, {piece['high']}]; allowed: 0 < low < high")
    return {
        "parameters": list(config["parameters"]),
        "mean": [float(v) for v in config["mean"]],
        "std": [float(v) for v in config["std"]],
        "pieces": [dict(piece) for piece in config["pieces"]],
    }


class SupportedPosterior(nn.Module):
    """Any posterior model (``inner``: MAF, CVAE, CVAE+, IAF, ...) on the prior's support (module doc).

    Same interface as the model it wraps: ``log_prob``/``loss``/``sample``/``embed``/..., over the standardised
    parameters x; draws come back in float64 so the edges survive the way back to physical units."""

    def __init__(self, inner: nn.Module, support: ParameterSupport):
        super().__init__()
        self.inner, self.support = inner, support
        self.kind, self.features = inner.kind, inner.features

    def to_inner(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, ladj = self.support(x)
        dtype = next(self.inner.parameters()).dtype
        return u.to(dtype), ladj

    def _from_inner(self, u: Tensor) -> tuple[Tensor, Tensor]:
        return self.support.inverse(u)

    def embed(self, context: Tensor) -> Tensor:
        return self.inner.embed(context)

    @staticmethod
    def _add(log_prob: Tensor, ladj: Tensor) -> Tensor:
        """log q_u + log |det dT/dx|, -inf (not NaN) outside the support."""
        return torch.where(torch.isfinite(ladj), log_prob + ladj.to(log_prob.dtype), ladj.to(log_prob.dtype))

    def log_prob(self, x: Tensor, context: Tensor, *args, **kwargs) -> Tensor:
        """log p(x | y) on the support (the inner model's density or bound, plus the Jacobian); -inf outside."""
        u, ladj = self.to_inner(x)
        return self._add(self.inner.log_prob(u, context, *args, **kwargs), ladj)

    def flow_log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        """The fitted density without a MAF's phase images (what training follows), on the support."""
        u, ladj = self.to_inner(x)
        inner = getattr(self.inner, "flow_log_prob", self.inner.log_prob)
        return self._add(inner(u, context), ladj)

    def loss(self, x: Tensor, context: Tensor, epoch: int | None = None) -> Tensor:
        """The inner model's loss at u = T(x) minus the mean log Jacobian (no gradient: it only makes the
        logged loss an NLL over x, comparable with ``log_prob``)."""
        u, ladj = self.to_inner(x)
        return self.inner.loss(u, context, epoch) - ladj.mean().to(u.dtype)

    @torch.no_grad()
    def sample(self, context: Tensor, n: int, **kwargs) -> Tensor:
        """(n, *B, features) draws inside the support (float64)."""
        return self._from_inner(self.inner.sample(context, n, **kwargs))[0]

    def _inner_method(self, name: str):
        """The inner model's optional method ``name``; AttributeError (so ``hasattr`` is False) if it has none."""
        if not hasattr(self.inner, name):
            raise AttributeError(f"{type(self.inner).__name__} has no {name}")
        return getattr(self.inner, name)

    @property
    def elbo_terms(self):
        """(reconstruction -log p(x | z, y) on the support, KL) for latent-variable models (CVAE, CVAE+): the
        Jacobian belongs to the reconstruction."""
        inner = self._inner_method("elbo_terms")

        def terms(x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
            u, ladj = self.to_inner(x)
            reconstruction, kl = inner(u, context)
            return reconstruction - ladj.to(reconstruction.dtype), kl

        return terms

    @property
    def sample_each(self):
        """One draw per context row (the inner model's ``sample_each``), on the support."""
        inner = self._inner_method("sample_each")
        return lambda context: self._from_inner(inner(context))[0]

    @property
    def sample_naive(self):
        """The inner model's reference sampler (zuko's own), mapped onto the support."""
        inner = self._inner_method("sample_naive")
        return lambda context, n: self._from_inner(inner(context, n))[0]

    @property
    def log_prob_embedded(self):
        """log p_T(x | y) for an embedded context (IAF posteriors, distillation)."""
        inner = self._inner_method("log_prob_embedded")

        def log_prob(x: Tensor, y: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
            u, ladj = self.to_inner(x)
            return self._add(inner(u, y, temperature), ladj)

        return log_prob

    @property
    def sample_embedded(self):
        """Differentiable draws of p_T(. | y) on the support (IAF posteriors)."""
        inner = self._inner_method("sample_embedded")
        return lambda y, n, temperature=1.0: self._from_inner(inner(y, n, temperature))[0]

    @property
    def sample_and_log_prob_embedded(self):
        """Draws of p_T(. | y) on the support with their log p_T (the inner's minus log |det dx/du|)."""
        inner = self._inner_method("sample_and_log_prob_embedded")

        def draw(y: Tensor, n: int, temperature: float | Tensor = 1.0) -> tuple[Tensor, Tensor]:
            u, log_prob = inner(y, n, temperature)
            x, ladj = self._from_inner(u)
            return x, log_prob - ladj.to(log_prob.dtype)

        return draw

    def set_batchnorm_statistics(self, batches) -> int:
        """The inner model's batch-norm statistics from (context, x) batches, x mapped to u."""
        return self.inner.set_batchnorm_statistics((context, self.to_inner(x)[0]) for context, x in batches)

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        return self.inner.parameter_groups(gaussian_lr=gaussian_lr, flow_lr=flow_lr)


def parameterisation(model: nn.Module) -> str:
    """What a posterior model's draws and densities live on: its support's description, or the unbounded
    standardised space of models built before gwpe enforced the prior's support."""
    if isinstance(model, SupportedPosterior):
        return model.support.describe()
    inner, proxy = getattr(model, "inner", None), getattr(model, "proxy", None)
    if isinstance(inner, SupportedPosterior) and proxy is not None:  # GNPE: its inner network carries the support
        return f"GNPE on t_c (t_c - t^ in [-{proxy['kernel']:g}, {proxy['kernel']:g}] s); {inner.support.describe()}"
    return (
        "unbounded: standardised parameters on R^F "
        "(prior support not enforced: a package saved before gwpe's support bijections)"
    )
