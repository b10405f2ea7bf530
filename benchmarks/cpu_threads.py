"""CPU threads: `vmrnn`'s default thread budget against the best manual `--threads`, idle and under load.

Figure: "CPU: the default thread budget" in benchmarks/RESULTS.md. Two workloads run as users run them, each
command in its own process: a demo-sized `vmrnn train` (the demo's series, 96 frames of 48 x 64 px, its VMRNN-B of
embed 32 and depth 1, one epoch) and `vmrnn predict` of an 800 x 800 scene (4 frames in, 2 out) with that model.
Each runs with the default (no --threads; VMRNN_THREADS, OMP_NUM_THREADS and OMP_WAIT_POLICY removed from the
environment) and with every --threads from 1 to the CPUs, alternated (each round starting one setting later), best
of `--repeats`, first on an idle machine and then beside `--busy` processes that spin on the CPU. Every run's time
goes to stderr as it ends; the table on stdout gives the best wall times and default / best manual.

    python benchmarks/cpu_threads.py [--repeats 2] [--busy 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmrnn_cli import synthetic
from vmrnn_cli.runtime import cpus_available

VMRNN = [sys.executable, "-m", "vmrnn_cli"]
MODEL = ["--arch", "vmrnn-b", "--patch-size", "4", "--embed-dim", "32", "--depths", "1"]  # the demo's VMRNN-B
MODEL += ["--batch-size", "8", "--epochs", "1", "--device", "cpu"]
SERIES = {"step_days": 0.125, "period": 8.0, "name_format": "lst_%Y%m%dT%H%M.tif"}  # the demo's 3-hourly frames


def spin() -> None:
    while True:
        pass


def run(args: list[str]) -> float:
    """Wall seconds of one `vmrnn --quiet` command (which must succeed), with vmrnn's own thread defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ("VMRNN_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    started = time.perf_counter()
    result = subprocess.run([*VMRNN, *args, "--quiet"], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr[-2000:]}")
    return time.perf_counter() - started


def setup(work: Path) -> dict[str, list[str]]:
    """The demo's series and cube, a model trained on it, an 800 x 800 scene; the two commands to time."""
    tifs = synthetic.make_geotiff_series(work / "demo", n_frames=96, height=48, width=64, **SERIES)
    scene = synthetic.make_geotiff_series(work / "scene", n_frames=4, height=800, width=800, **SERIES)
    cube, model = str(work / "cube.zarr"), str(work / "model")
    frames = ["--input-frames", "4", "--output-frames", "3", "--window", "16", "--stride", "16"]
    run(["prepare", *map(str, tifs), "-o", cube, *frames, "--split", "0.7,0.15,0.15"])
    run(["train", cube, "-o", model, *MODEL])
    forecast = str(work / "forecast.nc")
    return {
        "train (demo-sized, 1 epoch)": ["train", cube, "-o", str(work / "run"), *MODEL, "--overwrite"],
        "predict 800 x 800 (4 -> 2)": ["predict", "-m", model, "--horizon", "2", *map(str, scene), "-o", forecast]
        + ["--device", "cpu", "--overwrite"],
    }


def measure(commands: dict[str, list[str]], settings: list[int | None], repeats: int) -> dict[tuple, float]:
    """Best wall time per (workload, threads), the settings alternated run by run, each round starting one
    setting later (none always first)."""
    best: dict[tuple, float] = {}
    for round_ in range(repeats):
        for name, args in commands.items():
            for threads in settings[round_ % len(settings) :] + settings[: round_ % len(settings)]:
                extra = [] if threads is None else ["--threads", str(threads)]
                seconds = run([*args, *extra])
                load = os.getloadavg()[0]
                print(f"{name}, --threads {threads}: {seconds:.1f} s (load {load:.2f})", file=sys.stderr, flush=True)
                best[name, threads] = min(best.get((name, threads), float("inf")), seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside the loaded runs")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vmrnn-threads-"))
    cpus = cpus_available()
    load_before = os.getloadavg()[0]
    settings: list[int | None] = [None, *range(1, cpus + 1)]
    commands = setup(work)
    rows = []
    for condition in ("idle", f"{args.busy} busy processes"):
        spinners = []
        if condition != "idle":
            spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
            for process in spinners:
                process.start()
        try:
            best = measure(commands, settings, args.repeats)
        finally:
            for process in spinners:
                process.terminate()
        for name in commands:
            manual = {t: best[name, t] for t in settings if t is not None}
            top = min(manual, key=manual.get)
            rows.append((name, condition, best[name, None], manual, top))
    print(f"CPUs available: {cpus}; load average before: {load_before:.2f}; best of {args.repeats}")
    header = " | ".join(f"--threads {t} s" for t in settings if t is not None)
    print(f"| workload | condition | default s | {header} | default / best manual |")
    print("|---|---|---|" + "---|" * (len(settings) - 1) + "---|")
    for name, condition, default, manual, top in rows:
        cells = " | ".join(f"{manual[t]:.1f}" for t in manual)
        print(f"| {name} | {condition} | {default:.1f} | {cells} | {default / manual[top]:.2f} |")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
