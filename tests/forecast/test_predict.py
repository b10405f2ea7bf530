"""`vmrnn predict`: whole-scene georeferenced forecasts as COGs, NetCDF or Zarr, and every bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from support.series import make_netcdf, make_series_array, write_geotiffs

from vmrnn_cli import synthetic
from vmrnn_cli.data.prepare import prepare
from vmrnn_cli.data.timeaxis import valid_times
from vmrnn_cli.forecast.rollout import CPU_BATCH, MAX_GPU_BATCH, batch_for_memory
from vmrnn_cli.io.outputs import manifest_files
from vmrnn_cli.io.readers import read_rasters
from vmrnn_cli.options import PrepareOptions
from vmrnn_cli.training.loop import train


def last_time(tifs) -> pd.Timestamp:
    return pd.Timestamp(read_rasters([str(p) for p in tifs])["time"].values[-1])


def test_cog_forecast_reads_back(cli, tiny_run, tmp_path) -> None:
    scene = tmp_path / "scene"
    scene.mkdir()
    for path in tiny_run.tifs[-4:]:
        shutil.copy(path, scene / path.name)
    for path in sorted(scene.iterdir())[-3:]:  # a block that is nodata in every context frame
        with rasterio.open(path, "r+") as dst:
            data = dst.read()
            data[:, 2:6, 3:9] = dst.nodata
            dst.write(data)
    out = tmp_path / "forecast"
    code, stdout, err = cli(
        ["predict", "-m", tiny_run.run, "--horizon", "4", *sorted(scene.iterdir()), "-o", out, "--device", "cpu"]
    )
    assert code == 0, err
    start = last_time(tiny_run.tifs)
    expected = [start + pd.Timedelta(days=16 * k) for k in range(1, 5)]
    assert stdout.split() == [str(out / f"{t:%Y-%m-%d}.tif") for t in expected]
    with rasterio.open(tiny_run.tifs[0]) as ref:
        crs, transform, shape = ref.crs, ref.transform, ref.shape
    for path, when in zip(stdout.split(), expected):
        assert cog_validate(path)[0]
        with rasterio.open(path) as src:
            assert (src.crs, src.transform, src.shape, src.count) == (crs, transform, shape, 1)
            assert src.nodata == -9999 and src.dtypes[0] == "float32"
            assert src.tags()["TIFFTAG_DATETIME"] == f"{when:%Y:%m:%d} 00:00:00"
            values = src.read(1, masked=True)
        assert values.mask[2:6, 3:9].all()
        assert values.mask.sum() == 4 * 6  # every other pixel has a forecast
        assert 0.0 < values.mean() < 1.5  # physical units (the synthetic field lies in about [0.2, 1])
    again = read_rasters([str(out / "*.tif")])
    assert [pd.Timestamp(t) for t in again["time"].values] == expected


def test_json_summary_and_context(cli, tiny_run, tmp_path) -> None:
    out = tmp_path / "f"
    code, stdout, err = cli(
        [
            "predict",
            "-m",
            tiny_run.run / "best.pt",
            "--horizon",
            "1",
            "--context",
            "2",
            "--overlap",
            "0",
            *tiny_run.tifs,
            "-o",
            out,
            "--json",
        ]
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["paths"] == [str(p) for p in sorted(out.glob("*.tif"))] and len(summary["paths"]) == 1
    assert manifest_files(out) == {"2025-04-25.tif"}  # what --overwrite may replace
    assert (summary["horizon"], summary["context"], summary["format"]) == (1, 2, "cog")
    assert summary["crs"] == "EPSG:32633" and summary["shape"] == [1, 20, 24] and summary["tiles"] == 4
    assert summary["batch_size"] == CPU_BATCH  # not given: the CPU's default (GPU: tests/test_gpu.py)
    assert summary["reference_time"] == last_time(tiny_run.tifs).isoformat()


def test_netcdf_forecast_is_cf_compliant(cli, tiny_run, tmp_path) -> None:
    out = tmp_path / "forecast.nc"
    code, stdout, err = cli(["predict", "-m", tiny_run.run, "--horizon", "3", *tiny_run.tifs, "-o", out])
    assert code == 0, err
    assert stdout.split() == [str(out)]
    report_path = tmp_path / "report.json"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "compliance-checker"),
            "--test=cf:1.8",
            "-f",
            "json",
            "-o",
            str(report_path),
            str(out),
        ],
        capture_output=True,
    )
    report = json.loads(report_path.read_text())["cf:1.8"]
    assert report["high_count"] == 0 and report["medium_count"] == 0
    ds = xr.open_dataset(out, decode_coords="all")
    assert list(ds.data_vars) == ["band1"] and ds["band1"].dims == ("time", "y", "x")  # one variable per band
    assert ds["band1"].rio.crs.to_epsg() == 32633 and ds.sizes["time"] == 3
    assert pd.Timestamp(ds["time"].values[0]) == last_time(tiny_run.tifs) + pd.Timedelta(days=16)


def test_zarr_forecast_from_a_noleap_netcdf(cli, tmp_path) -> None:
    nc = make_netcdf(tmp_path / "in.nc", calendar="noleap", n_frames=12, height=20, width=24, crs="EPSG:32633")
    cube = tmp_path / "cube.zarr"
    prepare([str(nc)], cube, PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(1, 0, 0)))
    train(cube, tmp_path / "run", given={"embed_dim": 8, "depths": [1], "epochs": 1, "device": "cpu"})
    out = tmp_path / "f.zarr"
    code, _stdout, err = cli(["predict", "-m", tmp_path / "run", "--horizon", "2", nc, "-o", out])
    assert code == 0, err
    ds = xr.open_zarr(out, decode_coords="all", decode_times=xr.coders.CFDatetimeCoder(use_cftime=True))
    assert ds["ndvi"].rio.crs.to_epsg() == 32633
    last = read_rasters([str(nc)])["time"].values[-1]  # 2024-06-26 in the noleap calendar
    assert [t.isoformat() for t in ds["time"].values] == ["2024-07-12T00:00:00", "2024-07-28T00:00:00"]
    assert ds["time"].values[0] - last == pd.Timedelta(days=16)
    assert ds["time"].values[0].calendar == "noleap"


@pytest.mark.parametrize(
    "per_tile, free, expected",
    [
        (2**20, 100 * 2**20, 50),  # half of the free memory, a whole number of tiles
        (3 * 2**20, 100 * 2**20, 16),
        (2**20, 2**40, MAX_GPU_BATCH),  # capped: the rollout is compute-bound long before
        (2**30, 2**20, 1),  # one tile even when it looks too big: forecasting one at a time is the floor
        (0.0, 2**30, MAX_GPU_BATCH),
        (2**20, -(2**20), 1),  # the forecast canvas took more than was free
    ],
)
def test_batch_for_memory(per_tile: float, free: int, expected: int) -> None:
    assert batch_for_memory(per_tile, free) == expected


def test_valid_times_follow_the_calendar() -> None:
    months = pd.date_range("2024-01-01", periods=4, freq="MS").values
    assert [str(t)[:10] for t in valid_times(months, 2, None)] == ["2024-05-01", "2024-06-01"]
    irregular = np.array(["2024-01-01", "2024-01-03", "2024-01-08"], dtype="datetime64[ns]")
    assert [str(t)[:10] for t in valid_times(irregular, 2, None)] == ["2024-01-13", "2024-01-18"]
    one = np.array(["2024-01-01T00:00"], dtype="datetime64[ns]")
    assert str(valid_times(one, 1, 3600.0)[0])[:16] == "2024-01-01T01:00"


def one_line_error(code, out, err, culprit, output: Path, exit_code: int = 1) -> None:
    assert code == exit_code and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmrnn: error: ") and str(culprit) in lines[0], err
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "problem, match",
    [
        ("not_a_checkpoint", "not a vmrnn checkpoint"),
        ("resolution", "pixel size 60 m differs from the training cube's 30 m by more than 25%"),
        ("bands", "2 band(s) differ from the training cube's 1"),
        ("too_few", "2 frame(s), fewer than the 3 context frames"),
        ("all_nodata", "the last 3 frames hold no valid pixel"),
        ("horizon", "--horizon: must be a positive integer, got 0"),
        ("overlap", "--overlap: must be between 0 and 15"),
        ("exists", "already exists"),
    ],
)
def test_bad_inputs(cli, tiny_run, tmp_path, problem: str, match: str) -> None:
    model, inputs, output, extra = tiny_run.run, [str(p) for p in tiny_run.tifs], tmp_path / "out" / "f", []
    output.parent.mkdir()
    culprit = inputs[0]
    if problem == "not_a_checkpoint":
        model = culprit = tmp_path / "model.pt"
        model.write_text("hello")
    elif problem in ("resolution", "bands"):
        kwargs = {"resolution": {"resolution": 60.0}, "bands": {"bands": 2}}[problem]
        inputs = [
            str(p)
            for p in synthetic.make_geotiff_series(tmp_path / "other", n_frames=4, height=20, **{"width": 24, **kwargs})
        ]
        culprit = inputs[0]
    elif problem == "too_few":
        inputs = inputs[-2:]
        culprit = inputs[0]
    elif problem == "all_nodata":
        (tmp_path / "empty").mkdir()
        inputs = [shutil.copy(path, tmp_path / "empty" / Path(path).name) for path in inputs[-3:]]
        for path in inputs:
            with rasterio.open(path, "r+") as dst:
                dst.write(np.full((dst.count, dst.height, dst.width), dst.nodata, dtype=dst.dtypes[0]))
        culprit = inputs[0]
    elif problem == "horizon":
        extra, culprit = ["--horizon", "0"], "--horizon"
    elif problem == "overlap":
        extra, culprit = ["--overlap", "16"], "--overlap"
    elif problem == "exists":
        output.mkdir()
        culprit = output
    args = ["predict", "-m", model, *inputs, "-o", output, *(extra or ["--horizon", "2"])]
    if problem == "overlap":
        args += ["--horizon", "2"]
    code, out, err = cli(args)
    if problem == "exists":
        assert code == 1 and match in err and str(output) in err and list(output.iterdir()) == []
        return
    assert match in err
    one_line_error(code, out, err, culprit, output, exit_code=2 if problem in ("horizon", "overlap") else 1)


# ---- a model applied elsewhere, and the time axis ---------------------------------------------------------------


def _skill(model_run, tifs, context: int, horizon: int, tmp_path: Path, cli) -> float:
    """1 - MSE(forecast) / MSE(persistence) on the frames after the context (the series' own truth)."""
    out = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
    code, _, err = cli(
        [
            "predict",
            "-m",
            model_run,
            "--horizon",
            horizon,
            *tifs[-context - horizon : -horizon],
            "-o",
            out,
            "--device",
            "cpu",
        ]
    )
    assert code == 0, err
    forecast = read_rasters([str(out / "*.tif")]).values
    series = read_rasters([str(p) for p in tifs]).values
    truth, last = series[-horizon:], series[-horizon - 1]
    observed = np.isfinite(series[-context - horizon : -horizon]).any(axis=0)
    assert np.isfinite(forecast[:, observed]).all()
    valid = np.isfinite(truth) & np.isfinite(forecast) & np.isfinite(last)[None]
    return 1 - np.mean((forecast - truth)[valid] ** 2) / np.mean((last[None] - truth)[valid] ** 2)


def test_a_model_forecasts_another_utm_zone_and_a_larger_extent(cli, tmp_path) -> None:
    """The checkpoint's grid is metadata: a model trained on one tile forecasts another, in the next UTM zone and
    twice as wide, on that tile's own grid. The other tile holds the training tile's values twice side by side, so
    that "the skill it has on its training tile" is a number to compare with (equal but for the tiles' seams)."""
    field = make_series_array(30, 40, 24, seed=3)
    mine = write_geotiffs(tmp_path / "zone33", field, "EPSG:32633", (500000.0, 5000000.0))
    twice = np.concatenate([field, field], axis=-1)
    neighbour = write_geotiffs(tmp_path / "zone34", twice, "EPSG:32634", (300000.0, 5100000.0))
    cube, run = tmp_path / "cube.zarr", tmp_path / "run"
    prepare(
        [str(p) for p in mine],
        cube,
        PrepareOptions(input_frames=3, output_frames=2, window=16, stride=8, split=(0.6, 0.2, 0.2)),
    )
    train(cube, run, given={"embed_dim": 8, "depths": [1], "epochs": 2, "device": "cpu", "seed": 1})
    out = tmp_path / "f.nc"
    code, _, err = cli(["predict", "-m", run, "--horizon", "2", *neighbour, "-o", out])
    assert code == 0, err
    ds = xr.open_dataset(out, decode_coords="all")
    assert ds.rio.crs.to_epsg() == 32634 and ds.sizes["y"] == 40 and ds.sizes["x"] == 48
    with rasterio.open(neighbour[0]) as src:
        assert tuple(ds.rio.transform())[:6] == tuple(src.transform)[:6]
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    trained, elsewhere = _skill(run, mine, 3, 2, here, cli), _skill(run, neighbour, 3, 2, there, cli)
    assert abs(trained - elsewhere) < 0.05 * max(1.0, abs(trained)), (trained, elsewhere)


def test_a_pixel_size_far_from_the_training_one_needs_the_flag(cli, tiny_run, tmp_path) -> None:
    coarse = synthetic.make_geotiff_series(tmp_path / "coarse", n_frames=4, height=20, width=24, resolution=60.0)
    args = ["predict", "-m", tiny_run.run, "--horizon", "1", *coarse, "-o", tmp_path / "f"]
    code, out, err = cli(args)
    assert code == 1 and out == ""
    assert err.strip().endswith(
        "pixel size 60 m differs from the training cube's 30 m by more than 25%; pass "
        "--allow-resolution-change to forecast it anyway"
    )
    code, out, err = cli([*args, "--allow-resolution-change"])
    assert code == 0 and len(out.split()) == 1, err


def test_missing_dates_become_nodata_frames_and_the_context_must_follow_the_step(cli, tiny_run, tmp_path) -> None:
    """Two dates gone from a 16-daily series: prepare puts nodata frames there; predict refuses a context with the
    gap unless --freq fills it, and dates the forecast by the model's step."""
    gappy = [p for i, p in enumerate(tiny_run.tifs) if i not in (10, 27)]
    cube = tmp_path / "cube.zarr"
    code, _, err = cli(
        [
            "prepare",
            *gappy,
            "-o",
            cube,
            "--input-frames",
            "3",
            "--output-frames",
            "2",
            "--window",
            "16",
            "--stride",
            "8",
            "--split",
            "1,0,0",
        ]
    )
    assert code == 0, err
    assert "every 16D (2 missing, filled as nodata)" in err
    ds = xr.open_zarr(cube)
    times = pd.DatetimeIndex(ds["time"].values)
    assert len(times) == 30 and (np.diff(times) == pd.Timedelta(days=16)).all()
    for index in (10, 27):
        assert times[index] == last_time(tiny_run.tifs[index : index + 1])
        assert np.isnan(ds["data"].isel(time=index).values).all()
    valid = np.isfinite(ds["data"].values)  # windows keep the valid-fraction rule, the nodata frames counted
    assert len(ds["windows_train"]) > 0
    for t0, y0, x0 in ds["windows_train"].values:
        assert valid[t0 : t0 + 5, :, y0 : y0 + 16, x0 : x0 + 16].mean() >= 0.5
    code, out, err = cli(["predict", "-m", tiny_run.run, "--horizon", "2", *gappy[-3:], "-o", tmp_path / "f"])
    assert code == 1 and out == "" and "are not one step of 16D apart" in err and "--freq" in err
    code, out, err = cli(
        ["predict", "-m", tiny_run.run, "--horizon", "2", *gappy[-3:], "-o", tmp_path / "f", "--freq", "16D"]
    )
    assert code == 0, err
    after = last_time(tiny_run.tifs)
    assert out.split() == [str(tmp_path / "f" / f"{after + pd.Timedelta(days=16 * k):%Y-%m-%d}.tif") for k in (1, 2)]
