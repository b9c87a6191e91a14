"""DVC metrics files that hold only numbers a person compares; identifiers live in a sidecar.

``dvc metrics show`` and ``dvc exp show`` turn every leaf of a metrics file into a column, so md5s, names,
paths and per-parameter lists made them unreadable (hundreds of columns). :func:`split_metrics` keeps the
numeric leaves (numbers and booleans) in ``metrics/<stem>.json`` and moves the rest (strings, lists, ``None``)
to ``metrics/<stem>.info.json``, which DVC tracks as a plain output; :func:`read_metrics` merges them back.
"""

from __future__ import annotations

import json
import math
from numbers import Number
from pathlib import Path


def _is_number(value) -> bool:
    return isinstance(value, Number) and not (isinstance(value, float) and not math.isfinite(value))


def split_metrics(metrics: dict) -> tuple[dict, dict]:
    """``(numbers, info)``: the same nesting, numeric leaves in the first, every other leaf in the second.

    Non-finite floats go to ``info`` too (JSON has no NaN; DVC would show them as errors)."""
    numbers, info = {}, {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            sub_numbers, sub_info = split_metrics(value)
            if sub_numbers:
                numbers[key] = sub_numbers
            if sub_info:
                info[key] = sub_info
        elif _is_number(value):
            numbers[key] = value
        else:
            info[key] = str(value) if isinstance(value, float) else value  # nan/inf as text, valid JSON
    return numbers, info


def info_path(path: str | Path) -> Path:
    """``metrics/x.json`` -> ``metrics/x.info.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".info.json")


def merge(numbers: dict, info: dict) -> dict:
    """Inverse of :func:`split_metrics` (key order: numbers first)."""
    out = dict(numbers)
    for key, value in info.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_metrics_files(path: str | Path, metrics: dict) -> tuple[Path, Path]:
    """Write the numeric metrics file and its ``.info.json`` sidecar (always both, so DVC finds both outs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    numbers, info = split_metrics(metrics)
    path.write_text(json.dumps(numbers, indent=2) + "\n")
    sidecar = info_path(path)
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    return path, sidecar


def read_metrics(path: str | Path) -> dict:
    """A stage's whole metrics dict: the numeric file merged with its sidecar (when present)."""
    path = Path(path)
    numbers = json.loads(path.read_text())
    sidecar = info_path(path)
    return merge(numbers, json.loads(sidecar.read_text())) if sidecar.is_file() else numbers
