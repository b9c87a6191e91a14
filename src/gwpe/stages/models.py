"""``gwpe models list|promote|pull|serve``: the model registry (``gwpe.tracking.registry``)."""

from __future__ import annotations

import argparse
import json

from gwpe.redaction import redact


def list_main(args: argparse.Namespace) -> int:
    """``gwpe models list``: names, versions, aliases and each version's key metric."""
    from gwpe.tracking.registry import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no registered models (run: dvc repro, or gwpe evaluate ...)")
        return 0
    print(f"{'name':<22}{'version':>8}  {'aliases':<18}{'metric':<16}{'value':>10}  run")
    for row in rows:
        print(
            f"{row['name']:<22}{row['version']:>8}  {','.join(row['aliases']) or '-':<18}{row['metric'] or '-':<16}"
            f"{row['value']:>10.4f}  {row['run_id']}"
        )
    return 0


def promote_main(args: argparse.Namespace) -> int:
    """``gwpe models promote``: point an alias at a version."""
    from gwpe.tracking.registry import promote

    result = promote(args.name, args.version, args.alias)
    before = f" (was version {result['previous']})" if result["previous"] is not None else ""
    print(f"{result['name']}@{result['alias']} -> version {result['version']}{before}")
    return 0


def pull_main(args: argparse.Namespace) -> int:
    """``gwpe models pull``: download a registered package into a folder."""
    from gwpe.tracking.registry import pull

    folder = pull(args.reference, args.dest, overwrite=args.overwrite)
    print(f"{args.reference} -> {folder} (weights.pt + config.json; load with gwpe.models.loading.load_package)")
    return 0


def serve_main(args: argparse.Namespace) -> int:
    """``gwpe models serve``: ``mlflow models serve`` on a registered model with this environment's tools
    (its own ``mlflow`` and ``uvicorn``, whatever PATH says; ``--env-manager local``), replacing this process.
    Pickle deserialisation is off (``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``): gwpe's flavour needs none."""
    import os
    import sys
    from pathlib import Path

    from gwpe.tracking.registry import check_server, model_version

    uri = check_server()
    version = model_version(args.reference)  # one-line errors for unknown names, aliases, versions
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"  # a crafted MLmodel naming a pickle cannot run code
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{version.name}/{version.version}",
        "--env-manager",
        "local",
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(
        f"serving {args.reference} (models:/{version.name}/{version.version}) from {redact(uri)} on "
        f"http://{args.host}:{args.port}/invocations (JSON: dataframe_records or dataframe_split, one row per event)",
        flush=True,
    )
    os.execv(command[0], command)
    return 0  # not reached


def ui_main(args: argparse.Namespace) -> int:
    """``gwpe ui``: the MLflow UI on the project's tracking store (replaces this process)."""
    import os

    from gwpe.tracking import tracking_uri, ui_command

    command = ui_command(args.host, args.port)
    print(
        f"MLflow UI for {redact(tracking_uri())} on http://{args.host}:{args.port}  (runs table: "
        f"http://{args.host}:{args.port}/#/experiments/1/runs?workflowType=machine_learning)",
        flush=True,
    )
    os.execv(command[0], command)
    return 0  # not reached
