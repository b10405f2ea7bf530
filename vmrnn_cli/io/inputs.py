"""The input paths of a command: globs expanded, kinds told apart, named in error lines; frames ordered by time."""

from __future__ import annotations

import glob
import itertools
import os
from pathlib import Path

import numpy as np

from vmrnn_cli.errors import VmrnnError

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf"}


def describe_inputs(paths: list[str]) -> str:
    """The inputs as named in an error line: the first one, and how many more."""
    return paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"


def expand_inputs(paths: list[str]) -> list[Path]:
    """Expand shell-style globs (quoted ones too, as cron jobs pass them) and check every path exists."""
    files: list[Path] = []
    for text in paths:
        if not os.path.exists(text) and glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise VmrnnError(f"{text}: no file matches this pattern")
            files.extend(Path(m) for m in matches)
        elif not os.path.exists(text):
            raise VmrnnError(f"{text}: no such file or directory")
        else:
            files.append(Path(text))
    if not files:
        raise VmrnnError("no input given")
    return files


def input_kind(path: Path) -> str:
    """'netcdf', 'zarr' or 'geotiff' (anything else GDAL reads) from the path."""
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return "netcdf"
    if path.is_dir() and not any((path / marker).exists() for marker in (".zgroup", ".zarray", "zarr.json")):
        raise VmrnnError(f"{path}: is a directory but not a Zarr store; for a GeoTIFF series pass '{path}/*.tif'")
    if path.suffix.lower() == ".zarr" or path.is_dir():
        return "zarr"
    return "geotiff"


def first_line(err: Exception) -> str:
    """The first line of an exception's message (its type name when empty)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def sorted_by_time(times: list, files: list[Path]) -> np.ndarray:
    """Indices that sort `times`; refuses duplicates, naming both files."""
    order = np.argsort(np.array(times, dtype=object), kind="stable")
    for a, b in itertools.pairwise(order):
        if times[a] == times[b] and files[a] == files[b]:
            raise VmrnnError(f"{files[b]}: duplicate time {times[b]}")
        if times[a] == times[b]:
            raise VmrnnError(f"{files[b]}: time {times[b]} duplicates {files[a]}")
    return order
