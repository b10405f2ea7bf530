"""Forecast the next frames of a whole scene from its last context frames with a trained checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from vmrnn_cli.capacity import available_memory, check_batch_fits, free_disk, human
from vmrnn_cli.data.cube import CubeSpec
from vmrnn_cli.data.grid import Grid
from vmrnn_cli.data.timeaxis import check_steps, iso_time, on_regular_axis, valid_times
from vmrnn_cli.errors import OptionError, VmrnnError
from vmrnn_cli.forecast.rollout import auto_batch_size, rollout_on_device
from vmrnn_cli.forecast.tiling import fits_on, forecast_tiled, tile_starts
from vmrnn_cli.io.inputs import describe_inputs, expand_inputs
from vmrnn_cli.io.lock import locked
from vmrnn_cli.io.outputs import check_output
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.io.writers import get_writer, infer_format
from vmrnn_cli.options import PredictOptions
from vmrnn_cli.progress import Steps
from vmrnn_cli.runtime import pick_device
from vmrnn_cli.training.checkpoint import Checkpoint, load_checkpoint, resolve


@dataclass
class PredictSummary:
    """What `predict` wrote, for stdout (paths) and the JSON summary."""

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
        return {
            **self.__dict__,
            "paths": [str(p) for p in self.paths],
            "checkpoint": str(self.checkpoint),
            "shape": list(self.shape),
        }


def predict(checkpoint: Path, inputs: list[str], output: Path, options: PredictOptions) -> PredictSummary:
    """Forecast `options.horizon` frames after the last context frames of `inputs` and write them to `output`,
    holding the output's lock; everything checkable is checked before any compute.

    `options.batch_size` tiles go through the model at once; None picks it (`auto_batch_size`).
    """
    output = Path(output)
    fmt = options.format or infer_format(output)
    sources = [*expand_inputs(inputs), resolve(checkpoint)]
    check_output(output, options.overwrite, sources, directory=fmt != "netcdf")
    with locked(output):
        return _predict(checkpoint, inputs, output, fmt, options)


def _predict(checkpoint: Path, inputs: list[str], output: Path, fmt: str, options: PredictOptions) -> PredictSummary:
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.spec
    context = spec.input_frames if options.context is None else options.context
    overlap = spec.window // 4 if options.overlap is None else options.overlap
    if overlap >= spec.window:
        raise OptionError(
            "overlap", f"must be between 0 and {spec.window - 1} (the tile is {spec.window} pixels), got {overlap}"
        )
    da, step = _scene(inputs, spec, context, output, options)
    frames = _read_context(da, context)
    dev = pick_device(options.device)
    scene = scene_on(frames, options.horizon, dev)
    if scene.isnan().all():
        raise VmrnnError(f"{describe_inputs(inputs)}: the last {context} frames hold no valid pixel")
    forecast, batch_size = _forecast(ckpt, scene, options.horizon, spec.window, overlap, options.batch_size, dev)
    unfinished = int((~np.isfinite(forecast) & np.isfinite(frames).any(axis=0)).sum())
    if unfinished:
        raise VmrnnError(
            f"{ckpt.path}: the forecast is not finite at {unfinished} value(s) where the context has "
            "data; nothing was written"
        )
    times = valid_times(da["time"].values, options.horizon, spec.time_step_seconds, step)
    fill = da.attrs.get("source_nodata")
    fill = spec.nodata if fill is None or np.isnan(fill) else fill
    reference = da["time"].values[-1]
    paths = get_writer(fmt)(
        _as_output(forecast, times, da, spec, fmt), output, fill, reference, overwrite=options.overwrite
    )
    (height, width), tile = Grid.of(da).shape, spec.window
    return PredictSummary(
        paths=paths,
        format=fmt,
        checkpoint=ckpt.path,
        horizon=options.horizon,
        context=context,
        reference_time=iso_time(reference),
        valid_times=[iso_time(t) for t in times],
        crs=da.rio.crs.to_string(),
        shape=(da.sizes["band"], height, width),
        tiles=len(tile_starts(max(height, tile), tile, overlap)) * len(tile_starts(max(width, tile), tile, overlap)),
        batch_size=batch_size,
    )


def _scene(
    inputs: list[str], spec: CubeSpec, context: int, output: Path, options: PredictOptions
) -> tuple[xr.DataArray, str | None]:
    """The input series (lazy) and its time step, once everything about it is checked: the model applies to its
    grid and bands, it has the context frames one step apart, and the forecast fits memory and disk."""
    source = describe_inputs(inputs)
    da = read_rasters(inputs, options.read)
    step = options.read.freq or spec.freq
    if options.read.freq:
        da, _, _ = on_regular_axis(da, options.read.freq, source)
    grid = Grid.of(da)
    mismatch = spec.mismatch(grid, list(da.attrs["band_names"]), options.allow_resolution_change)
    if mismatch:
        raise VmrnnError(f"{source}: {mismatch}")
    if da.sizes["time"] < context:
        raise VmrnnError(
            f"{source}: {da.sizes['time']} frame(s), fewer than the {context} context frames "
            "needed (give more frames or a smaller `context`)"
        )
    if step is not None:
        check_steps(da["time"].values[-context:], step, source)
    check_sizes(output, options.horizon, context, da.sizes["band"], *grid.shape, options.batch_size, spec.window)
    return da, step


def _as_output(forecast: np.ndarray, times: np.ndarray, da: xr.DataArray, spec: CubeSpec, fmt: str) -> xr.DataArray:
    """The forecast as a georeferenced (time, band, y, x) DataArray on the input's grid; NetCDF and Zarr keep the
    input's axis order, GeoTIFFs are north-up."""
    result = xr.DataArray(
        forecast,
        dims=("time", "band", "y", "x"),
        coords={"time": times, "band": spec.band_names, "y": da["y"].values, "x": da["x"].values},
    )
    result = Grid.of(da).attach(result)
    if fmt != "cog" and da.attrs.get("flipped_axes"):
        result = result.isel({dim: slice(None, None, -1) for dim in da.attrs["flipped_axes"]})
        result = result.rio.write_transform(result.rio.transform(recalc=True))
    return result


def check_sizes(
    output: Path, horizon: int, context: int, bands: int, height: int, width: int, batch_size: int | None, tile: int
) -> None:
    """Refuse, before any compute, a forecast (or a batch of tiles) that cannot fit in memory or on disk."""
    frame = bands * height * width * 4
    forecast = horizon * frame
    memory, space = available_memory(), free_disk(output)
    if (context + 2 * horizon) * frame > memory:
        raise VmrnnError(
            f"{output}: the forecast needs {human((context + 2 * horizon) * frame)} of memory "
            f"({context} + 2 x {horizon} frames of {bands} band(s) x {height} x {width} px x 4 bytes), "
            f"more than the {human(memory)} available; forecast fewer frames (`horizon`) or a "
            "smaller scene"
        )
    if forecast > space:
        raise VmrnnError(
            f"{output}: the forecast takes up to {human(forecast)} on disk ({horizon} frames of "
            f"{bands} band(s) x {height} x {width} px x 4 bytes), more than the {human(space)} free "
            "there; forecast fewer frames (`horizon`) or write elsewhere"
        )
    if batch_size is not None:
        check_batch_fits(batch_size, (context + horizon) * bands * tile * tile * 4, "tiles")


def _read_context(da: xr.DataArray, context: int) -> np.ndarray:
    """The last `context` frames as one (T, C, H, W) float32 array, read frame by frame (with progress)."""
    frames = np.empty((context, *da.shape[1:]), dtype=np.float32)
    with Steps("context frames read", context) as steps:
        for index in range(context):
            frames[index] = da.isel(time=len(da["time"]) - context + index).values
            steps.advance()
    return frames


def scene_on(frames: np.ndarray, horizon: int, device: torch.device) -> torch.Tensor:
    """A copy of the (T, C, H, W) context on `device`, or on the CPU when it and the forecast canvas won't fit there."""
    nbytes = (frames.shape[0] + horizon) * frames[0].nbytes
    return torch.tensor(frames, device=device if fits_on(device, nbytes) else torch.device("cpu"))


def _forecast(
    ckpt: Checkpoint,
    scene: torch.Tensor,
    horizon: int,
    tile: int,
    overlap: int,
    batch_size: int | None,
    device: torch.device,
) -> tuple[np.ndarray, int]:
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
    out = forecast_tiled(lambda tiles: rollout_on_device(net, tiles, horizon, device), scene, tile, overlap, batch_size)
    out.mul_(std).add_(mean).masked_fill_(nodata, float("nan"))
    return out.cpu().numpy(), batch_size
