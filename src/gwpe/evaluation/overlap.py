"""Batched waveform overlaps in torch (Khan, Huerta & Das eq. 4).

O(h, s) = max over t_c, phi_c of (h^ | s^_[t_c, phi_c]), h^ = h / (h|h)^(1/2), with the white-noise inner
product of complex h22 time series (h|s) = Re sum_t h(t) s*(t). Maximising over the phase of a complex
mode gives |sum_t h(t) s*(t - tau)|, and over tau the peak of the linear cross-correlation, computed for a
whole batch with one FFT of length >= 2L (zero padding: no circular wrap), refined between samples by a
parabola through the top three lags so time shifts between samples are not penalised. Runs on the
tensors' device (GPU when present).
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


def overlap(h, s, refine: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, lag) for batches of waveforms (B, L) complex or (B, 2, L) real; lag in samples: s(t - lag) ~ h(t)."""
    h, s = _complex(h), _complex(s)
    if h.shape != s.shape:
        raise ValueError(f"h and s must have the same shape, got {tuple(h.shape)} and {tuple(s.shape)}")
    length = h.shape[-1]
    n = 1 << int(np.ceil(np.log2(2 * length)))
    correlation = torch.fft.ifft(torch.fft.fft(h, n=n) * torch.fft.fft(s, n=n).conj()).abs()
    peak, index = correlation.max(dim=-1)
    lag = index.double()
    if refine:
        # |correlation| of complex modes is an envelope, smooth on the scale of a sample: a parabola through
        # the top three lags recovers sub-sample shifts (half a sample at merger otherwise costs ~1e-3).
        left = correlation.gather(-1, ((index - 1) % n).unsqueeze(-1)).squeeze(-1)
        right = correlation.gather(-1, ((index + 1) % n).unsqueeze(-1)).squeeze(-1)
        curvature = left - 2 * peak + right
        offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-300), torch.zeros_like(peak))
        peak = peak - 0.25 * (left - right) * offset
        lag = lag + offset
    norms = torch.linalg.vector_norm(h, dim=-1) * torch.linalg.vector_norm(s, dim=-1)
    lag = torch.where(lag > n / 2, lag - n, lag)
    return (peak / norms).clamp(max=1.0), lag


def overlap_reference(h: np.ndarray, s: np.ndarray) -> float:
    """Straightforward per-pair numpy reference: direct cross-correlation over all integer lags."""
    h, s = np.asarray(h, dtype=complex), np.asarray(s, dtype=complex)
    correlation = np.correlate(h, s, mode="full")  # sum_t h(t + k) s*(t)
    return float(np.abs(correlation).max() / (np.linalg.norm(h) * np.linalg.norm(s)))
