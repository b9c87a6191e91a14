"""Resumable training runs: Lightning checkpoints every epoch plus a small ``run.json`` beside them.

``run.json`` records what the checkpoints belong to (a fingerprint of the model/training config and the
input data md5s), the MLflow run they log to, and whether training finished. ``--resume`` continues only
an unfinished run with the same fingerprint, from ``last.ckpt`` (epoch, optimizer, scheduler, loop and RNG
state), loaded with ``weights_only=True``; anything else starts fresh, saying why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAST = "last.ckpt"
STATE = "run.json"


def fingerprint(*parts: Any) -> str:
    """sha256 of the JSON of ``parts`` (configs as dicts, data md5s)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class ResumePlan:
    """Where ``fit`` starts: the checkpoint to load (None: fresh), the MLflow run to reopen, and why."""

    ckpt_path: Path | None
    run_id: str | None
    reason: str
    abandoned_run_id: str | None = None  # the unfinished run of a checkpoint cleared to start fresh (closed as KILLED)


def plan_resume(checkpoint_dir: str | Path, expected: str, resume: bool, clear: bool = True) -> ResumePlan:
    """Decide whether to continue from ``checkpoint_dir``; when starting fresh, clears it if ``clear`` (rank 0).
    The fingerprint leaves out where training runs (devices, nodes, strategy), so a run checkpointed with
    N processes resumes with M."""
    folder = Path(checkpoint_dir)
    state_file, last = folder / STATE, folder / LAST
    try:
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    except (FileNotFoundError, json.JSONDecodeError):  # rank 0 is clearing the folder under another rank
        state = {}
    if resume:
        if not last.is_file() or not state:
            reason = f"--resume: no checkpoint in {folder}; starting fresh"
        elif state.get("fingerprint") != expected:
            reason = f"--resume: the checkpoint in {folder} was made with another config or data; starting fresh"
        elif state.get("complete"):
            reason = f"--resume: the run in {folder} had finished; starting fresh"
        else:
            return ResumePlan(last, state.get("mlflow_run_id"), f"resuming from {last}")
    else:
        reason = "starting fresh"
    if clear and folder.exists():
        clear_folder(folder)
    abandoned = None if state.get("complete") else state.get("mlflow_run_id")
    return ResumePlan(None, None, reason, abandoned)


def clear_folder(folder: Path) -> None:
    """Remove everything in ``folder`` but its lock file (``gwpe.training.locks``), which this process holds."""
    from gwpe.training.locks import LOCK_FILE

    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)


def write_state(checkpoint_dir: str | Path, expected: str, run_id: str | None, complete: bool) -> None:
    """Record in ``run.json`` which fingerprint and MLflow run the checkpoints belong to, and whether it finished."""
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE + ".tmp")
    tmp.write_text(
        json.dumps({"fingerprint": expected, "mlflow_run_id": run_id, "complete": complete}, indent=2) + "\n"
    )
    tmp.replace(folder / STATE)
