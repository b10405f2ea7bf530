"""A typed raster grid: CRS, affine transform and shape, built from and turned into rioxarray coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor
import xarray as xr
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS


@dataclass(frozen=True)
class Grid:
    """A north-up grid: `transform` maps pixel corners (col, row) to CRS coordinates; `crs` may be None in a
    file that has none (readers refuse it later, naming the file)."""

    crs: CRS | None
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        return abs(self.transform.a), abs(self.transform.e)

    def pixel_size_m(self) -> float:
        """The mean of the pixel's width and height in metres; for a geographic CRS, at the grid's centre."""
        width, height = self.resolution
        if self.crs is not None and self.crs.is_geographic:
            lon, lat = self.transform * (self.width / 2, self.height / 2)
            geod = Geod(ellps="WGS84")
            width = geod.inv(lon - width / 2, lat, lon + width / 2, lat)[2]
            height = geod.inv(lon, lat - height / 2, lon, lat + height / 2)[2]
            return (width + height) / 2
        factor = self.crs.linear_units_factor[1] if self.crs is not None else 1.0
        return (width + height) / 2 * factor

    @classmethod
    def of(cls, da: xr.DataArray) -> Grid:
        """The grid of a georeferenced (..., y, x) DataArray."""
        return cls(da.rio.crs, da.rio.transform(), int(da.sizes["y"]), int(da.sizes["x"]))

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (ys, xs) along each axis."""
        ys = self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)
        xs = self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)
        return ys, xs

    def attach(self, da: xr.DataArray) -> xr.DataArray:
        """`da` with this grid's CRS and transform written for rioxarray (its y/x coordinates must match)."""
        return da.rio.write_crs(self.crs).rio.write_transform(self.transform)

    def difference(self, other: Grid, whose: str = "") -> str | None:
        """How this grid differs from `other` (None when they match to rounding); `whose` names the other's owner
        in the message, e.g. "the training cube's "."""
        if self.crs != other.crs:
            return f"CRS {self.crs} differs from {whose}{other.crs}"
        if self.shape != other.shape:
            return f"shape {self.height}x{self.width} differs from {whose}{other.height}x{other.width}"
        scale = max(1.0, abs(other.transform.c), abs(other.transform.f))
        if not self.transform.almost_equals(other.transform, precision=1e-9 * scale):
            return f"transform {tuple(self.transform)[:6]} differs from {whose}{tuple(other.transform)[:6]}"
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able values (WKT, six transform coefficients, [height, width]) for a checkpoint."""
        return {"crs_wkt": self.crs.to_wkt(), "transform": list(self.transform)[:6], "shape": [self.height, self.width]}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Grid:
        """The inverse of `to_json`."""
        height, width = values["shape"]
        return cls(CRS.from_wkt(values["crs_wkt"]), Affine(*values["transform"]), int(height), int(width))
