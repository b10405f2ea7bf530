"""Progress of long steps on stderr: a rich bar with ETA on a terminal, else a plain line at most every 30 s;
nothing with `quiet`. Stdout never carries any of it."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PLAIN_EVERY_S = 30.0
_quiet: list[bool] = [False]


def set_quiet(quiet: bool) -> None:
    """Silence (or not) every progress report of this process."""
    _quiet[0] = quiet


def quiet() -> bool:
    return _quiet[0]


class Steps:
    """A counted step (`with Steps("tiles forecast", total) as steps: ... steps.advance(n)`)."""

    def __init__(self, description: str, total: int, done: int = 0, show: bool = True) -> None:
        self.description, self.total, self.done, self.first = description, total, done, done
        self.started = self.reported = time.monotonic()
        self.show = show and not quiet()
        self.bar: Progress | None = None

    def __enter__(self) -> Steps:
        if self.show and sys.stderr.isatty():
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total, completed=self.done)
        return self

    def advance(self, count: int = 1) -> None:
        """Count `count` more done; report if due."""
        self.done += count
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            return
        now = time.monotonic()
        if self.show and now - self.reported >= PLAIN_EVERY_S and self.done < self.total:
            self.reported = now
            rate = (self.done - self.first) / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(
                f"vmrnn: {self.description}: {self.done}/{self.total} ({self.done / self.total:.0%}), "
                f"about {_duration(left)} left",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.stop()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
