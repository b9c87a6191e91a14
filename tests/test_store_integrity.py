"""Store integrity (issue 25): a flipped byte inside a chunk or a deleted chunk is found by ``gwpe verify``, by the
readers and by training, each as one ``gwpe: error:`` line naming the array and chunk key; clean stores verify."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_gwpe, run_in_process, tiny_profile, write_profile

from gwpe.config import parse_config

SHARD = Path("strain", "c", "1", "0", "0")  # signals 4-7 of the tiny set (chunk_size 4): training rows


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    """The tiny 12-signal strain-5d store, written once by the project's own generator."""
    from gwpe.data.strain import generate_dataset

    root = tmp_path_factory.mktemp("integrity")
    profile = tiny_profile()
    profile["strain"]["store"]["root"] = str(root / "data" / "strain")
    return generate_dataset(parse_config(profile), "strain-5d").path


def copy_store(clean_store: Path, project: Path) -> Path:
    """A project folder (params.yaml, data/strain/strain-5d.zarr) holding a copy of the clean store."""
    write_profile(project / "params.yaml", tiny_profile())
    store = project / "data" / "strain" / "strain-5d.zarr"
    shutil.copytree(clean_store, store)
    return store


def flip_byte(path: Path, offset: int = 100) -> None:
    """Flip one bit of byte ``offset`` (inside the shard's first compressed inner chunk)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def one_line_naming(err: str, *names: str) -> str:
    """The single stderr line, checked to be a ``gwpe: error:`` naming every one of ``names``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gwpe: error: "), err
    for name in names:
        assert name in lines[0], err
    return lines[0]


def test_clean_store_verifies_with_exit_0_and_reports_speed(clean_store, capsys):
    code, out, err = run_in_process(["verify", str(clean_store)], capsys)
    assert code == 0, err
    assert "ok, 3 arrays, 7 chunk files" in out and "GB/s" in out
    assert err == ""


def test_one_flipped_byte_is_found_by_verify_and_the_reader(clean_store, tmp_path, capsys):
    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.errors import CorruptStoreError

    store = copy_store(clean_store, tmp_path)
    flip_byte(store / SHARD)
    code, _, err = run_in_process(["verify", str(store)], capsys)
    assert code == CorruptStoreError.exit_code
    one_line_naming(err, "array 'strain'", "chunk c/1/0/0", "inner chunk (0, 0, 0)", "checksum mismatch")
    with pytest.raises(CorruptStoreError, match=r"array 'strain' chunk c/1/0/0: .*checksum mismatch"):
        StrainDataset(store, "train")  # the in-memory read
    with pytest.raises(CorruptStoreError, match=r"chunk c/1/0/0: inner chunk \(0, 0, 0\)"):
        StrainDataset(store, "train", in_memory=False).__getitems__([4, 5])  # the per-batch read


def test_training_on_a_flipped_byte_stops_with_one_line(clean_store, tmp_path):
    store = copy_store(clean_store, tmp_path)
    flip_byte(store / SHARD)
    result = run_gwpe(["train", "flow", "--model", "maf", "--no-progress"], tmp_path)
    assert result.returncode == 5, result.stderr
    one_line_naming(result.stderr, "strain-5d.zarr", "array 'strain'", "chunk c/1/0/0", "checksum mismatch")
    assert not (tmp_path / "models" / "flows" / "maf" / "weights.pt").exists()


def test_deleted_chunk_is_found_by_verify_reader_and_training(clean_store, tmp_path, capsys, monkeypatch):
    from gwpe.data.integrity import open_store
    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.errors import CorruptStoreError

    store = copy_store(clean_store, tmp_path)
    (store / SHARD).unlink()  # before: read back as 4 all-zero signals
    code, _, err = run_in_process(["verify", str(store)], capsys)
    assert code == CorruptStoreError.exit_code
    one_line_naming(err, "array 'strain'", "chunk c/1/0/0", "missing")
    with pytest.raises(CorruptStoreError, match=r"array 'strain' chunk c/1/0/0: missing"):
        StrainDataset(store, "train")
    with pytest.raises(CorruptStoreError, match=r"chunk c/1/0/0: missing"):
        open_store(store)["strain"][4]  # a plain read through the checked store: not zeros

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, _, err = run_in_process(["train", "flow", "--model", "maf", "--no-progress"], capsys)
    assert code == CorruptStoreError.exit_code
    one_line_naming(err, "array 'strain'", "chunk c/1/0/0", "missing")


@pytest.mark.parametrize(
    ("array", "damage", "expected"),
    [
        ("params/c/0/0", "flip", "array 'params' chunk c/0/0: checksum mismatch"),
        ("snr/c/2", "delete", "array 'snr' chunk c/2: missing"),
        ("strain/c/2/0/0", "index", "array 'strain' chunk c/2/0/0: shard index checksum mismatch"),
    ],
)
def test_every_array_and_the_shard_index_are_checked(clean_store, tmp_path, capsys, array, damage, expected):
    from gwpe.data.strain_datamodule import StrainDataset
    from gwpe.errors import CorruptStoreError

    store = copy_store(clean_store, tmp_path)
    target = store / array
    if damage == "delete":
        target.unlink()
    else:
        flip_byte(target, target.stat().st_size - 8 if damage == "index" else 20)
    code, _, err = run_in_process(["verify", str(store)], capsys)
    assert code == CorruptStoreError.exit_code
    one_line_naming(err, expected)
    with pytest.raises(CorruptStoreError, match=expected):
        StrainDataset(store, "validation")


def test_h22_store_checked_by_verify_and_dataset(tmp_path, capsys):
    from gwpe.data.datamodule import H22Dataset
    from gwpe.data.h22 import generate_split
    from gwpe.errors import CorruptStoreError

    profile = tiny_profile()
    profile["h22"]["store"]["root"] = str(tmp_path / "h22")
    path = generate_split(parse_config(profile), "validation").path
    code, out, _ = run_in_process(["verify", str(path)], capsys)
    assert code == 0 and "ok, 3 arrays" in out
    flip_byte(path / "h22" / "c" / "0" / "0" / "0")
    code, _, err = run_in_process(["verify", str(path)], capsys)
    assert code == CorruptStoreError.exit_code
    one_line_naming(err, "array 'h22' chunk c/0/0/0: inner chunk (0, 0, 0)", "checksum mismatch")
    with pytest.raises(CorruptStoreError, match="array 'h22' chunk c/0/0/0"):
        H22Dataset(path)[0]


def test_store_without_checksums_still_reads_and_verify_says_so(clean_store, tmp_path, capsys):
    """A store written before checksums (no crc32c codec): readable; verify checks what it can and says so."""
    import zarr
    from zarr.codecs import BloscCodec

    from gwpe.data.strain_datamodule import StrainDataset

    clean = zarr.open_group(str(clean_store), mode="r")
    store = tmp_path / "old.zarr"
    old = zarr.open_group(str(store), mode="w", zarr_format=3)
    strain = clean["strain"][:]
    old.create_array(
        "strain",
        data=strain,
        chunks=(1, *strain.shape[1:]),
        shards=(4, *strain.shape[1:]),
        compressors=BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"),
    )
    old.create_array("params", data=clean["params"][:])
    old.create_array("snr", data=clean["snr"][:], chunks=(4,))
    old.attrs.update(dict(clean.attrs))
    dataset = StrainDataset(store, "train", noise="none")
    np.testing.assert_array_equal(dataset[5][0].numpy(), strain[5])
    code, out, err = run_in_process(["verify", str(store)], capsys)
    assert code == 0
    assert "ok, 3 arrays" in out
    assert "no checksums in array(s)" in err and "strain" in err and "regenerate" in err


def test_shard_reader_equals_zarr_on_any_row_range_and_declines_other_layouts(clean_store, tmp_path):
    import zarr

    from gwpe.data.integrity import open_store
    from gwpe.data.shard_reader import read_contiguous

    whole = open_store(clean_store)["strain"][:]
    n = len(whole)
    for start, stop in [(0, n), (1, 7), (4, 8), (5, 5), (n - 1, n)]:  # inside, across and at shard edges
        rows = read_contiguous(clean_store, "strain", start, stop)
        assert rows.dtype == whole.dtype and np.array_equal(rows, whole[start:stop])
    with pytest.raises(ValueError, match=r"rows 3:2 .* allowed: 0 <= start <= stop <= 12"):
        read_contiguous(clean_store, "strain", 3, 2)
    plain = tmp_path / "plain.zarr"  # zarr's defaults: no shards, no checksums
    zarr.create_array(str(plain), name="strain", data=whole, chunks=(4, *whole.shape[1:]))
    assert read_contiguous(plain, "strain", 0, n) is None  # the caller reads it through zarr
