"""Figures for an h22 split: sample waveforms and the parameter coverage (Khan, Huerta & Das, Figs. 1-2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gwpe.data.h22_store import BACKEND, H22, PARAMS, SPLIT, TIME


def h22_overview(path: str | Path):
    """A matplotlib figure: Re h22 for the grid corners, and histograms of q, s1z, s2z."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gwpe.data.integrity import open_store

    group = open_store(path)
    params = group[PARAMS][:]
    times = group[TIME][:]
    corners = sorted({0, len(params) - 1, int(np.argmax(params[:, 0] - params[:, 1] - params[:, 2]))})
    fig = plt.figure(figsize=(12, 8), constrained_layout=True)
    grid = fig.add_gridspec(3, 3)
    full, merger = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :])
    near_peak = times >= max(times[0], -150.0)
    for k in corners:
        q, s1, s2 = params[k]
        waveform = group[H22][k]
        label = f"q={q:.2f}, s1z={s1:+.2f}, s2z={s2:+.2f}"
        full.plot(times, waveform[0], lw=0.6, label=label)
        (line,) = merger.plot(times[near_peak], waveform[0, near_peak], lw=0.9, label=label)
        merger.plot(times[near_peak], np.hypot(*waveform[:, near_peak]), lw=0.9, ls="--", color=line.get_color())
    full.set_title(f"{group.attrs.get(SPLIT)} split: {len(params)} waveforms, backend {group.attrs.get(BACKEND)}")
    full.set_ylabel("Re r h22 / M")
    full.legend(fontsize=8, loc="upper left")
    merger.axvline(0.0, color="k", lw=0.5)
    merger.set_xlabel("t / M  (dashed: |h22|, peak at t = 0)")
    merger.set_ylabel("Re r h22 / M")
    for i, name in enumerate(("q", "s1z", "s2z")):
        axis = fig.add_subplot(grid[2, i])
        values, counts = np.unique(params[:, i], return_counts=True)
        width = 0.7 * (np.min(np.diff(values)) if len(values) > 1 else 0.1)
        axis.bar(values, counts, width=width)
        axis.set_xlabel(f"{name} ({len(values)} values)")
        axis.set_ylabel("waveforms")
    return fig
