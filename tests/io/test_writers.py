"""Forecast writers: COGs, CF-1.8 NetCDF and Zarr read back with rasterio, xarray and rioxarray."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from vmrnn_cli.data.timeaxis import time_labels
from vmrnn_cli.errors import OptionError, VmrnnError
from vmrnn_cli.io import cf, cog
from vmrnn_cli.io.cf import variable_names, write_netcdf, write_zarr
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
    with pytest.raises(OptionError, match="forecast.tif: ends in .tif, which names no forecast format"):
        infer_format(Path("out/forecast.tif"))  # refused, not made a directory called forecast.tif
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


def gdal_warnings(caplog: pytest.LogCaptureFixture, *paths: str) -> tuple[list[str], list[dict]]:
    """What GDAL logs (through rasterio) at WARNING or above while each path is opened and read, and what it read."""
    caplog.clear()
    opened = []
    with caplog.at_level(logging.WARNING):
        for path in paths:
            with rasterio.open(path) as src:
                opened.append(
                    {
                        "subdatasets": src.subdatasets,
                        "crs": src.crs,
                        "transform": src.transform,
                        "shape": (src.count, src.height, src.width),
                        "nodata": src.nodata,
                        "tags": src.tags(1) if src.count else {},
                        "values": src.read(masked=True) if src.count else None,
                    }
                )
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING], opened


def reference(times: np.ndarray) -> object:
    """The forecast reference time one step before the first valid time."""
    return times[0] - (times[1] - times[0])


PROJECTED, GEOGRAPHIC = "EPSG:32633", "EPSG:4326"
CASES = [(PROJECTED, DAYS), (GEOGRAPHIC, DAYS), (PROJECTED, NOLEAP_HOURS)]
CASE_IDS = ["projected", "geographic", "noleap"]


@pytest.mark.parametrize("crs, times", CASES, ids=CASE_IDS)
def test_netcdf_is_cf_compliant(tmp_path: Path, crs: str, times: np.ndarray) -> None:
    [path] = write_netcdf(forecast(times, crs=crs), tmp_path / "f.nc", -9999.0, reference(times))
    report = compliance(path)
    findings = [m for group in report["high_priorities"] + report["medium_priorities"] for m in group["msgs"]]
    assert report["high_count"] == 0 and report["medium_count"] == 0, findings
    assert report["scored_points"] > 100  # the checks ran


@pytest.mark.parametrize("crs, times", CASES, ids=CASE_IDS)
def test_netcdf_reads_back_in_xarray(tmp_path: Path, crs: str, times: np.ndarray) -> None:
    da = forecast(times, crs=crs)
    ref = reference(times)
    [path] = write_netcdf(da, tmp_path / "f.nc", -9999.0, ref)
    ds = xr.open_dataset(path, decode_coords="all", decode_times=CFTIME)
    y, x = ("lat", "lon") if crs == GEOGRAPHIC else ("y", "x")
    assert list(ds.data_vars) == ["red", "nir"]
    assert dict(ds.sizes) == {"time": 3, y: 23, x: 31}
    if crs == GEOGRAPHIC:
        assert (ds["lat"].attrs["standard_name"], ds["lat"].attrs["units"]) == ("latitude", "degrees_north")
        assert (ds["lon"].attrs["standard_name"], ds["lon"].attrs["units"]) == ("longitude", "degrees_east")
    else:
        assert (ds["y"].attrs["standard_name"], ds["y"].attrs["units"]) == ("projection_y_coordinate", "m")
        assert (ds["x"].attrs["standard_name"], ds["x"].attrs["units"]) == ("projection_x_coordinate", "m")
    np.testing.assert_array_equal(ds[x].values, da["x"].values)
    np.testing.assert_array_equal(ds[y].values, da["y"].values)
    calendar = "noleap" if times is NOLEAP_HOURS else "proleptic_gregorian"
    as_text = [pd.Timestamp(t).isoformat() if times is DAYS else t.isoformat() for t in times]
    assert ds["time"].encoding["calendar"] == calendar
    assert ds["time"].encoding["units"].startswith("days since" if times is DAYS else "hours since")
    assert [t.isoformat() for t in ds["time"].values] == as_text
    assert ds["forecast_reference_time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["forecast_reference_time"].item().isoformat() == (pd.Timestamp(ref) if times is DAYS else ref).isoformat()
    assert ds["forecast_reference_time"].encoding["calendar"] == calendar
    assert ds["forecast_period"].dims == ("time",)
    assert ds["forecast_period"].attrs["standard_name"] == "forecast_period"
    step = pd.Timedelta(days=16) if times is DAYS else pd.Timedelta(hours=6)
    assert list(ds["forecast_period"].values) == [step * k for k in (1, 2, 3)]
    for band in ("red", "nir"):
        var = ds[band]
        assert var.dims == ("time", y, x)
        assert var.attrs["long_name"] == band
        assert var.encoding["grid_mapping"] == "spatial_ref"
        assert var.encoding["_FillValue"] == -9999.0
        assert {"forecast_period", "forecast_reference_time"} <= set(var.coords)
        assert var.rio.crs == da.rio.crs
        assert var.rio.transform().almost_equals(da.rio.transform())
        np.testing.assert_array_equal(var.values, da.sel(band=band).values)  # NaN where nodata
    with netCDF4.Dataset(path) as nc:
        assert nc.Conventions == "CF-1.8" and nc.source.startswith("vmrnn") and nc.title and nc.history
        nc.set_auto_mask(False)
        raw = nc["red"][:]
    assert (raw[:, :3, :4] == -9999.0).all() and not (raw[:, 3:, 4:] == -9999.0).any()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the container of subdatasets
@pytest.mark.parametrize("crs", [PROJECTED, GEOGRAPHIC])
def test_netcdf_opens_in_gdal_without_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture, crs: str) -> None:
    da = forecast(DAYS, crs=crs)
    [path] = write_netcdf(da, tmp_path / "f.nc", -9999.0, reference(DAYS))
    subdatasets = [f'NETCDF:"{path}":{band}' for band in ("red", "nir")]
    warnings, [container, *bands] = gdal_warnings(caplog, str(path), *subdatasets)
    assert warnings == []
    assert [s.rsplit(":", 1)[-1] for s in container["subdatasets"]] == ["red", "nir"]
    for band, src in zip(("red", "nir"), bands):
        assert src["crs"] == da.rio.crs
        assert src["transform"].almost_equals(da.rio.transform())
        assert src["shape"] == (3, 23, 31)  # one GDAL band per lead time
        assert src["nodata"] == -9999.0
        assert src["tags"]["NETCDF_VARNAME"] == band
        values = src["values"]
        assert values.mask[:, :3, :4].all() and not values.mask[:, 3:, 4:].any()
        np.testing.assert_array_equal(values.filled(np.nan), da.sel(band=band).values)


def test_gdal_warnings_are_seen(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The capture above sees GDAL's warnings: the old (band, time, y, x) layout draws them (GDAL checks the
    dimensions of a file that says it follows CF)."""
    old = forecast(DAYS).transpose("band", "time", "y", "x").assign_coords(band=[1, 2]).to_dataset(name="forecast")
    old.attrs["Conventions"] = "CF-1.8"
    old.to_netcdf(tmp_path / "old.nc")
    warnings, _ = gdal_warnings(caplog, f'NETCDF:"{tmp_path / "old.nc"}":forecast')
    assert any("is not a Time dimension" in w for w in warnings), warnings


def test_netcdf_is_deflated_and_chunked_per_time_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [path] = write_netcdf(forecast(DAYS), tmp_path / "f.nc", None, reference(DAYS))
    monkeypatch.setattr(cf, "MAX_CHUNK_SIDE", 16)  # a huge scene: chunks of at most 16 x 16 here
    [capped] = write_netcdf(forecast(DAYS), tmp_path / "capped.nc", None, reference(DAYS))
    for file, chunks in ((path, [1, 23, 31]), (capped, [1, 16, 16])):
        with netCDF4.Dataset(file) as nc:
            for band in ("red", "nir"):
                filters = nc[band].filters()
                assert filters["zlib"] and filters["complevel"] == 4 and filters["shuffle"]
                assert nc[band].chunking() == chunks
                assert np.isnan(nc[band].getncattr("_FillValue"))


def test_band_names_become_valid_unique_variable_names(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bands = ("band 1", "B04/red", "865nm", "band_1", "time")
    da = forecast(DAYS, bands=bands)
    [path] = write_netcdf(da, tmp_path / "f.nc", -9999.0, reference(DAYS))
    names = ["band_1", "B04_red", "band_865nm", "band_1_2", "time_2"]
    with xr.open_dataset(path, decode_coords="all") as ds:
        assert list(ds.data_vars) == names
        assert [ds[name].attrs["long_name"] for name in names] == list(bands)
        for name, band in zip(names, bands):
            np.testing.assert_array_equal(ds[name].values, da.sel(band=band).values)
    report = compliance(path)
    assert report["high_count"] == 0 and report["medium_count"] == 0, report["medium_priorities"]
    warnings, _ = gdal_warnings(caplog, *(f'NETCDF:"{path}":{name}' for name in names))
    assert warnings == []
    # the compliance checker does flag a name that is not sanitized
    with netCDF4.Dataset(path, "a") as nc:
        nc.renameVariable("B04_red", "B04 red")
    assert compliance(path)["medium_count"] == 1


def test_variable_names() -> None:
    assert variable_names(["red", "Red", "RED"]) == ["red", "Red_2", "RED_3"]  # a case-insensitive file system
    assert variable_names(["", "_", "é", "x", "ndvi (0-1)"], taken={"x", "y"}) == [
        "band_1",
        "band_2",
        "band_3",
        "x_2",
        "ndvi_0_1",
    ]


def test_noleap_lead_times_skip_the_leap_day(tmp_path: Path) -> None:
    times = xr.date_range("2024-02-27", periods=3, freq="D", calendar="noleap", use_cftime=True).values
    [path] = write_netcdf(forecast(times), tmp_path / "f.nc", None, reference(times))
    ds = xr.open_dataset(path, decode_times=CFTIME)
    assert [t.isoformat()[:10] for t in ds["time"].values] == ["2024-02-27", "2024-02-28", "2024-03-01"]
    assert list(ds["forecast_period"].values) == [pd.Timedelta(days=d) for d in (1, 2, 3)]
    assert ds["time"].encoding["units"].startswith("days since 2024-02-26")
    with netCDF4.Dataset(path) as nc:
        assert list(nc["forecast_period"][:]) == [1, 2, 3] and nc["forecast_period"].units == "days"
        assert list(nc["time"][:]) == [1, 2, 3]


@pytest.mark.parametrize("crs", [PROJECTED, GEOGRAPHIC])
def test_zarr_reads_back_without_loss(tmp_path: Path, crs: str) -> None:
    da = forecast(NOLEAP_HOURS, crs=crs)
    ref = reference(NOLEAP_HOURS)
    [path] = write_zarr(da, tmp_path / "f.zarr", None, ref)
    assert (path / ".zmetadata").exists()  # Zarr v2, consolidated: GDAL and QGIS read it
    ds = xr.open_zarr(path, decode_coords="all", decode_times=CFTIME)
    y, x = ("lat", "lon") if crs == GEOGRAPHIC else ("y", "x")
    assert sorted(ds.data_vars) == ["nir", "red"]  # Zarr v2 lists arrays by name
    assert list(ds["time"].values) == list(NOLEAP_HOURS)
    assert ds["forecast_reference_time"].item() == ref
    assert list(ds["forecast_period"].values) == [pd.Timedelta(hours=6 * k) for k in (1, 2, 3)]
    for band in ("red", "nir"):
        assert ds[band].dims == ("time", y, x)
        assert ds[band].encoding["chunks"] == (1, 23, 31)
        assert ds[band].attrs["long_name"] == band
        assert ds[band].rio.crs == da.rio.crs
        assert ds[band].rio.transform().almost_equals(da.rio.transform())
        np.testing.assert_array_equal(ds[band].values, da.sel(band=band).values)


@pytest.mark.parametrize("name, writer", [("out", write_cog), ("f.nc", write_netcdf), ("f.zarr", write_zarr)])
def test_existing_output_is_kept_without_overwrite(tmp_path: Path, name: str, writer) -> None:
    target = tmp_path / name
    target.mkdir() if name != "f.nc" else target.write_text("keep me")
    with pytest.raises(VmrnnError, match="already exists"):
        writer(forecast(DAYS), target, -9999.0, DAYS[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    writer(forecast(DAYS), target, -9999.0, DAYS[0], overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
