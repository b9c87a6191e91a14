"""An event's data as a PE run conditions it (``gwpe event prepare``).

1. The strain of every detector over [gps - before, gps + after] (``gwpe.data.gwosc``: the local folder, else
   GWOSC), at its native rate (4096 Hz for GWOSC).
2. Anti-aliased resampling to the analysis rate (the dataset's ``sample_rate``; ``scipy.signal.resample_poly``).
3. The one-sided noise PSD of each detector by Welch's method on the off-source data only: the analysis window
   [gps - window_start, + duration] widened by ``psd.on_source_margin`` on each side is left out, segments never
   straddle the gap; ``psd.segment`` s Hann segments with ``psd.overlap``, median average (robust to glitches
   and to what is left of the signal). Written as ``{det}-psd.dat`` (frequency, PSD), the files bilby takes.
4. The whole segment whitened with those PSDs (Tukey taper, gwpe's whitening convention), for the plots and
   the on-source RMS; ``gwpe infer`` whitens the same files the same way (``gwpe.inference.input_gate``).
``event.json`` records the files, their md5, the GPS times and the settings; the training set
(``strain.psd_dir``) and the analysis read it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


@dataclass
class PreparedEvent:
    """The conditioned event: resampled raw strain, PSDs, whitened strain and what ``event.json`` records."""

    raw: np.ndarray  # (D, L) at the analysis rate
    rate: float
    start_time: float
    frequencies: np.ndarray
    psd: np.ndarray  # (D, F)
    whitened: np.ndarray  # (D, L)
    record: dict


def event_dataset(config: ProjectConfig):
    """(event section, its strain dataset config), checked to agree (detectors, t_c prior around the trigger)."""
    event = config.event
    if event is None:
        raise ConfigError(f"profile {config.profile!r} has no event section (e.g. experiments/gw150914.yaml)")
    if event.dataset not in config.strain.datasets:
        allowed = ", ".join(config.strain.datasets) or "(none)"
        raise ConfigError(f"event.dataset = {event.dataset!r}; allowed (strain.datasets): {allowed}")
    dataset = config.strain.datasets[event.dataset]
    if list(dataset.detectors) != list(event.detectors):
        raise ConfigError(
            f"strain.datasets.{event.dataset}.detectors = {dataset.detectors}; allowed: the event's {event.detectors}"
        )
    if not dataset.prior.tc_min <= event.window_start <= dataset.prior.tc_max:
        raise ConfigError(
            f"event.window_start = {event.window_start}; allowed: inside the dataset's t_c prior "
            f"[{dataset.prior.tc_min}, {dataset.prior.tc_max}] (the trigger must be where the model looks)"
        )
    if event.window_start + 0.05 > dataset.duration:
        raise ConfigError(f"event.window_start = {event.window_start}; allowed: < duration {dataset.duration} - 0.05 s")
    return event, dataset


def prepare_event(config: ProjectConfig, out: str | Path) -> PreparedEvent:
    """Steps 1-4 of the module doc; writes ``{det}-psd.dat`` and ``event.json`` into ``out``."""
    from gwpe.data.gwosc import load_event_strain
    from gwpe.waveforms.conditioning import (
        interpolate_psd,
        off_source_pieces,
        resample,
        welch_psd,
        whiten,
        write_psd_files,
    )

    event, dataset = event_dataset(config)
    strain = load_event_strain(
        event.name,
        event.gps,
        list(event.detectors),
        event.before,
        event.after,
        event.local_dir,
        source=event.source,
        host=event.gwosc_host,
        timeout=event.download_timeout,
    )
    gps = event.gps if event.gps is not None else strain.start_time + event.before
    rate = float(dataset.sample_rate)
    raw = resample(strain.data, strain.sample_rate, rate)
    window_start = gps - event.window_start
    begin = window_start - strain.start_time
    exclude = [(begin, begin + dataset.duration)]
    pieces = off_source_pieces(raw.shape[-1], rate, exclude, margin=event.psd.on_source_margin)
    frequencies, psd = welch_psd(
        raw,
        rate,
        event.psd.segment,
        overlap=event.psd.overlap,
        window=event.psd.window,
        average=event.psd.average,
        pieces=pieces,
    )
    values = interpolate_psd(frequencies, psd, np.fft.rfftfreq(raw.shape[-1], 1.0 / rate), config.strain.f_min)
    whitened = whiten(raw, rate, values)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_psd_files(out, frequencies, psd, list(event.detectors))
    first = int(round(begin * rate))
    on_source = whitened[:, first : first + int(round(dataset.duration * rate))]
    record = {
        "name": event.name,
        "gps": gps,
        "detectors": list(event.detectors),
        "files": list(strain.files),
        "md5": {Path(f).name: hashlib.md5(Path(f).read_bytes()).hexdigest() for f in strain.files},
        "source": strain.source,
        "native_sample_rate": strain.sample_rate,
        "sample_rate": rate,
        "segment_start_gps": strain.start_time,
        "segment_seconds": raw.shape[-1] / rate,
        "window_start_gps": window_start,
        "window_seconds": dataset.duration,
        "psd": {**event.psd.model_dump(), "off_source_seconds": sum(b - a for a, b in pieces) / rate},
        "on_source_whitened_rms": dict(zip(event.detectors, np.sqrt(np.mean(on_source**2, axis=1)).round(4).tolist())),
    }
    (out / "event.json").write_text(json.dumps(record, indent=2) + "\n")
    return PreparedEvent(raw, rate, strain.start_time, frequencies, psd, whitened, record)
