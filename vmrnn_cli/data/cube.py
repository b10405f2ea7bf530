"""Read a cube written by `vmrnn prepare`: lazy data, statistics, split and window index; and its spec, the part
of it a trained model keeps (grid, bands, time step, window sizes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr

from vmrnn_cli.data.grid import Grid
from vmrnn_cli.data.timeaxis import infer_step, time_step_seconds
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import PARTS

CUBE_VERSION = 1
RESOLUTION_TOLERANCE = 0.25  # a scene's pixel size may differ from the training pixel size by this share
_DEFAULT_BAND_NAME = re.compile(r"band\d+")  # what the readers call a band without a name


@dataclass(frozen=True)
class CubeSpec:
    """What a model trained on a cube keeps of it: the grid, band names, nodata, time step and calendar, the
    frames in and out, the side of the training window in pixels, and the series' step as a pandas offset alias
    (None in checkpoints from before steps were kept: then `time_step_seconds` stands in)."""

    grid: Grid
    band_names: list[str]
    nodata: float | None
    time_step_seconds: float | None
    calendar: str
    input_frames: int
    output_frames: int
    window: int
    freq: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able values, stored in checkpoints (the window under its first name, "patch_size")."""
        return {
            **self.grid.to_json(),
            "band_names": list(self.band_names),
            "nodata": self.nodata,
            "time_step_seconds": self.time_step_seconds,
            "calendar": self.calendar,
            "input_frames": self.input_frames,
            "output_frames": self.output_frames,
            "patch_size": self.window,
            "freq": self.freq,
        }

    def mismatch(self, grid: Grid, band_names: list[str], allow_resolution_change: bool = False) -> str | None:
        """Why a model trained on this spec cannot forecast data on `grid` with `band_names` (None: it can).

        Any extent, size and CRS will do; the band count must match, and the names where both sides have real
        ones; the pixel size (in metres) may differ by RESOLUTION_TOLERANCE unless `allow_resolution_change`.
        """
        if len(band_names) != len(self.band_names):
            return (
                f"{len(band_names)} band(s) differ from the training cube's {len(self.band_names)} "
                f"({', '.join(self.band_names)}); select them with `bands`"
            )
        named = [
            (a, b)
            for a, b in zip(band_names, self.band_names)
            if not _DEFAULT_BAND_NAME.fullmatch(a) and not _DEFAULT_BAND_NAME.fullmatch(b)
        ]
        if any(a != b for a, b in named):
            return f"bands {', '.join(band_names)} differ from the training cube's {', '.join(self.band_names)}"
        size, trained = grid.pixel_size_m(), self.grid.pixel_size_m()
        if abs(size - trained) > RESOLUTION_TOLERANCE * trained and not allow_resolution_change:
            return (
                f"pixel size {size:.4g} m differs from the training cube's {trained:.4g} m by more than "
                f"{RESOLUTION_TOLERANCE:.0%}; pass `allow_resolution_change` to forecast it anyway"
            )
        return None

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> CubeSpec:
        """The inverse of `to_json`."""
        return cls(
            Grid.from_json(values),
            list(values["band_names"]),
            values["nodata"],
            values["time_step_seconds"],
            values["calendar"],
            int(values["input_frames"]),
            int(values["output_frames"]),
            int(values["patch_size"]),
            values.get("freq"),
        )


@dataclass
class Cube:
    """A prepared cube; `data` is dask-backed (time, band, y, x) in physical units, NaN = nodata."""

    path: Path
    data: xr.DataArray
    mean: np.ndarray
    std: np.ndarray
    input_frames: int
    output_frames: int
    window: int
    stride: int
    split: dict[str, tuple[int, int]]
    nodata: float | None
    band_names: list[str]
    freq: str | None
    _windows: dict[str, np.ndarray]

    @property
    def grid(self) -> Grid:
        return Grid.of(self.data)

    def windows(self, part: str) -> np.ndarray:
        """(n, 3) int64 array of window corners (t0, y0, x0) for "train", "val" or "test"."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, not {part!r}")
        return self._windows[part]

    def spec(self) -> CubeSpec:
        """The cube's grid, bands, time step and window sizes, as a checkpoint keeps them."""
        times = self.data["time"].values
        nodata = None if self.nodata is None or np.isnan(self.nodata) else float(self.nodata)
        return CubeSpec(
            self.grid,
            list(self.band_names),
            nodata,
            time_step_seconds(times),
            getattr(times[0], "calendar", "") or "proleptic_gregorian",
            self.input_frames,
            self.output_frames,
            self.window,
            self.freq,
        )


def open_cube(path: str | Path) -> Cube:
    """Open a cube lazily; a VmrnnError naming the path if it is not a vmrnn cube."""
    path = Path(path)
    if not path.exists():
        raise VmrnnError(f"{path}: no such cube")
    try:
        ds = xr.open_zarr(path, decode_coords="all")
    except Exception as err:
        raise VmrnnError(f"{path}: not a readable Zarr cube ({err})") from None
    attrs = ds.attrs
    if attrs.get("vmrnn_cube") != CUBE_VERSION:
        raise VmrnnError(f"{path}: not a vmrnn cube (version {CUBE_VERSION}); make one with `vmrnn prepare`")
    return Cube(
        path=path,
        data=ds["data"],
        mean=ds["mean"].values.astype(np.float64),
        std=ds["std"].values.astype(np.float64),
        input_frames=int(attrs["input_frames"]),
        output_frames=int(attrs["output_frames"]),
        window=int(attrs["patch_size"]),  # the window side, stored under its first name
        stride=int(attrs["stride"]),
        split={part: (int(a), int(b)) for part, (a, b) in attrs["split"].items()},
        nodata=attrs.get("source_nodata"),
        band_names=list(attrs["band_names"]),
        freq=attrs.get("time_step") or infer_step(ds["time"].values),  # cubes from before the step was kept
        _windows={part: ds[f"windows_{part}"].values.astype(np.int64).reshape(-1, 3) for part in PARTS},
    )
