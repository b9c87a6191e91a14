"""The h22 store: contents, provenance, resume after a kill (byte identity), fingerprint changes."""

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from gwpe.config import parse_config
from gwpe.data.checksum import dvc_md5
from gwpe.data.engine import PROGRESS_DIR
from gwpe.data.h22 import generate_split
from gwpe.waveforms.grid import split_parameters, time_grid
from gwpe.waveforms.imrphenomthm import IMRPhenomTHMBackend

from conftest import GWPE, gwpe_env, run_gwpe, tiny_profile, write_profile


def tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_store_contents_and_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_config(tiny_profile())
    result = generate_split(config, "train")
    group = zarr.open_group(str(result.path), mode="r")
    params = split_parameters(config.h22.grid, "train")
    times = time_grid(-500.0, 130.0, 1.0)
    assert group["h22"].shape == (27, 2, len(times)) and group["h22"].dtype == np.float32
    assert group["h22"].shards == (4, 2, len(times)) and group["h22"].chunks == (1, 2, len(times))
    np.testing.assert_array_equal(group["params"][:], params)
    np.testing.assert_array_equal(group["time"][:], times)
    k = 17
    expected = IMRPhenomTHMBackend().h22(*params[k], times)
    np.testing.assert_array_equal(group["h22"][k, 0], expected.real.astype(np.float32))
    np.testing.assert_array_equal(group["h22"][k, 1], expected.imag.astype(np.float32))
    attrs = dict(group.attrs)
    assert attrs["backend"] == "imrphenomthm" and attrs["backend_version"].startswith("lalsimulation ")
    assert attrs["profile"] == "tiny" and attrs["split"] == "train" and attrs["parameters"] == ["q", "s1z", "s2z"]
    assert not (result.path / PROGRESS_DIR).exists()
    assert result.stats.chunks_total == 7 and result.stats.items_generated == 27


def test_fingerprint_change_regenerates_and_same_config_is_identical(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = tree(generate_split(parse_config(tiny_profile()), "test").path)
    again = tree(generate_split(parse_config(tiny_profile()), "test").path)
    assert first == again
    changed = generate_split(parse_config(tiny_profile(time={"t_start": -300.0})), "test")
    assert zarr.open_group(str(changed.path), mode="r")["h22"].shape[-1] == 431


@pytest.mark.slow
def test_killed_run_resumes_to_a_byte_identical_store(tmp_path):
    # 200 waveforms at dt = 0.1 M, one per chunk, on a one-process Dask LocalCluster: a few seconds of work.
    profile = tiny_profile(
        grid={"dq": 1.0, "ds": 0.4},
        time={"t_start": -3000.0, "t_end": 130.0, "dt": 0.1},
        store={"chunk_size": 1},
        compute={"workers": 1},
    )
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    for folder in (reference_dir, killed_dir):
        folder.mkdir()
        write_profile(folder / "params.yaml", profile)

    store = killed_dir / "data" / "h22" / "train.zarr"
    done = store / PROGRESS_DIR / "done"
    process = subprocess.Popen(
        [str(GWPE), "generate", "h22", "--split", "train"],
        cwd=killed_dir,
        env=gwpe_env(killed_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if done.is_dir() and len(os.listdir(done)) >= 20:
            break
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len([n for n in os.listdir(done) if n.isdigit()])
    assert 20 <= finished < 200, f"kill landed at {finished} of 200 chunks"

    resumed = run_gwpe(["generate", "h22", "--split", "train"], killed_dir, env=gwpe_env(killed_dir), check=True)
    assert f"{finished} of 200 chunks already finished" in resumed.stdout
    run_gwpe(["generate", "h22", "--split", "train"], reference_dir, env=gwpe_env(reference_dir), check=True)

    reference = reference_dir / "data" / "h22" / "train.zarr"
    assert tree(store) == tree(reference)
    assert dvc_md5(store) == dvc_md5(reference)


def _write_or_fail(store: str, chunk: int) -> int:
    from gwpe.errors import WaveformError

    if chunk == 2:
        raise WaveformError(f"imrphenomthm produced 3 NaN/inf samples for (q=7, s1z=0.8, s2z=-0.8) in chunk {chunk}")
    (Path(store) / f"chunk-{chunk}").write_text("ok")
    return 1


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failing_chunk_raises_its_own_error_and_keeps_finished_chunks(tmp_path, workers):
    from gwpe.config import ComputeConfig
    from gwpe.data.engine import finished_chunks, prepare_store, run_chunks
    from gwpe.errors import WaveformError

    store = tmp_path / "store"
    prepare_store(store, {"v": 1}, lambda p: p.mkdir())
    (store / PROGRESS_DIR / "done" / "0").touch()  # finished by an earlier run: must be skipped
    tasks = [(k, _write_or_fail, (str(store), k)) for k in range(4)]
    with pytest.raises(WaveformError, match=r"\(q=7, s1z=0.8, s2z=-0.8\)"):
        run_chunks(store, tasks, ComputeConfig(workers=workers), skip=finished_chunks(store))
    assert not (store / "chunk-0").exists()
    assert 0 in finished_chunks(store) and 2 not in finished_chunks(store)
    assert prepare_store(store, {"v": 1}, lambda p: p.mkdir()) == finished_chunks(store)  # resumable


def test_resume_requires_the_same_waveform_code(tmp_path, monkeypatch):
    import json

    import gwpe.data.h22 as h22_module
    from gwpe.data.engine import mark_done, progress_dir
    from gwpe.waveforms import build_backend

    monkeypatch.chdir(tmp_path)
    config = parse_config(tiny_profile())
    store = generate_split(config, "train").path

    def leave_progress_behind():  # the state a run killed after its last chunk leaves
        progress_dir(store).joinpath("done").mkdir(parents=True, exist_ok=True)
        attrs = h22_module.store_attributes(config, "train", build_backend(config.h22))
        (progress_dir(store) / "fingerprint.json").write_text(
            json.dumps(h22_module.resume_fingerprint(config, attrs), sort_keys=True, indent=1)
        )
        for chunk in range(7):
            mark_done(store, chunk)

    leave_progress_behind()
    assert generate_split(config, "train").stats.chunks_skipped == 7
    leave_progress_behind()
    monkeypatch.setattr(h22_module, "code_digest", lambda: "waveform code edited since the kill")
    assert generate_split(config, "train").stats.chunks_skipped == 0
