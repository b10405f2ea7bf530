"""How the commands use the machine: which device computes, and one thread budget for torch, dask, GDAL and the
DataLoader workers (so that a busy shared machine does not collapse the speed)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dask
import torch

from vmrnn_cli.errors import OptionError, VmrnnError


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    """auto -> CUDA when there is one; under torchrun each process takes GPU LOCAL_RANK."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise VmrnnError("`device` cuda: no CUDA GPU is available here (use cpu or auto)")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


_budget: list[int] = []  # set once per process by set_threads; empty: not set yet


def cpus_available() -> int:
    """The CPUs this process may use: its affinity mask, within the cgroup's CPU quota (at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def set_threads(threads: int | None = None) -> int:
    """Set this process's thread budget: `threads`, else $VMRNN_THREADS, else `cpus_available()`. Torch's
    intra-op pool gets it, its inter-op pool 1 thread, GDAL's own threads it (GDAL_NUM_THREADS); dask and the COG
    writers take it from `threads()`. Returns the budget."""
    if threads is None:
        threads = int(os.environ["VMRNN_THREADS"]) if os.environ.get("VMRNN_THREADS") else cpus_available()
    if threads < 1:
        raise OptionError("threads", f"must be a positive integer, got {threads}")
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only possible before any inter-op work; then it was set already
        torch.set_num_interop_threads(1)
    os.environ["GDAL_NUM_THREADS"] = str(threads)
    _budget[:] = [threads]
    if os.environ.get("VMRNN_DEBUG"):
        print(
            f"vmrnn: threads: {threads} (torch intra-op {torch.get_num_threads()}, inter-op "
            f"{torch.get_num_interop_threads()}, GDAL {os.environ['GDAL_NUM_THREADS']})",
            file=sys.stderr,
        )
    return threads


def threads() -> int:
    """The thread budget (set_threads' default when it was not called)."""
    return _budget[0] if _budget else set_threads()


def worker_threads(_worker_id: int) -> None:
    """DataLoader worker_init_fn: one torch thread per worker process."""
    torch.set_num_threads(1)


@contextmanager
def dask_threads() -> Iterator[None]:
    """Run dask's threaded work in a pool of `threads()` that, on leaving, cancels what has not started and waits
    for what has: after Ctrl-C or an error no task still writes into a store being removed."""
    pool = ThreadPoolExecutor(max_workers=threads())
    try:
        with dask.config.set(pool=pool, scheduler="threads"):
            yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
