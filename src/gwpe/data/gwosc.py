"""An event's raw strain over [gps - before, gps + after]: from GWOSC files in a local folder, else from GWOSC.

Files are GWOSC's strain HDF5 (LOSC layout: ``strain/Strain`` with attribute ``Xspacing`` = 1 / rate,
``meta/GPSstart``, ``meta/Detector``), named ``{site}-{detector}_..._{start}-{duration}.hdf5`` (LIGO-T050017).
Network access goes through the ``gwosc`` client (URL lookup) and urllib (the file), each request bounded by
``timeout``, so an offline machine fails in seconds with one line saying how to get the files.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gwpe.errors import InputError

SOURCES = ("auto", "local", "gwosc")
SUFFIXES = (".hdf5", ".h5", ".hdf")
GWOSC_PAGE = "https://gwosc.org"
GWTC1_EVENTS = (
    "GW150914 GW151012 GW151226 GW170104 GW170608 GW170729 GW170809 GW170814 GW170817 GW170818 GW170823".split()
)


@dataclass
class EventStrain:
    """Raw strain (D, L) of every detector on one time grid: sample k is at GPS ``start_time + k / sample_rate``."""

    data: np.ndarray
    sample_rate: float
    start_time: float
    detectors: list[str]
    files: list[str] = field(default_factory=list)
    source: str = "local"  # "local" | "gwosc"


class GwoscUnreachable(Exception):
    """GWOSC could not be asked or did not deliver (network, HTTP, lookup); the caller reports it in one line."""


def read_gwosc_file(path: str | Path) -> tuple[np.ndarray, float, float, str]:
    """(strain (L,) float64, sample rate [Hz], GPS of the first sample, detector) of a GWOSC HDF5 file."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            strain = handle["strain/Strain"]
            data = np.asarray(strain[()], dtype=np.float64)
            rate = 1.0 / float(strain.attrs["Xspacing"])
            start = float(handle["meta/GPSstart"][()])
            detector = _text(handle["meta/Detector"][()])
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: not a readable GWOSC strain file ({_first_line(error)}); {_LAYOUT}") from error
    return data, rate, start, detector


_LAYOUT = "allowed: GWOSC's HDF5 with strain/Strain (attribute Xspacing), meta/GPSstart and meta/Detector"


def file_span(path: str | Path) -> tuple[float, float, float]:
    """(GPS start, GPS stop, sample rate) of a GWOSC HDF5 file from its header, without reading the strain."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            strain = handle["strain/Strain"]
            spacing = float(strain.attrs["Xspacing"])
            start = float(handle["meta/GPSstart"][()])
            return start, start + strain.shape[0] * spacing, 1.0 / spacing
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"{path}: not a readable GWOSC strain file ({_first_line(error)}); {_LAYOUT} (fix or remove it)"
        ) from error


def find_local(folder: str | Path, detectors: list[str], start: float, stop: float) -> list[Path] | None:
    """Per detector, the shortest HDF5 file in ``folder`` named ``{site}-{det}_*`` whose span (read from the file)
    covers [start, stop]; None if the folder or any detector's file is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for detector in detectors:
        candidates = []
        for path in sorted(folder.glob(f"{detector[0]}-{detector}_*")):
            if path.suffix.lower() not in SUFFIXES:
                continue
            first, last, _ = file_span(path)
            if first <= start and last >= stop:
                candidates.append((last - first, path))
        if not candidates:
            return None
        found.append(min(candidates)[1])
    return found


def download(
    detectors: list[str],
    start: float,
    stop: float,
    folder: str | Path,
    host: str = "https://gwosc.org",
    timeout: float = 20.0,
) -> list[Path]:
    """Per detector, GWOSC's shortest 4096 Hz HDF5 file covering [start, stop], downloaded into ``folder`` (kept if
    already there); GwoscUnreachable on any lookup, network or HTTP failure."""
    from gwosc.locate import get_urls
    from gwosc.utils import url_segment

    folder = Path(folder)
    paths = []
    with _session(timeout) as session:
        for detector in detectors:
            try:
                urls = get_urls(
                    detector, int(np.floor(start)), int(np.ceil(stop)), host=host, sample_rate=4096, session=session
                )
            except _NETWORK_ERRORS as error:
                raise GwoscUnreachable(_reason(error, host, timeout)) from error
            covering = [
                u for u in urls if u.endswith(".hdf5") and url_segment(u)[0] <= start <= stop <= url_segment(u)[1]
            ]
            if not covering:
                raise GwoscUnreachable(f"no single GWOSC file of {detector} covers GPS {start:g}-{stop:g}")
            url = min(covering, key=lambda u: url_segment(u)[1] - url_segment(u)[0])
            paths.append(_fetch_file(url, folder, timeout))
    return paths


def load_event_strain(
    event: str,
    gps: float | None,
    detectors: list[str],
    before: float,
    after: float,
    local_dir: str | Path,
    source: str = "auto",
    host: str = "https://gwosc.org",
    download_dir: str | Path | None = None,
    timeout: float = 20.0,
) -> EventStrain:
    """The raw strain over [gps - before, gps + after] (to the nearest sample) cropped from GWOSC files: ``source``
    "local" reads ``local_dir`` only, "gwosc" downloads only (into ``download_dir`` or ``local_dir``), "auto" reads
    ``local_dir`` and downloads what is missing. ``gps`` None asks GWOSC for the event's time."""
    if source not in SOURCES:
        raise InputError(f"strain source {source!r}; allowed: {', '.join(SOURCES)}")
    detectors = list(detectors)
    if not detectors:
        raise InputError("detectors []; allowed: one or more of H1, L1, V1")
    if not (before >= 0 and after >= 0 and before + after > 0):
        raise InputError(f"segment before={before!r}, after={after!r} s around the event; allowed: >= 0, not both 0")
    if gps is None:
        gps = event_gps(event, host, timeout)
    start, stop = gps - before, gps + after
    need = f"need {', '.join(detectors)} files covering GPS {start:.1f}-{stop:.1f}"
    files = find_local(local_dir, detectors, start, stop) if source != "gwosc" else None
    origin = "local"
    if files is None and source == "local":
        raise InputError(
            f"event {event}: no local copy in {local_dir} ({need}) and the strain source is 'local': put GWOSC's "
            f"4096 Hz HDF5 files ({event_page(event)}) in {local_dir}, or use source 'auto' to download them"
        )
    if files is None:
        try:
            files, origin = download(detectors, start, stop, download_dir or local_dir, host, timeout), "gwosc"
        except GwoscUnreachable as error:
            local = f"no local copy in {local_dir} ({need}) and " if source == "auto" else f"{need}: "
            raise InputError(
                f"event {event}: {local}GWOSC is unreachable ({error}): run where gwosc.org is reachable, or put "
                f"GWOSC's 4096 Hz HDF5 files ({event_page(event)}) in {local_dir}"
            ) from error
    return crop(files, detectors, start, stop, origin)


def event_gps(event: str, host: str = "https://gwosc.org", timeout: float = 20.0) -> float:
    """The event's GPS time from GWOSC's event API; a one-line InputError when it cannot be asked or does not know."""
    from gwosc.datasets import event_gps as lookup

    try:
        with _session(timeout) as session:
            return float(lookup(event, host=host, session=session))
    except (GwoscUnreachable, *_NETWORK_ERRORS) as error:
        reason = error if isinstance(error, GwoscUnreachable) else _reason(error, host, timeout)
        raise InputError(
            f"event {event}: no GPS time given and GWOSC cannot tell it ({reason}): give the GPS time "
            "(e.g. event.gps: 1126259462.4 for GW150914) or run where gwosc.org is reachable"
        ) from error


def crop(files: list[Path], detectors: list[str], start: float, stop: float, origin: str) -> EventStrain:
    """[start, stop] to the nearest sample cut from one file per detector (one rate, one sample grid), checked
    finite."""
    read = [read_gwosc_file(path) for path in files]
    rates = [rate for _, rate, _, _ in read]
    if any(rate != rates[0] for rate in rates):
        raise InputError(f"sample rates {dict(zip(detectors, rates))} Hz; allowed: one rate for every detector's file")
    rate = rates[0]
    length = int(round((stop - start) * rate))
    rows, starts = [], []
    for path, detector, (data, _, file_start, name) in zip(files, detectors, read):
        if name and name != detector:
            raise InputError(f"{path}: holds {name} strain; allowed: {detector}'s file for the {detector} channel")
        first = min(int(round((start - file_start) * rate)), len(data) - length)  # rounding may pass the end by one
        if first < 0:
            raise InputError(
                f"{path}: GPS {file_start:g}-{file_start + len(data) / rate:g}; allowed: a file covering GPS "
                f"{start:.1f}-{stop:.1f}"
            )
        row = data[first : first + length]
        bad = np.flatnonzero(~np.isfinite(row))
        if len(bad):
            k = first + bad[0]
            raise InputError(
                f"{path}: sample {k} (GPS {file_start + k / rate:.4f}) is {row[bad[0]]}; allowed: finite strain over "
                f"GPS {start:.1f}-{stop:.1f} (choose a segment without data gaps)"
            )
        rows.append(row)
        starts.append(file_start + first / rate)
    if max(starts) - min(starts) > 1e-3 / rate:
        raise InputError(
            f"first samples at GPS {dict(zip(detectors, starts))}; allowed: files on one sample grid (GWOSC's files)"
        )
    return EventStrain(np.stack(rows), rate, starts[0], detectors, [str(p) for p in files], origin)


def event_page(event: str) -> str:
    """GWOSC's web page listing the event's strain files (the catalogue page when the event is not a GWTC-1 one)."""
    if event in GWTC1_EVENTS:
        return f"{GWOSC_PAGE}/eventapi/html/GWTC-1-confident/{event}/"
    return f"{GWOSC_PAGE}/eventapi/html/allevents/"


def _fetch_file(url: str, folder: Path, timeout: float) -> Path:
    """``url`` into ``folder`` under its own name, through a partial file so an interrupted download leaves none."""
    path = folder / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except _NETWORK_ERRORS as error:
        partial.unlink(missing_ok=True)
        raise GwoscUnreachable(_reason(error, url, timeout)) from error
    partial.replace(path)
    return path


def _session(timeout: float):
    """A requests session for the gwosc client whose every request waits at most ``timeout`` s and is not retried
    on a timeout: gwosc's own client waits 10 s and retries timeouts up to ten times."""
    import requests

    class BoundedSession(requests.Session):
        def request(self, method, url, **kwargs):
            kwargs["timeout"] = timeout
            try:
                return super().request(method, url, **kwargs)
            except requests.Timeout as error:
                raise GwoscUnreachable(f"no answer from {url.split('/api')[0]} within {timeout:g} s") from error

    return BoundedSession()


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a lookup or download raises when GWOSC is unreachable or says no (requests' errors are OSErrors)."""
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, KeyError, http.client.HTTPException)
    try:
        import tenacity

        errors += (tenacity.RetryError,)
    except ImportError:  # gwosc < 0.8 does not retry
        pass
    return errors


_NETWORK_ERRORS = _network_errors()


def _reason(error: BaseException, where: str, timeout: float) -> str:
    """A short, single-line reason: the errno text of a refused/failed connection, the HTTP status, or the message."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} for {where}"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return f"HTTP {status} from {where}"
    text = str(error)
    if "timed out" in text.lower():
        return f"no answer from {where} within {timeout:g} s"
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    reason = errno.group(0) if errno else _first_line(error)
    return reason if len(reason) <= 160 else reason[:157] + "..."


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _text(value) -> str:
    value = value[0] if isinstance(value, np.ndarray) and value.shape else value
    return value.decode() if isinstance(value, bytes) else str(value)
