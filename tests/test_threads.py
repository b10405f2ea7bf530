"""One thread budget (issue 17): --threads and $VMRNN_THREADS reach torch's intra-op and inter-op pools, the
DataLoader workers and GDAL, read back in a subprocess of the real CLI; the default honours the affinity mask;
OpenMP's waiting threads sleep unless the user set OMP_WAIT_POLICY; progress goes to stderr only (a plain line off
a terminal, a rich bar on one), stdout carries the paths only, and --quiet silences the progress."""

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import vmrnn_cli.progress
from vmrnn_cli.runtime import cpus_available

VMRNN = [sys.executable, "-m", "vmrnn_cli"]
DEBUG_LINE = re.compile(r"^vmrnn: threads: (\d+) \(torch intra-op (\d+), inter-op (\d+), GDAL (\d+)\)$", re.MULTILINE)

# Runs `vmrnn ARGS` through the CLI's main() after hooking the trainer: what torch's pools and GDAL are set to once
# the training is set up, and each DataLoader worker's torch threads after its worker_init_fn (the workers are forked,
# so they run the hook).
TRAIN_PROBE = """
import json, os, sys
import torch
import vmrnn_cli.training.trainer as trainer
from vmrnn_cli.cli import main

report = sys.argv.pop(1)
real_init, real_worker = trainer.Trainer.__init__, trainer.worker_threads
seen = {}

def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    seen.update(intra=torch.get_num_threads(), interop=torch.get_num_interop_threads(),
                gdal=os.environ.get("GDAL_NUM_THREADS"))

def worker(worker_id):
    real_worker(worker_id)
    with open(f"{report}.worker{worker_id}", "w") as f:
        f.write(str(torch.get_num_threads()))

trainer.Trainer.__init__, trainer.worker_threads = init, worker
try:
    main()
finally:
    with open(report, "w") as f:
        json.dump(seen, f)
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VMRNN_THREADS", "VMRNN_DEBUG", "OMP_NUM_THREADS")}
    return {**env, **extra}


def debug_threads(args: list, env: dict[str, str], **kwargs) -> tuple[int, int, int, int]:
    """The budget, torch intra-op, inter-op and GDAL threads that `vmrnn ARGS` reports with VMRNN_DEBUG."""
    result = subprocess.run(
        [*VMRNN, *map(str, args)], capture_output=True, text=True, env={**env, "VMRNN_DEBUG": "1"}, **kwargs
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = DEBUG_LINE.findall(result.stderr)
    assert len(found) == 1, result.stderr[-3000:]
    return tuple(int(n) for n in found[0])


def evaluate(tiny_run) -> list:
    return ["evaluate", tiny_run.cube, "-m", tiny_run.run, "--part", "val", "--device", "cpu", "--json"]


def test_threads_reach_torch_workers_and_gdal(tiny_run, tmp_path: Path) -> None:
    """--threads 3 with one DataLoader worker: the worker takes 1 torch thread (torch's worker loop sets it too),
    the training the other 2, torch's inter-op pool 1, GDAL 3."""
    report = tmp_path / "seen.json"
    args = ["train", tiny_run.cube, "-o", tmp_path / "run", "--embed-dim", "8", "--depths", "1", "--epochs", "1"]
    args += ["--batch-size", "8", "--device", "cpu", "--workers", "1", "--threads", "3", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_PROBE, report, *map(str, args)], capture_output=True, text=True, env=clean_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(report.read_text()) == {"intra": 2, "interop": 1, "gdal": "3"}
    workers = sorted(tmp_path.glob("seen.json.worker*"))
    assert workers and all(path.read_text() == "1" for path in workers)


@pytest.mark.parametrize(("variable", "flag", "expected"), [("3", None, 3), ("3", "2", 2)])
def test_vmrnn_threads_and_flag(tiny_run, variable: str, flag: str | None, expected: int) -> None:
    """$VMRNN_THREADS sets the budget; --threads wins over it."""
    args = evaluate(tiny_run) + ([] if flag is None else ["--threads", flag])
    assert debug_threads(args, clean_env(VMRNN_THREADS=variable)) == (expected, expected, 1, expected)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to restrict the mask to fewer")
@pytest.mark.parametrize("mask", ["one CPU", "all"])
def test_default_honours_the_affinity_mask(tiny_run, mask: str) -> None:
    """No --threads, no $VMRNN_THREADS: one CPU under a one-CPU mask, all of them (within the cgroup quota) under
    the full mask."""
    cpus = sorted(os.sched_getaffinity(0))
    chosen = {cpus[0]} if mask == "one CPU" else set(cpus)
    expected = 1 if mask == "one CPU" else cpus_available()
    budget, intra, interop, gdal = debug_threads(
        evaluate(tiny_run), clean_env(), preexec_fn=lambda: os.sched_setaffinity(0, chosen)
    )
    assert (budget, intra, interop, gdal) == (expected, expected, 1, expected)


@pytest.mark.parametrize(("policy", "passive"), [(None, True), ("ACTIVE", False)])
def test_openmp_threads_sleep_unless_the_user_chose(tiny_run, policy: str | None, passive: bool) -> None:
    """OpenMP as torch loaded it (libgomp's own report): waiting threads do not spin (OMP_WAIT_POLICY=PASSIVE,
    a spin count of 0), unless the user set OMP_WAIT_POLICY."""
    env = clean_env(OMP_DISPLAY_ENV="VERBOSE")
    env.pop("OMP_WAIT_POLICY", None)
    result = subprocess.run(
        [*VMRNN, *map(str, evaluate(tiny_run))],
        capture_output=True,
        text=True,
        env=env if policy is None else {**env, "OMP_WAIT_POLICY": policy},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spins = re.findall(r"^\s*GOMP_SPINCOUNT = '(\d+)'$", result.stderr, re.MULTILINE)
    if not spins:
        pytest.skip("torch's OpenMP is not libgomp (no GOMP_SPINCOUNT in its report)")
    assert (spins[0] == "0") == passive, result.stderr[-3000:]


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_on_stderr_only_and_quiet(cli, tiny_run, tmp_path: Path, monkeypatch, quiet: bool) -> None:
    """Off a terminal, a plain progress line on stderr (due at every step here); stdout the paths only; --quiet:
    no progress line."""
    monkeypatch.setattr(vmrnn_cli.progress, "PLAIN_EVERY_S", 0.0)
    out = tmp_path / "cogs"
    args = ["predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out, "--device", "cpu"]
    code, stdout, stderr = cli(args + (["--quiet"] if quiet else []))
    assert code == 0, stderr
    assert stdout.splitlines() == [str(path) for path in sorted(out.glob("*.tif"))] and len(stdout.split()) == 3
    progress = [line for line in stderr.splitlines() if re.match(r"vmrnn: [a-z ]+: \d+/\d+ \(", line)]
    if quiet:
        assert progress == [], stderr
    else:
        assert "vmrnn: context frames read: 1/3 (33%)" in stderr, stderr
        assert any(line.startswith("vmrnn: forecast files written: ") for line in progress), stderr


def test_progress_bar_on_a_terminal_goes_to_stderr(tiny_run, tmp_path: Path) -> None:
    """stderr on a terminal: rich's bar is drawn there; stdout, a pipe, still carries the paths only."""
    out = tmp_path / "cogs"
    args = ["predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out, "--device", "cpu"]
    primary, secondary = pty.openpty()
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [*VMRNN, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            env=clean_env(TERM="xterm", COLUMNS="120"),
            timeout=300,
        )
    finally:
        os.close(secondary)
        reader.join(timeout=10)
        os.close(primary)
    assert proc.returncode == 0, drawn.decode(errors="replace")[-3000:]
    assert proc.stdout.splitlines() == [str(path) for path in sorted(out.glob("*.tif"))]
    assert len(proc.stdout.split()) == 3 and "\x1b" not in proc.stdout
    assert b"context frames read" in drawn or b"forecast files written" in drawn, drawn[-3000:]
