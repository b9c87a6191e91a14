"""Fast inversion of zuko's conditional MADE transforms: the context is seen once per observation.

zuko inverts a MADE u = f(x | c) by ``passes`` full passes x <- f^{-1}(u | x, c) (eq. 18 of Green et al.), and
each pass concatenates the context to every sample, so the first layer's context matmul (1024 x 512 for raw
strain) is redone for every sample in every pass. Here, from the MADE's own masks and weights:

1. the context contribution W1[:, ctx] c + b1 is computed once per observation (one call of the first
   ``MaskedLinear`` on [0, c]);
2. every hidden unit is assigned the pass ("stage") after which its inputs are final: 0 when it depends on no
   feature, else 1 + the largest autoregressive order among the features it depends on (mask propagation).
   A unit of stage p depends only on units of stage <= p, so with units sorted by stage, pass p computes just
   the stage-p block of each layer from the prefix of the previous one, and each unit is evaluated once;
3. stage-0 units depend on the context alone: they are evaluated once per observation and folded into the
   next layer's bias.

The arithmetic is the same as zuko's up to the order of float summation (masked weights are exact zeros), so
samples agree with ``flow(c).sample`` for the same base noise to float rounding. With a per-sample context
part (``dynamic``, e.g. the latent z of a CVAE+ decoder) only step 1 applies to the static part and stage 0
is evaluated per sample.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.nn import MaskedLinear
from zuko.utils import unpack


def _stages(dependencies: Tensor, order: Tensor) -> Tensor:
    """0 for units depending on no feature, else 1 + max order of the features they depend on."""
    ranks = (order + 1).unsqueeze(0).expand_as(dependencies)
    return torch.where(dependencies, ranks, torch.zeros_like(ranks)).amax(dim=1)


def _ends(stages: Tensor, passes: int) -> list[int]:
    """Number of (stage-sorted) units of stage <= p, for p = 0 .. passes - 1."""
    return [int((stages <= p).sum()) for p in range(passes)]


def _same_weights(saved: list[Tensor], linears: list) -> bool:
    """Whether every weight and bias still holds the values ``saved`` (copies): compared by value, so an in-place
    change through ``.data`` (no version bump) or a tensor swapped for another at a reused address is seen."""
    current = [p for m in linears for p in (m.weight, m.bias)]
    return len(saved) == len(current) and all(
        a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
        for a, b in zip(saved, current)
    )


@torch.no_grad()
def _inverse_plan(transform: MaskedAutoregressiveTransform, linears: list) -> tuple[list, list, list, list]:
    """(ends, perms, weights, biases): each layer's stage boundaries, the permutations that sort its units by
    stage, and the masked weights and biases permuted to match. It depends on the masks and weights only, so it is
    kept on the transform with a copy of the weights it was built from and rebuilt when any differs (building it
    costs ~6 ms per MADE, as much as inverting ~100 samples; the value check ~0.1 ms)."""
    cached = transform.__dict__.get("_gwpe_inverse_plan")
    if cached is not None and _same_weights(cached[0], linears):
        return cached[1]
    order, passes = transform.order, transform.passes
    features = order.numel()
    masks = [m.mask for m in linears]
    dependencies = masks[0][:, :features]
    hidden_stages = []
    for mask in masks[1:]:
        hidden_stages.append(_stages(dependencies, order))
        dependencies = (mask.to(torch.float32) @ dependencies.to(torch.float32)) > 0
    hidden_perm = [torch.sort(s, stable=True) for s in hidden_stages]
    out_order = order.repeat_interleave(transform.total)  # output row r belongs to feature r // total
    out_sorted, out_perm = torch.sort(out_order, stable=True)
    ends = [_ends(s, passes) for s, _ in hidden_perm] + [_ends(out_sorted, passes)]
    perms = [p for _, p in hidden_perm] + [out_perm]
    weights, biases = [], []
    for i, linear in enumerate(linears):
        w = (linear.mask * linear.weight)[perms[i]]
        if i > 0:
            w = w[:, perms[i - 1]]
        weights.append(w)
        biases.append(linear.bias[perms[i]])
    plan = (ends, perms, weights, biases)
    transform.__dict__["_gwpe_inverse_plan"] = ([p.detach().clone() for m in linears for p in (m.weight, m.bias)], plan)
    return plan


@torch.no_grad()
def made_inverse(
    transform: MaskedAutoregressiveTransform, u: Tensor, static: Tensor | None, dynamic: Tensor | None = None
) -> Tensor:
    """x = f^{-1}(u | c) for a zuko ``MaskedAutoregressiveTransform`` with context c = [static, dynamic].

    ``u``: (*S, features) with S = (n, *B); ``static``: (*B, C_s), one row per observation, broadcast over the
    n samples; ``dynamic``: (*S, C_d) per-sample context or None. Non-differentiable (sampling only).
    """
    layers = list(transform.hyper)
    if any(not isinstance(m, MaskedLinear) for m in layers[0::2]) or len(layers) % 2 == 0:
        raise NotImplementedError("fast inversion needs a plain MaskedMLP (residual=False)")
    linears, activations = layers[0::2], layers[1::2]
    features, total, passes = transform.order.numel(), transform.total, transform.passes
    order = transform.order
    n_static = 0 if static is None else static.shape[-1]
    n_dynamic = 0 if dynamic is None else dynamic.shape[-1]
    if linears[0].in_features != features + n_static + n_dynamic:
        raise ValueError(
            f"MADE expects {linears[0].in_features - features} context features, "
            f"got static {n_static} + dynamic {n_dynamic}"
        )

    ends, perms, weights, biases = _inverse_plan(transform, linears)

    # Layout (B, rows, n): a stage block is a contiguous slab that one bmm writes in place. Every layer's input
    # carries a row of ones first, and every weight its bias (per observation) as column 0, so no bias is
    # broadcast over the n samples.
    sample_shape, batch_shape = u.shape[:1], u.shape[1:-1]
    n, batch = u.shape[0], batch_shape.numel()
    u_t = u.reshape(n, batch, features).permute(1, 2, 0)  # (B, F, n)

    # (1) context contribution of the first layer, once per observation: W1 [0, static, 0] + b1
    if static is not None:
        static = static.expand(*batch_shape, n_static)
        parts = [static.new_zeros(*batch_shape, features), static, static.new_zeros(*batch_shape, n_dynamic)]
        first = linears[0](torch.cat(parts, dim=-1))[..., perms[0]].reshape(batch, -1, 1)
    else:
        first = biases[0].expand(batch, -1).unsqueeze(-1)

    n_layers = len(linears)
    fold = dynamic is None
    if fold:  # (3) stage-0 units are per-observation constants, folded into the next layer's bias
        offsets = [e[0] for e in ends]
        h0 = activations[0](first[:, : offsets[0]])
        layer_bias = [first[:, offsets[0] :]]
        for i in range(1, n_layers):
            w_const = weights[i][:, : offsets[i - 1]]
            layer_bias.append(biases[i][offsets[i] :, None] + w_const[offsets[i] :] @ h0)
            if i < n_layers - 1:
                h0 = activations[i](biases[i][: offsets[i], None] + w_const[: offsets[i]] @ h0)
            else:
                out0 = biases[i][: offsets[i], None] + w_const[: offsets[i]] @ h0
    else:
        offsets = [0] * n_layers
        layer_bias = [first] + [b[None, :, None].expand(batch, -1, 1) for b in biases[1:]]

    # augmented weights [bias | W] (B, rows, 1 + inputs) and inputs [1; x (; dynamic)], [1; hidden units]
    augmented = [
        torch.cat(
            [layer_bias[0], weights[0][offsets[0] :, :features].expand(batch, -1, -1)]
            + ([weights[0][:, features + n_static :].expand(batch, -1, -1)] if not fold else []),
            dim=2,
        )
    ]
    for i in range(1, n_layers):
        w = weights[i][offsets[i] :, offsets[i - 1] :]
        augmented.append(torch.cat([layer_bias[i], w.expand(batch, -1, -1)], dim=2))
    inputs0 = u.new_empty(batch, 1 + features + (0 if fold else n_dynamic), n)
    inputs0[:, 0] = 1.0
    x_t = inputs0[:, 1 : 1 + features]
    x_t.zero_()
    if not fold:
        inputs0[:, 1 + features :] = dynamic.reshape(n, batch, n_dynamic).permute(1, 2, 0)
    buffers = []
    for e, off in zip(ends[:-1], offsets[:-1]):
        buffers.append(u.new_empty(batch, 1 + e[-1] - off, n))
        buffers[-1][:, 0] = 1.0

    for p in range(passes):
        features_p = (order == p).nonzero().squeeze(-1)
        if features_p.numel() == 0:
            continue
        if fold and p == 0:
            phi = out0.expand(batch, out0.shape[1], n)
        else:
            for i in range(n_layers):
                start = (0 if p == 0 else ends[i][p - 1]) - offsets[i]
                end = ends[i][p] - offsets[i]
                if end == start:
                    continue
                if i == 0:
                    weight, inputs = augmented[0][:, start:end], inputs0
                else:
                    known = 1 + ends[i - 1][p] - offsets[i - 1]
                    weight, inputs = augmented[i][:, start:end, :known], buffers[i - 1][:, :known]
                if i < n_layers - 1:
                    block = buffers[i][:, 1 + start : 1 + end]
                    torch.bmm(weight, inputs, out=block)
                    if isinstance(activations[i], nn.ReLU):
                        block.relu_()
                    else:
                        block.copy_(activations[i](block))
                else:
                    phi = torch.bmm(weight, inputs)
        # (B, k * total, n) -> (B, k, n, total) -> univariate parameters shaped like u[:, features_p, :]
        phi = phi.unflatten(1, (features_p.numel(), total)).transpose(2, 3)
        phi = unpack(phi, transform.shapes)
        x_t[:, features_p] = transform.univariate(*phi).inv(u_t[:, features_p])
    return x_t.permute(2, 0, 1).reshape(*sample_shape, *batch_shape, features)


@torch.no_grad()
def flow_inverse(
    transforms: nn.ModuleList | list, u: Tensor, static: Tensor | None, dynamic: Tensor | None = None
) -> Tensor:
    """Invert zuko lazy transforms listed data -> base (as in ``zuko.flows.Flow``), last first: MADEs with
    ``made_inverse``, anything else (batch norm, element-wise, permutations) by its own ``t(c).inv``."""
    if dynamic is None or static is None:
        context = static if dynamic is None else dynamic
    else:
        context = torch.cat([static.expand(*dynamic.shape[:-1], static.shape[-1]), dynamic], dim=-1)
    for t in reversed(list(transforms)):
        if isinstance(t, MaskedAutoregressiveTransform):
            u = made_inverse(t, u, static, dynamic)
        else:
            u = t(context).inv(u)
    return u
