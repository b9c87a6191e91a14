"""The figures of an event report: a corner plot of several posteriors against the published intervals, and a
sky map.

Sky map convention: Mollweide projection with longitude = pi - RA (RA wrapped to [0, 2 pi)), so RA increases to
the left as on the sky seen from inside the celestial sphere; RA = 12 h sits at the centre, 0 h / 24 h at the right
and left edges, and the tick labels give RA in hours. Densities come from a histogram with equal-area cells
(uniform in longitude and sin(dec)), so the highest-density credible regions are those of probability per solid
angle.
"""

from __future__ import annotations

import math

import numpy as np

from gwpe.errors import InputError
from gwpe.evaluation.corner_plots import LABELS, posterior_corner

CORNER_LEVELS = (0.5, 0.9)
SKY_LEVELS = (0.5, 0.9)
PUBLISHED_LABEL = "published 90 % (LVK 2016)"
PUBLISHED_BAND_GID = "published-90"
PUBLISHED_MEDIAN_GID = "published-median"
PUBLISHED_EDGE_GID = "published-90-edge"
SKY_BINS = (120, 60)  # longitude cells x sin(dec) cells: ~5.7 deg^2 each
SKY_SMOOTHING = 1.0  # Gaussian smoothing of the histogram, in cells (wraps in longitude)
SQUARE_DEGREES_ON_SKY = 4 * math.pi * (180 / math.pi) ** 2


def _percent(level: float) -> str:
    return f"{100 * level:.0f} %"


def _normalised_weights(weights, n: int, what: str) -> np.ndarray | None:
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=float)
    if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise InputError(f"weights for {what} must be {n} finite non-negative numbers with a positive sum")
    return weights / weights.sum()


def _quantiles(x: np.ndarray, q, weights: np.ndarray | None) -> np.ndarray:
    """Weighted quantiles (inverse of the weighted empirical CDF, as ``corner.quantile``)."""
    if weights is None:
        return np.quantile(x, q)
    order = np.argsort(x)
    cdf = np.cumsum(weights[order])
    return np.interp(np.asarray(q) * cdf[-1], cdf, x[order])


def _published_index(key, labels: list[str]) -> int:
    if isinstance(key, (int, np.integer)) and 0 <= key < len(labels):
        return int(key)
    if isinstance(key, str) and key in labels:
        return labels.index(key)
    raise InputError(f"published key {key!r} is not a parameter index 0..{len(labels) - 1} or one of {labels}")


def _value_with_errors(low: float, median: float, high: float) -> str:
    """``median^{+(high - median)}_{-(median - low)}`` with two significant digits in the smaller error."""
    smaller = min(high - median, median - low)
    decimals = 0 if not smaller > 0 else int(min(max(1 - math.floor(math.log10(smaller)), 0), 8))
    return f"${median:.{decimals}f}^{{+{high - median:.{decimals}f}}}_{{-{median - low:.{decimals}f}}}$"


def event_corner(
    posteriors: dict[str, np.ndarray],
    labels: list[str],
    published: dict | None = None,
    weights: dict[str, np.ndarray] | None = None,
    title: str | None = None,
    published_label: str = PUBLISHED_LABEL,
):
    """Corner plot overlaying the (n_i, K) ``posteriors`` (name -> samples, first one summarised); returns the Figure.

    ``labels``: the K parameters (gwpe names get LaTeX labels, anything else is shown as given). 1-D panels are
    titled with the median and 5 %/95 % quantiles of the first posterior; 2-D contours enclose 50 % and 90 %.
    ``weights``: optional importance weights per posterior name. ``published``: parameter index or name ->
    (low, median, high) of a published 90 % interval, drawn as a grey band and dashed median line on the 1-D
    panels and as dotted edges on the 2-D panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    labels = list(labels)
    if not posteriors:
        raise InputError("no posteriors given; need at least one name -> (n, K) samples")
    sets = {name: np.asarray(samples, dtype=float) for name, samples in posteriors.items()}
    for name, samples in sets.items():
        if samples.ndim != 2 or samples.shape[1] != len(labels) or len(samples) < 2:
            raise InputError(f"posterior {name!r} has shape {samples.shape}; need (n >= 2, {len(labels)}) for {labels}")
    unknown = sorted(set(weights or {}) - set(sets))
    if unknown:
        raise InputError(f"weights for {unknown} name no posterior; posteriors: {list(sets)}")
    set_weights = {name: _normalised_weights((weights or {}).get(name), len(s), name) for name, s in sets.items()}
    bands = {_published_index(key, labels): tuple(float(v) for v in value) for key, value in (published or {}).items()}

    ranges = []
    for k in range(len(labels)):
        ends = [_quantiles(s[:, k], [0.001, 0.999], set_weights[name]) for name, s in sets.items()]
        if k in bands:
            ends.append(np.array([min(bands[k]), max(bands[k])]))
        low, high = min(e[0] for e in ends), max(e[1] for e in ends)
        span = high - low if high > low else 1.0
        ranges.append((low - 0.05 * span, high + 0.05 * span))

    extra_handles = ()
    if bands:
        extra_handles = (
            mpatches.Patch(color="0.5", alpha=0.3, label=published_label),
            mlines.Line2D([], [], color="black", ls="--", lw=1.0, label="published median"),
        )
    figure = posterior_corner(
        sets,
        labels,
        title=title,
        weights={name: w for name, w in set_weights.items() if w is not None},
        levels=CORNER_LEVELS,
        ranges=ranges,
        extra_legend_handles=extra_handles,
    )
    size = len(labels)
    axes = np.array(figure.axes[: size * size]).reshape(size, size)
    first_name, first = next(iter(sets.items()))
    for k in range(size):
        low, median, high = _quantiles(first[:, k], [0.05, 0.5, 0.95], set_weights[first_name])
        summary = _value_with_errors(low, median, high)
        axes[k, k].set_title(f"{LABELS.get(labels[k], labels[k])} = {summary}", fontsize=9)
    for k, (low, median, high) in bands.items():
        axes[k, k].axvspan(low, high, color="0.5", alpha=0.3, zorder=0, gid=PUBLISHED_BAND_GID)
        axes[k, k].axvline(median, color="black", ls="--", lw=1.0, gid=PUBLISHED_MEDIAN_GID)
        for other in range(size):
            if other > k:  # column k of the lower triangle
                for edge in (low, high):
                    axes[other, k].axvline(edge, color="0.4", ls=":", lw=0.8, gid=PUBLISHED_EDGE_GID)
            if other < k:  # row k of the lower triangle
                for edge in (low, high):
                    axes[k, other].axhline(edge, color="0.4", ls=":", lw=0.8, gid=PUBLISHED_EDGE_GID)
    note = (
        f"2-D contours enclose {_percent(CORNER_LEVELS[0])} and {_percent(CORNER_LEVELS[1])} of each posterior; "
        f"1-D titles: median and 5 %-95 % quantiles of {first_name}"
    )
    if bands:
        note += f"; grey: {published_label}"
    figure.text(0.01, 0.005, note, fontsize=9, ha="left", va="bottom")
    return figure


def southern_fraction(dec, weights=None) -> float:
    """Posterior probability of dec < 0 (southern sky) from samples in rad, optionally weighted."""
    dec = np.asarray(dec, dtype=float)
    weights = _normalised_weights(weights, len(dec), "dec")
    below = dec < 0
    return float(below.mean() if weights is None else weights[below].sum())


def _sky_histogram(ra, dec, weights):
    """Probability per equal-area cell: (longitude edges, dec edges, mass (n_dec, n_lon)), lightly smoothed."""
    from scipy.ndimage import gaussian_filter

    longitude = np.pi - np.mod(ra, 2 * np.pi)
    lon_edges = np.linspace(-np.pi, np.pi, SKY_BINS[0] + 1)
    sin_edges = np.linspace(-1.0, 1.0, SKY_BINS[1] + 1)
    mass, _, _ = np.histogram2d(np.sin(dec), longitude, bins=(sin_edges, lon_edges), weights=weights)
    mass = gaussian_filter(mass, SKY_SMOOTHING, mode=("nearest", "wrap"))
    return lon_edges, np.arcsin(sin_edges), mass / mass.sum()


def _closed_grid(lon_edges, dec_edges, mass):
    """Cell centres and masses padded out to longitude +-pi (periodic mean) and dec +-pi/2, so contours close at the
    map's edge instead of stopping half a cell short."""
    lon = np.concatenate([[-np.pi], 0.5 * (lon_edges[1:] + lon_edges[:-1]), [np.pi]])
    dec = np.arcsin(0.5 * (np.sin(dec_edges[1:]) + np.sin(dec_edges[:-1])))
    dec = np.concatenate([[-np.pi / 2], dec, [np.pi / 2]])
    seam = 0.5 * (mass[:, :1] + mass[:, -1:])
    padded = np.concatenate([seam, mass, seam], axis=1)
    padded = np.concatenate([padded[:1], padded, padded[-1:]], axis=0)
    return lon, dec, padded


def _credible_thresholds(mass: np.ndarray, levels) -> list[float]:
    """Cell masses t_L such that the cells with mass >= t_L hold at least L of the total (highest density first)."""
    ordered = np.sort(mass.ravel())[::-1]
    cumulative = np.cumsum(ordered)
    return [float(ordered[min(np.searchsorted(cumulative, level), len(ordered) - 1)]) for level in levels]


def _check_sky_samples(ra, dec, weights):
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    if ra.ndim != 1 or ra.shape != dec.shape or len(ra) < 2:
        raise InputError(f"ra {ra.shape} and dec {dec.shape} must be 1-D of one length >= 2")
    if np.any(np.abs(dec) > np.pi / 2 + 1e-9) or not np.all(np.isfinite(ra)):
        raise InputError("dec must lie in [-pi/2, pi/2] rad and ra be finite (radians, not degrees or hours)")
    return ra, np.clip(dec, -np.pi / 2, np.pi / 2), _normalised_weights(weights, len(ra), "the sky samples")


def sky_credible_areas(ra, dec, weights=None, levels=SKY_LEVELS) -> dict[float, float]:
    """Areas in deg^2 of the highest-density credible regions at ``levels`` (those of ``sky_map``'s contours)."""
    ra, dec, weights = _check_sky_samples(ra, dec, weights)
    _, _, mass = _sky_histogram(ra, dec, weights)
    cell = SQUARE_DEGREES_ON_SKY / mass.size
    return {level: float((mass >= t).sum() * cell) for level, t in zip(levels, _credible_thresholds(mass, levels))}


def sky_map(ra, dec, weights=None, label: str = "", title: str | None = None):
    """Mollweide sky map of samples (ra, dec in rad) with the 50 % and 90 % credible contours; returns the Figure.

    Longitude = pi - RA: RA increases to the left, 12 h at the centre, ticks in hours. A text line gives P(dec < 0)
    and the areas of the credible regions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines as mlines
    from matplotlib.figure import Figure

    ra, dec, weights = _check_sky_samples(ra, dec, weights)
    lon_edges, dec_edges, mass = _sky_histogram(ra, dec, weights)
    cell = SQUARE_DEGREES_ON_SKY / mass.size
    thresholds = _credible_thresholds(mass, SKY_LEVELS)

    figure = Figure(figsize=(10, 6))  # not registered with pyplot: nothing to close
    ax = figure.add_subplot(111, projection="mollweide")
    shown = np.ma.masked_less_equal(mass / cell, 1e-3 * mass.max() / cell)  # hide the smoothing's far tails
    image = ax.pcolormesh(lon_edges, dec_edges, shown, cmap="Blues", shading="flat", rasterized=True)
    lon_grid, dec_grid, mass_grid = _closed_grid(lon_edges, dec_edges, mass)
    styles = {SKY_LEVELS[0]: "-", SKY_LEVELS[1]: "--"}
    for level, threshold in sorted(zip(SKY_LEVELS, thresholds), key=lambda pair: pair[1]):
        if mass.max() > threshold:
            ax.contour(
                lon_grid,
                dec_grid,
                mass_grid,
                levels=[threshold],
                colors="black",
                linewidths=1.2,
                linestyles=styles[level],
            )
    tick_degrees = np.arange(-150, 151, 30)
    ax.set_xticks(np.radians(tick_degrees))
    ax.set_xticklabels([f"{int(round((180 - d) / 15)) % 24}h" for d in tick_degrees], fontsize=9)
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("right ascension (increasing to the left)")
    ax.set_ylabel("declination")
    colourbar = figure.colorbar(image, ax=ax, orientation="vertical", fraction=0.03, pad=0.04, shrink=0.6)
    colourbar.set_label(r"posterior probability per deg$^2$")
    handles = [
        mlines.Line2D([], [], color="black", ls=styles[level], label=f"{label} {_percent(level)}".strip())
        for level in SKY_LEVELS
    ]
    ax.legend(handles=handles, loc="lower right", fontsize=9, frameon=False, bbox_to_anchor=(1.02, -0.05))
    areas = {level: (mass >= t).sum() * cell for level, t in zip(SKY_LEVELS, thresholds)}
    area_text = ", ".join(f"{_percent(level)} area {areas[level]:,.0f} deg²" for level in SKY_LEVELS)
    figure.text(
        0.02, 0.02, f"P(dec < 0) = {southern_fraction(dec, weights):.3f}; {area_text}", fontsize=10, gid="sky-summary"
    )
    if title:
        ax.set_title(title, pad=20)
    return figure
