"""GPU: whole-scene `predict` time, 10 context frames in / 10 frames out, end to end and in parts.

Makes the "GPU: whole-scene `predict`" figure of benchmarks/RESULTS.md.
For each scene size: a randomly initialised checkpoint of the default `vmrnn train` model (VMRNN-B, embed 128,
depth 12, token patch 4, 64-px windows) is written for that grid, and 10 single-band float32 GeoTIFFs (untimed).
Then timed: the pure GPU rollout on a batch of tiles already on the GPU (each --batch-sizes; the fastest is used
below), reading the rasters, the tiled forecast alone (scene to the GPU, normalising, tiling, rollout and blending
there, the result back; sizes up to --split-max), and `predict` end to end (read + tiled forecast + 10 COGs) with
its default tile batch, as `vmrnn predict` runs without --batch-size, with the time its COG writer took. A size
whose estimate exceeds the time left (--budget-s) is skipped and its row gives the estimate. Prints one table row
per scene size.

    python3 benchmarks/gpu_predict.py --sizes 10980 --batch-sizes 1024 --budget-s 300 --split-max 0
    python3 benchmarks/gpu_predict.py --sizes 2048 10980 --batch-sizes 256 1024 2048 --budget-s 500
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vmrnn_cli.data.cube import CubeSpec
from vmrnn_cli.forecast import predict as predict_module
from vmrnn_cli.forecast.predict import _forecast, predict, scene_on
from vmrnn_cli.forecast.rollout import rollout_on_device
from vmrnn_cli.forecast.tiling import tile_starts
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.io.writers import Writer, get_writer
from vmrnn_cli.options import PredictOptions, TrainConfig
from vmrnn_cli.training.checkpoint import Checkpoint, build_network, load_checkpoint, save_checkpoint

FRAMES, HORIZON, WINDOW, RES = 10, 10, 64, 10.0
CRS_NAME, NODATA = "EPSG:32633", -9999.0
WRITE_SECONDS: list[float] = []  # one entry per writer call of `predict`, filled by timed_get_writer


def make_checkpoint(path: Path, size: int) -> Checkpoint:
    """A checkpoint of the default train config's model (random weights) for a size x size 10 m grid."""
    config = TrainConfig().validate()
    torch.manual_seed(0)
    geo = {
        "crs_wkt": CRS.from_string(CRS_NAME).to_wkt(),
        "transform": list(from_origin(500000.0, 5000000.0, RES, RES))[:6],
        "shape": [size, size],
        "band_names": ["band1"],
        "nodata": NODATA,
        "time_step_seconds": 5 * 86400.0,
        "calendar": "proleptic_gregorian",
        "input_frames": FRAMES,
        "output_frames": HORIZON,
        "patch_size": WINDOW,
    }
    net = build_network(config.model_config(), 1, WINDOW)
    ckpt = Checkpoint(
        net.state_dict(),
        {"train": asdict(config), "model": config.model_config()},
        np.array([0.4]),
        np.array([0.2]),
        CubeSpec.from_json(geo),
    )
    save_checkpoint(ckpt, path)
    return ckpt


def write_frames(directory: Path, size: int) -> list[str]:
    """10 tiled, uncompressed float32 GeoTIFFs of a smooth moving field, 5 days apart, named by date."""
    directory.mkdir(parents=True)
    y = np.linspace(0, 6 * np.pi, size, dtype=np.float32)[:, None]
    x = np.linspace(0, 6 * np.pi, size, dtype=np.float32)[None, :]
    profile = dict(
        driver="GTiff",
        height=size,
        width=size,
        count=1,
        dtype="float32",
        crs=CRS_NAME,
        transform=from_origin(500000.0, 5000000.0, RES, RES),
        nodata=NODATA,
        tiled=True,
        blockxsize=512,
        blockysize=512,
    )
    paths = []
    for k in range(FRAMES):
        frame = 0.4 + 0.2 * np.sin(y + 0.3 * k) * np.cos(x - 0.2 * k)
        path = directory / f"scene_{date(2024, 1, 1) + timedelta(days=5 * k)}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(frame.astype(np.float32), 1)
        paths.append(str(path))
    return paths


def n_tiles(size: int) -> int:
    return len(tile_starts(size, WINDOW, WINDOW // 4)) ** 2


def timed_get_writer(fmt: str) -> Writer:
    """`get_writer` whose writer appends its duration to WRITE_SECONDS: splits `predict`'s time without a rerun."""
    writer = get_writer(fmt)

    def timed(*args: object, **kwargs: object) -> list[Path]:
        start = time.perf_counter()
        paths = writer(*args, **kwargs)
        WRITE_SECONDS.append(time.perf_counter() - start)
        return paths

    return timed


def rollout_rate(ckpt: Checkpoint, batch: int, device: torch.device, repeats: int = 3) -> float:
    """Tiles per second of the pure GPU rollout (bf16 autocast, no grad) on tiles already on the GPU, as in predict."""
    net = ckpt.build_model().to(device).eval()
    tiles = torch.randn(batch, FRAMES, 1, WINDOW, WINDOW, device=device)
    rollout_on_device(net, tiles, HORIZON, device)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        rollout_on_device(net, tiles, HORIZON, device)
    torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 10980])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--budget-s", type=float, default=380.0, help="skip (extrapolate) sizes past this")
    parser.add_argument(
        "--split-max", type=int, default=4096, help="also time the tiled forecast alone up to this size"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_predict"))
    args = parser.parse_args()
    began = time.perf_counter()
    device = torch.device("cuda")
    predict_module.get_writer = timed_get_writer
    print(
        f"# {torch.cuda.get_device_name()}, torch {torch.__version__}; VMRNN-B embed 128 depth 12 patch 4, "
        f"{WINDOW}-px tiles, overlap {WINDOW // 4}, {FRAMES} in / {HORIZON} out, bf16 autocast",
        flush=True,
    )
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    ckpt = make_checkpoint(args.work / "probe.pt", WINDOW)
    rates = {b: rollout_rate(ckpt, b, device) for b in args.batch_sizes}
    for b, rate in rates.items():
        print(f"pure rollout, batch {b}: {rate:.1f} tiles/s", flush=True)
    batch = max(rates, key=rates.get)
    print(
        "| scene | tiles | write inputs (untimed) s | read s | tiled forecast alone s "
        "| predict end to end s (tiles per batch) | of which COG writes s | MP/s end to end "
        "| GPU-rollout-only estimate s |",
        flush=True,
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    last: tuple[int, float, float] | None = None
    for size in args.sizes:
        gpu_only = n_tiles(size) / rates[batch]
        left = args.budget_s - (time.perf_counter() - began)
        if gpu_only > left:
            print(
                f"| {size}x{size} | {n_tiles(size)} | skipped | - | - | > {gpu_only:.0f} (GPU rollout alone) | - "
                f"| - | {gpu_only:.1f} |",
                flush=True,
            )
            continue
        if last is not None:
            prev_size, prev_total, prev_write = last
            scale = (size / prev_size) ** 2
            estimate = (prev_total + prev_write) * scale
            if estimate > left:
                print(
                    f"| {size}x{size} | {n_tiles(size)} | skipped | - | - | ~{prev_total * scale:.0f} "
                    f"(extrapolated from {prev_size}) | - | ~{size * size / 1e6 / (prev_total * scale):.1f} "
                    f"| {gpu_only:.1f} |",
                    flush=True,
                )
                continue
        run = args.work / str(size)
        ckpt_path = run / "model.pt"
        run.mkdir()
        make_checkpoint(ckpt_path, size)
        start = time.perf_counter()
        paths = write_frames(run / "inputs", size)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        frames = np.asarray(read_rasters(paths).values, dtype=np.float32)
        read_s = time.perf_counter() - start
        tiled = "-"
        if size <= args.split_max:
            start = time.perf_counter()
            _forecast(
                load_checkpoint(ckpt_path),
                scene_on(frames, HORIZON, device),
                HORIZON,
                WINDOW,
                WINDOW // 4,
                batch,
                device,
            )
            tiled = f"{time.perf_counter() - start:.1f}"
        del frames
        torch.cuda.synchronize()
        start = time.perf_counter()
        # the default tile batch, as users run it
        summary = predict(ckpt_path, paths, run / "forecast", PredictOptions(horizon=HORIZON, device="cuda"))
        total = time.perf_counter() - start
        assert len(summary.paths) == HORIZON
        print(
            f"| {size}x{size} | {summary.tiles} | {write_s:.1f} | {read_s:.1f} | {tiled} | {total:.1f} "
            f"({summary.batch_size}) | {WRITE_SECONDS[-1]:.1f} | {size * size / 1e6 / total:.2f} | {gpu_only:.1f} |",
            flush=True,
        )
        last = (size, total, write_s)
        shutil.rmtree(run)
    print(f"# tile batch {batch}; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)


if __name__ == "__main__":
    main()
