"""Corner plots of one or more posterior sample sets for the same observation (``corner``), truth marked.

Sets are overlaid in the order given (e.g. a flow, then the likelihood-based reference); each keeps its own
colour with 1- and 2-sigma 2-D contours (other levels on request), and a legend names them and states the
contour levels. Each 1-D panel's title gives the first set's median and 90 % interval (5 %, 95 % quantiles:
``median^{+(q95 - median)}_{-(median - q5)}``), what GW papers quote, with dashed lines at those quantiles.
Ranges span the union of the sets' central 99.8 % so a narrow reference is not lost inside a broad flow (or the
other way round).
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
    "mass_ratio": r"$q = m_2/m_1$",
    "chi_eff": r"$\chi_\mathrm{eff}$",
    "ra": r"$\alpha\,[\mathrm{rad}]$",
    "dec": r"$\delta\,[\mathrm{rad}]$",
    "psi": r"$\psi$",
}


def posterior_corner(
    sample_sets: dict[str, np.ndarray],
    parameters: list[str],
    truth=None,
    title: str | None = None,
    weights: dict[str, np.ndarray] | None = None,
    levels: tuple[float, ...] = (0.393, 0.865),
    ranges: list[tuple[float, float]] | None = None,
    extra_legend_handles: tuple = (),
    titles: bool = True,
):
    """Figure with every (n_i, P) set in ``sample_sets`` overlaid; ``truth`` (P,) drawn as lines.

    Optional: ``weights`` per set name (importance weights, any normalisation; the legend then gives the Kish
    effective sample size), 2-D contour ``levels`` (probability mass enclosed; default 1 and 2 sigma of a 2-D
    Gaussian), explicit axis ``ranges``, ``extra_legend_handles`` appended to the legend, and ``titles``
    (median and 90 % interval of the first set over each 1-D panel).
    """
    import corner
    import matplotlib.lines as mlines

    sets = {k: np.asarray(v, dtype=float) for k, v in sample_sets.items()}
    weights = {k: np.asarray(w, dtype=float) for k, w in (weights or {}).items()}
    if ranges is None:
        everything = np.concatenate(list(sets.values()))
        low, high = np.quantile(everything, [0.001, 0.999], axis=0)
        span = np.where(high > low, high - low, 1.0)
        ranges = list(zip(low - 0.05 * span, high + 0.05 * span))
    figure, handles = None, []
    for index, ((label, samples), colour) in enumerate(zip(sets.items(), COLOURS)):
        set_weights = weights.get(label)
        first = titles and index == 0
        figure = corner.corner(
            samples,
            fig=figure,
            weights=set_weights,
            range=ranges,
            color=colour,
            bins=30,
            smooth=1.0,
            labels=[LABELS.get(p, p) for p in parameters],
            levels=tuple(levels),
            plot_datapoints=False,
            plot_density=False,
            fill_contours=False,
            hist_kwargs={"density": True},
            truths=truth,
            truth_color="black",
            show_titles=first,
            quantiles=(0.05, 0.5, 0.95) if first else None,
            title_quantiles=(0.05, 0.5, 0.95),
            title_fmt=".3g",
            title_kwargs={"fontsize": 9},
        )
        count = f"{len(samples):,} samples"
        if set_weights is not None:
            count += f", ESS {set_weights.sum() ** 2 / (set_weights**2).sum():,.0f}"
        handles.append(mlines.Line2D([], [], color=colour, label=f"{label} ({count})"))
    stated = ", ".join(f"{level:.1%}" for level in levels)
    handles.append(mlines.Line2D([], [], color="none", label=f"2-D contours enclose {stated} of each set"))
    if titles:
        handles.append(mlines.Line2D([], [], color="none", label=f"titles: {next(iter(sets))} median, 90 % interval"))
    figure.legend(
        handles=handles + list(extra_legend_handles),
        loc="upper right",
        bbox_to_anchor=(0.98, 0.965),
        fontsize=11,
        frameon=False,
    )  # below the title
    if title:
        figure.suptitle(title, x=0.55, y=0.995, fontsize=12)
    return figure
