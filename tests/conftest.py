"""Shared fixtures: tiny profiles, a runner for the real ``gwpe`` console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# One intra-op thread for torch, OpenMP and BLAS in the test processes and everything they start (set before torch
# is imported; xdist's workers inherit it): with two workers on two cores, a second thread spin-waits on the core
# the other worker holds (``gwpe_env``'s docstring has the figures). In-process tests run the same code paths.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
GWPE = Path(sys.executable).with_name("gwpe")


# Test files in the order the two xdist workers take them (``--dist loadfile --no-loadscope-reorder``): longest
# first (LPT scheduling), seconds from the CI log of 65a02b4. xdist's default order, most tests first, started
# test_dvc.py (one test, 250 s) 44th of 45 files, so one worker ran it alone at the end.
LONGEST_FIRST = (
    "test_dvc.py",  # 248
    "test_event_pipeline.py",  # ~160
    "test_wavenet_pipeline.py",  # ~140
    "test_ddp.py",  # 130
    "test_server.py",  # ~120
    "test_flow_pipeline.py",  # ~110
    "test_sweep.py",  # ~110
    "test_wavenet_model.py",  # ~90: two 300-epoch overfit tests
    "test_infer.py",  # ~70
    "test_dask_cluster.py",  # 39
    "test_distill.py",  # 38
    "test_gnpe.py",  # 35
    "test_engine.py",  # 34
)


def pytest_collection_modifyitems(config, items):
    """The files in ``LONGEST_FIRST`` order, then the rest with the most tests first (xdist's own order); the
    tests inside a file keep theirs."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.path.name] = counts.get(item.path.name, 0) + 1

    def rank(item) -> tuple:
        name = item.path.name
        listed = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return listed, -counts[name], name

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _unpin_mlflow_tracking_uri():
    """``stage_run`` calls ``mlflow.set_tracking_uri``, which pins the URI for the whole process (and sets
    $MLFLOW_TRACKING_URI); unpin both after every test so an in-process test never writes into, or reads
    from, an earlier test's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def tiny_profile(**h22_overrides) -> dict:
    """3 x 3 x 3 training grid, 1 validation and 1 test waveform, 631 samples: generates in ~1 s."""
    h22 = {
        "backend": "imrphenomthm",
        "generation_dt": 1.0,
        "total_mass": 50.0,
        "surrogate_path": None,
        "grid": {"q_min": 1.0, "q_max": 8.0, "dq": 3.5, "s_min": -0.8, "s_max": 0.8, "ds": 0.8},
        "time": {"t_start": -500.0, "t_end": 130.0, "dt": 1.0},
        "store": {"root": "data/h22", "chunk_size": 4, "compression_level": 5},
        "compute": {"workers": 0, "threads_per_worker": 1, "scheduler_address": None},
    }
    for key, value in h22_overrides.items():
        if isinstance(value, dict):
            h22[key] = {**h22.get(key, {}), **value}
        else:
            h22[key] = value
    return {
        "profile": "tiny",
        "tracking": {"experiment": "gwpe-test"},
        "h22": h22,
        "strain": tiny_strain(),
        "wavenet": tiny_wavenet(),
        "flows": tiny_flows(),
        "distill": tiny_distill(),
        "sampling": tiny_sampling(),
    }


def tiny_sampling() -> dict:
    """Flow-MCMC of 16 chains and a few loops, emcee of 12 walkers x 30 steps, a few hundred IS draws: seconds."""
    return {
        "model": "maf",
        "injection": 0,
        "workers": 0,
        "seed": 0,
        "npe_samples": 400,
        "pilot_draws": 200,
        "adaptive": {
            "draws_per_round": 200,
            "max_rounds": 4,
            "epochs": 2,
            "final_ess": 100,
            "final_batch": 200,
            "max_final_draws": 400,
            "transforms": 1,
            "hidden": [16],
        },
        "flowmc": {
            "chains": 16,
            "production_chains": 8,  # fewer, longer production chains (the demo's R-hat fix), end to end
            "local_steps": 4,
            "production_local_steps": 5,  # explicit: test_flow_pipeline counts the stored states per loop
            "global_steps": 4,
            "max_training_loops": 3,
            "production_loops": 2,
            "max_production_loops": 3,
            "target_ess": 10,
            "flow_epochs": 1,
            "transforms": 1,
            "hidden": [16],
            "warm_start_epochs": 2,
            "refine_rounds": 1,  # the weighted refit, end to end, on a few draws
            "refine_draws": 64,
        },
        "emcee": {"walkers": 12, "steps": 30, "burn": 10, "latent": True},  # the NeuTra path, end to end
        "path": "data/sampling",  # spelled out: dvc.yaml interpolates it from params.yaml
    }


TINY_HL = {
    "parameters": ["m1", "m2", "chi1z", "chi2z", "dL", "tc", "phi0", "theta_jn", "ra", "dec", "psi"],
    "inferred": ["m1", "m2", "chi1z", "chi2z", "dL"],
    "detectors": ["H1", "L1"],
    "n_signals": 40,
    "validation_fraction": 0.2,
    "sample_rate": 1024.0,
    "duration": 1.0,
    "seed": 3,
}


def tiny_distill(**sweep_overrides) -> dict:
    """ResNet1D+IAF of ~2k weights on the 40-signal two-detector set; a 3-trial sweep of 2-epoch trials."""
    return {
        "dataset": "strain-hl",
        "model": {
            "depth": 2,
            "width": 8,
            "transforms": 2,
            "hidden": 16,
            "hidden_layers": 2,
            "features": 8,
            "kernel_size": 3,
            "stem_stride": 4,
            "downsample_every": 2,
            "pool": 4,
        },
        "sweep": {
            "n_trials": 3,
            "workers": 1,
            "storage": "sqlite:///optuna.db",
            "study_name": "tiny",
            "sampler_seed": 0,
            "pruner": "median",
            "startup_trials": 1,
            "warmup_epochs": 0,
            "max_epochs": 2,
            "search_space": {"depth": [1, 3], "width": [4, 8], "transforms": [1, 3], "learning_rate": [0.001, 0.01]},
            "best_params": "models/sweep/best.json",
            **sweep_overrides,
        },
        "training": {
            "batch_size": 8,
            "max_epochs": 2,
            "learning_rate": 0.002,
            "seed": 0,
            "num_workers": 0,
            "accelerator": "cpu",
            "devices": 1,
        },
        "student": {"factor": 0.5, "alpha": 0.5, "temperature": [1.0, 4.0], "teacher_samples": 2, "max_epochs": None},
        "evaluation": {"events": 4, "js_events": 2, "samples": 200, "latency_repeats": 2, "threads": None},
        "model_dir": "models/distill",  # spelled out: dvc.yaml interpolates these from params.yaml
        "checkpoint_dir": "checkpoints/distill",
        "registered_teacher": "gwpe-teacher",
        "registered_student": "gwpe-student",
    }


def tiny_flows() -> dict:
    """MAF and CVAE+ of a few thousand weights on the tiny strain-5d set: seconds per model."""
    return {
        "dataset": "strain-5d",
        "models": {
            "maf": {"kind": "maf", "options": {"transforms": 2, "hidden": [32, 32]}},
            "cvae_plus": {
                "kind": "cvae_plus",
                "options": {
                    "hidden": [32, 32],
                    "transforms": 2,
                    "flow_hidden": [32, 32],
                    "latent": 2,
                    "iaf_context": 2,
                },
            },
        },
        "training": {"batch_size": 8, "max_epochs": 2, "learning_rate": 0.002, "seed": 0, "num_workers": 0},
        "halve_every": 80,
        "evaluation": {"injections": 10, "samples": 100},
        "reference": {
            "injections": 1,
            "method": "emcee",  # the default adaptive_is is tested in test_convergence; emcee keeps this seconds
            "walkers": 12,
            "steps": 40,
            "burn": 10,
            "workers": 0,
            "seed": 0,
            "flow_samples": 300,
            "path": "data/reference",
        },
        "phase_flip": False,
        "phase_symmetry": "pi",
        "model_dir": "models/flows",  # spelled out: dvc.yaml interpolates these from params.yaml
        "checkpoint_dir": "checkpoints/flows",
        "registered_prefix": "gwpe-npe",
    }


def tiny_wavenet(**training_overrides) -> dict:
    """A 4-block, 8-channel WaveNet on the last 128 steps, 4 epochs of 27 waveforms: trains in seconds."""
    return {
        "model": {
            "channels": 8,
            "skip_channels": 8,
            "dilation_limit": 8,
            "stacks": 1,
            "leaf_steps": 128,
            "leaf_hidden": 16,
            "head": "physics",
        },
        "training": {
            "batch_size": 9,
            "max_epochs": 4,
            "learning_rate": 0.002,
            "seed": 0,
            "num_workers": 0,
            "accelerator": "cpu",
            "devices": 1,
            "num_nodes": 1,
            "strategy": "auto",
            "precision": "32-true",
            "threads": None,
            **training_overrides,
        },
        "evaluation": {"batch_size": 64, "q_slices": None},
        "keep": "best",
        "model_dir": "models/wavenet",
        "checkpoint_dir": "checkpoints/wavenet",
        "registered_name": "gwpe-wavenet",
    }


def tiny_strain(**dataset_overrides) -> dict:
    """One 5-D dataset of 12 signals (10 train, 2 validation) in chunks of 4, in-process."""
    dataset = {
        "parameters": ["m1", "m2", "phi0", "tc", "dL"],
        "inferred": None,
        "detectors": [],
        "n_signals": 12,
        "validation_fraction": 0.2,
        "sample_rate": 1024.0,
        "duration": 1.0,
        "seed": 7,
        **dataset_overrides,
    }
    return {
        "approximant": "IMRPhenomPv2",
        "psd": "aLIGOZeroDetHighPower",
        "f_min": 20.0,
        "f_ref": 20.0,
        "reference_gps": 1126259462.0,
        "store": {"root": "data/strain", "chunk_size": 4, "compression_level": 5},
        "compute": {"workers": 0, "threads_per_worker": 1, "scheduler_address": None},
        "datasets": {"strain-5d": dataset, "strain-hl": dict(TINY_HL)},
    }


def write_profile(path: Path, profile: dict) -> Path:
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def gwpe_env(tmp_path: Path, **extra) -> dict:
    """The environment a ``gwpe`` (or ``dvc``) subprocess runs in: tracking under ``tmp_path``, one torch thread.

    One intra-op thread (unless the caller's environment sets one): the tiny test models pay only
    synchronisation for more, and with two xdist workers on two cores a second thread spin-waits on a core the
    other worker holds (measured: a tiny WaveNet's backward step 6 ms on one thread, 1.7 s on two; the
    pipeline stages 30-60 % faster). Results are the same code paths; ``threads`` options still apply on top."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env["PATH"] = f"{GWPE.parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_gwpe(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300, check: bool = False):
    result = subprocess.run(
        [str(GWPE), *args], cwd=cwd, env=env or gwpe_env(cwd), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gwpe {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread in this process for the test (``gwpe_env`` does the same for subprocesses):
    a stage run in-process on tiny models takes the same code path, without the second thread's spin-waits."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_params(tmp_path: Path) -> Path:
    return write_profile(tmp_path / "params.yaml", tiny_profile())


def run_in_process(argv, capsys) -> tuple[int, str, str]:
    """The console script's ``main`` in this process (the same code path, without a 5 s interpreter start)."""
    from gwpe.cli import main

    try:
        code = main(argv)
    except SystemExit as exit:  # argparse errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def hl_store(tmp_path_factory):
    """The tiny two-detector set, generated once per test session; tests copy it into their projects."""
    root = tmp_path_factory.mktemp("hl")
    write_profile(root / "params.yaml", tiny_profile())
    run_gwpe(
        ["generate", "strain", "--params", "params.yaml", "--dataset", "strain-hl"],
        cwd=root,
        env=gwpe_env(root),
        check=True,
    )
    return root / "data"
