"""Atomic writes: build an output beside its final path, then rename it into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmrnn_cli.errors import VmrnnError


def check_writable(target: Path, overwrite: bool) -> None:
    """Refuse an existing output unless overwrite is set, before any work is done."""
    if target.exists() and not overwrite:
        raise VmrnnError(f"{target}: already exists; pass `overwrite` to replace it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside target (file or directory); rename it onto target on success.

    On any exception the temporary path is removed and target is left exactly as it was.
    """
    target = Path(target)
    check_writable(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if target.exists() and tmp.is_dir():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        _remove(tmp)
