"""Batched waveform overlaps in torch (Khan, Huerta & Das eq. 4).

O(h, s) = max over t_c, phi_c of (h^ | s^_[t_c, phi_c]), h^ = h / (h|h)^(1/2), with the white-noise inner
product of complex h22 time series (h|s) = Re sum_t h(t) s*(t). Maximising over the phase of a complex
mode gives |c(k)|, c(k) = sum_t h(t + k) s*(t), and over t_c the peak of this linear cross-correlation.

Two passes, so that speed does not cost precision:
1. search: c(k) for all lags of a block of pairs with single-precision FFTs of a fast length >= 2L - 1
   (``fft_length``) (zero padding: no circular wrap);
2. exact: c(k) is recomputed in double precision directly at the found peak and its two neighbours, the
   exact maximum among them is taken, and a parabola through the three refines the peak between samples,
   so time shifts between samples are not penalised.
Single-precision FFT errors (~1e-7 of the peak) can only move the search to a lag next to the true one,
which pass 2 corrects. Runs on the tensors' device (GPU when present).
"""

from __future__ import annotations

import numpy as np
import torch


def _complex(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.is_complex():
        return x.to(torch.complex128)
    if x.ndim >= 2 and x.shape[-2] == 2:  # (..., 2, L) channels (Re, Im), as stored
        return torch.complex(x[..., 0, :].double(), x[..., 1, :].double())
    return x.double().to(torch.complex128)


def _correlation_around(h: torch.Tensor, s: torch.Tensor, centre: torch.Tensor, width: int) -> torch.Tensor:
    """|c(k)| = |sum_t h(t + k) s*(t)| at lags k = centre - width .. centre + width, shape (B, 2 width + 1)."""
    length = h.shape[-1]
    pad = int(centre.abs().max()) + width  # zeros outside h, so every window lies inside the padded row
    padded = torch.nn.functional.pad(h, (pad, pad))
    index = (centre - width + pad).unsqueeze(-1) + torch.arange(length + 2 * width, device=h.device)
    window = padded.gather(1, index)  # h(t + centre - width), t = 0 .. L + 2 width - 1
    # all lags in one batched matrix product: (B, 2 width + 1, L) sliding view @ (B, L, 1)
    return torch.bmm(window.unfold(1, length, 1), s.conj().unsqueeze(-1)).squeeze(-1).abs()


def fft_length(minimum: int) -> int:
    """Smallest 2^a * c >= minimum with c in {1, 3, 9}: lengths that torch's FFTs run fastest (measured:
    4608 = 2^9 * 9 runs 1.6x faster than scipy's next_fast_len 4312 = 2^3 7^2 11 and 3.2x faster than 8192)."""
    return min(c << max(0, int(np.ceil(np.log2(minimum / c)))) for c in (1, 3, 9))


def _squared_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(x).square().sum((-1, -2))


BLOCK_ROWS = 32  # pairs per FFT block: its buffers (~1 MB each) stay in cache and are reused by the allocator


def overlap(h, s, refine: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, lag) for batches of waveforms (B, L) complex or (B, 2, L) real; lag in samples: h(t + lag) ~ s(t).

    The batch is processed in blocks of ``BLOCK_ROWS`` pairs: on CPU, whole-batch intermediates of several
    MB are fresh page-faulted allocations at every step (measured: 256 pairs x 2,131 samples 1.5x slower in
    one block than in blocks of 32 on 2 threads); results do not depend on the blocking.
    """
    h, s = _complex(h), _complex(s)
    if h.shape != s.shape:
        raise ValueError(f"h and s must have the same shape, got {tuple(h.shape)} and {tuple(s.shape)}")
    batch_shape, length = h.shape[:-1], h.shape[-1]
    h, s = h.reshape(-1, length), s.reshape(-1, length)
    n = fft_length(2 * length - 1)
    values, lags = [], []
    buffer = torch.empty(
        2 * min(BLOCK_ROWS, len(h)), n, dtype=torch.complex64, device=h.device
    )  # reused by every block
    for start in range(0, len(h), BLOCK_ROWS):
        value, lag = _overlap_block(h[start : start + BLOCK_ROWS], s[start : start + BLOCK_ROWS], buffer, refine)
        values.append(value)
        lags.append(lag)
    if not values:
        empty = torch.empty(0, dtype=torch.float64, device=h.device)
        return empty.reshape(batch_shape), empty.reshape(batch_shape)
    return torch.cat(values).reshape(batch_shape), torch.cat(lags).reshape(batch_shape)


def _overlap_block(
    h: torch.Tensor, s: torch.Tensor, buffer: torch.Tensor, refine: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    (batch, length), n = h.shape, buffer.shape[-1]
    spectra = buffer[: 2 * batch]
    spectra[:batch, :length] = h
    spectra[batch:, :length] = s
    spectra[:, length:] = 0  # zero padded to n >= 2L - 1: no circular wrap
    torch.fft.fft(spectra, out=spectra)
    correlation = spectra[:batch].mul_(spectra[batch:].conj())
    torch.fft.ifft(correlation, out=correlation)
    power = correlation.mul_(correlation.conj()).real  # |c|^2: no square roots for the search
    coarse = power.argmax(dim=-1)
    coarse = torch.where(coarse > n // 2, coarse - n, coarse)  # circular index -> signed lag
    exact = _correlation_around(h, s, coarse, 1)  # |c| at the search peak and its two neighbours, double precision
    best = exact.argmax(dim=-1)  # single-precision errors can only have put the search one lag off
    peak = exact.gather(-1, best.unsqueeze(-1)).squeeze(-1)
    lag = (coarse + best - 1).double()
    if refine:
        # |c(k)| of complex modes is an envelope, smooth on the scale of a sample: a parabola through the
        # three lags recovers sub-sample shifts (half a sample at merger otherwise costs ~1e-3).
        left, middle, right = exact.unbind(-1)
        curvature = left - 2 * middle + right
        offset = torch.where(
            curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-300), torch.zeros_like(middle)
        )
        offset = offset.clamp(-1.0, 1.0)
        vertex = middle - 0.25 * (left - right) * offset
        # where the search was one lag off, the vertex can fall below the exact maximum: keep the larger
        better = vertex > peak
        peak = torch.where(better, vertex, peak)
        lag = torch.where(better, coarse.double() + offset, lag)
    norms = (_squared_norm(h) * _squared_norm(s)).sqrt()
    return (peak / norms).clamp(max=1.0), lag


def overlap_reference(h: np.ndarray, s: np.ndarray) -> float:
    """Straightforward per-pair numpy reference: direct cross-correlation over all integer lags."""
    h, s = np.asarray(h, dtype=complex), np.asarray(s, dtype=complex)
    correlation = np.correlate(h, s, mode="full")  # sum_t h(t + k) s*(t)
    return float(np.abs(correlation).max() / (np.linalg.norm(h) * np.linalg.norm(s)))
