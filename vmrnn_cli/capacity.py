"""What a command may take of the machine: memory and disk left, checked before any compute."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vmrnn_cli.errors import OptionError


def available_memory() -> int:
    """Bytes of memory this process can still take: the system's available memory, within any cgroup limit."""
    try:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        used = int((cgroup / "memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def free_disk(path: Path) -> int:
    """Bytes free on the file system `path` (or its nearest existing folder) is on."""
    folder = Path(path).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def human(nbytes: float) -> str:
    """A byte count as text with a binary unit, e.g. 1.5 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"


def check_batch_fits(batch_size: int, item_bytes: int, what: str) -> None:
    """Refuse, before any compute, a `batch_size` whose inputs alone (`item_bytes` each) exceed the memory left."""
    memory = available_memory()
    if batch_size * item_bytes > memory:
        raise OptionError(
            "batch_size",
            f"{batch_size} {what} of {human(item_bytes)} each take more than the "
            f"{human(memory)} of memory available; give a smaller one",
        )
