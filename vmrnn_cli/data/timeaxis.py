"""The time axis: steps of a series, the valid times of a forecast, and time values as text (any CF calendar)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import xarray as xr


def time_step_seconds(times: np.ndarray) -> float | None:
    """The last time step of a series in seconds (numpy datetime64 or cftime values); None for one frame."""
    if len(times) < 2:
        return None
    step = times[-1] - times[-2]
    return float(step / np.timedelta64(1, "s")) if isinstance(step, np.timedelta64) else step.total_seconds()


def valid_times(times: np.ndarray, horizon: int, step_seconds: float | None) -> np.ndarray:
    """The next `horizon` times after `times`: its own calendar frequency if regular, else its last step."""
    last = times[-1]
    use_cftime = not isinstance(last, np.datetime64)
    freq = xr.infer_freq(xr.DataArray(times, dims="time")) if len(times) >= 3 else None
    if freq is not None:
        calendar = getattr(last, "calendar", "standard")
        return xr.date_range(
            start=last, periods=horizon + 1, freq=freq, calendar=calendar, use_cftime=use_cftime
        ).values[1:]
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
