"""One writer per output: an OS lock (fcntl) on a file beside the output, held while a command writes it.

The lock goes with its process, so a crashed or killed writer never blocks the next run; that run also removes
what a killed writer left beside the output (its lock file and temporary files).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmrnn_cli.errors import VmrnnError


def lock_path(target: Path) -> Path:
    """The lock file of an output: `.NAME.lock` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def leftovers(target: Path) -> list[Path]:
    """Temporary files or stores a killed writer of `target` left beside it."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(p for pattern in ("tmp", "old") for p in target.parent.glob(f".{target.name}.{pattern}-*"))


@contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold the output's lock (a second writer fails at once, naming the output); clear a killed writer's leftovers.

    Folders made for the lock file are removed again when the output was not written. Check the output first
    (`check_output`): the lock file goes into its folder.

    The lock file is removed while still held; a process that opened it before must then find a different file
    at the path and gives up too, so two writers never both hold the lock of one output.
    """
    path = lock_path(target)
    created = [p for p in reversed(path.absolute().parents) if not p.exists()]
    masked = _hold_signals()  # a Ctrl-C between creating the lock file and holding it would leave the file behind
    fd, held = -1, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = path.exists() and os.stat(path).st_ino == os.fstat(fd).st_ino
        except BlockingIOError:
            pass
        if not held:
            raise VmrnnError(f"{target}: another vmrnn process is writing it (lock {path}); wait for it to end")
        _release_signals(masked)  # a signal held back arrives here, inside the try
        for stale in leftovers(target):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        yield
    finally:
        if held:
            path.unlink(missing_ok=True)
        if fd >= 0:
            os.close(fd)
        if not Path(target).exists():
            _remove_empty(created)
        _release_signals(masked)  # last: a signal held back until now must not cut this clean-up short


def _hold_signals() -> set | None:
    """Hold SIGINT and SIGTERM back (where the OS allows it, in the main thread); the mask to restore."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _release_signals(masked: set | None) -> None:
    """Let held signals through again (the first call does it; later ones change nothing)."""
    if masked is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)


def _remove_empty(directories: list[Path]) -> None:
    """Remove the folders made for an output that was not written, deepest first, where they are empty."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return
