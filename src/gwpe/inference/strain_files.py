"""Strain files as users have them, read into one (channels, samples) array with its metadata.

Formats (by extension):
- ``.npy``: (L,) or (D, L) float array; ``.npz``: array ``strain`` plus optional ``sample_rate``,
  ``start_time``, ``detectors``. Sample rate from ``--sample-rate`` when the file has none.
- ``.h5`` / ``.hdf5`` / ``.hdf``: gwpe's layout (dataset ``strain`` (D, L) or (L,), attributes ``sample_rate``,
  ``start_time``, ``detectors``) or GWOSC's (``strain/Strain`` with attribute ``Xspacing``, ``meta/GPSstart``,
  ``meta/Detector``).
- ``.txt`` / ``.gwf.txt`` / ``.dat``: one column of samples; GWOSC's header (``# ... for H1_... for GPS 1126257414
  - 1126261510 at 4096Hz``) gives detector, start and rate, otherwise ``--sample-rate`` does.
Several files (one per detector, GWOSC style) are stacked in the order given and must agree on rate, length
and start time. Every problem is a one-line ``InputError`` naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwpe.errors import InputError

GWOSC_HEADER = re.compile(
    r"for\s+(?P<detector>[A-Z]\d)_\S*\s+for\s+GPS\s+(?P<start>[\d.]+)\s*-\s*[\d.]+\s+at\s+(?P<rate>[\d.]+)\s*Hz", re.I
)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
TEXT_SUFFIXES = (".txt", ".dat", ".gz")


@dataclass
class StrainInput:
    """Stacked (D, L) strain with its sample rate, start time and detectors (None: unknown), files and md5."""

    data: np.ndarray  # (D, L) float64
    sample_rate: float | None
    start_time: float | None
    detectors: list[str] | None
    files: list[str]
    md5: str

    @property
    def duration(self) -> float | None:
        return None if self.sample_rate is None else self.data.shape[-1] / self.sample_rate


def _md5(paths: list[Path]) -> str:
    digest = hashlib.md5()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _as_2d(array, path: Path) -> np.ndarray:
    try:
        array = np.asarray(array)
        if np.iscomplexobj(array):  # a complex h22 series: (Re, Im) channels
            array = np.stack([array.real, array.imag], axis=0) if array.ndim == 1 else array
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{path}: strain is not numeric ({error})") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InputError(f"{path}: strain has shape {array.shape}; allowed: (samples,) or (detectors, samples)")
    if array.size == 0 or array.shape[-1] == 0:
        raise InputError(f"{path}: strain is empty")
    return array


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_hdf5(path: Path) -> tuple[np.ndarray, float | None, float | None, list[str] | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "strain" in f and isinstance(f["strain"], h5py.Dataset):
                d = f["strain"]
                detectors = d.attrs.get("detectors", f.attrs.get("detectors"))
                rate = d.attrs.get("sample_rate", f.attrs.get("sample_rate"))
                start = d.attrs.get("start_time", f.attrs.get("start_time"))
                return (
                    d[()],
                    None if rate is None else float(rate),
                    None if start is None else float(start),
                    None if detectors is None else [_decode(x) for x in np.atleast_1d(detectors)],
                )
            if "strain" in f and "Strain" in f["strain"]:  # GWOSC
                d = f["strain/Strain"]
                spacing = d.attrs.get("Xspacing")
                start = f["meta/GPSstart"][()] if "meta/GPSstart" in f else d.attrs.get("Xstart")
                detector = _decode(f["meta/Detector"][()]) if "meta/Detector" in f else None
                return (
                    d[()],
                    None if spacing is None else 1.0 / float(spacing),
                    None if start is None else float(start),
                    None if detector is None else [detector],
                )
    except OSError as error:
        raise InputError(f"{path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None
    raise InputError(f"{path}: no 'strain' dataset (gwpe layout) or 'strain/Strain' (GWOSC layout)")


def _read_text(path: Path) -> tuple[np.ndarray, float | None, float | None, list[str] | None]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable text file ({error})") from None
    header = " ".join(line for line in lines if line.startswith("#"))
    rows = [line for line in lines if line.strip() and not line.startswith("#")]
    try:
        data = np.array([float(line.split()[-1]) for line in rows])
    except ValueError as error:
        raise InputError(f"{path}: a line is not a number ({error})") from None
    match = GWOSC_HEADER.search(header)
    if match:
        return data, float(match["rate"]), float(match["start"]), [match["detector"].upper()]
    return data, None, None, None


def read_one(path: Path) -> tuple[np.ndarray, float | None, float | None, list[str] | None]:
    """One file's (data, sample rate, start time, detectors), None where the file does not say;
    InputError when it is missing, empty or unreadable."""
    if not path.is_file():
        raise InputError(f"strain file {path} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False), None, None, None
        except (ValueError, OSError) as error:
            raise InputError(f"{path}: not a NumPy array file ({str(error).splitlines()[0]})") from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                if "strain" not in f:
                    raise InputError(f"{path}: no array named 'strain' (has: {', '.join(f.files) or 'none'})")
                get = lambda k: f[k] if k in f else None  # noqa: E731
                rate, start, detectors = get("sample_rate"), get("start_time"), get("detectors")
                return (
                    f["strain"],
                    None if rate is None else float(rate),
                    None if start is None else float(start),
                    None if detectors is None else [str(x) for x in np.atleast_1d(detectors)],
                )
        except (ValueError, OSError) as error:
            raise InputError(f"{path}: not a NumPy archive ({str(error).splitlines()[0]})") from None
    if suffix in HDF5_SUFFIXES:
        return _read_hdf5(path)
    if suffix in TEXT_SUFFIXES:
        return _read_text(path)
    raise InputError(f"{path}: unknown strain format {suffix!r}; allowed: .npy, .npz, .h5/.hdf5/.hdf, .txt/.dat/.gz")


def read_strain(
    paths: list[str | Path], sample_rate: float | None = None, detectors: list[str] | None = None
) -> StrainInput:
    """Read and stack ``paths``; ``sample_rate`` / ``detectors`` fill in (and must agree with) file metadata."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no strain file given (--strain FILE)")
    arrays, rates, starts, names = [], [], [], []
    for path in paths:
        data, rate, start, found = read_one(path)
        data = _as_2d(data, path)
        if rate is not None and sample_rate is not None and abs(rate - sample_rate) > 1e-9 * rate:
            raise InputError(f"{path}: file says sample rate {rate:g} Hz but --sample-rate is {sample_rate:g}")
        arrays.append(data)
        rates.append(rate if rate is not None else sample_rate)
        starts.append(start)
        names.extend(found or [None] * data.shape[0])
    lengths = {a.shape[-1] for a in arrays}
    if len(lengths) > 1:
        raise InputError(f"strain files have different lengths {sorted(lengths)}; they must cover the same segment")
    known_rates = {r for r in rates if r is not None}
    if len(known_rates) > 1:
        raise InputError(f"strain files have different sample rates {sorted(known_rates)} Hz")
    known_starts = {s for s in starts if s is not None}
    if len(known_starts) > 1:
        raise InputError(f"strain files start at different times {sorted(known_starts)}")
    data = np.concatenate(arrays, axis=0)
    if detectors is not None:
        if len(detectors) != data.shape[0]:
            raise InputError(
                f"--detectors {','.join(detectors)} names {len(detectors)} channels but the files hold {data.shape[0]}"
            )
        clash = [(n, d) for n, d in zip(names, detectors) if n is not None and n != d]
        if clash:
            raise InputError(f"--detectors says {clash[0][1]} where the file says {clash[0][0]}")
        names = list(detectors)
    return StrainInput(
        data,
        next(iter(known_rates), None),
        next(iter(known_starts), None),
        None if any(n is None for n in names) else names,
        [str(p) for p in paths],
        _md5(paths),
    )


def write_strain(
    path: str | Path,
    data: np.ndarray,
    sample_rate: float,
    start_time: float | None = None,
    detectors: list[str] | None = None,
) -> Path:
    """Write (D, L) or (L,) strain in gwpe's HDF5 layout (what ``read_strain`` reads back)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("strain", data=np.asarray(data, dtype=np.float64))
        d.attrs["sample_rate"] = float(sample_rate)
        if start_time is not None:
            d.attrs["start_time"] = float(start_time)
        if detectors:
            d.attrs["detectors"] = list(detectors)
    return path
