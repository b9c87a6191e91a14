"""Compare two ``metrics/`` folders leaf by leaf (e.g. the previous release's demo and this one's, same seeds).

    python scripts/compare_metrics.py OLD/metrics NEW/metrics [--show-timings]

Prints, per JSON file, the number of numeric leaves, how many are equal to the last bit, and every leaf that
differs with both values. Wall-clock figures (keys naming seconds, latency, rates or memory peaks) differ from
run to run and are reported apart unless ``--show-timings``; registry versions depend on the MLflow store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIMING_WORDS = ("seconds", "latency", "per_second", "peak_memory", "registry", "path")


def leaves(value, prefix: str = "") -> dict:
    """Nested JSON -> {dotted key: leaf}."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(leaves(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(leaves(item, f"{prefix}{index}."))
        return out
    return {prefix.rstrip("."): value}


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; exit 1 when a non-timing leaf differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--show-timings", action="store_true", help="also list differing wall-clock figures")
    args = parser.parse_args(argv)
    differing = 0
    for old_file in sorted(args.old.glob("*.json")):
        new_file = args.new / old_file.name
        if not new_file.is_file():
            print(f"{old_file.name}: missing in {args.new}")
            differing += 1
            continue
        old, new = leaves(json.loads(old_file.read_text())), leaves(json.loads(new_file.read_text()))
        timing = {k for k in old.keys() | new.keys() if any(word in k for word in TIMING_WORDS)}
        compared = sorted((old.keys() | new.keys()) - timing)
        changed = [k for k in compared if old.get(k, "<absent>") != new.get(k, "<absent>")]
        print(
            f"{old_file.name}: {len(compared) - len(changed)} of {len(compared)} leaves equal"
            f" ({len(timing)} wall-clock leaves not compared)"
        )
        for key in changed + (sorted(k for k in timing if old.get(k) != new.get(k)) if args.show_timings else []):
            print(f"    {key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
        differing += len(changed)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
