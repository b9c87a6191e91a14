import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import GWPE, REPO, gwpe_env, run_gwpe


def test_help_lists_the_pipeline_stages(tmp_path):
    result = run_gwpe(["--help"], tmp_path, check=True)
    assert "generate" in result.stdout and "ui" in result.stdout
    assert "h22" in run_gwpe(["generate", "--help"], tmp_path, check=True).stdout


def test_every_subcommand_help_renders_and_every_handler_is_a_stage_entry(capsys):
    """argparse formats help lazily: a bad format character in any help text only fails when a user asks."""
    import argparse
    import importlib

    import pytest

    from gwpe.cli import build_parser

    def walk(parser, path):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, path + [name])

    leaves = 0
    for path, parser in walk(build_parser(), []):
        parser.format_help()  # raises on an unescaped %
        silent = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
        assert not silent, f"gwpe {' '.join(path)}: arguments without help text: {silent}"
        handler = parser.get_default("handler")
        if handler is not None:
            leaves += 1
            module, function = handler.stage
            assert callable(getattr(importlib.import_module(f"gwpe.stages.{module}"), function)), path
    assert leaves == 24  # generate x2, train x4, evaluate x3, sweep, reference, sample, evidence, models x4, infer, ui,
    # event x4 (fetch, prepare, analyse, injections), verify
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["evaluate", "--help"])
    assert exit_info.value.code == 0 and "90% widths" in capsys.readouterr().out


def test_dry_run_prices_the_paper_profile_without_generating(tmp_path):
    result = run_gwpe(
        ["generate", "h22", "--params", str(REPO / "experiments" / "paper.yaml"), "--dry-run"], tmp_path, check=True
    )
    assert "197,516" in result.stdout and "1,580,128" in result.stdout and "187,308" in result.stdout
    assert "CPU-hours" in result.stdout and "101301 samples" in result.stdout
    assert not (tmp_path / "data").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gwpe_ui_serves_mlflow_on_loopback(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [str(GWPE), "ui", "--port", str(port)],
        cwd=tmp_path,
        env=gwpe_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200 and response.read().strip() == b"OK"
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.5)
        else:
            pytest.fail("MLflow UI did not answer /health within 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_make_clean_data_removes_pipeline_outputs_and_keeps_inputs_and_history(tmp_path):
    """Issue 24, friction 9: ``make clean-data`` was declared but did nothing."""
    import shutil
    import subprocess

    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    outputs = [
        "data/h22/train.zarr/zarr.json",
        "data/strain/strain-5d.zarr/zarr.json",
        "models/flows/maf/config.json",
        "checkpoints/flows/maf/last.ckpt",
        "metrics/flow-maf-eval.json",
        "plots/flows/maf/pp.png",
    ]
    kept = ["data/gwosc/H-H1_LOSC_4_V2-1126259446-32.hdf5", "mlflow.db", "optuna.db", ".dvc/cache/files/md5/ab/c"]
    for name in outputs + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    result = subprocess.run(["make", "clean-data"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [n for n in outputs if (tmp_path / n).exists()] == []
    assert all((tmp_path / n).exists() for n in kept)
