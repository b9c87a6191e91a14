"""``gwpe infer``: posterior samples (flows) or (q, s1z, s2z) (WaveNet) from a strain file and a packaged model.

The model is a package folder or a registry reference (``NAME@ALIAS``, ``NAME/VERSION``), pulled pickle-free.
Before anything runs, the input is checked against the package's ``data_spec`` (flows) or h22 time grid
(WaveNet): sample rate, number of samples (or a window cut at ``--start`` GPS seconds), detector set and order,
finite values, and, for flows, that the strain is whitened (noise of unit variance; raw strain has an RMS
near 1e-21 and needs ``--whiten``). ``--whiten`` whitens raw strain with the model's PSD in gwpe's convention
(x = irfft(dt rfft(d) / sqrt(S_n)) sqrt(2 / dt), after a Tukey window with 0.1 s tapers), over the whole input,
then cuts the model's window, so a longer segment around the event whitens better than one exactly 1 s long.
Raw strain sampled at an integer multiple k of the model's rate (GWOSC's 4096 Hz for a 1024 Hz model) is first
decimated by k with an anti-aliasing FIR filter (``scipy.signal.resample_poly``: Kaiser-windowed low-pass at the
model's Nyquist frequency, zero phase), which is said on stderr and recorded in the output
(``input_sample_rate``, ``resampled_here``); any other rate is refused. Whitened strain is never resampled:
its unit variance is per sample of the rate it was whitened at.
After ``--whiten`` the window must look like unit-variance noise (RMS within ``WHITENED_RMS``); otherwise the
data's noise is not the model's PSD and the input is refused in one line naming that check, unless ``--force``,
which runs and records the failed check in the output (``forced_checks``).

Output (HDF5): ``samples`` (N, P) in physical units with ``parameters`` and ``units`` attributes (flows), or
``estimate`` (q, s1z, s2z, sigma_eff, S_eff, eta) (WaveNet); file attributes record the model source, version
and run, the input files and their md5, the gwpe version. Quantiles print on the terminal; a corner plot
(flows) is written beside the output.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from gwpe.data.strain_store import PLUS_POLARISATION
from gwpe.data.strain_store import channels as channel_count
from gwpe.errors import InputError
from gwpe.inference.strain_files import StrainInput, read_strain

SAMPLE_CHUNK = 10_000
UNWHITENED_RMS = 1e-3  # whitened noise has RMS 1; detector strain ~1e-21
WHITENED_RMS = (0.5, 3.0)  # the window after --whiten: unit-variance noise plus a signal of SNR <~ 50


def expected_detectors(spec: dict) -> list[str]:
    """Detector order of the model's data spec; [] for "+"-polarisation datasets (one unnamed channel)."""
    detectors = list(spec.get("detectors") or [])
    return [] if detectors == [PLUS_POLARISATION] else detectors


def _check_finite(data: np.ndarray, files: list[str]) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        channel, index = (int(i[0]) for i in np.nonzero(bad))
        raise InputError(
            f"{', '.join(files)}: NaN or inf at sample {index} of channel {channel}; strain must be finite"
        )


def _order_channels(strain: StrainInput, wanted: list[str]) -> np.ndarray:
    channels = channel_count(wanted)
    if strain.data.shape[0] != channels:
        expect = f"{channels} ({', '.join(wanted)})" if wanted else "1 (the '+' polarisation)"
        raise InputError(f"{', '.join(strain.files)}: {strain.data.shape[0]} channel(s); the model expects {expect}")
    if not wanted or strain.detectors is None:
        return strain.data
    if sorted(strain.detectors) != sorted(wanted):
        raise InputError(f"detectors {', '.join(strain.detectors)}; the model expects {', '.join(wanted)}")
    return strain.data[[strain.detectors.index(d) for d in wanted]]


def whiten(data: np.ndarray, sample_rate: float, spec: dict) -> np.ndarray:
    """Raw strain (D, L) -> whitened with the model's PSD (see the module docstring)."""
    from scipy.signal.windows import tukey

    from gwpe.waveforms.whitening import psd, whiten_frequency_series

    n = data.shape[-1]
    dt = 1.0 / sample_rate
    taper = tukey(n, alpha=min(1.0, 2 * 0.1 / (n * dt)))
    h_tilde = dt * np.fft.rfft(data * taper, axis=-1)
    return whiten_frequency_series(h_tilde, psd(spec["psd"], np.fft.rfftfreq(n, dt), float(spec["f_min"])), dt, n)


def decimation_factor(file_rate: float, model_rate: float, raw: bool) -> int:
    """k = file_rate / model_rate when it is a whole number (1: no resampling), else a one-line InputError; a
    factor above 1 only for raw strain (``--whiten``), since whitened samples have unit variance at their own rate."""
    ratio = file_rate / model_rate
    factor = int(round(ratio))
    if factor < 1 or abs(ratio - factor) > 1e-9 * ratio:
        raise InputError(
            f"sample rate {file_rate:g} Hz; allowed: the model's {model_rate:g} Hz or an integer multiple of it "
            "(raw strain is then decimated with an anti-aliasing filter)"
        )
    if factor > 1 and not raw:
        raise InputError(
            f"sample rate {file_rate:g} Hz for whitened strain; the model expects {model_rate:g} Hz: pass the raw "
            "strain with --whiten (it is decimated, then whitened at the model's rate)"
        )
    return factor


def flow_input(
    strain: StrainInput, spec: dict, start: float | None, whiten_raw: bool, forced: list[str] | None = None
) -> np.ndarray:
    """The (D, L) whitened window the flow expects, or a one-line InputError. A failed data-quality check refuses
    too, unless ``forced`` is a list: the check's message is then appended to it and the window returned."""
    rate, duration = float(spec["sample_rate"]), float(spec["duration"])
    n = int(round(rate * duration))
    if strain.sample_rate is None:
        raise InputError(
            f"{', '.join(strain.files)}: no sample rate in the file; pass --sample-rate (the model expects {rate:g} Hz)"
        )
    factor = decimation_factor(strain.sample_rate, rate, whiten_raw)
    data = _order_channels(strain, expected_detectors(spec))
    _check_finite(data, strain.files)
    if factor > 1:
        from scipy.signal import resample_poly

        data = resample_poly(data, 1, factor, axis=-1)
        print(
            f"gwpe: note: resampled {strain.sample_rate:g} Hz -> {rate:g} Hz "
            f"(anti-aliasing FIR, decimation by {factor})",
            file=sys.stderr,
        )
    if whiten_raw:
        data = whiten(data, rate, spec)
    if start is not None:
        offset = start - (strain.start_time or 0.0)
        first = int(round(offset * rate))
        if first < 0 or first + n > data.shape[-1]:
            span = f"[{strain.start_time or 0.0:.3f}, {(strain.start_time or 0.0) + data.shape[-1] / rate:.3f}]"
            raise InputError(f"--start {start} with duration {duration:g} s lies outside the data {span}")
        data = data[:, first : first + n]
    elif data.shape[-1] != n:
        raise InputError(
            f"{data.shape[-1]} samples ({data.shape[-1] / rate:g} s); the model expects {n} ({duration:g} s at "
            f"{rate:g} Hz): pass --start GPS to cut a window"
        )
    rms = float(np.sqrt(np.mean(data**2)))
    if not whiten_raw and rms < UNWHITENED_RMS:
        raise InputError(f"strain RMS {rms:.3g} looks unwhitened (whitened noise has RMS 1); pass --whiten")
    if whiten_raw and not WHITENED_RMS[0] < rms < WHITENED_RMS[1]:
        message = (
            f"noise check failed: whitened strain has RMS {rms:.3g}; allowed {WHITENED_RMS[0]:g}-{WHITENED_RMS[1]:g} "
            f"(the data's noise is not the model's PSD {spec['psd']}, so its posterior would be mis-scaled)"
        )
        if forced is None:
            raise InputError(f"{message}; --force runs the model anyway and records the failure")
        forced.append(message)
        print(f"gwpe: warning: {message} (--force)", file=sys.stderr)
    return data


def wavenet_input(strain: StrainInput, meta: dict) -> np.ndarray:
    """The (2, L) h22 series the WaveNet expects (the package's time grid), or a one-line InputError."""
    time = meta["h22"]["time"]
    n = int(round((time["t_end"] - time["t_start"]) / time["dt"])) + 1
    if strain.sample_rate is not None and abs(strain.sample_rate * time["dt"] - 1.0) > 1e-6:
        raise InputError(f"sample rate {strain.sample_rate:g} per M; the model expects 1/dt = {1 / time['dt']:g} per M")
    if strain.data.shape[0] != 2:
        raise InputError(
            f"{', '.join(strain.files)}: {strain.data.shape[0]} channel(s); the WaveNet expects 2 (Re, Im of h22) "
            "or one complex series"
        )
    _check_finite(strain.data, strain.files)
    if strain.data.shape[-1] != n:
        raise InputError(
            f"{strain.data.shape[-1]} samples; the model expects {n} "
            f"(t/M from {time['t_start']:g} to {time['t_end']:g} step {time['dt']:g})"
        )
    return strain.data


def sample_flow(
    module, meta: dict, window: np.ndarray, n: int, progress: bool = True, seed: int | None = None
) -> np.ndarray:
    """n posterior samples in physical units, drawn in chunks (progress bar)."""
    import torch
    from tqdm import tqdm

    if seed is not None:
        torch.manual_seed(seed)
    s = meta["standardisation"]
    mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
    strain = torch.as_tensor(window, dtype=torch.float32)
    out = []
    with tqdm(total=n, desc="sampling", unit="sample", disable=not progress or n <= SAMPLE_CHUNK) as bar:
        for start in range(0, n, SAMPLE_CHUNK):
            k = min(SAMPLE_CHUNK, n - start)
            out.append(module.sample(strain, k).double().numpy() * std + mean)
            bar.update(k)
    return np.concatenate(out)


def wavenet_estimate(module, window: np.ndarray) -> dict[str, float]:
    """The WaveNet's (q, s1z, s2z) for one (2, L) window, with the derived sigma_eff, S_eff and eta."""
    import torch

    from gwpe import physics

    q, s1z, s2z = (float(v) for v in module.predict(torch.as_tensor(window[None], dtype=torch.float32))[0])
    return {
        "q": q,
        "s1z": s1z,
        "s2z": s2z,
        "sigma_eff": float(physics.sigma_eff(q, s1z, s2z)),
        "S_eff": float(physics.hamiltonian_effective_spin(q, s1z, s2z)),
        "eta": float(physics.symmetric_mass_ratio(q)),
    }


def run_infer(
    model: str,
    strain_files: list[str],
    n_samples: int,
    out: str | Path,
    sample_rate: float | None = None,
    detectors: list[str] | None = None,
    start: float | None = None,
    whiten_raw: bool = False,
    plot: bool = True,
    progress: bool = True,
    seed: int | None = None,
    force: bool = False,
) -> dict:
    """``gwpe infer`` (module doc): check the input, load the model, write samples (flows) or the estimate
    (WaveNet) to ``out``; returns what ``format_result`` prints. ``force``: run despite a failed data-quality
    check, recorded in the output's ``forced_checks`` attribute."""
    import h5py

    import gwpe
    from gwpe.models.loading import load_package
    from gwpe.models.package import read_package_config
    from gwpe.tracking.registry import resolve_package

    forced: list[str] | None = [] if force else None
    if n_samples < 1:
        raise InputError(f"--n-samples = {n_samples}; allowed: >= 1")
    out = Path(out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"--out {out}: allowed: a .h5 or .hdf5 file")
    strain = read_strain(strain_files, sample_rate, detectors)  # input errors before any download
    folder, source = resolve_package(model)
    try:
        meta = read_package_config(folder)
        if meta["model"] == "flow" and "data_spec" not in meta:
            raise InputError(
                f"model {model}: its package has no data_spec (trained before gwpe recorded one); retrain it"
            )
        window = (
            flow_input(strain, meta["data_spec"], start, whiten_raw, forced)
            if meta["model"] == "flow"
            else wavenet_input(strain, meta)
        )
        module = load_package(folder)
    finally:  # the model is in memory (or the input was refused): a downloaded copy is not kept
        if "temporary" in source:
            shutil.rmtree(source.pop("temporary"), ignore_errors=True)
    attrs = {
        "model": source.get("source", model),
        "model_name": source.get("name", meta.get("registered_name", "")),
        "model_version": source.get("version", -1),
        "mlflow_run_id": source.get("run_id", meta.get("mlflow_run_id") or ""),
        "input_files": json.dumps(strain.files),
        "input_md5": strain.md5,
        "gwpe_version": gwpe.__version__,
        "whitened_here": whiten_raw,
        "input_sample_rate": float(strain.sample_rate or 0.0),
        "forced_checks": json.dumps(forced or []),
        "resampled_here": meta["model"] == "flow"
        and strain.sample_rate is not None
        and abs(strain.sample_rate - float(meta["data_spec"]["sample_rate"])) > 1e-9 * strain.sample_rate,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"out": str(out), **{k: v for k, v in attrs.items() if k != "input_files"}}
    if meta["model"] == "flow":
        samples = sample_flow(module, meta, window, n_samples, progress, seed)
        parameters = list(meta["standardisation"]["parameters"])
        units = meta["data_spec"].get("units", {})
        with h5py.File(out, "w") as f:
            data = f.create_dataset("samples", data=samples, compression="gzip")
            data.attrs["parameters"] = parameters
            data.attrs["units"] = [units.get(p, "") for p in parameters]
            f.attrs.update(attrs)
        quantiles = np.quantile(samples, [0.05, 0.5, 0.95], axis=0)
        result["quantiles"] = {p: quantiles[:, j].tolist() for j, p in enumerate(parameters)}
        if plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            from gwpe.evaluation.corner_plots import posterior_corner

            figure = posterior_corner(
                {meta.get("registered_name", "posterior"): samples},
                parameters,
                title=f"{Path(strain.files[0]).name}: {source.get('source', model)}",
            )
            figure.savefig(out.with_suffix(".png"), dpi=80)
            plt.close(figure)
            result["plot"] = str(out.with_suffix(".png"))
    else:
        estimate = wavenet_estimate(module, window)
        with h5py.File(out, "w") as f:
            data = f.create_dataset("estimate", data=np.array(list(estimate.values())))
            data.attrs["parameters"] = list(estimate)
            f.attrs.update(attrs)
        result["estimate"] = estimate
    return result


def format_result(result: dict) -> str:
    """Terminal summary: model, input md5, 5 % / median / 95 % per parameter (flows) or the estimate
    (WaveNet), and the files written."""
    lines = [f"model {result['model']} (version {result['model_version']}), input md5 {result['input_md5']}"]
    if "quantiles" in result:
        lines.append(f"{'parameter':<12}{'5 %':>12}{'median':>12}{'95 %':>12}")
        for name, (low, median, high) in result["quantiles"].items():
            lines.append(f"{name:<12}{low:>12.4g}{median:>12.4g}{high:>12.4g}")
    else:
        lines += [f"{name:<12}{value:>12.4f}" for name, value in result["estimate"].items()]
    lines.append(f"-> {result['out']}" + (f", {result['plot']}" if "plot" in result else ""))
    return "\n".join(lines)
