"""Forecast the next frames of a whole scene from its last context frames with a trained checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import torch
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from vmrnn_cli.atomic import check_writable
from vmrnn_cli.checkpoint import Checkpoint, load_checkpoint
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io.readers import describe_inputs, read_rasters
from vmrnn_cli.io.writers import FORMATS, get_writer, infer_format, iso_time
from vmrnn_cli.tiling import fits_on, forecast_tiled, free_memory, tile_starts
from vmrnn_cli.train import pick_device

CPU_BATCH = 16  # tiles per forward pass on the CPU when --batch-size is not given
MAX_GPU_BATCH = 1024  # from ~256 tiles of 64 px on, an H100's rollout is compute-bound (benchmarks/RESULTS.md)
BATCH_SHARE = 0.5  # the share of a GPU's free memory one batch of tiles may take while it is forecast
PROBE_TILES = 4  # tiles of the rollout that measures the memory one tile takes


@dataclass
class PredictSummary:
    """What `predict` wrote, for stdout (paths) and `--json`."""

    paths: list[Path]
    format: str
    checkpoint: Path
    horizon: int
    context: int
    reference_time: str
    valid_times: list[str]
    crs: str
    shape: tuple[int, int, int]
    tiles: int
    batch_size: int

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "paths": [str(p) for p in self.paths], "checkpoint": str(self.checkpoint),
                "shape": list(self.shape)}


def grid_difference(da: xr.DataArray, geo: dict[str, Any]) -> str | None:
    """How the input's grid or bands differ from the training cube's (None when they match)."""
    crs = CRS.from_wkt(geo["crs_wkt"])
    if da.rio.crs != crs:
        return f"CRS {da.rio.crs} differs from the training cube's {crs}"
    shape, expected = [da.sizes["y"], da.sizes["x"]], geo["shape"]
    if shape != expected:
        return f"shape {shape[0]}x{shape[1]} differs from the training cube's {expected[0]}x{expected[1]}"
    transform, reference = da.rio.transform(), Affine(*geo["transform"])
    if not transform.almost_equals(reference, precision=1e-9 * max(1.0, abs(reference.c), abs(reference.f))):
        return f"transform {tuple(transform)[:6]} differs from the training cube's {tuple(reference)[:6]}"
    if da.sizes["band"] != len(geo["band_names"]):
        return (f"{da.sizes['band']} band(s) differ from the training cube's {len(geo['band_names'])} "
                f"({', '.join(geo['band_names'])}); select them with --bands")
    return None


def valid_times(times: np.ndarray, horizon: int, step_seconds: float | None) -> np.ndarray:
    """The next `horizon` times after `times`: its own calendar frequency if regular, else its last step."""
    last = times[-1]
    use_cftime = not isinstance(last, np.datetime64)
    freq = xr.infer_freq(xr.DataArray(times, dims="time")) if len(times) >= 3 else None
    if freq is not None:
        calendar = getattr(last, "calendar", "standard")
        return xr.date_range(start=last, periods=horizon + 1, freq=freq, calendar=calendar,
                             use_cftime=use_cftime).values[1:]
    step = times[-1] - times[-2] if len(times) >= 2 else (
        np.timedelta64(int(step_seconds * 1e6), "us") if not use_cftime else timedelta(seconds=step_seconds))
    return np.array([last + step * (k + 1) for k in range(horizon)])


def predict(
    checkpoint: Path,
    inputs: list[str],
    output: Path,
    horizon: int,
    var: str | None = None,
    time_format: str | None = None,
    bands: list[int] | None = None,
    context: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    fmt: str | None = None,
    overwrite: bool = False,
) -> PredictSummary:
    """Forecast `horizon` frames after the last `context` frames of `inputs` and write them to `output`.

    `batch_size` tiles go through the model at once; None picks it (`auto_batch_size`).
    """
    output = Path(output)
    if horizon < 1:
        raise VmrnnError(f"--horizon {horizon}: must be at least 1")
    fmt = fmt or infer_format(output)
    if fmt not in FORMATS:
        raise VmrnnError(f"--format {fmt}: must be one of {', '.join(FORMATS)}")
    check_writable(output, overwrite)
    ckpt = load_checkpoint(checkpoint)
    geo = ckpt.geo
    tile = geo["patch_size"]
    context = geo["input_frames"] if context is None else context
    overlap = tile // 4 if overlap is None else overlap
    if context < 1:
        raise VmrnnError(f"--context {context}: must be at least 1")
    if not 0 <= overlap < tile:
        raise VmrnnError(f"--overlap {overlap}: must be between 0 and {tile - 1} (the tile is {tile} pixels)")
    if batch_size is not None and batch_size < 1:
        raise VmrnnError(f"--batch-size {batch_size}: must be at least 1")
    source = describe_inputs(inputs)
    da = read_rasters(inputs, var=var, time_format=time_format, bands=bands)
    difference = grid_difference(da, geo)
    if difference:
        raise VmrnnError(f"{source}: {difference}")
    if da.sizes["time"] < context:
        raise VmrnnError(f"{source}: {da.sizes['time']} frame(s), fewer than the {context} context frames "
                         "needed (give more frames or a smaller --context)")
    frames = np.asarray(da.isel(time=slice(-context, None)).values, dtype=np.float32)
    dev = pick_device(device)
    scene = scene_on(frames, horizon, dev)
    if scene.isnan().all():
        raise VmrnnError(f"{source}: the last {context} frames hold no valid pixel")
    forecast, batch_size = _forecast(ckpt, scene, horizon, tile, overlap, batch_size, dev)
    times = valid_times(da["time"].values, horizon, geo["time_step_seconds"])
    result = xr.DataArray(forecast, dims=("time", "band", "y", "x"),
                          coords={"time": times, "band": geo["band_names"], "y": da["y"].values, "x": da["x"].values})
    result = result.rio.write_crs(da.rio.crs).rio.write_transform(da.rio.transform())
    fill = da.attrs.get("source_nodata")
    fill = geo["nodata"] if fill is None or np.isnan(fill) else fill
    reference = da["time"].values[-1]
    paths = get_writer(fmt)(result, output, fill, reference, overwrite=overwrite)
    height, width = geo["shape"]
    return PredictSummary(
        paths=paths, format=fmt, checkpoint=ckpt.path, horizon=horizon, context=context,
        reference_time=iso_time(reference), valid_times=[iso_time(t) for t in times], crs=da.rio.crs.to_string(),
        shape=(len(geo["band_names"]), height, width),
        tiles=len(tile_starts(max(height, tile), tile, overlap)) * len(tile_starts(max(width, tile), tile, overlap)),
        batch_size=batch_size,
    )


def scene_on(frames: np.ndarray, horizon: int, device: torch.device) -> torch.Tensor:
    """A copy of the (T, C, H, W) context on `device`, or on the CPU when it and the forecast canvas won't fit there."""
    nbytes = (frames.shape[0] + horizon) * frames[0].nbytes
    return torch.tensor(frames, device=device if fits_on(device, nbytes) else torch.device("cpu"))


def _forecast(ckpt: Checkpoint, scene: torch.Tensor, horizon: int, tile: int, overlap: int, batch_size: int | None,
              device: torch.device) -> tuple[np.ndarray, int]:
    """Normalise, roll the model out tile by tile, blend, de-normalise: (horizon, band, y, x) float32, and the
    tiles per batch used (`batch_size`, or `auto_batch_size`'s when None).

    All on the device `scene` (physical units, NaN for nodata, overwritten) is on, the model on `device`;
    pixels that are NaN in every context frame come out NaN. Only the result goes back to the host.
    """
    mean = torch.from_numpy(ckpt.mean.astype(np.float32).reshape(1, -1, 1, 1)).to(scene.device)
    std = torch.from_numpy(ckpt.std.astype(np.float32).reshape(1, -1, 1, 1)).to(scene.device)
    nodata = scene.isnan().all(dim=0)
    scene.sub_(mean).div_(std).nan_to_num_()
    net = ckpt.build_model().to(device).eval()
    if batch_size is None:
        canvas = horizon * scene[0].numel() * 4 if scene.device.type == "cuda" else 0  # forecast_tiled's, made later
        batch_size = auto_batch_size(net, (*scene.shape[:2], tile, tile), horizon, device, canvas)
    out = forecast_tiled(lambda tiles: rollout_on_device(net, tiles, horizon, device), scene, tile, overlap,
                         batch_size)
    out.mul_(std).add_(mean).masked_fill_(nodata, float("nan"))
    return out.cpu().numpy(), batch_size


def batch_for_memory(per_tile: float, free: int) -> int:
    """Tiles per batch that fit in BATCH_SHARE of `free` bytes at `per_tile` bytes each, from 1 to MAX_GPU_BATCH."""
    return max(1, min(MAX_GPU_BATCH, int(BATCH_SHARE * free / max(per_tile, 1.0))))


def auto_batch_size(net: torch.nn.Module, tile_shape: tuple[int, ...], horizon: int, device: torch.device,
                    reserve: int) -> int:
    """Tiles per forward pass when none is given: CPU_BATCH on the CPU; on a GPU, as many as fit in BATCH_SHARE of
    its free memory less `reserve` bytes (allocated later), by the peak memory of a rollout of PROBE_TILES tiles
    of `tile_shape` (T, C, tile, tile)."""
    if device.type != "cuda":
        return CPU_BATCH
    probe = torch.zeros(PROBE_TILES, *tile_shape, device=device)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    rollout_on_device(net, probe, horizon, device)
    per_tile = (torch.cuda.max_memory_allocated(device) - before) / PROBE_TILES
    return batch_for_memory(per_tile, free_memory(device) - reserve)


def rollout_on_device(net: torch.nn.Module, frames: torch.Tensor, horizon: int,
                      device: torch.device) -> torch.Tensor:
    """The next `horizon` frames after normalised context frames (B, T, C, H, W) (NaN read as the mean, 0).

    No gradients, bf16 autocast on CUDA; returns (B, horizon, C, H, W) float32 on `device`.
    """
    inputs = frames.to(device).nan_to_num()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = net(inputs, horizon)[:, -horizon:]
    return out.float()


def rollout(net: torch.nn.Module, frames: torch.Tensor, horizon: int, device: torch.device) -> torch.Tensor:
    """`rollout_on_device`, the result brought back to the CPU (for callers that score it with numpy)."""
    return rollout_on_device(net, frames, horizon, device).cpu()
