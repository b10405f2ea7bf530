"""Read a cube written by `vmrnn prepare`: lazy data, statistics, split and window index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from vmrnn_cli.errors import VmrnnError

CUBE_VERSION = 1
PARTS = ("train", "val", "test")


@dataclass
class Cube:
    """A prepared cube; `data` is dask-backed (time, band, y, x) in physical units, NaN = nodata."""

    path: Path
    data: xr.DataArray
    mean: np.ndarray
    std: np.ndarray
    input_frames: int
    output_frames: int
    patch_size: int
    stride: int
    split: dict[str, tuple[int, int]]
    nodata: float | None
    band_names: list[str]
    _windows: dict[str, np.ndarray]

    @property
    def crs(self) -> CRS:
        return self.data.rio.crs

    @property
    def transform(self) -> Affine:
        return self.data.rio.transform()

    def windows(self, part: str) -> np.ndarray:
        """(n, 3) int64 array of window corners (t0, y0, x0) for "train", "val" or "test"."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, not {part!r}")
        return self._windows[part]


def open_cube(path: str | Path) -> Cube:
    """Open a cube lazily; a VmrnnError naming the path if it is not a vmrnn cube."""
    path = Path(path)
    if not path.exists():
        raise VmrnnError(f"{path}: no such cube")
    try:
        ds = xr.open_zarr(path, decode_coords="all")
    except Exception as err:  # noqa: BLE001 - any failure to open is one line naming the file
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
        patch_size=int(attrs["patch_size"]),
        stride=int(attrs["stride"]),
        split={part: (int(a), int(b)) for part, (a, b) in attrs["split"].items()},
        nodata=attrs.get("source_nodata"),
        band_names=list(attrs["band_names"]),
        _windows={part: ds[f"windows_{part}"].values.astype(np.int64).reshape(-1, 3) for part in PARTS},
    )
