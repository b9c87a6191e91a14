"""The paper's Figures 8-11 for a WaveNet evaluation (Khan, Huerta & Das sec. 3.3).

- ``errors_vs_q`` (Fig. 8): |Δq|, |Δs1z|, |Δs2z| and |Δη|, |Δσ_eff|, |ΔS_eff| against the true q, with the
  median per q.
- ``overlap_histograms`` (Fig. 9): overlap histograms for sample q slices.
- ``overlap_planes`` (Fig. 10): overlap over the (s1z, s2z) plane for q slices.
- ``waveform_pairs`` (Fig. 11): stored vs regenerated-at-prediction h22 for high, median and low overlaps
  (low: 2 sigma below the slice's mean, or the lowest if none is that low) per q slice.
"""

from __future__ import annotations

import numpy as np

from gwpe.evaluation.wavenet import Evaluation, errors


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def q_slices(evaluation: Evaluation, wanted: list[float] | None = None, count: int = 3) -> list[float]:
    """Test q values nearest to ``wanted``, else ``count`` spread from the lowest to the highest."""
    qs = np.unique(np.round(evaluation.true[:, 0], 6))
    if wanted:
        return list(dict.fromkeys(float(qs[np.argmin(np.abs(qs - w))]) for w in wanted))
    return [float(q) for q in qs[np.unique(np.linspace(0, len(qs) - 1, min(count, len(qs))).round().astype(int))]]


def _in_slice(evaluation: Evaluation, q: float) -> np.ndarray:
    return np.isclose(evaluation.true[:, 0], q, atol=1e-6)


def errors_vs_q(evaluation: Evaluation):
    """Fig. 8: |Δq|, |Δs1z|, |Δs2z|, |Δη|, |Δσ_eff|, |ΔS_eff| against the true q, with the median per q."""
    e = errors(evaluation.true, evaluation.predicted)
    q = evaluation.true[:, 0]
    fig, axes = _figure(2, 3, figsize=(13, 7), sharex=True)
    labels = {
        "q": "q",
        "s1": "s_1^z",
        "s2": "s_2^z",
        "eta": r"\eta",
        "sigma_eff": r"\sigma_{\rm eff}",
        "S_eff": r"S_{\rm eff}",
    }
    qs = np.unique(np.round(q, 6))
    for ax, (name, label) in zip(axes.flat, labels.items()):
        values = np.abs(e[name])
        ax.scatter(q, values, s=4, alpha=0.35, color="tab:blue", label="test waveforms")
        ax.plot(qs, [np.median(values[np.isclose(q, v)]) for v in qs], color="tab:red", lw=1.5, label="median per q")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylabel(f"$|\\Delta {label}|$")
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("true q")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Absolute prediction errors vs mass ratio (cf. Khan, Huerta & Das Fig. 8)")
    fig.tight_layout()
    return fig


def overlap_histograms(evaluation: Evaluation, slices: list[float]):
    """Fig. 9: overlap histograms per q slice, WaveNet against the training-mean baseline."""
    fig, axes = _figure(1, len(slices), figsize=(4.2 * len(slices), 3.6), squeeze=False)
    low = min(0.8, float(evaluation.overlap.min()))
    bins = np.linspace(low, 1.0, 30)
    for ax, q in zip(axes[0], slices):
        values = evaluation.overlap[_in_slice(evaluation, q)]
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8, label="WaveNet")
        ax.hist(
            evaluation.baseline_overlap[_in_slice(evaluation, q)],
            bins=bins,
            histtype="step",
            color="tab:gray",
            label="training-mean baseline",
        )
        ax.axvline(np.median(values), color="tab:red", lw=1, label=f"median {np.median(values):.4f}")
        ax.set_title(f"q = {q:.3g} ({len(values)} waveforms)")
        ax.set_xlabel("overlap O")
    axes[0, 0].set_ylabel("test waveforms")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Overlap between test waveforms and waveforms at the predicted parameters (cf. Fig. 9)")
    fig.tight_layout()
    return fig


def overlap_planes(evaluation: Evaluation, slices: list[float]):
    """Fig. 10: overlap over the (s1z, s2z) plane, one panel per q slice."""
    fig, axes = _figure(1, len(slices), figsize=(4.4 * len(slices), 3.9), squeeze=False)
    vmin = float(np.quantile(evaluation.overlap, 0.02))
    for ax, q in zip(axes[0], slices):
        mask = _in_slice(evaluation, q)
        points = ax.scatter(
            evaluation.true[mask, 1],
            evaluation.true[mask, 2],
            c=evaluation.overlap[mask],
            cmap="viridis",
            vmin=vmin,
            vmax=1.0,
            s=60,
            marker="s",
        )
        ax.set_title(f"q = {q:.3g}")
        ax.set_xlabel("$s_1^z$")
        ax.set_aspect("equal")
    axes[0, 0].set_ylabel("$s_2^z$")
    fig.colorbar(points, ax=axes[0].tolist(), label="overlap O")
    fig.suptitle("Overlap over the spin plane for q slices (cf. Fig. 10)")
    return fig


def pick_examples(evaluation: Evaluation, slices: list[float]) -> dict[tuple[float, str], int]:
    """(q, 'high' | 'median' | 'low') -> test index; low = 2 sigma below the slice mean (or its minimum)."""
    picks = {}
    for q in slices:
        index = np.flatnonzero(_in_slice(evaluation, q))
        values = evaluation.overlap[index]
        target_low = values.mean() - 2 * values.std()
        below = index[values <= target_low]
        picks[(q, "high")] = int(index[np.argmax(values)])
        picks[(q, "median")] = int(index[np.argmin(np.abs(values - np.median(values)))])
        picks[(q, "low")] = int(below[np.argmax(evaluation.overlap[below])] if len(below) else index[np.argmin(values)])
    return picks


def waveform_pairs(
    evaluation: Evaluation,
    slices: list[float],
    times: np.ndarray,
    stored: np.ndarray,
    regenerated: np.ndarray,
    picks: dict[tuple[float, str], int],
    window: float = 600.0,
):
    """Rows: high/median/low; columns: q slices. ``stored``/``regenerated`` are complex, ordered like ``picks``."""
    from gwpe.evaluation.overlap import overlap

    kinds = ("high", "median", "low")
    fig, axes = _figure(3, len(slices), figsize=(4.6 * len(slices), 7.5), squeeze=False, sharex=True)
    keep = times >= times[-1] - window
    for j, q in enumerate(slices):
        for i, kind in enumerate(kinds):
            k = list(picks).index((q, kind))
            index = picks[(q, kind)]
            value, lag = overlap(stored[k : k + 1], regenerated[k : k + 1])
            shift = int(round(float(lag[0])))
            # align the regenerated waveform in time and phase as the overlap does, so the eye sees what O measures
            aligned = np.roll(regenerated[k], shift)
            phase = np.angle(np.vdot(aligned, stored[k]))
            aligned = aligned * np.exp(1j * phase)
            ax = axes[i, j]
            ax.plot(times[keep], stored[k].real[keep], color="black", lw=1.2, label="test waveform")
            ax.plot(times[keep], aligned.real[keep], color="tab:orange", lw=1, ls="--", label="at prediction")
            t, p = evaluation.true[index], evaluation.predicted[index]
            ax.set_title(
                f"{kind}: O = {float(value[0]):.4f}\ntrue ({t[0]:.2f}, {t[1]:+.2f}, {t[2]:+.2f}) "
                f"pred ({p[0]:.2f}, {p[1]:+.2f}, {p[2]:+.2f})",
                fontsize=8,
            )
            if j == 0:
                ax.set_ylabel(r"Re $r h_{22}/M$")
    for ax in axes[-1]:
        ax.set_xlabel("t / M")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("High, median and low overlap examples per q slice; (q, s1z, s2z) (cf. Fig. 11)")
    fig.tight_layout()
    return fig
