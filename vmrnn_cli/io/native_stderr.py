"""What C libraries (libtiff, HDF5) print straight to file descriptor 2 while vmrnn writes a file: held back, and
shown only when the write succeeds, so that a failed write ends in vmrnn's one error line."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()


@contextmanager
def held_native_stderr() -> Iterator[None]:
    """Send descriptor 2 to a temporary file meanwhile; replay it after success, drop it after a failure (the
    error line says what failed). Python's own stderr output meanwhile is held back the same way."""
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            failed = True
            try:
                yield
                failed = False
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                if not failed:
                    held.seek(0)
                    text = held.read()
                    if text:
                        os.write(2, text)
