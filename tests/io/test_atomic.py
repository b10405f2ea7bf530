"""Atomic writes: a failure leaves the old output untouched and no temporary file behind."""

from pathlib import Path

import pytest

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.atomic import atomic_path


def test_file_is_renamed_into_place(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target, overwrite=False) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(VmrnnError, match="out.txt: already exists; pass `overwrite`"), atomic_path(target, False):
        pass
    assert target.read_text() == "old"


def test_failure_keeps_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "cube.zarr"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "half").write_text("partial")
        raise RuntimeError("killed")
    assert (target / "keep").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr"]


def test_overwrite_replaces_directory(tmp_path: Path) -> None:
    target = tmp_path / "cube.zarr"
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_path(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zarr"]
