"""`vmrnn train` with DataLoader workers: the forked workers never free the parent's garbage.

GPU sibling: tests/test_gpu.py::test_workers_survive_the_parents_cuda_garbage, where that garbage holds a CUDA
tensor and a worker freeing it would die with a CUDA initialization error.
"""

import os
from pathlib import Path

TINY = ["--embed-dim", "8", "--depths", "1", "--batch-size", "8", "--device", "cpu", "--seed", "0", "--epochs", "1"]


class Canary:
    """Marks, by a file in `folder`, which process freed it: the one that made it, or another."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.maker, self.cycle = folder, os.getpid(), self

    def __del__(self) -> None:
        (self.folder / ("freed_by_maker" if os.getpid() == self.maker else "freed_in_worker")).touch()


def test_workers_do_not_free_the_parents_garbage(cli, tiny_run, tmp_path, workers_collect_first) -> None:
    Canary(tmp_path)  # a cycle: only a garbage collection frees it
    code, _, err = cli(["train", tiny_run.cube, "-o", tmp_path / "run", *TINY, "--workers", "1"])
    assert code == 0, err
    assert (tmp_path / "freed_by_maker").exists()
    assert not (tmp_path / "freed_in_worker").exists()
