"""Corner plots of one or more posterior sample sets for the same observation (``corner``), truth marked.

Sets are overlaid in the order given (e.g. a flow, then the likelihood-based reference); each keeps its own
colour with 1- and 2-sigma 2-D contours, and a legend names them. Ranges span the union of the sets' central
99.8 % so a narrow reference is not lost inside a broad flow (or the other way round).
"""

from __future__ import annotations

import numpy as np

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
LABELS = {
    "m1": r"$m_1\,[M_\odot]$",
    "m2": r"$m_2\,[M_\odot]$",
    "phi0": r"$\phi_0$",
    "tc": r"$t_c\,[s]$",
    "dL": r"$d_L\,[\mathrm{Mpc}]$",
    "chi1z": r"$\chi_{1z}$",
    "chi2z": r"$\chi_{2z}$",
    "theta_jn": r"$\theta_{JN}$",
    "chirp_mass": r"$\mathcal{M}\,[M_\odot]$",
}


def posterior_corner(sample_sets: dict[str, np.ndarray], parameters: list[str], truth=None, title: str | None = None):
    """Figure with every (n_i, P) set in ``sample_sets`` overlaid; ``truth`` (P,) drawn as lines."""
    import corner
    import matplotlib.lines as mlines

    sets = {k: np.asarray(v, dtype=float) for k, v in sample_sets.items()}
    everything = np.concatenate(list(sets.values()))
    low, high = np.quantile(everything, [0.001, 0.999], axis=0)
    span = np.where(high > low, high - low, 1.0)
    ranges = list(zip(low - 0.05 * span, high + 0.05 * span))
    figure, handles = None, []
    for (label, samples), colour in zip(sets.items(), COLOURS):
        figure = corner.corner(
            samples,
            fig=figure,
            range=ranges,
            color=colour,
            bins=30,
            smooth=1.0,
            labels=[LABELS.get(p, p) for p in parameters],
            levels=(0.393, 0.865),
            plot_datapoints=False,
            plot_density=False,
            fill_contours=False,
            hist_kwargs={"density": True},
            truths=truth,
            truth_color="black",
        )
        handles.append(mlines.Line2D([], [], color=colour, label=f"{label} ({len(samples):,} samples)"))
    figure.legend(
        handles=handles, loc="upper right", bbox_to_anchor=(0.98, 0.965), fontsize=11, frameon=False
    )  # below the title
    if title:
        figure.suptitle(title, x=0.55, y=0.995, fontsize=12)
    return figure
