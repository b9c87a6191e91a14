"""Figures for an h22 split: sample waveforms and the parameter coverage (Khan, Huerta & Das, Figs. 1-2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def h22_overview(path: str | Path):
    """A matplotlib figure: Re h22 for the grid corners, and histograms of q, s1z, s2z."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import zarr

    group = zarr.open_group(str(path), mode="r")
    params = group["params"][:]
    times = group["time"][:]
    corners = sorted({0, len(params) - 1, int(np.argmax(params[:, 0] - params[:, 1] - params[:, 2]))})
    fig = plt.figure(figsize=(12, 6.5), constrained_layout=True)
    grid = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid[0, :])
    for k in corners:
        q, s1, s2 = params[k]
        ax.plot(times, group["h22"][k, 0], lw=0.7, label=f"q={q:.2f}, s1z={s1:+.2f}, s2z={s2:+.2f}")
    ax.set_xlabel("t / M")
    ax.set_ylabel("Re r h22 / M")
    ax.set_title(f"{group.attrs.get('split')} split: {len(params)} waveforms, backend {group.attrs.get('backend')}")
    ax.legend(fontsize=8, loc="upper left")
    for i, name in enumerate(("q", "s1z", "s2z")):
        axis = fig.add_subplot(grid[1, i])
        axis.hist(params[:, i], bins=min(50, len(np.unique(params[:, i])) * 2))
        axis.set_xlabel(name)
        axis.set_ylabel("waveforms")
    return fig
