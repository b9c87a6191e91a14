"""``gwpe infer``: posterior samples (flows) or (q, s1z, s2z) (WaveNet) from a strain file and a packaged model.

The model is a package folder or a registry reference (``NAME@ALIAS``, ``NAME/VERSION``), pulled pickle-free.
Before anything runs, the input is checked against the package's ``data_spec`` (flows) or h22 time grid
(WaveNet): sample rate, number of samples (or a window cut at ``--start`` GPS seconds), detector set and order,
finite values, and, for flows, that the strain is whitened (noise of unit variance; raw strain has an RMS
near 1e-21 and needs ``--whiten``). ``--whiten`` whitens raw strain with the model's PSD in gwpe's convention
(x = irfft(dt rfft(d) / sqrt(S_n)) sqrt(2 / dt), after a Tukey window with 0.1 s tapers), over the whole input,
then cuts the model's window, so a longer segment around the event whitens better than one exactly 1 s long.
Before the model runs, the data-quality gate (``gwpe.inference.input_gate``, whose docstring has the formulas
and thresholds) checks the input is the kind of data the model was trained on: the sample rate (an integer
multiple k of the model's is decimated by k with an anti-aliasing FIR filter, ``scipy.signal.resample_poly``;
other rates are refused), and, when the input holds more than the model's window, the off-source noise (its PSD
against the model's over the model's band, and the variance and excess kurtosis of the whitened off-source
samples), plus the RMS of the whitened window (``--whiten``). After sampling: the optimal SNR of the template at
the posterior median against the training set's SNR range (packages that record ``training_snr``), and
posterior mass piled against a prior bound (a flag, not a refusal). The checks print as a table on stderr and
are stored in the output (``checks``, JSON); a failed check refuses in one line naming it (exit 2, nothing
written) unless ``--force``, which runs and records the failures (``forced_checks``).

Output (HDF5): ``samples`` (N, P) in physical units with ``parameters`` and ``units`` attributes (flows), or
``estimate`` (q, s1z, s2z, sigma_eff, S_eff, eta) (WaveNet); file attributes record the model source, version
and run, the input files and their md5, the gwpe version, the checks, the forced checks and the parameters piled
against a prior bound (``prior_bound_flags``). Flows also write the same samples as a bilby result,
``<out stem>_result.hdf5`` (``bilby.core.result.read_in_result``, PESummary; bilby's parameter names, plus the
derived chirp mass, mass ratio m2/m1 <= 1 and chi_eff where spins are sampled; ``geocent_time`` in GPS when the
window's GPS start is known; no priors object, since the training prior is not all uniform: it is in the
result's ``meta_data``). Quantiles (5 %, median, 95 %, derived parameters included) print on the terminal; a
corner plot (flows), with median and 90 % interval titles and its contour levels stated, is written beside.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from gwpe.errors import InputError
from gwpe.inference.input_gate import (  # noqa: F401 (re-exported: the helpers lived here before the gate)
    UNWHITENED_RMS,
    WHITENED_RMS,
    check_finite,
    check_input,
    check_posterior,
    checks_json,
    decimation_factor,
    enforce,
    expected_detectors,
    flags,
    format_checks,
    whiten,
)
from gwpe.inference.result_file import with_derived, write_bilby_result
from gwpe.inference.strain_files import StrainInput, read_strain

SAMPLE_CHUNK = 10_000


def check_writable(paths: list[Path], overwrite: bool) -> None:
    """One-line ``InputError`` unless every output can be written: not a folder, not an existing file (unless
    ``overwrite``: a posterior is never replaced silently), and its folder writable (checked before sampling, so
    a bad ``--out`` costs nothing)."""
    import tempfile

    for path in paths:
        if path.is_dir():
            raise InputError(f"--out: {path} is a folder; allowed: a .h5 or .hdf5 file name")
        if path.exists() and not overwrite:
            raise InputError(f"--out: {path} exists; allowed: a new file name, or --overwrite to replace it")
    folder = paths[0].parent.resolve()
    try:  # a real write, not os.access: root passes access() on read-only places such as /proc
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".gwpe-write-test-"):
            pass
    except OSError as error:
        raise InputError(f"--out: cannot write into {folder} ({error.strerror or error})") from None


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary name beside ``path``; on success rename it to ``path`` (a crash or a full disk never
    leaves a truncated file, nor destroys the file it was to replace)."""
    import os

    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def flow_input(
    strain: StrainInput, spec: dict, start: float | None, whiten_raw: bool, forced: list[str] | None = None
) -> np.ndarray:
    """The (D, L) whitened window the flow expects (``gwpe.inference.input_gate.check_input``), or a one-line
    InputError. A failed data-quality check refuses too, unless ``forced`` is a list: the checks' messages are
    then appended to it (and printed as warnings) and the window returned."""
    gate = check_input(strain, spec, start, whiten_raw)
    messages = enforce(gate.checks, forced is not None)
    for message in messages:
        print(f"gwpe: warning: {message} (--force)", file=sys.stderr)
    if forced is not None:
        forced.extend(messages)
    return gate.window


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
    check_finite(strain.data, strain.files)
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
    overwrite: bool = False,
) -> dict:
    """``gwpe infer`` (module doc): check the input, load the model, write samples (flows) or the estimate
    (WaveNet) to ``out``; returns what ``format_result`` prints, with the check records (``checks``). ``force``:
    run despite failed data-quality checks, recorded in the output's ``forced_checks`` attribute; without it a
    failed check raises a one-line ``InputError`` and nothing is written."""
    import h5py

    import gwpe
    from gwpe.models.loading import load_package
    from gwpe.models.package import read_package_config
    from gwpe.tracking.registry import resolve_package

    if n_samples < 1:
        raise InputError(f"--n-samples = {n_samples}; allowed: >= 1")
    out = Path(out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"--out {out}: allowed: a .h5 or .hdf5 file")
    if any(out.resolve() == Path(f).resolve() for f in strain_files):
        raise InputError(f"--out {out} is one of the input files; allowed: a new file (the input is never overwritten)")
    bilby_path = out.with_name(f"{out.stem}_result.hdf5")  # flows: the same samples as a bilby/PESummary result
    if any(bilby_path.resolve() == Path(f).resolve() for f in strain_files):
        raise InputError(f"--out {out} would write {bilby_path}, an input file; allowed: another name")
    check_writable([out, bilby_path, out.with_suffix(".png")], overwrite)  # before any work, not after sampling
    strain = read_strain(strain_files, sample_rate, detectors)  # input errors before any download
    folder, source = resolve_package(model)
    checks, forced = [], []
    try:
        meta = read_package_config(folder)
        if meta["model"] == "flow" and "data_spec" not in meta:
            raise InputError(
                f"model {model}: its package has no data_spec (trained before gwpe recorded one); retrain it"
            )
        if meta["model"] == "flow":
            gate = check_input(strain, meta["data_spec"], start, whiten_raw)
            checks, forced, window = gate.checks, enforce(gate.checks, force), gate.window
        else:
            window = wavenet_input(strain, meta)
        module = load_package(folder)
    finally:  # the model is in memory (or the input was refused): a downloaded copy is not kept
        if "temporary" in source:
            shutil.rmtree(source.pop("temporary"), ignore_errors=True)
    if meta["model"] == "flow":
        samples = sample_flow(module, meta, window, n_samples, progress, seed)
        parameters = list(meta["standardisation"]["parameters"])
        after = check_posterior(samples, parameters, meta["data_spec"], meta.get("training_snr"))
        checks, forced = checks + after, forced + enforce(after, force)
    if checks:
        print(format_checks(checks), file=sys.stderr)
    for message in forced:
        print(f"gwpe: warning: {message} (--force)", file=sys.stderr)
    for message in flags(checks):
        print(f"gwpe: warning: {message}", file=sys.stderr)
    piled = next((c.numbers.get("flagged", []) for c in checks if c.name == "prior bounds"), [])
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
        "checks": checks_json(checks),
        "forced_checks": json.dumps(forced),
        "prior_bound_flags": json.dumps(piled),
        # where the samples come from: the prior's support by construction, or an old unbounded package
        "parameterisation": getattr(module, "parameterisation", ""),
        "resampled_here": meta["model"] == "flow"
        and strain.sample_rate is not None
        and abs(strain.sample_rate - float(meta["data_spec"]["sample_rate"])) > 1e-9 * strain.sample_rate,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"out": str(out), **{k: v for k, v in attrs.items() if k != "input_files"}}
    result["checks"] = [c.as_dict() for c in checks]
    if meta["model"] == "flow":
        units = meta["data_spec"].get("units", {})
        with atomic_path(out) as partial, h5py.File(partial, "w") as f:
            data = f.create_dataset("samples", data=samples, compression="gzip")
            data.attrs["parameters"] = parameters
            data.attrs["units"] = [units.get(p, "") for p in parameters]
            f.attrs.update(attrs)
        columns = with_derived(samples, parameters)  # + chirp_mass, mass_ratio (m2/m1), chi_eff with spins
        gps = start if start is not None else strain.start_time
        result["bilby_result"] = str(
            write_bilby_result(
                bilby_path,
                columns,
                label=out.stem,
                sampler=f"gwpe-npe ({source.get('source', model)})",
                meta={
                    **{k: v for k, v in attrs.items() if isinstance(v, (str, int, float, bool))},
                    "prior": meta["data_spec"].get("prior", {}),
                    "geocent_time": "GPS" if gps is not None else "seconds from the window start (GPS start unknown)",
                },
                gps_offset=gps,
            )
        )
        result["quantiles"] = {
            name: np.quantile(values, [0.05, 0.5, 0.95]).tolist() for name, values in columns.items()
        }
        if plot:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            from gwpe.evaluation.corner_plots import posterior_corner

            shown = [*parameters, *(d for d in ("chirp_mass", "mass_ratio") if d in columns)]
            figure = posterior_corner(
                {meta.get("registered_name", "posterior"): np.column_stack([columns[n] for n in shown])},
                shown,
                title=f"{Path(strain.files[0]).name}: {source.get('source', model)}",
            )
            figure.savefig(out.with_suffix(".png"), dpi=80)
            plt.close(figure)
            result["plot"] = str(out.with_suffix(".png"))
    else:
        estimate = wavenet_estimate(module, window)
        with atomic_path(out) as partial, h5py.File(partial, "w") as f:
            data = f.create_dataset("estimate", data=np.array(list(estimate.values())))
            data.attrs["parameters"] = list(estimate)
            f.attrs.update(attrs)
        result["estimate"] = estimate
    return result


def format_result(result: dict) -> str:
    """Terminal summary: model, input md5, 5 % / median / 95 % per parameter (flows) or the estimate
    (WaveNet), and the files written."""
    lines = [f"model {result['model']} (version {result['model_version']}), input md5 {result['input_md5']}"]
    if result.get("parameterisation"):
        lines.append(f"parameterisation: {result['parameterisation']}")
    if "quantiles" in result:
        lines.append(f"{'parameter':<12}{'5 %':>12}{'median':>12}{'95 %':>12}")
        for name, (low, median, high) in result["quantiles"].items():
            lines.append(f"{name:<12}{low:>12.4g}{median:>12.4g}{high:>12.4g}")
    else:
        lines += [f"{name:<12}{value:>12.4f}" for name, value in result["estimate"].items()]
    written = [result["out"], *(result[k] for k in ("bilby_result", "plot") if k in result)]
    lines.append("-> " + ", ".join(written))
    return "\n".join(lines)
