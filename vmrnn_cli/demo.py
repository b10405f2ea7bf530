"""`vmrnn demo`: the whole job on synthetic georeferenced rasters, small enough for a few minutes on a laptop CPU.

Makes a 3-hourly GeoTIFF series (moving, growing and fading blobs over a smooth field with a diurnal
cycle, nodata holes, UTM zone 33N), then runs prepare -> train -> predict -> evaluate with the library
functions, all in OUT_DIR. The settings below were tuned so that the model beats persistence on CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from vmrnn_cli import synthetic
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.forecast.predict import predict
from vmrnn_cli.io.lock import locked
from vmrnn_cli.io.outputs import check_output, write_manifest
from vmrnn_cli.options import EvaluateOptions, PredictOptions, PrepareOptions
from vmrnn_cli.training.loop import train
from vmrnn_cli.verify.evaluate import evaluate

# 3-hourly land-surface temperature-like frames: a diurnal cycle (8 frames a day) that persistence
# cannot follow, moving weather blobs, cloud holes; N_FRAMES frames of HEIGHT x WIDTH pixels of 30 m.
N_FRAMES, HEIGHT, WIDTH, STEP_DAYS, PERIOD = 96, 48, 64, 0.125, 8.0
INPUT_FRAMES, OUTPUT_FRAMES, WINDOW, STRIDE = 4, 3, 16, 16
SPLIT = (0.7, 0.15, 0.15)
MODEL = {
    "arch": "vmrnn-b",
    "patch_size": 4,
    "embed_dim": 32,
    "depths": [1],
    "epochs": 3,
    "batch_size": 8,
    "lr": 5e-3,
    "seed": 0,
}
HORIZON = 8


def _step(message: str, started: float) -> None:
    print(f"[demo {time.perf_counter() - started:5.0f} s] {message}", file=sys.stderr, flush=True)


def demo(out_dir: Path, device: str = "auto", overwrite: bool = False) -> list[Path]:
    """Run the demo in out_dir, a new or empty directory or, with `overwrite`, an earlier demo's; returns the
    result files. The directory's manifest lists everything the demo wrote.

    Torch uses the thread budget (`--threads`) like every command. With OpenMP's waiting threads asleep (see
    vmrnn_cli.cli.main) the default trains the demo's model within 1.2x of the best setting on a 2-core machine,
    idle or beside 2 busy processes (benchmarks/RESULTS.md, "CPU: the default thread budget").
    """
    out_dir = Path(out_dir)
    empty = out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir())
    check_output(out_dir, overwrite or empty, directory=True)
    with locked(out_dir):
        paths = _run(out_dir, device)
        write_manifest(out_dir)
        return paths


def _run(out_dir: Path, device: str) -> list[Path]:
    started = time.perf_counter()
    _step(
        f"writing {N_FRAMES} synthetic 3-hourly GeoTIFFs ({HEIGHT}x{WIDTH} px, EPSG:32633) to {out_dir / 'data'}",
        started,
    )
    data_dir = out_dir / "data"
    if data_dir.exists():
        for old in data_dir.glob("*.tif"):
            old.unlink()
    tifs = [
        str(p)
        for p in synthetic.make_geotiff_series(
            data_dir,
            n_frames=N_FRAMES,
            height=HEIGHT,
            width=WIDTH,
            step_days=STEP_DAYS,
            period=PERIOD,
            name_format="lst_%Y%m%dT%H%M.tif",
        )
    ]
    _step("vmrnn prepare", started)
    cube = out_dir / "cube.zarr"
    prepare(
        tifs,
        cube,
        PrepareOptions(
            input_frames=INPUT_FRAMES,
            output_frames=OUTPUT_FRAMES,
            window=WINDOW,
            stride=STRIDE,
            split=SPLIT,
            overwrite=True,
        ),
    )
    _step(f"vmrnn train ({MODEL['arch']}, embed {MODEL['embed_dim']}, {MODEL['epochs']} epochs)", started)
    run = out_dir / "run"
    train(cube, run, given={**MODEL, "device": device}, overwrite=True)
    _step(f"vmrnn predict --horizon {HORIZON} from the last {INPUT_FRAMES} frames", started)
    forecast = predict(
        run, tifs[-INPUT_FRAMES:], out_dir / "forecast", PredictOptions(horizon=HORIZON, device=device, overwrite=True)
    )
    _step(f"vmrnn evaluate --horizon {HORIZON} on the test windows", started)
    scores, panel = out_dir / "scores.png", out_dir / "forecast.png"
    evaluate(
        run,
        cube,
        EvaluateOptions(part="test", horizon=HORIZON, device=device, overwrite=True),
        json_path=out_dir / "evaluation.json",
        plot_path=scores,
        panel=panel,
    )
    _step("done", started)
    return [out_dir / "evaluation.json", scores, panel, *forecast.paths]
