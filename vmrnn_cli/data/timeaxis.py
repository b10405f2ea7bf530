"""The time axis: steps of a series, the valid times of a forecast, and time values as text (any CF calendar)."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr

from vmrnn_cli.errors import VmrnnError


def time_step_seconds(times: np.ndarray) -> float | None:
    """The last time step of a series in seconds (numpy datetime64 or cftime values); None for one frame."""
    if len(times) < 2:
        return None
    step = times[-1] - times[-2]
    return float(step / np.timedelta64(1, "s")) if isinstance(step, np.timedelta64) else step.total_seconds()


def _alias(step: object) -> str:
    """A fixed step (numpy or datetime timedelta) as a pandas offset alias in its largest whole unit: 16D, 3h."""
    seconds = pd.Timedelta(step).total_seconds()
    for unit, size in (("D", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1e6)}us"


def _calendar_kwargs(times: np.ndarray) -> dict:
    first = times[0]
    use_cftime = not isinstance(first, np.datetime64)
    return {"calendar": getattr(first, "calendar", "standard") if use_cftime else "standard", "use_cftime": use_cftime}


def infer_step(times: np.ndarray) -> str | None:
    """The regular step of a series that may have gaps, as a pandas offset alias: its own frequency when it has
    none (16D, 3h, MS), else the most common spacing where every time lies on it, else whole months where every
    time is on one day of the month; None when no step fits (or fewer than two times)."""
    if len(times) < 2:
        return None
    if len(times) >= 3:
        freq = xr.infer_freq(xr.DataArray(times, dims="time"))
        if freq is not None:
            return freq
    offsets = [t - times[0] for t in times]
    steps, counts = np.unique(np.array([b - a for a, b in itertools.pairwise(times)]), return_counts=True)
    common = steps[np.argmax(counts)]
    if all(offset % common == offset * 0 for offset in offsets):
        return _alias(common)
    stamps = [timestamp(t) for t in times]
    if len({(s.day, s.hour, s.minute, s.second) for s in stamps}) == 1 and stamps[0].day == 1:
        months = [s.year * 12 + s.month for s in stamps]
        step = math.gcd(*(b - a for a, b in itertools.pairwise(months)))
        return "MS" if step == 1 else f"{step}MS"
    return None


def regular_times(start: object, freq: str, end: object = None, periods: int | None = None) -> np.ndarray:
    """Times every `freq` from `start` (in start's calendar) to `end`, or `periods` of them."""
    return xr.date_range(start=start, end=end, periods=periods, freq=freq, **_calendar_kwargs(np.array([start]))).values


def on_regular_axis(da: xr.DataArray, freq: str | None, source: str) -> tuple[xr.DataArray, str | None, int]:
    """The series on its regular time axis: steps missing from it inserted as all-NaN frames. Returns the series,
    its step (`freq`, else inferred; None for a single frame) and how many steps were missing.

    A series whose times fit no step, or do not lie on the step given, is refused naming an offending time."""
    times = da["time"].values
    step = freq or infer_step(times)
    if step is None:
        if len(times) < 2:
            return da, None, 0
        raise VmrnnError(
            f"{source}: the times follow no regular step (e.g. {iso_time(times[0])}, "
            f"{iso_time(times[1])}, {iso_time(times[2 % len(times)])}); pass `freq` to give one"
        )
    axis = regular_times(times[0], step, end=times[-1])
    found = pd.Index(axis).get_indexer(times)
    if (found < 0).any():
        off = times[int(np.argmin(found))]
        raise VmrnnError(
            f"{source}: time {iso_time(off)} is not on the regular step {step} from {iso_time(times[0])}; "
            "pass `freq` to give the series' step"
        )
    return da.reindex(time=axis), step, len(axis) - len(times)


def check_steps(times: np.ndarray, freq: str, source: str) -> None:
    """Refuse consecutive frames that are not `freq` apart (the model's step), naming the first gap."""
    expected = regular_times(times[0], freq, periods=len(times))
    for before, (got, wanted) in zip(times, zip(times[1:], expected[1:])):
        if got != wanted:
            raise VmrnnError(
                f"{source}: the frames {iso_time(before)} and {iso_time(got)} are not one step of {freq} "
                "apart, as the model's are; pass `freq` to fill the gap with nodata frames"
            )


def valid_times(times: np.ndarray, horizon: int, step_seconds: float | None, freq: str | None = None) -> np.ndarray:
    """The next `horizon` times after `times`: every `freq` (the model's step) when given, else the series' own
    calendar frequency if regular, else its last step."""
    last = times[-1]
    use_cftime = not isinstance(last, np.datetime64)
    freq = freq or (xr.infer_freq(xr.DataArray(times, dims="time")) if len(times) >= 3 else None)
    if freq is not None:
        return regular_times(last, freq, periods=horizon + 1)[1:]
    step = (
        times[-1] - times[-2]
        if len(times) >= 2
        else (np.timedelta64(int(step_seconds * 1e6), "us") if not use_cftime else timedelta(seconds=step_seconds))
    )
    return np.array([last + step * (k + 1) for k in range(horizon)])


def timestamp(value: object) -> object:
    """A time value with strftime/isoformat: pandas Timestamp for datetime64, the cftime object itself otherwise."""
    if isinstance(value, np.datetime64 | pd.Timestamp):
        return pd.Timestamp(value)
    return value


def iso_time(value: object) -> str:
    """ISO 8601 text of a datetime64, pandas or cftime time value."""
    return timestamp(value).isoformat()


def calendar_of(value: object) -> str:
    """The CF calendar of a time value ("proleptic_gregorian" for numpy/pandas times)."""
    return getattr(value, "calendar", "") or "proleptic_gregorian"


def time_labels(times: np.ndarray) -> list[str]:
    """File-name labels for valid times: `2024-03-05` for whole days, `20240305T1230` (+seconds if any) otherwise."""
    stamps = [timestamp(t) for t in times]
    if all((s.hour, s.minute, s.second) == (0, 0, 0) for s in stamps):
        fmt = "%Y-%m-%d"
    elif all(s.second == 0 for s in stamps):
        fmt = "%Y%m%dT%H%M"
    else:
        fmt = "%Y%m%dT%H%M%S"
    return [s.strftime(fmt) for s in stamps]
