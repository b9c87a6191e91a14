"""The code's shape is checked, not hoped for: import layers and circles (import-linter), lint (ruff), and only
``gwpe.stages`` opening MLflow stage runs. Each checker is also shown failing on a violation planted in a copy."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "gwpe"
BIN = Path(sys.executable).parent


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with the project's contracts on the package under ``project/src``."""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(project / "src"), "HOME": str(project)}
    return subprocess.run(
        [str(BIN / "lint-imports"), "--config", "pyproject.toml", "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_project(tmp_path: Path) -> Path:
    shutil.copytree(SOURCE, tmp_path / "src" / "gwpe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n\n" + code + "\n")


def test_import_contracts_hold_and_catch_upward_and_circular_imports_inside_functions(tmp_path):
    project = copy_project(tmp_path)
    clean = lint_imports(project)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "3 kept, 0 broken" in clean.stdout

    # an upward import hidden in a function body: models may not reach up to the training layer
    plant(project / "src/gwpe/models/package.py", "def _late():\n    from gwpe.training import fit  # noqa\n")
    upward = lint_imports(project)
    assert upward.returncode != 0
    assert "gwpe.models.package -> gwpe.training.fit" in upward.stdout

    # a circle between two modules of one package, again through a deferred import
    shutil.copy(SOURCE / "models/package.py", project / "src/gwpe/models/package.py")
    plant(project / "src/gwpe/data/strain_store.py", "def _late():\n    from gwpe.data import strain  # noqa\n")
    circular = lint_imports(project)
    assert circular.returncode != 0
    assert "No import circles" in circular.stdout and "BROKEN" in circular.stdout
    assert ".strain_store -> .strain" in circular.stdout

    # Lightning reached from evaluation through a data module (a deferred import): the stage processes that
    # only load packages must not pay its ~2-3 s of imports
    shutil.copy(SOURCE / "data/strain_store.py", project / "src/gwpe/data/strain_store.py")
    late_import = "def _late():\n    from gwpe.data import strain_datamodule  # noqa\n"
    plant(project / "src/gwpe/evaluation/flow.py", late_import)
    heavy = lint_imports(project)
    assert heavy.returncode != 0 and "Stages that only load packages" in heavy.stdout and "BROKEN" in heavy.stdout
    assert "gwpe.evaluation.flow -> gwpe.data.strain_datamodule" in heavy.stdout, heavy.stdout
    # ... and from a stage that only loads packages, through the shared stage helpers
    shutil.copy(SOURCE / "evaluation/flow.py", project / "src/gwpe/evaluation/flow.py")
    plant(project / "src/gwpe/stages/common.py", "def _late():\n    from gwpe.training import trainer  # noqa\n")
    heavy = lint_imports(project)
    assert heavy.returncode != 0 and "gwpe.stages.common -> gwpe.training.trainer" in heavy.stdout, heavy.stdout


def test_ruff_passes_on_the_tree_and_fails_on_unused_imports_undefined_names_and_bugbear(tmp_path):
    clean = subprocess.run(
        [str(BIN / "ruff"), "check", "src", "tests", "benchmarks", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert clean.returncode == 0, clean.stdout
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""Planted violations."""\n\nimport os\n\n\ndef f(x=[]):\n    """Doc."""\n    return undefined_name\n'
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "bad.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    for code in ("F401", "F821", "B006"):
        assert code in result.stdout, result.stdout


def calls_to(tree: ast.AST, name: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]


def test_only_stage_modules_open_mlflow_stage_runs_and_the_cli_only_parses():
    openers = {}
    for path in SOURCE.rglob("*.py"):
        lines = calls_to(ast.parse(path.read_text()), "stage_run")
        if lines:
            openers[str(path.relative_to(SOURCE))] = lines
    assert openers and all(name.startswith("stages/") for name in openers), openers
    # every pipeline stage opens its run itself or through fitting.fit_in_stage_run (the three training stages)
    fitting = {"train_wavenet.py", "train_flow.py", "train_distill.py"}
    # registry, inference, verify: no stage run; common: the helpers every stage shares
    without_run = {"__init__.py", "models.py", "infer.py", "verify.py", "common.py"}
    stage_files = {path.name for path in (SOURCE / "stages").glob("*.py")} - without_run - fitting
    assert {name.removeprefix("stages/") for name in openers} == stage_files
    for name in fitting:
        assert "fit_in_stage_run(" in (SOURCE / "stages" / name).read_text()

    cli = ast.parse((SOURCE / "cli.py").read_text())
    imported = {alias.name for node in ast.walk(cli) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(cli) if isinstance(node, ast.ImportFrom)}
    # gwpe.errors and gwpe.redaction: the one-line error report (secrets masked), the only work main does itself
    assert imported <= {"__future__", "argparse", "sys", "importlib", "gwpe.errors", "gwpe.redaction"}, imported
