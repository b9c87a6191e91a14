"""Posterior samples as a bilby result file (``bilby.core.result.Result``, ``.hdf5`` or ``.json``): the format
bilby, PESummary and LVK tooling read.

Columns carry bilby's standard keys (``BILBY_NAMES``): detector-frame ``mass_1 >= mass_2`` in Msun, aligned spins
``chi_1``/``chi_2``, ``luminosity_distance`` in Mpc, ``phase``, ``theta_jn``, ``ra``, ``dec``, ``psi`` in rad, and
``geocent_time`` in GPS seconds (gwpe's ``tc``, seconds from the window start, plus the window's GPS start) --
plus the derived ``chirp_mass``, ``mass_ratio = m2/m1 <= 1`` and ``chi_eff``. Rows are equally weighted samples
(bilby's convention for ``posterior``); evidences are natural logs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from gwpe import physics
from gwpe.errors import InputError

BILBY_NAMES = {
    "m1": "mass_1",
    "m2": "mass_2",
    "chi1z": "chi_1",
    "chi2z": "chi_2",
    "dL": "luminosity_distance",
    "phi0": "phase",
    "theta_jn": "theta_jn",
    "ra": "ra",
    "dec": "dec",
    "psi": "psi",
    "tc": "geocent_time",
    "chirp_mass": "chirp_mass",
    "mass_ratio": "mass_ratio",
    "chi_eff": "chi_eff",
}
DERIVED = ("chirp_mass", "mass_ratio", "chi_eff")
# bilby's own per-sample columns, written under their own names
BILBY_EXTRA_COLUMNS = ("log_likelihood", "log_prior")
# bilby's default LaTeX labels (bilby.gw.prior) and units, for parameter_labels(_with_unit)
LATEX_LABELS = {
    "mass_1": "$m_1$",
    "mass_2": "$m_2$",
    "chi_1": r"$\chi_1$",
    "chi_2": r"$\chi_2$",
    "luminosity_distance": "$d_L$",
    "phase": r"$\phi$",
    "theta_jn": r"$\theta_{JN}$",
    "ra": r"$\mathrm{RA}$",
    "dec": r"$\mathrm{DEC}$",
    "psi": r"$\psi$",
    "geocent_time": "$t_c$",
    "chirp_mass": r"$\mathcal{M}$",
    "mass_ratio": "$q$",
    "chi_eff": r"$\chi_{\mathrm{eff}}$",
}
UNITS = {
    "mass_1": r"$M_{\odot}$",
    "mass_2": r"$M_{\odot}$",
    "chirp_mass": r"$M_{\odot}$",
    "luminosity_distance": "Mpc",
    "geocent_time": "s",
}
SUFFIXES = (".hdf5", ".json")


def _bilby():
    """bilby, imported on first use with its logger at WARNING (it logs every save at INFO)."""
    import bilby

    logging.getLogger("bilby").setLevel(logging.WARNING)
    return bilby


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def with_derived(samples: np.ndarray, names) -> dict[str, np.ndarray]:
    """Columns of the (n, P) ``samples`` by gwpe name, plus ``chirp_mass`` and ``mass_ratio`` (m2/m1) when m1 and m2
    are present and ``chi_eff`` when chi1z and chi2z are too."""
    samples = np.asarray(samples, dtype=float)
    names = list(names)
    if samples.ndim != 2 or samples.shape[1] != len(names):
        raise InputError(f"samples of shape {samples.shape} do not match {len(names)} names {names}; need (n, P)")
    columns = {name: samples[:, i].copy() for i, name in enumerate(names)}
    if {"m1", "m2"} <= columns.keys():
        m1, m2 = columns["m1"], columns["m2"]
        columns["chirp_mass"] = physics.chirp_mass(m1, m2)
        columns["mass_ratio"] = physics.mass_ratio(m1, m2)
        if {"chi1z", "chi2z"} <= columns.keys():
            columns["chi_eff"] = physics.effective_spin(m1, m2, columns["chi1z"], columns["chi2z"])
    return columns


def _posterior_frame(columns: dict, gps_offset: float | None):
    """pandas DataFrame with bilby keys; ``tc`` shifted to GPS by ``gps_offset`` when given."""
    import pandas as pd

    allowed = list(BILBY_NAMES) + list(BILBY_EXTRA_COLUMNS)
    lengths = set()
    frame = {}
    for name, values in columns.items():
        if name not in allowed:
            raise InputError(f"column {name!r} is not a known parameter; allowed: {', '.join(allowed)}")
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise InputError(f"column {name!r} has shape {values.shape}; columns must be 1-D")
        lengths.add(len(values))
        if name == "tc" and gps_offset is not None:
            values = values + float(gps_offset)
        frame[BILBY_NAMES.get(name, name)] = values
    if len(lengths) > 1:
        raise InputError(f"columns have different lengths {sorted(lengths)}; all must have one length")
    if not frame:
        raise InputError("no columns given; need at least one of " + ", ".join(BILBY_NAMES))
    return pd.DataFrame(frame)


def _prior_dict(bilby, priors: dict | None, gps_offset: float | None):
    """bilby PriorDict of Uniform priors from gwpe name -> (low, high); empty when ``priors`` is None."""
    prior_dict = bilby.core.prior.PriorDict()
    for name, bounds in (priors or {}).items():
        if name not in BILBY_NAMES:
            raise InputError(f"prior for {name!r} is not a known parameter; allowed: {', '.join(BILBY_NAMES)}")
        low, high = (float(b) for b in bounds)
        if not low < high:
            raise InputError(f"prior for {name!r} has low {low} >= high {high}; need low < high")
        if name == "tc" and gps_offset is not None:
            low, high = low + float(gps_offset), high + float(gps_offset)
        key = BILBY_NAMES[name]
        prior_dict[key] = bilby.core.prior.Uniform(
            minimum=low, maximum=high, name=key, latex_label=LATEX_LABELS[key], unit=UNITS.get(key)
        )
    return prior_dict


def _label_with_unit(key: str) -> str:
    label = LATEX_LABELS.get(key, key)
    return f"{label} [{UNITS[key]}]" if key in UNITS else label


def write_bilby_result(
    path,
    columns: dict[str, np.ndarray],
    label: str,
    sampler: str,
    log_evidence: float = math.nan,
    log_evidence_err: float = math.nan,
    log_noise_evidence: float = math.nan,
    meta: dict | None = None,
    gps_offset: float | None = None,
    priors: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Write equally weighted posterior ``columns`` (gwpe names, e.g. from ``with_derived``) as a bilby result at
    exactly ``path`` (``.hdf5`` or ``.json``); returns ``path``.

    ``tc`` becomes ``geocent_time`` = tc + ``gps_offset`` (GPS of the window start) when given. The search
    parameters are the non-derived physical columns; ``log_bayes_factor`` = ``log_evidence`` - ``log_noise_evidence``
    (natural logs); ``meta`` (JSON-serialisable) is stored as ``meta_data``; ``priors`` (gwpe name -> (low, high))
    are stored as bilby Uniform priors.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise InputError(f"result file {path} has suffix {path.suffix!r}; allowed: {', '.join(SUFFIXES)}")
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise InputError(f"meta is not JSON-serialisable ({_one_line(error)}); use str, numbers, lists, dict") from None
    bilby = _bilby()
    posterior = _posterior_frame(columns, gps_offset)
    search_keys = [BILBY_NAMES[n] for n in columns if n in BILBY_NAMES and n not in DERIVED]
    result = bilby.core.result.Result(
        label=label,
        outdir=str(path.parent),
        sampler=sampler,
        search_parameter_keys=search_keys,
        fixed_parameter_keys=[],
        constraint_parameter_keys=[],
        # labels given so bilby does not look them up in a (possibly empty) prior dict
        parameter_labels=[LATEX_LABELS[k] for k in search_keys],
        parameter_labels_with_unit=[_label_with_unit(k) for k in search_keys],
        priors=_prior_dict(bilby, priors, gps_offset),
        meta_data=meta,
        posterior=posterior,
        log_evidence=float(log_evidence),
        log_evidence_err=float(log_evidence_err),
        log_noise_evidence=float(log_noise_evidence),
        log_bayes_factor=float(log_evidence) - float(log_noise_evidence),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    extension = path.suffix[1:]
    result.save_to_file(filename=path.name, extension=extension, overwrite=True, outdir=str(path.parent))
    # bilby names files <label>_result.<ext> when it picks the name, and falls back to a pickle when saving fails
    for stray, failed in ((path.with_name(f"{label}_result.{extension}"), False), (path.with_suffix(".pkl"), True)):
        if stray != path and stray.is_file() and not path.is_file():
            if failed:
                stray.unlink()
                raise InputError(f"bilby could not write {path} (it fell back to a pickle); check columns and meta")
            stray.replace(path)
    if not path.is_file():
        raise InputError(f"bilby did not write {path}; check that its folder is writable")
    return path


def read_result(path):
    """The ``bilby.core.result.Result`` stored at ``path`` (``.hdf5`` or ``.json``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bilby result {path} does not exist")
    bilby = _bilby()
    try:
        return bilby.core.result.read_in_result(filename=str(path))
    except Exception as error:  # bilby raises IOError, FileLoadError or ValueError (unknown extension)
        raise InputError(f"{path} is not a readable bilby result: {_one_line(error)}") from None
