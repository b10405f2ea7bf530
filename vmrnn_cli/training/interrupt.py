"""Ctrl-C and SIGTERM during training: recorded, so that the loop checkpoints and stops at a step's end."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing `checkpoint`; exit with 128 + signum."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint written to {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


@contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """While active, SIGINT/SIGTERM only record their number (list[0]) so training can checkpoint and stop."""
    received = [0]

    def record(signum: int, _frame: object) -> None:
        received[0] = signum

    previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
