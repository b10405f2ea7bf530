"""Atomic writes: build an output beside its final path, then rename it into place; a failure leaves nothing.

Running out of space (a full disk, a quota, a file size limit) becomes one line naming the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.outputs import write_manifest

_NO_SPACE = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file size limit exceeded",
}
_NO_SPACE_TEXT = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def out_of_space(err: BaseException, written: Path) -> str | None:
    """What ran out when writing `written` failed for lack of space ("no space left on device", ...), else None.

    GDAL and HDF5 often say it only in their message, or not at all ("HDF error", a file that cannot be read
    back); then the disk's free space and the process's file size limit tell."""
    code = getattr(err, "errno", None)
    if code in _NO_SPACE:
        return _NO_SPACE[code]
    text = str(err)
    for phrase, phrase_code in _NO_SPACE_TEXT.items():
        if phrase in text:
            return _NO_SPACE[phrase_code]
    if code == errno.EIO or "HDF error" in text:
        if shutil.disk_usage(written.parent).free < 2**20:
            return _NO_SPACE[errno.ENOSPC]
        if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
            return _NO_SPACE[errno.EFBIG]
    return None


@contextmanager
def atomic_path(target: Path, overwrite: bool, manifest: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside target (file or directory); rename it onto target on success.

    Callers check the output first (`check_output`, before any compute); here an existing target is refused
    once more unless `overwrite`, in case one appeared meanwhile. With `manifest`, the directory built there
    records the files in it (so a later `overwrite` may replace it). On any exception, Ctrl-C and SIGTERM
    included, the temporary path is removed and target is left exactly as it was; a failure for lack of space
    is a VmrnnError naming target.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise VmrnnError(f"{target}: already exists; pass `overwrite` to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        if manifest:
            write_manifest(tmp)
        if target.exists() and tmp.is_dir():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except Exception as err:
        reason = out_of_space(err, tmp)
        if reason is not None:
            raise VmrnnError(f"{reason} writing {target}") from None
        raise
    finally:
        if tmp.exists():
            _wait_for_zarr()
        _remove(tmp)


def _wait_for_zarr(timeout: float = 30.0) -> None:
    """Let zarr finish what it still writes on its own event loop thread: a zarr call cut short by Ctrl-C returns
    at once while its write goes on there, and would recreate a store as it is being removed."""
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or not loop.is_running():
        return

    async def the_others() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=timeout)

    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(the_others(), loop).result(timeout + 1)
