"""The event NPE's p–p test on injections into the event's own noise (``gwpe event injections``).

The event files are read and whitened exactly as ``gwpe infer`` does (decimated to the model's rate, whitened
over the whole segment with the package's measured PSDs, ``gwpe.inference.input_gate``). Noise windows of the
model's duration start every ``event.injections.step`` s, keep ``edge`` s from both ends of the segment (the
whitening filter's taper) and stay clear of the on-source window widened by ``psd.on_source_margin``; ``count``
of them are drawn without replacement (neighbouring windows overlap, so their noise is correlated: the
injections' signals are independent draws of the package's prior). Each injection is that real noise plus a
whitened template of a prior draw; the NPE's credible level of every true parameter feeds the KS test of
uniformity (``gwpe.evaluation.calibration``). A p below 0.05 names the parameter in ``failing``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError


def noise_starts(total: int, rate: float, duration: float, on_source: tuple[float, float], settings, margin: float):
    """Start samples of the off-source noise windows (module doc)."""
    n = int(round(duration * rate))
    step = max(1, int(round(settings.step * rate)))
    edge = int(round(settings.edge * rate))
    low, high = (int(round((t - margin) * rate)) for t in on_source)
    high += int(round(2 * margin * rate))
    return [s for s in range(edge, total - edge - n + 1, step) if s + n <= low or s >= high]


def whitened_segment(files: list[str], spec: dict) -> tuple[np.ndarray, float]:
    """(whitened (D, L) segment at the model's rate, its start GPS), as ``gwpe infer --whiten`` makes it."""
    from scipy.signal import resample_poly

    from gwpe.inference.input_gate import decimation_factor, expected_detectors, order_channels, whiten
    from gwpe.inference.strain_files import read_strain

    strain = read_strain(files)
    rate = float(spec["sample_rate"])
    factor = decimation_factor(strain.sample_rate, rate, raw=True)
    data = order_channels(strain, expected_detectors(spec))
    if factor > 1:
        data = resample_poly(data, 1, factor, axis=-1)
    return whiten(data, rate, spec), float(strain.start_time or 0.0)


def injection_test(config: ProjectConfig, progress: bool = True) -> tuple[dict, dict]:
    """(metrics, figures) of the p–p test on injections into the event's off-source noise."""
    from tqdm import tqdm

    from gwpe.data.strain_store import Standardisation, recorded_prior
    from gwpe.evaluation.calibration import calibrate, pp_plot
    from gwpe.inference.event_posterior import read_prepared, require_event
    from gwpe.inference.input_gate import generator_of
    from gwpe.models.loading import load_package
    from gwpe.models.package import read_package_config
    from gwpe.waveforms.priors import prior_bounds, sample_prior

    event, settings = require_event(config), require_event(config).injections
    prepared = read_prepared(config)
    package = Path(config.flows.model_dir) / event.model
    if not (package / "weights.pt").is_file():
        raise ConfigError(f"no trained NPE at {package}; run `gwpe train flow --model {event.model}` first")
    meta = read_package_config(package)
    spec = meta["data_spec"]
    module = load_package(package)
    standardisation = Standardisation.from_attrs(meta)
    names = list(standardisation.parameters)
    prior = recorded_prior(spec)
    generator = generator_of(spec)
    white, start = whitened_segment(list(prepared["files"]), spec)
    rate, duration = float(spec["sample_rate"]), float(spec["duration"])
    window = float(prepared["window_start_gps"]) - start
    starts = noise_starts(
        white.shape[-1], rate, duration, (window, window + duration), settings, event.psd.on_source_margin
    )
    if len(starts) < settings.count:
        raise ConfigError(
            f"event.injections.count = {settings.count}; allowed: <= {len(starts)} off-source windows "
            f"(step {settings.step} s); lower the step or the count"
        )
    rng = np.random.default_rng(settings.seed)
    chosen = rng.choice(starts, size=settings.count, replace=False)
    truth = sample_prior(prior, names, settings.count, rng)
    n = int(round(duration * rate))
    torch.manual_seed(settings.seed)
    samples = np.empty((settings.count, settings.samples, len(names)))
    snr = np.empty(settings.count)
    for i in tqdm(range(settings.count), desc="injections", disable=not progress):
        template = generator.templates(truth[i : i + 1], names)[0]
        snr[i] = float(np.sqrt(np.sum(template**2)))
        strain = torch.as_tensor(white[:, chosen[i] : chosen[i] + n] + template, dtype=torch.float32)
        with torch.no_grad():
            z = module.sample(strain, settings.samples).double().numpy()
        samples[i] = standardisation.inverse(z)
    ranges = np.array([np.subtract(*prior_bounds(prior, p)[::-1]) for p in names])
    calibration = calibrate(samples, truth, names, ranges)
    result = calibration.summary()
    failing = [p for p, v in result["ks_pvalue"].items() if v < 0.05]
    metrics = {
        "event": event.name,
        "noise": f"{settings.count} windows of real off-source noise (step {settings.step} s, {len(starts)} available)",
        **result,
        "failing": failing,
        "injection_snr": {k: round(float(v), 2) for k, v in zip(("p05", "median", "p95"), np.quantile(snr, QUANTS))},
    }
    title = f"{event.name}: NPE p–p, {settings.count} injections in real noise"
    figures = {"pp.png": pp_plot(calibration, title=title)}
    return metrics, figures


QUANTS = (0.05, 0.5, 0.95)
