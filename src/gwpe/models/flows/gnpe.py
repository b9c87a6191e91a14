"""Group-equivariant NPE for the time of arrival (GNPE; Dax et al. 2021, PRL 127 241103, and 2023).

A signal's arrival time t_c moves it along the strain; a network that must find it anywhere in the prior's
window (0.2 s) spends its capacity on that search and is left wide (6x the likelihood's t_c width on the
demo). GNPE removes the search: draw a proxy t^ = t_c + e with e ~ U(-delta, delta) (the blurring kernel),
move the strain by -t^ so every signal sits within +-delta of the window's reference time, and learn

    q(theta' | x shifted by t^, t^),        theta' = theta with t_c replaced by dt = t_c - t^ in [-delta, delta].

At inference t_c and t^ are unknown: Gibbs sampling alternates t^ ~ p(t^ | t_c) = U(t_c - delta, t_c + delta)
and theta ~ q(theta | x, t^), one chain per draw, ``iterations`` sweeps from t_c drawn by a small *init* flow
q_0(t_c | x) trained alongside on the unshifted strain (DINGO's initialisation network). The chains' stationary
law is p(theta, t^ | x) when q is exact; the kernel sets the trade-off: wide enough for the chains to mix in a
few sweeps (comparable to the t_c posterior width), narrow enough that the shifted strain is nearly aligned.

Shifts are exact time translations in the Fourier domain, x(t) -> x(t + t^ - t_ref), as DINGO applies them
(``shift: fourier``): a phase rotation of every frequency bin, which leaves white noise white (a circular
Gaussian's law is unchanged by a phase; only the Nyquist bin's imaginary part is dropped) and puts the merger
at t_ref + (t_c - t^) to a tiny fraction of a sample, so the network reads dt = t_c - t^ off the strain. The
earlier whole-sample roll (``shift: roll``, kept for packages trained with it) left a rounding remainder of up
to half a sample (0.49 ms at 1024 Hz) that the network had to recover from the standardised t^, which it does
not: the inner conditional was ~0.3 ms (sd) too broad, and the Gibbs chain, a random walk of step delta when
delta is comparable to the t_c width, compounds that excess every sweep (measured: t_c 1.74x the likelihood's
90 % width and p-p KS p 4e-4 with the roll). Both shifts are cyclic and wrap at most (t_c range / 2 + delta)
of the window's ends around, where the whitened signal is (nearly) zero in the profiles' windows (merger at
0.65-0.85 s of 1 s, signal from 20 Hz shorter than 0.6 s).

Density. q(theta | x) = int q(theta | x, t^) p(t^ | x) dt^ has no closed form; for importance sampling the
proxy's law after the sweeps is fitted by a Gaussian KDE q(t^) and fresh pairs t^ ~ q(t^), theta ~ q(. | x, t^)
get the joint density q(t^) q(theta | x, t^); their weights target p(theta | x) U(t^; t_c +- delta), whose
theta-marginal is the posterior (DINGO-IS's treatment of GNPE, Dax et al. 2023 sec. "GNPE").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


class ProxyEmbedding(nn.Module):
    """(*B, C * L + K) -> (*B, base.features + K): the strain part (first C * L entries, reshaped to ``shape``)
    through ``base``, the K proxies appended unchanged (already standardised)."""

    def __init__(self, base: nn.Module, shape: Sequence[int], proxies: int = 1):
        super().__init__()
        self.base, self.shape, self.proxies = base, tuple(int(s) for s in shape), int(proxies)
        self.features = base.features + self.proxies

    def forward(self, context: Tensor) -> Tensor:
        strain = context[..., : -self.proxies].reshape(*context.shape[:-1], *self.shape)
        return torch.cat([self.base(strain), context[..., -self.proxies :].to(strain.dtype)], dim=-1)


def roll_rows(strain: Tensor, shifts: Tensor) -> Tensor:
    """(B, C, L) strain, (B,) integer shifts -> row b rolled left by shifts[b]: out[b, :, i] = x[b, :, i + s_b]
    (cyclic), so a feature at sample i + s_b moves to i."""
    length = strain.shape[-1]
    index = (torch.arange(length, device=strain.device) + shifts.long().unsqueeze(-1)) % length
    return torch.gather(strain, -1, index.unsqueeze(1).expand(-1, strain.shape[1], -1))


def fourier_shift(strain: Tensor, seconds: Tensor, sample_rate: float) -> Tensor:
    """(B, C, L) strain, (B,) shifts s_b (seconds) -> x_b(t + s_b), cyclic, by X(f) exp(2 pi i f s_b)
    (float64 FFT; an integer s_b f_s gives ``roll_rows`` to round-off)."""
    length = strain.shape[-1]
    spectrum = torch.fft.rfft(strain.double(), dim=-1)
    frequencies = torch.fft.rfftfreq(length, d=1.0 / float(sample_rate), dtype=torch.float64, device=strain.device)
    phase = torch.polar(torch.ones_like(frequencies), 2.0 * torch.pi * frequencies * seconds.double().unsqueeze(-1))
    return torch.fft.irfft(spectrum * phase.unsqueeze(1), n=length, dim=-1).to(strain.dtype)


class GNPEPosterior(nn.Module):
    """q(theta | x) by GNPE on t_c (module doc): ``inner`` q(theta' | shifted x, t^) with a ``ProxyEmbedding``,
    ``init`` q_0(t_c | x) over one feature; both over standardised parameters z = (theta - mean) / std.

    ``proxy``: {"index": k (t_c's column), "mean": mu, "std": sigma (t_c's standardisation), "kernel": delta (s),
    "reference": t_ref (s), "sample_rate": f_s, "iterations": sweeps, "low"/"high": t_c's prior range (s)}.
    ``inner``'s column k is dt / sigma."""

    tractable = False  # log q(theta | x) is not available; ``sample_with_density`` gives a joint one

    def __init__(self, inner: nn.Module, init: nn.Module, proxy: dict):
        super().__init__()
        self.inner, self.init, self.proxy = inner, init, dict(proxy)
        self.kind, self.features = inner.kind, inner.features
        self.index = int(proxy["index"])
        self.mean, self.std = float(proxy["mean"]), float(proxy["std"])
        self.kernel, self.reference = float(proxy["kernel"]), float(proxy["reference"])
        self.sample_rate, self.iterations = float(proxy["sample_rate"]), int(proxy["iterations"])
        # packages written before the Fourier shift carry no "shift" key and were trained with the roll
        self.shift_method = str(proxy.get("shift", "roll"))
        if self.shift_method not in ("fourier", "roll"):
            raise ValueError(f"gnpe shift = {self.shift_method!r}; allowed: 'fourier', 'roll'")

    # --- the proxy's group action -------------------------------------------------------------------------
    def blur(self, tc: Tensor) -> Tensor:
        """t^ = t_c + e, e ~ U(-delta, delta) (seconds)."""
        return tc + self.kernel * (2.0 * torch.rand_like(tc) - 1.0)

    def shift(self, strain: Tensor, proxy: Tensor) -> Tensor:
        """(B, C, L) strain moved by -t^: the merger at t_c lands near t_ref + (t_c - t^)."""
        if self.shift_method == "roll":
            return roll_rows(strain, torch.round((proxy.double() - self.reference) * self.sample_rate))
        return fourier_shift(strain, proxy.double() - self.reference, self.sample_rate)

    def context(self, strain: Tensor, proxy: Tensor) -> Tensor:
        """The inner model's context: the shifted strain flattened, then t^ standardised like t_c."""
        shifted = self.shift(strain, proxy).flatten(1)
        return torch.cat([shifted, ((proxy - self.mean) / self.std).to(shifted.dtype).unsqueeze(-1)], dim=-1)

    def contexts_of(self, strains: Tensor):
        """For observations (B, C, L): a callable (rows (N,) indices into B, proxies t^ (N,)) -> ``context`` of
        those rows, for many proxies per observation at inference. With the Fourier shift each spectrum is taken
        once, and the phase exp(2 pi i f s) is reduced to one cycle in float64, then applied in complex64: 2.5x
        faster than ``context`` at 4,096 rows of 1,024 samples, the same to 1.2e-6 (unit-variance strain)."""
        if self.shift_method == "roll":
            return lambda rows, proxy: self.context(strains[rows], proxy)
        length = strains.shape[-1]
        spectra = torch.fft.rfft(strains.double(), dim=-1).to(torch.complex64)
        frequencies = torch.fft.rfftfreq(length, d=1.0 / self.sample_rate, dtype=torch.float64, device=strains.device)

        def context(rows: Tensor, proxy: Tensor) -> Tensor:
            cycles = torch.frac(frequencies * (proxy.double() - self.reference).unsqueeze(-1))
            angle = (2.0 * torch.pi * cycles).float()
            phase = torch.polar(torch.ones_like(angle), angle)
            shifted = torch.fft.irfft(spectra[rows] * phase.unsqueeze(1), n=length, dim=-1).to(strains.dtype)
            standardised = ((proxy - self.mean) / self.std).to(shifted.dtype).unsqueeze(-1)
            return torch.cat([shifted.flatten(1), standardised], dim=-1)

        return context

    def tc_of(self, z: Tensor) -> Tensor:
        return z[..., self.index].double() * self.std + self.mean

    def relative(self, z: Tensor, proxy: Tensor) -> Tensor:
        """theta' (column k := (t_c - t^) / sigma) for standardised z."""
        out = z.clone()
        out[..., self.index] = ((self.tc_of(z) - proxy) / self.std).to(z.dtype)
        return out

    def absolute(self, relative: Tensor, proxy: Tensor) -> Tensor:
        """The inverse of ``relative``: standardised z from theta' and t^ (float64)."""
        out = relative.double().clone()
        out[..., self.index] = (proxy.double() + relative[..., self.index].double() * self.std - self.mean) / self.std
        return out

    # --- training -----------------------------------------------------------------------------------------
    def _pair(self, z: Tensor, strain: Tensor) -> tuple[Tensor, Tensor]:
        proxy = self.blur(self.tc_of(z))
        return self.relative(z, proxy), self.context(strain, proxy)

    def loss(self, z: Tensor, strain: Tensor, epoch: int | None = None) -> Tensor:
        """-mean log q(theta' | x_t^, t^) - mean log q_0(t_c | x), a fresh proxy per row: both networks at once."""
        relative, context = self._pair(z, strain)
        tc = z[..., self.index : self.index + 1]
        return self.inner.loss(relative, context, epoch) + self.init.loss(tc, strain, epoch)

    def flow_log_prob(self, z: Tensor, strain: Tensor) -> Tensor:
        """log q(theta' | x_t^, t^) + log q_0(t_c | x) with a fresh proxy: what training follows (val_loss).
        Not log q(theta | x), which GNPE does not give."""
        relative, context = self._pair(z, strain)
        inner = getattr(self.inner, "flow_log_prob", self.inner.log_prob)
        init = getattr(self.init, "flow_log_prob", self.init.log_prob)
        return inner(relative, context) + init(z[..., self.index : self.index + 1], strain)

    def log_prob(self, z: Tensor, strain: Tensor) -> Tensor:
        raise TypeError(
            "a GNPE posterior has no closed-form log q(theta | x); use sample_with_density for importance weights"
        )

    def set_batchnorm_statistics(self, batches) -> int:
        from gwpe.models.flows.batchnorm import set_batchnorm_statistics

        return set_batchnorm_statistics(self, batches, lambda batch: self.flow_log_prob(batch[1], batch[0]))

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        groups = self.inner.parameter_groups(gaussian_lr, flow_lr)
        groups.append({"name": "init", "params": list(self.init.parameters()), "lr": flow_lr})
        return groups

    @torch.no_grad()
    def seed_embeddings(self, signals: Tensor, z: Tensor) -> int:
        """Seed SVD embeddings: the init network's from ``signals`` as they are, the inner one's from the same
        signals shifted by a blurred t_c, as it will see them (their reduced basis is far more compact)."""
        from gwpe.models.flows.embedding import seed_svd_embeddings

        aligned = self.shift(signals, self.blur(self.tc_of(z)))
        return seed_svd_embeddings(self.init, lambda n: signals[:n]) + seed_svd_embeddings(
            self.inner, lambda n: aligned[:n]
        )

    # --- inference ----------------------------------------------------------------------------------------
    def _draw_inner(self, context: Tensor) -> Tensor:
        """One draw of theta' per context row: ``sample_each`` where the model has it (the MAF), else its
        ``sample`` with one draw per row (which folds every row into its own weights: slow for many rows)."""
        if hasattr(self.inner, "sample_each"):
            return self.inner.sample_each(context)
        return self.inner.sample(context, 1)[0]

    def _inner_draws(self, strain: Tensor, proxy: Tensor) -> Tensor:
        """One draw of theta' per proxy, for one observation strain (C, L)."""
        return self._draw_inner(self.context(strain.unsqueeze(0).expand(len(proxy), *strain.shape), proxy))

    @torch.no_grad()
    def gibbs(self, strain: Tensor, n: int, iterations: int | None = None) -> tuple[Tensor, Tensor]:
        """n parallel Gibbs chains for one observation (C, L): (z (n, P) float64, last proxies t^ (n,))."""
        z, proxy = self.gibbs_many(strain.unsqueeze(0), n, iterations)
        return z[0], proxy[0]

    @torch.no_grad()
    def gibbs_many(self, strains: Tensor, n: int, iterations: int | None = None) -> tuple[Tensor, Tensor]:
        """n parallel Gibbs chains for each of B observations (B, C, L), every chain of every observation in one
        batch per sweep (the networks' per-call cost dominates at a few hundred rows: 200 chains of one
        injection ran 3x slower per draw than 10,000): (z (B, n, P) float64, last proxies t^ (B, n))."""
        iterations = self.iterations if iterations is None else int(iterations)
        batch = len(strains)
        tc = self.init.sample(strains, n).reshape(n, batch).T.reshape(-1).double() * self.std + self.mean
        rows = torch.arange(batch, device=strains.device).repeat_interleave(n)
        context = self.contexts_of(strains)
        z = proxy = None
        for _ in range(max(1, iterations)):
            proxy = self.blur(tc)
            z = self.absolute(self._draw_inner(context(rows, proxy)), proxy)
            tc = self.tc_of(z)
        return z.reshape(batch, n, -1), proxy.reshape(batch, n)

    @torch.no_grad()
    def sample(self, strain: Tensor, n: int, iterations: int | None = None) -> Tensor:
        """(n, P) standardised draws for one observation (C, L) or (1, C, L) (float64); draws whose t_c left
        the prior's range are redrawn, since p(theta | x) is zero there: five times from the same chain's proxy,
        then five times from a proxy blurred around t_c clipped into the range (a chain whose proxy drifted out)."""
        return self.sample_many(strain.reshape(1, *strain.shape[-2:]), n, iterations)[0]

    @torch.no_grad()
    def sample_many(self, strains: Tensor, n: int, iterations: int | None = None) -> Tensor:
        """(B, n, P) standardised draws for each of B observations (B, C, L) (float64): ``sample``'s draws, with
        every observation's chains swept together (``gibbs_many``)."""
        batch = len(strains)
        z, proxy = self.gibbs_many(strains, n, iterations)
        z, proxy = z.reshape(batch * n, -1), proxy.reshape(-1)
        rows = torch.arange(batch, device=strains.device).repeat_interleave(n)
        context = self.contexts_of(strains)
        low, high = self.proxy["low"], self.proxy["high"]
        for attempt in range(10):
            tc = self.tc_of(z)
            outside = (tc < low) | (tc > high)
            if not bool(outside.any()):
                break
            if attempt >= 5:
                proxy[outside] = self.blur(tc[outside].clamp(low, high))
            z[outside] = self.absolute(self._draw_inner(context(rows[outside], proxy[outside])), proxy[outside])
        return z.reshape(batch, n, -1)

    @torch.no_grad()
    def sample_given_tc(self, strain: Tensor, tc: float, n: int) -> tuple[Tensor, Tensor]:
        """(z (n, P) float64, t^ ()): n draws of theta ~ q(. | x_t^, t^) at ONE proxy t^ ~ U(t_c - delta,
        t_c + delta) around a known t_c (seconds), no Gibbs sweeps. For an injection (theta, x) with its true t_c,
        (theta, t^, x) is a draw of the training joint, so the p-p test of these draws checks the inner network
        alone: a miscalibration here is the network's, one only in ``sample`` is the chains'."""
        strain = strain.reshape(strain.shape[-2:])
        proxy = self.blur(torch.as_tensor([float(tc)], dtype=torch.float64))
        proxies = proxy.expand(n).contiguous()
        return self.absolute(self._inner_draws(strain, proxies), proxies), proxy[0]

    @torch.no_grad()
    def sample_given_tc_many(self, strains: Tensor, tc: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """``sample_given_tc`` for B observations (B, C, L) at their known t_c (B,) (seconds), in one batch:
        (z (B, n, P) float64, t^ (B,))."""
        batch = len(strains)
        proxy = self.blur(torch.as_tensor(tc, dtype=torch.float64).reshape(batch))
        rows = torch.arange(batch, device=strains.device).repeat_interleave(n)
        proxies = proxy.repeat_interleave(n)
        z = self.absolute(self._draw_inner(self.contexts_of(strains)(rows, proxies)), proxies)
        return z.reshape(batch, n, -1), proxy

    @torch.no_grad()
    def sample_with_density(
        self, strain: Tensor, n: int, iterations: int | None = None, seed: int = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(z (n, P), t^ (n,), log q(z, t^) (n,)): t^ from a Gaussian KDE of the Gibbs chains' last proxies,
        theta' ~ q(. | x, t^); the joint density log q_KDE(t^) + log q(theta' | x_t^, t^) (standardised units).
        Importance weights: p(theta | x) U(t^; t_c +- delta) / q(z, t^) (module doc)."""
        from scipy.stats import gaussian_kde

        strain = strain.reshape(strain.shape[-2:])
        _, proxy = self.gibbs(strain, n, iterations)
        kde = gaussian_kde(proxy.numpy())
        fresh = torch.from_numpy(kde.resample(n, seed=np.random.default_rng(seed))[0])
        log_q_proxy = torch.from_numpy(kde.logpdf(fresh.numpy()))
        context = self.context(strain.unsqueeze(0).expand(n, *strain.shape), fresh)
        relative = self._draw_inner(context)
        log_q = self.inner.log_prob(relative.to(next(self.inner.parameters()).dtype), context).double()
        return self.absolute(relative, fresh), fresh, log_q + log_q_proxy

    def log_kernel(self, z: Tensor, proxy: Tensor) -> Tensor:
        """log U(t^; t_c - delta, t_c + delta) (seconds^-1): the proxy's law given theta."""
        inside = (proxy.double() - self.tc_of(z)).abs() <= self.kernel
        outside = torch.tensor(-torch.inf, dtype=torch.float64)
        return torch.where(inside, -torch.tensor(2.0 * self.kernel).log(), outside)
