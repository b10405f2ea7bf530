"""Forecast writers: COGs, CF-1.8 NetCDF and Zarr read back with rasterio, xarray and rioxarray."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from vmrnn_cli.data.timeaxis import time_labels
from vmrnn_cli.errors import VmrnnError
from vmrnn_cli.io import cog
from vmrnn_cli.io.cf import write_netcdf, write_zarr
from vmrnn_cli.io.cog import write_cog
from vmrnn_cli.io.writers import get_writer, infer_format

CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)
TRANSFORM = from_origin(500000.0, 5000000.0, 30.0, 30.0)


def forecast(times, crs="EPSG:32633", bands=("red", "nir"), height=23, width=31) -> xr.DataArray:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(len(times), len(bands), height, width)).astype(np.float32)
    data[:, :, :3, :4] = np.nan
    transform = TRANSFORM if crs != "EPSG:4326" else from_origin(10.0, 46.0, 0.05, 0.05)
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    da = xr.DataArray(
        data, dims=("time", "band", "y", "x"), coords={"time": times, "band": list(bands), "y": y, "x": x}
    )
    return da.rio.write_crs(crs).rio.write_transform(transform)


DAYS = pd.date_range("2024-03-05", periods=3, freq="16D").values
NOLEAP_HOURS = xr.date_range("2023-02-28", periods=3, freq="6h", calendar="noleap", use_cftime=True).values


def compliance(path: Path) -> dict:
    """Run IOOS compliance-checker --test=cf:1.8 and return its JSON report for the file."""
    report = path.parent / "report.json"
    checker = Path(sys.executable).parent / "compliance-checker"
    subprocess.run(
        [str(checker), "--test=cf:1.8", "-f", "json", "-o", str(report), str(path)], capture_output=True, check=False
    )
    return json.loads(report.read_text())["cf:1.8"]


def test_infer_format() -> None:
    assert infer_format(Path("a/b.nc")) == "netcdf"
    assert infer_format(Path("b.ZARR")) == "zarr"
    assert infer_format(Path("forecast")) == "cog"
    assert get_writer("zarr") is write_zarr
    with pytest.raises(ValueError):
        get_writer("png")


def test_time_labels() -> None:
    assert time_labels(DAYS) == ["2024-03-05", "2024-03-21", "2024-04-06"]
    assert time_labels(NOLEAP_HOURS) == ["20230228T0000", "20230228T0600", "20230228T1200"]


def test_cog_per_lead_time(tmp_path: Path) -> None:
    da = forecast(DAYS)
    paths = write_cog(da, tmp_path / "out", -9999.0, np.datetime64("2024-02-18"))
    assert [p.name for p in paths] == ["2024-03-05.tif", "2024-03-21.tif", "2024-04-06.tif"]
    for lead, path in enumerate(paths):
        valid, errors, _ = cog_validate(str(path))
        assert valid, errors
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32633
            assert src.transform == TRANSFORM
            assert (src.count, src.height, src.width) == (2, 23, 31)
            assert src.dtypes == ("float32", "float32")
            assert src.nodata == -9999.0
            assert src.descriptions == ("red", "nir")
            tags = src.tags()
            values = src.read(masked=True)
        assert tags["TIFFTAG_DATETIME"] == pd.Timestamp(DAYS[lead]).strftime("%Y:%m:%d %H:%M:%S")
        assert tags["VALID_TIME"].startswith(str(DAYS[lead])[:10])
        assert tags["LEAD_TIME_STEPS"] == str(lead + 1)
        assert values.mask[:, :3, :4].all() and not values.mask[:, 3:, 4:].any()
        np.testing.assert_array_equal(values.filled(np.nan), da.isel(time=lead).values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_cog_leaves_nothing_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_one = cog._write_one_cog

    def fail_on_the_second(path: Path, *args) -> None:
        if path.name == "2024-03-21.tif":
            raise OSError(f"{path}: No space left on device")
        write_one(path, *args)

    monkeypatch.setattr(cog, "_write_one_cog", fail_on_the_second)
    with pytest.raises(VmrnnError, match=f"^no space left on device writing {tmp_path / 'out'}$"):
        write_cog(forecast(DAYS), tmp_path / "out", -9999.0, DAYS[0])
    assert list(tmp_path.iterdir()) == []


def test_cog_nan_nodata_and_cftime(tmp_path: Path) -> None:
    paths = write_cog(forecast(NOLEAP_HOURS, bands=("ndvi",)), tmp_path / "out", None, NOLEAP_HOURS[0])
    with rasterio.open(paths[1]) as src:
        assert np.isnan(src.nodata)
        assert src.tags()["TIFFTAG_DATETIME"] == "2023:02:28 06:00:00"
        assert src.tags()["CALENDAR"] == "noleap"


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
@pytest.mark.parametrize("times", [DAYS, NOLEAP_HOURS], ids=["standard", "noleap"])
def test_netcdf_is_cf_compliant(tmp_path: Path, crs: str, times: np.ndarray) -> None:
    da = forecast(times, crs=crs)
    [path] = write_netcdf(da, tmp_path / "f.nc", -9999.0, times[0])
    report = compliance(path)
    findings = [m for group in report["high_priorities"] + report["medium_priorities"] for m in group["msgs"]]
    assert report["high_count"] == 0 and report["medium_count"] == 0, findings
    ds = xr.open_dataset(path, decode_coords="all", decode_times=CFTIME)
    assert ds["forecast"].rio.crs == da.rio.crs
    assert ds.rio.transform().almost_equals(da.rio.transform())
    assert ds["time"].encoding["calendar"] == ("noleap" if times is NOLEAP_HOURS else "proleptic_gregorian")
    assert [t.isoformat() for t in ds["time"].values] == [
        pd.Timestamp(t).isoformat() if times is DAYS else t.isoformat() for t in times
    ]
    assert ds["forecast"].encoding["_FillValue"] == -9999.0
    assert list(ds["band_name"].values) == ["red", "nir"]
    np.testing.assert_array_equal(ds["forecast"].transpose("time", "band", "y", "x").values, da.values)


def test_zarr_reads_back_without_loss(tmp_path: Path) -> None:
    da = forecast(NOLEAP_HOURS)
    [path] = write_zarr(da, tmp_path / "f.zarr", None, NOLEAP_HOURS[0])
    assert (path / ".zmetadata").exists()  # Zarr v2, consolidated: GDAL and QGIS read it
    ds = xr.open_zarr(path, decode_coords="all", decode_times=CFTIME)
    assert ds["forecast"].rio.crs == da.rio.crs
    assert ds.rio.transform().almost_equals(da.rio.transform())
    assert list(ds["time"].values) == list(NOLEAP_HOURS)
    np.testing.assert_array_equal(ds["forecast"].transpose("time", "band", "y", "x").values, da.values)


@pytest.mark.parametrize("name, writer", [("out", write_cog), ("f.nc", write_netcdf), ("f.zarr", write_zarr)])
def test_existing_output_is_kept_without_overwrite(tmp_path: Path, name: str, writer) -> None:
    target = tmp_path / name
    target.mkdir() if name != "f.nc" else target.write_text("keep me")
    with pytest.raises(VmrnnError, match="already exists"):
        writer(forecast(DAYS), target, -9999.0, DAYS[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    writer(forecast(DAYS), target, -9999.0, DAYS[0], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
