"""`vmrnn prepare` out of core against a plain rioxarray -> `to_zarr` copy: wall time and peak RSS.

Makes the "`prepare` out of core" figure of benchmarks/RESULTS.md.
Makes a float32 GeoTIFF series on the fly (default 200 frames of 2000 x 2000 = 3.2 GB), then runs,
each in its own process and alternating --repeats times, a plain rioxarray read -> `to_zarr` copy of the
same files and `vmrnn prepare` with its defaults. Prints a table of each one's wall times, best time and
peak resident memory (ru_maxrss), and the ratio of the best times; --json writes every number.

    .venv/bin/python benchmarks/prepare_scale.py --repeats 2      # series in /work/tmp/prepare_scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vmrnn_cli.synthetic import make_geotiff_series

BASELINE = """
import sys, glob, rioxarray, xarray as xr
files = sorted(glob.glob(sys.argv[1]))
frames = [rioxarray.open_rasterio(f, chunks=True, mask_and_scale=True) for f in files]
xr.concat(frames, dim="time").to_dataset(name="data").to_zarr(sys.argv[2], zarr_format=2, mode="w")
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Run a command, its output to stderr; return (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=sys.stderr)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return wall, usage.ru_maxrss / 1024


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=2000, help="height and width in pixels")
    parser.add_argument("--workdir", type=Path, default=Path("/work/tmp/prepare_scale"))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating; the best is reported")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args()

    series = args.workdir / f"series_{args.frames}x{args.size}"
    if not (series / "done").exists():
        shutil.rmtree(series, ignore_errors=True)
        start = time.perf_counter()
        make_geotiff_series(series, args.frames, args.size, args.size, name_format="frame_%Y-%m-%d.tif")
        (series / "done").touch()
        print(f"made {args.frames} frames in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    pattern = str(series / "*.tif")
    size_gb = sum(p.stat().st_size for p in series.glob("*.tif")) / 1e9
    raw_gb = args.frames * args.size**2 * 4 / 1e9

    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "prepare": []}
    for _ in range(args.repeats):
        out = args.workdir / "baseline.zarr"
        shutil.rmtree(out, ignore_errors=True)
        baseline = [sys.executable, "-W", "ignore::FutureWarning", "-c", BASELINE, pattern, str(out)]
        runs["baseline"].append(measure(baseline))
        shutil.rmtree(out, ignore_errors=True)
        out = args.workdir / "cube.zarr"
        shutil.rmtree(out, ignore_errors=True)
        runs["prepare"].append(measure([sys.executable, "-m", "vmrnn_cli", "prepare", pattern, "-o", str(out)]))
        shutil.rmtree(out, ignore_errors=True)

    best = {name: min(r) for name, r in runs.items()}
    peak = {name: max(rss for _, rss in r) for name, r in runs.items()}
    result = {
        "frames": args.frames,
        "size": args.size,
        "raw_gb": round(raw_gb, 2),
        "files_gb": round(size_gb, 2),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "baseline_s": round(best["baseline"][0], 1),
        "baseline_peak_rss_mib": round(peak["baseline"]),
        "prepare_s": round(best["prepare"][0], 1),
        "prepare_peak_rss_mib": round(peak["prepare"]),
        "ratio": round(best["prepare"][0] / best["baseline"][0], 2),
        "all_runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))

    print(
        f"{args.frames} frames of {args.size} x {args.size} float32 ({raw_gb:.2f} GB of pixels, {size_gb:.2f} GB "
        f"of files); {result['cpu']}, {result['cores']} cores"
    )
    print("| run | wall s, run by run | best s | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, label in (("baseline", "plain rioxarray -> to_zarr copy"), ("prepare", "vmrnn prepare")):
        walls = " / ".join(f"{wall:.1f}" for wall, _ in runs[name])
        print(f"| {label} | {walls} | {best[name][0]:.1f} | {peak[name]:.0f} |")
    print(f"prepare / plain copy: {result['ratio']:.2f} (best against best)")


if __name__ == "__main__":
    main()
