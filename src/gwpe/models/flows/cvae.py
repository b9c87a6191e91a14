"""Conditional VAE posteriors (Green et al. sec. II B, II D, III B 1, III B 3).

    p(x | y) = int dz p(x | z, y) p(z | y),
    log p(x | y) >= E_q[log p(x | z, y)] - KL(q(z | x, y) || p(z | y))  (10, 12, 14)

``CVAE``: encoder q(z | x, y), prior p(z | y) and decoder p(x | z, y) are diagonal Gaussians from MLPs
(three hidden layers of 2048 in the paper, latent dimension 8); the KL is analytic.

``CVAEPlus`` (CVAE+): the same Gaussians (width 1024) as bases of flows:
- q(z | x, y): z0 ~ N(mu(x, y), sigma(x, y)), z = IAF(z0 | x, h) with h an extra encoder output (8-d; the paper
  conditions the IAF on x and h only); log q(z) = log N(z0) - log|det dz/dz0|; the IAF is MADE units applied
  in their one-pass direction, each followed by batch norm;
- p(z | y): a MAF on z conditioned on y with base N(mu(y), sigma(y)), or N(0, I) when ``frozen_prior``
  (the paper's strain-8d setting);
- p(x | z, y): a MAF on x conditioned on [y, z] with base N(mu(z, y), sigma(z, y)).
The KL is the single-sample estimate log q(z | x, y) - log p(z | y) (sec. II B). Sampling (eq. 10, fig. 3):
z ~ p(z | y), then one x ~ p(x | z, y) per z, with both flows inverted by ``fast_sampling.flow_inverse``
(the strain is seen once per observation; the decoder's z enters per sample).

Loss (both): E[-log p(x | z, y)] + beta(epoch) max(mean KL, 0.2) (``annealing``); ``log_prob`` is the ELBO
(beta = 1, no floor), the validation bound of Table III.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from zuko.lazy import LazyComposedTransform

from gwpe.models.flows.annealing import annealed_kl, kl_weight
from gwpe.models.flows.batchnorm import set_batchnorm_statistics
from gwpe.models.flows.fast_sampling import flow_inverse
from gwpe.models.flows.made import zuko_made
from gwpe.models.flows.maf import maf_transforms
from gwpe.models.flows.networks import GaussianMLP, diag_normal_kl, diag_normal_log_prob


class _LatentVariablePosterior(nn.Module):
    """Shared loss, ELBO and batch-norm plumbing; subclasses define ``elbo_terms`` and ``sample``."""

    def embed(self, context: Tensor) -> Tensor:
        return self.embedding(context)

    def elbo_terms(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """(reconstruction -log p(x | z, y), KL) per sample, shape (*B,) each, for one z ~ q(z | x, y)."""
        raise NotImplementedError

    def log_prob(self, x: Tensor, context: Tensor, samples: int = 1) -> Tensor:
        """ELBO (lower bound on log p(x | y)), averaged over ``samples`` draws of z."""
        total = 0.0
        for _ in range(samples):
            reconstruction, kl = self.elbo_terms(x, context)
            total = total - reconstruction - kl
        return total / samples

    def loss(self, x: Tensor, context: Tensor, epoch: int | None = None) -> Tensor:
        """Training loss: mean reconstruction + beta(epoch) max(mean KL, 0.2); beta = 1 when epoch is None."""
        reconstruction, kl = self.elbo_terms(x, context)
        return reconstruction.mean() + annealed_kl(kl, 1.0 if epoch is None else kl_weight(epoch))

    def set_batchnorm_statistics(self, batches: Iterable[tuple[Tensor, Tensor]]) -> int:
        """Batch-norm eval statistics from ``batches`` of (context, x) pairs (one pass; see ``batchnorm``)."""
        return set_batchnorm_statistics(self, batches, lambda batch: self.elbo_terms(batch[1], batch[0]))


class CVAE(_LatentVariablePosterior):
    """Gaussian encoder q(z | x, y), prior p(z | y) and decoder p(x | z, y), each an MLP (module doc)."""

    kind = "cvae"

    def __init__(
        self,
        features: int,
        context: int,
        latent: int = 8,
        hidden: Sequence[int] = (2048, 2048, 2048),
        embedding: nn.Module | None = None,
    ):
        super().__init__()
        self.features, self.context, self.latent = features, context, latent
        self.embedding = embedding if embedding is not None else nn.Identity()
        self.encoder = GaussianMLP((context, features), latent, hidden)
        self.prior = GaussianMLP((context,), latent, hidden)
        self.decoder = GaussianMLP((context, latent), features, hidden)

    def elbo_terms(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        y = self.embed(context)
        loc_q, scale_q, _ = self.encoder(y, x)
        z = loc_q + scale_q * torch.randn_like(loc_q)  # reparametrisation, eq. (15)
        loc_p, scale_p, _ = self.prior(y)
        loc_x, scale_x, _ = self.decoder(y, z)
        return -diag_normal_log_prob(x, loc_x, scale_x), diag_normal_kl(loc_q, scale_q, loc_p, scale_p)

    @torch.no_grad()
    def sample(self, context: Tensor, n: int) -> Tensor:
        """(n, *B, features): z ~ p(z | y), x ~ p(x | z, y); y is embedded once per observation."""
        y = self.embed(context)
        loc_p, scale_p, _ = self.prior(y)
        z = loc_p + scale_p * torch.randn((n, *loc_p.shape), dtype=loc_p.dtype, device=loc_p.device)
        loc_x, scale_x, _ = self.decoder(y, z)
        return loc_x + scale_x * torch.randn_like(loc_x)

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        """One group at the paper's CVAE learning rate (1e-4)."""
        return [{"name": "gaussian", "params": list(self.parameters()), "lr": gaussian_lr}]


class CVAEPlus(_LatentVariablePosterior):
    """CVAE+: the CVAE's Gaussians as bases of an IAF (encoder) and of MAFs (prior, decoder) (module doc)."""

    kind = "cvae_plus"

    def __init__(
        self,
        features: int,
        context: int,
        latent: int = 8,
        hidden: Sequence[int] = (1024, 1024, 1024),
        transforms: int = 5,
        flow_hidden: Sequence[int] = (512, 512, 512),
        iaf_context: int = 8,
        frozen_prior: bool = False,
        batchnorm: bool = True,
        embedding: nn.Module | None = None,
        momentum: float = 0.1,
    ):
        super().__init__()
        self.features, self.context, self.latent = features, context, latent
        self.embedding = embedding if embedding is not None else nn.Identity()
        # registration order = data-flow order: encoder, IAF, prior, decoder
        self.encoder = GaussianMLP((context, features), latent, hidden, extra=iaf_context)
        self.iaf = LazyComposedTransform(
            *maf_transforms(latent, features + iaf_context, transforms, flow_hidden, batchnorm, momentum)
        )
        self.prior = None if frozen_prior else GaussianMLP((context,), latent, hidden)
        self.prior_flow = LazyComposedTransform(
            *maf_transforms(latent, context, transforms, flow_hidden, batchnorm, momentum)
        )
        self.decoder = GaussianMLP((context, latent), features, hidden)
        self.decoder_flow = LazyComposedTransform(
            *maf_transforms(features, context + latent, transforms, flow_hidden, batchnorm, momentum)
        )

    def _prior_base(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.prior is None:
            zeros = y.new_zeros(*y.shape[:-1], self.latent)
            return zeros, torch.ones_like(zeros)
        loc, scale, _ = self.prior(y)
        return loc, scale

    def elbo_terms(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        y = self.embed(context)
        loc_q, scale_q, h = self.encoder(y, x)
        z0 = loc_q + scale_q * torch.randn_like(loc_q)
        z, ladj_iaf = self.iaf(torch.cat([x, h], dim=-1)).call_and_ladj(z0)  # one pass per MADE
        log_q = diag_normal_log_prob(z0, loc_q, scale_q) - ladj_iaf
        e, ladj_prior = self.prior_flow(y).call_and_ladj(z)
        log_p_z = diag_normal_log_prob(e, *self._prior_base(y)) + ladj_prior
        u, ladj_decoder = self.decoder_flow(torch.cat([y, z], dim=-1)).call_and_ladj(x)
        loc_x, scale_x, _ = self.decoder(y, z)
        log_p_x = diag_normal_log_prob(u, loc_x, scale_x) + ladj_decoder
        return -log_p_x, log_q - log_p_z

    def _draw(self, y: Tensor, n: int, fast: bool) -> Tensor:
        loc_p, scale_p = self._prior_base(y)
        e = loc_p + scale_p * torch.randn((n, *loc_p.shape), dtype=loc_p.dtype, device=loc_p.device)
        if fast:
            z = flow_inverse(self.prior_flow.transforms, e, y)
        else:
            z = self.prior_flow(y.expand(*e.shape[:-1], y.shape[-1])).inv(e)
        loc_x, scale_x, _ = self.decoder(y, z)
        u = loc_x + scale_x * torch.randn_like(loc_x)
        if fast:
            return flow_inverse(self.decoder_flow.transforms, u, y, z)
        return self.decoder_flow(torch.cat([y.expand(*z.shape[:-1], y.shape[-1]), z], dim=-1)).inv(u)

    @torch.no_grad()
    def sample(self, context: Tensor, n: int) -> Tensor:
        """(n, *B, features): z ~ prior flow(y), x ~ decoder flow(y, z); y embedded once per observation."""
        return self._draw(self.embed(context), n, fast=True)

    @torch.no_grad()
    def sample_naive(self, context: Tensor, n: int) -> Tensor:
        """Same draws with zuko's own inversions (context concatenated to every sample in every pass)."""
        with zuko_made(self):
            return self._draw(self.embed(context), n, fast=False)

    def parameter_groups(self, gaussian_lr: float = 1e-4, flow_lr: float = 4e-4) -> list[dict]:
        """Gaussian parts (and the embedding) at 1e-4, the IAF and MAFs at 4e-4 (paper sec. III B 3)."""
        flows = [self.iaf, self.prior_flow, self.decoder_flow]
        flow_ids = {id(p) for f in flows for p in f.parameters()}
        return [
            {"name": "gaussian", "params": [p for p in self.parameters() if id(p) not in flow_ids], "lr": gaussian_lr},
            {"name": "flow", "params": [p for f in flows for p in f.parameters()], "lr": flow_lr},
        ]
