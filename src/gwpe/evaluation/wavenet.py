"""``gwpe evaluate wavenet``: the paper's Table 1 and overlaps on the test split (Khan, Huerta & Das sec. 3.3).

For every test waveform the model predicts (q, s1z, s2z); the waveform is regenerated at the prediction with
the dataset's own backend and time grid, and its overlap with the stored one is computed (eq. 4, batched
FFTs in torch, on the GPU when present). Streaming in batches keeps memory flat for paper-size test sets.

Choices (written down because the paper leaves them open):
- Δx = predicted - true (signed, as in Table 1); plots show |Δx|.
- Predictions are clipped to the training grid's box (q in [q_min, q_max], spins in [s_min, s_max]) before
  regeneration: that is the prior the network was trained on and the surrogate's validity range; the
  Table 1 errors use the clipped values too. ``WaveNetPredictor.predict`` itself clips to the same box (the grid
  is saved in the package), so ``gwpe infer`` and ``load_wavenet`` return what Table 1 scores; the clip here
  only matters for a module built without its grid.
- Trivial baseline: every test waveform "predicted" at the training-set mean (q, s1z, s2z).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gwpe.config import ProjectConfig
from gwpe.errors import ConfigError
from gwpe.physics import hamiltonian_effective_spin, sigma_eff, symmetric_mass_ratio

OVERLAP_THRESHOLDS = (0.97, 0.90, 0.85)
QUANTILES = {"min": 0.0, "q1": 0.25, "median": 0.5, "q3": 0.75, "max": 1.0}


@dataclass
class Evaluation:
    """Per test waveform: true and predicted (q, s1z, s2z) and overlap, and the training-mean baseline's."""

    true: np.ndarray  # (N, 3) q, s1z, s2z
    predicted: np.ndarray  # (N, 3), clipped to the training box
    overlap: np.ndarray  # (N,)
    baseline_params: np.ndarray  # (3,)
    baseline_overlap: np.ndarray  # (N,)
    extra: dict = field(default_factory=dict)


def derived(params: np.ndarray) -> dict[str, np.ndarray]:
    """q, s1z, s2z and the derived sigma_eff (eq. 3), S_eff (eq. 2), eta (eq. 5) per row."""
    q, s1, s2 = params.T
    return {
        "q": q,
        "s1": s1,
        "s2": s2,
        "sigma_eff": sigma_eff(q, s1, s2),
        "S_eff": hamiltonian_effective_spin(q, s1, s2),
        "eta": symmetric_mass_ratio(q),
    }


def errors(true: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Signed errors Δx = predicted - true of q, s1, s2, sigma_eff, S_eff and eta (``derived``) per row."""
    t, p = derived(true), derived(predicted)
    return {name: p[name] - t[name] for name in t}


def table1(evaluation: Evaluation) -> dict:
    """Table 1: min, Q1, median, Q3, max of Δq, Δs1, Δs2, Δσ_eff, ΔS_eff and O; counts of O <= thresholds."""
    rows = {f"delta_{k}": v for k, v in errors(evaluation.true, evaluation.predicted).items() if k != "eta"}
    rows["overlap"] = evaluation.overlap
    table = {
        name: {stat: float(np.quantile(values, q)) for stat, q in QUANTILES.items()} for name, values in rows.items()
    }
    counts = {f"overlap_le_{t:.2f}": int(np.sum(evaluation.overlap <= t)) for t in OVERLAP_THRESHOLDS}
    return {"table1": table, "counts": counts}


def summary(evaluation: Evaluation) -> dict:
    """Everything ``metrics/wavenet-eval.json`` holds: Table 1, counts, the baseline and the margin."""
    out = table1(evaluation)
    e = errors(evaluation.true, evaluation.predicted)
    model_median = float(np.median(evaluation.overlap))
    baseline_median = float(np.median(evaluation.baseline_overlap))
    out["n_test"] = int(len(evaluation.overlap))
    out["median_overlap"] = model_median
    out["mean_overlap"] = float(np.mean(evaluation.overlap))
    out["iqr_delta_s2"] = float(np.subtract(*np.quantile(e["s2"], [0.75, 0.25])))
    out["iqr_delta_s1"] = float(np.subtract(*np.quantile(e["s1"], [0.75, 0.25])))
    out["baseline"] = {
        "median_overlap": baseline_median,
        "mean_overlap": float(np.mean(evaluation.baseline_overlap)),
        **dict(zip(("q", "s1z", "s2z"), map(float, evaluation.baseline_params))),
    }
    out["median_overlap_gain_over_baseline"] = model_median - baseline_median
    return out


def _regenerate(backend, params: np.ndarray, times: np.ndarray) -> np.ndarray:
    return backend.batch(params, times)


class Regenerator:
    """Regenerates waveforms at given parameters, in ``workers`` processes (0: in-process)."""

    def __init__(self, backend, times: np.ndarray, workers: int):
        self.backend, self.times, self.workers = backend, times, workers
        self.pool = None
        if workers > 0:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))

    def __call__(self, params: np.ndarray) -> np.ndarray:
        if self.pool is None or len(params) < 2 * self.workers:
            return _regenerate(self.backend, params, self.times)
        parts = np.array_split(params, self.workers * 4)
        return np.concatenate(
            list(self.pool.map(_regenerate, [self.backend] * len(parts), parts, [self.times] * len(parts)))
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def clip_to_grid(params: np.ndarray, config: ProjectConfig) -> np.ndarray:
    """(N, 3) (q, s1z, s2z) clipped to the training grid's box: q to [q_min, q_max], spins to [s_min, s_max]."""
    grid = config.h22.grid
    out = np.array(params, dtype=np.float64, copy=True)
    out[:, 0] = np.clip(out[:, 0], grid.q_min, grid.q_max)
    out[:, 1:] = np.clip(out[:, 1:], grid.s_min, grid.s_max)
    return out


def evaluate(
    module,
    config: ProjectConfig,
    split: str = "test",
    device: str | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> Evaluation:
    """Predict, regenerate and overlap every waveform of ``split`` (first ``limit`` rows if given)."""
    import torch
    from tqdm import tqdm

    from gwpe.data.h22_dataset import H22Dataset
    from gwpe.data.h22_store import split_path
    from gwpe.data.h22 import split_time_grid
    from gwpe.evaluation.overlap import overlap
    from gwpe.waveforms.backends import build_backend

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    module = module.to(device).eval()
    root = Path(config.h22.store.root)
    dataset = H22Dataset(split_path(root, split))
    train_params = H22Dataset(split_path(root, "train")).parameters.astype(np.float64)
    times = split_time_grid(config.h22)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    backend = build_backend(config.h22)
    regenerate = Regenerator(backend, times, config.h22.compute.workers)
    baseline_params = train_params.mean(axis=0)
    baseline_waveform = torch.as_tensor(backend.batch(baseline_params[None], times), device=device)
    batch = config.wavenet.evaluation.batch_size
    true, predicted, overlaps, baseline = [], [], [], []
    try:
        with tqdm(total=n, desc="evaluate wavenet", unit="waveform", disable=not progress) as bar:
            for start in range(0, n, batch):
                rows = list(range(start, min(n, start + batch)))
                items = dataset.__getitems__(rows)
                stored = torch.stack([w for w, _ in items]).to(device)
                params = torch.stack([p for _, p in items]).numpy().astype(np.float64)
                with torch.no_grad():
                    guess = clip_to_grid(module.predict(stored).cpu().numpy(), config)
                regenerated = torch.as_tensor(regenerate(guess), device=device)
                overlaps.append(overlap(stored, regenerated)[0].cpu().numpy())
                baseline.append(overlap(stored, baseline_waveform.expand(len(rows), -1, -1))[0].cpu().numpy())
                true.append(params)
                predicted.append(guess)
                bar.update(len(rows))
    finally:
        regenerate.close()
    return Evaluation(
        np.concatenate(true),
        np.concatenate(predicted),
        np.concatenate(overlaps),
        baseline_params,
        np.concatenate(baseline),
    )


def waveform_pairs(
    config: ProjectConfig, evaluation: Evaluation, indices: list[int], split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, stored (K, L) complex, regenerated-at-prediction (K, L) complex) for plotting."""
    from gwpe.data.h22_dataset import H22Dataset
    from gwpe.data.h22_store import store_path
    from gwpe.data.h22 import split_time_grid
    from gwpe.waveforms.backends import build_backend

    times = split_time_grid(config.h22)
    dataset = H22Dataset(store_path(config.h22, split))
    stored = (
        np.stack([w.numpy() for w, _ in dataset.__getitems__(list(indices))])
        if indices
        else np.empty((0, 2, len(times)))
    )
    regenerated = build_backend(config.h22).batch(evaluation.predicted[list(indices)], times)
    as_complex = lambda x: x[:, 0].astype(np.float64) + 1j * x[:, 1]  # noqa: E731
    return times, as_complex(stored), as_complex(regenerated)


def load_trained(config: ProjectConfig, params_path: str, model_dir: str | Path | None = None):
    """(module, metadata) of the saved model; refuses a model trained on another time grid than the test set."""
    from gwpe.models.package import CONFIG_FILE
    from gwpe.models.wavenet_predictor import WaveNetPredictor

    model_dir = Path(model_dir or config.wavenet.model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"no trained model in {model_dir} (run: gwpe train wavenet --params {params_path})")
    meta = json.loads((model_dir / CONFIG_FILE).read_text())
    trained_on = meta.get("h22", {}).get("time")
    if trained_on and trained_on != config.h22.time.model_dump():
        raise ConfigError(
            f"{model_dir} was trained on h22.time = {trained_on}, but the profile's test set has "
            f"{config.h22.time.model_dump()}; evaluate with the profile it was trained with"
        )
    return WaveNetPredictor.load_model(model_dir), meta


def write_predictions(path: Path, evaluation) -> None:
    """Per-waveform true and predicted parameters and overlaps as CSV (paper App. A follow-ups)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["q", "s1z", "s2z", "q_pred", "s1z_pred", "s2z_pred", "overlap", "baseline_overlap"])
        for row in zip(*evaluation.true.T, *evaluation.predicted.T, evaluation.overlap, evaluation.baseline_overlap):
            writer.writerow([f"{v:.6g}" for v in row])


def format_table1(metrics: dict) -> str:
    """Table 1 of Khan, Huerta & Das as text, with the overlap counts and the trivial baseline."""
    names = {
        "delta_q": "Δq",
        "delta_s1": "Δs1",
        "delta_s2": "Δs2",
        "delta_sigma_eff": "Δσ_eff",
        "delta_S_eff": "ΔS_eff",
        "overlap": "O",
    }
    lines = [
        f"Table 1 ({metrics['n_test']} test waveforms)",
        f"{'':<8}{'min':>9}{'Q1':>9}{'median':>9}{'Q3':>9}{'max':>9}",
    ]
    for key, label in names.items():
        row = metrics["table1"][key]
        lines.append(f"{label:<8}" + "".join(f"{row[s]:>9.3f}" for s in ("min", "q1", "median", "q3", "max")))
    lines.append(", ".join(f"O <= {k.rsplit('_', 1)[1]}: {v}" for k, v in metrics["counts"].items()))
    lines.append(
        f"median overlap {metrics['median_overlap']:.4f} vs trivial baseline (training-mean parameters) "
        f"{metrics['baseline']['median_overlap']:.4f}"
    )
    return "\n".join(lines)
