"""open_cube: the fields train/predict rely on, and clear errors for anything that is not a cube."""

import numpy as np
import pytest
from support.series import make_zarr

from vmrnn_cli import synthetic
from vmrnn_cli.data.cube import open_cube
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.options import PrepareOptions


def test_open_cube_fields(tmp_path):
    synthetic.make_geotiff_series(tmp_path / "in", 16, 24, 20, bands=2, nodata=-32768.0)
    prepare(
        [str(tmp_path / "in" / "*.tif")],
        tmp_path / "c.zarr",
        PrepareOptions(input_frames=2, output_frames=2, window=8, split=(0.5, 0.25, 0.25)),
    )
    cube = open_cube(tmp_path / "c.zarr")
    assert cube.data.chunks is not None  # lazy
    assert cube.data.shape == (16, 2, 24, 20)
    assert cube.mean.shape == (2,) and cube.std.shape == (2,) and (cube.std > 0).all()
    assert cube.grid.crs.to_epsg() == 32633 and cube.grid.transform.a == 30.0
    assert cube.nodata == -32768.0 and cube.band_names == ["band1", "band2"]
    assert cube.split == {"train": (0, 8), "val": (8, 12), "test": (12, 16)}
    t0, y0, x0 = cube.windows("train")[0]
    sample = cube.data[t0 : t0 + 4, :, y0 : y0 + 8, x0 : x0 + 8].values
    assert sample.shape == (4, 2, 8, 8) and np.isfinite(sample).mean() >= 0.5
    with pytest.raises(ValueError, match="part must be one of"):
        cube.windows("training")


def test_not_a_cube(tmp_path):
    with pytest.raises(VmrnnError, match="nope.zarr: no such cube"):
        open_cube(tmp_path / "nope.zarr")
    plain = make_zarr(tmp_path / "plain.zarr", n_frames=3)
    with pytest.raises(VmrnnError, match="plain.zarr: not a vmrnn cube"):
        open_cube(plain)
    junk = tmp_path / "junk.zarr"
    junk.mkdir()
    with pytest.raises(VmrnnError, match="junk.zarr: not a readable Zarr cube"):
        open_cube(junk)
