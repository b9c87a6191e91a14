"""The distillation study's Table II and Table I, teacher vs students.

For the teacher, the directly trained student and the distilled student (packages in ``distill.model_dir``):

- **Table II**: validation NLL (whole validation split, fixed noise), inference latency for N posterior samples
  of one event (embedding once + N draws, median of ``latency_repeats`` after a warm-up, ``evaluation.threads``
  torch threads), parameter count, and peak inference memory: weights + the peak bytes of the tensors the
  N-sample draw creates (``torch.cuda.max_memory_allocated`` on a GPU, ``gwpe.evaluation.memory`` on CPU).
- **JS divergence** (nats) of each parameter's 1-D marginal between the teacher and each student on the first
  ``js_events`` validation events, N samples each (``gwpe.evaluation.divergence``): mean and max over events.
- **Table I** (relative errors, %): the posterior median against the truth on the first ``events`` validation
  events, median over events; |median - truth| / truth for the scale parameters (m1, m2, dL) and, since
  spins cross zero, |median - truth| / prior width for chi1z, chi2z (and any other parameter).

Everything goes to an ``evaluate-distill`` MLflow run; the teacher is registered as ``distill.registered_teacher``
and the distilled student as ``distill.registered_student`` from their training runs' ``model`` folders; the
alias ``champion`` moves only to a lower validation NLL.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.data.strain_store import existing_store
from gwpe.errors import ConfigError

ROLES = ("teacher", "student-direct", "student-distilled")
SCALE_PARAMETERS = ("m1", "m2", "dL")


def peak_memory(module, strain, n: int) -> dict:
    """Peak inference memory (MiB) for n samples of one event: weights + the most bytes held at once by the
    tensors the computation creates (``torch.cuda.max_memory_allocated`` on a GPU, ``PeakTensorBytes`` on CPU)."""
    import torch

    from gwpe.evaluation.memory import PeakTensorBytes

    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    if strain.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        module.sample(strain, n)
        activations = torch.cuda.max_memory_allocated() - base
    else:
        with torch.no_grad(), PeakTensorBytes() as tracker:
            module.sample(strain, n)
        activations = tracker.peak
    return {"peak_memory_mb": (weights + activations) / 2**20, "weights_mb": weights / 2**20}


def latency_seconds(module, strain, n: int, repeats: int) -> float:
    """Median wall time of ``module.sample(strain, n)`` (one event: embed once, n draws) after one warm-up."""
    module.sample(strain, n)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        module.sample(strain, n)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def relative_errors(medians: np.ndarray, truth: np.ndarray, parameters: list[str], prior) -> dict[str, float]:
    """Median over events of the relative error (%) of the posterior median: relative to the truth for m1, m2,
    dL, to the prior width for every other parameter (spins, angles, times)."""
    from gwpe.waveforms.priors import prior_bounds

    out = {}
    for j, name in enumerate(parameters):
        low, high = prior_bounds(prior, name) if name not in SCALE_PARAMETERS else (0.0, 0.0)
        scale = np.abs(truth[:, j]) if name in SCALE_PARAMETERS else high - low
        out[name] = float(np.median(np.abs(medians[:, j] - truth[:, j]) / scale) * 100.0)
    return out


def evaluate_distill(
    config: ProjectConfig, plots_dir: str | Path = "plots/distill", progress: bool = True
) -> tuple[dict, dict, dict]:
    """Table II, JS teacher-student and Table I (module doc); figures written to ``plots_dir``.
    Returns (metrics, figures by file name, each role's package config)."""
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from tqdm import tqdm

    from gwpe.data.strain_dataset import StrainSplits
    from gwpe.evaluation.corner_plots import posterior_corner
    from gwpe.evaluation.divergence import marginal_divergences
    from gwpe.evaluation.flow import posterior_samples, validation_nll
    from gwpe.waveforms.priors import outside_prior_fraction
    from gwpe.models.flow_posterior import FlowPosterior
    from gwpe.models.package import CONFIG_FILE

    section, evaluation = config.distill, config.distill.evaluation
    folders = {role: Path(section.model_dir) / role for role in ROLES}
    for role, folder in folders.items():
        if not (folder / CONFIG_FILE).is_file():
            command = "gwpe train teacher" if role == "teacher" else f"gwpe train student --mode {role.split('-')[1]}"
            raise ConfigError(f"no {role} model in {folder} (run: {command})")
    if evaluation.threads:
        torch.set_num_threads(evaluation.threads)
    modules = {role: FlowPosterior.load_model(folder) for role, folder in folders.items()}
    meta = {role: json.loads((folder / CONFIG_FILE).read_text()) for role, folder in folders.items()}
    data = StrainSplits(
        existing_store(config, section.dataset, "distill.dataset"),
        batch_size=section.training.batch_size,
        seed=section.training.seed,
    )
    standardisation, validation = data.standardisation, data.dataset("validation")
    parameters = list(standardisation.parameters)
    prior = config.strain.datasets[section.dataset].prior
    n = evaluation.samples
    strain0 = torch.as_tensor(validation[0][0])
    table2 = {}
    for role, module in modules.items():
        table2[role] = {
            "val_nll": validation_nll(module, data),
            "latency_ms": 1e3 * latency_seconds(module, strain0, n, evaluation.latency_repeats),
            "parameters": sum(p.numel() for p in module.parameters()),
            **peak_memory(module, strain0, n),
        }
    torch.manual_seed(section.training.seed)
    events = min(max(evaluation.events, evaluation.js_events), len(validation))
    medians = {role: [] for role in ROLES}
    js = {role: [] for role in ROLES[1:]}
    truth, corner_sets = [], {}
    outside = {role: 0.0 for role in ROLES}
    for index in tqdm(range(events), desc="evaluate distill", unit="event", disable=not progress):
        strain, theta = validation[index]
        truth.append(standardisation.inverse(np.asarray(theta, dtype=float)))
        draws = {role: posterior_samples(module, standardisation, strain, n) for role, module in modules.items()}
        for role in ROLES:
            medians[role].append(np.median(draws[role], axis=0))
            outside[role] += outside_prior_fraction(prior, parameters, draws[role]) / events
        if index < evaluation.js_events:
            for role in ROLES[1:]:
                js[role].append(marginal_divergences(draws["teacher"], draws[role], seed=index)[1])
        if index == 0:
            corner_sets = draws
    truth = np.asarray(truth)
    errors = {role: relative_errors(np.asarray(medians[role]), truth, parameters, prior) for role in ROLES}
    divergence = {
        role: {
            "mean": dict(zip(parameters, np.mean(js[role], axis=0).tolist())),
            "max": dict(zip(parameters, np.max(js[role], axis=0).tolist())),
        }
        for role in ROLES[1:]
    }
    teacher, distilled, direct = table2["teacher"], table2["student-distilled"], table2["student-direct"]
    comparison = {
        "parameter_reduction": 1.0 - distilled["parameters"] / teacher["parameters"],
        "latency_reduction": 1.0 - distilled["latency_ms"] / teacher["latency_ms"],
        "memory_reduction": 1.0 - distilled["peak_memory_mb"] / teacher["peak_memory_mb"],
        "nll_distilled_minus_direct": distilled["val_nll"] - direct["val_nll"],
        "nll_distilled_minus_teacher": distilled["val_nll"] - teacher["val_nll"],
    }
    metrics = {
        "table2": table2,
        "comparison": comparison,
        "js_teacher_student": divergence,
        "relative_error_percent": errors,
        "outside_prior": outside,
        "samples_per_event": n,
        "events": events,
        "js_events": min(evaluation.js_events, events),
    }

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "corner-0.png": posterior_corner(
            {role: corner_sets[role] for role in ROLES},
            parameters,
            truth=truth[0],
            title=f"{section.dataset}, validation event 0",
        ),
        "js.png": _bar_figure(
            {role: divergence[role]["mean"] for role in ROLES[1:]}, "mean JS(teacher, student) [nat]", log=True
        ),
        "relative-errors.png": _bar_figure(errors, "median relative error of the posterior median [%]"),
    }
    for name, figure in figures.items():
        figure.savefig(plots_dir / name, dpi=80 if name.startswith("corner") else 110)
    return metrics, figures, meta


def _bar_figure(rows: dict[str, dict[str, float]], ylabel: str, log: bool = False):
    import matplotlib.pyplot as plt

    parameters = list(next(iter(rows.values())))
    figure, axes = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(rows)
    for k, (label, row) in enumerate(rows.items()):
        axes.bar(
            np.arange(len(parameters)) + (k - (len(rows) - 1) / 2) * width,
            [row[p] for p in parameters],
            width,
            label=label,
        )
    axes.set_xticks(range(len(parameters)), parameters)
    axes.set_ylabel(ylabel)
    if log:
        axes.set_yscale("log")
    axes.legend(frameon=False)
    figure.tight_layout()
    return figure


def format_table2(metrics: dict) -> str:
    """The paper's Table II (plus memory) and Table I, as text."""
    table2, errors = metrics["table2"], metrics["relative_error_percent"]
    lines = [
        f"{'model':<19}{'val NLL':>9}{'latency ms':>12}{'params':>10}{'memory MB':>11}   "
        f"(N = {metrics['samples_per_event']:,} samples/event)"
    ]
    for role, row in table2.items():
        lines.append(
            f"{role:<19}{row['val_nll']:>9.3f}{row['latency_ms']:>12.1f}{row['parameters']:>10,}{row['peak_memory_mb']:>11.1f}"
        )
    c = metrics["comparison"]
    lines.append(
        f"distilled vs teacher: {100 * c['parameter_reduction']:.0f} % fewer parameters, "
        f"{100 * c['latency_reduction']:.0f} % lower latency, {100 * c['memory_reduction']:.0f} % less memory; "
        f"NLL distilled - direct = {c['nll_distilled_minus_direct']:+.3f}"
    )
    parameters = list(errors["teacher"])
    lines.append("relative error % " + "".join(f"{p:>9}" for p in parameters))
    for role, row in errors.items():
        lines.append(f"{role:<17}" + "".join(f"{row[p]:>9.2f}" for p in parameters))
    lines.append(
        "samples outside the prior: " + ", ".join(f"{role} {v:.2%}" for role, v in metrics["outside_prior"].items())
    )
    for role, row in metrics["js_teacher_student"].items():
        lines.append(f"JS(teacher, {role}) mean nat " + " ".join(f"{p}={v:.4f}" for p, v in row["mean"].items()))
    return "\n".join(lines)
