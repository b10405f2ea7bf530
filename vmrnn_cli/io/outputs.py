"""What may be written where: every check on an output path that can be made before any compute, and the marks
by which vmrnn knows its own outputs, so that `overwrite` replaces only what vmrnn wrote.

A directory vmrnn writes holds a manifest (MANIFEST) listing the files it wrote there; a single file carries
vmrnn's mark inside (a NetCDF `source` attribute, a PNG `Software` text, a JSON `written_by` key).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from vmrnn_cli import __version__
from vmrnn_cli.errors import VmrnnError

MANIFEST = ".vmrnn-manifest.json"
WRITTEN_BY = f"vmrnn {__version__}"


def write_manifest(directory: Path, files: Iterable[str] | None = None) -> None:
    """Record the files vmrnn wrote in `directory` (relative paths; None: every file there now)."""
    directory = Path(directory)
    if files is None:
        files = (str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() or p.is_symlink())
    listed = sorted({str(f) for f in files} - {MANIFEST})
    (directory / MANIFEST).write_text(json.dumps({"written_by": WRITTEN_BY, "files": listed}, indent=1) + "\n")


def manifest_files(directory: Path) -> set[str] | None:
    """The files the directory's manifest lists, or None when it has no readable manifest."""
    try:
        values = json.loads((Path(directory) / MANIFEST).read_text())
        return {str(f) for f in values["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def foreign_file(directory: Path) -> Path | None:
    """A file in `directory` that vmrnn did not write there (None when every one is in its manifest, or when it
    holds no file at all)."""
    directory = Path(directory)
    listed = manifest_files(directory) or set()
    for path in sorted(directory.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        if str(path.relative_to(directory)) not in listed and path.name != MANIFEST:
            return path
    return None


def written_by_vmrnn(path: Path) -> bool:
    """Whether a single file carries vmrnn's mark (NetCDF, PNG and JSON outputs do; nothing else counts)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return str(json.loads(path.read_text()).get("written_by", "")).startswith("vmrnn")
        if suffix == ".png":
            return _png_text(path).get("Software", "").startswith("vmrnn")
        if suffix == ".nc":
            import netCDF4

            with netCDF4.Dataset(path) as ds:
                return str(getattr(ds, "source", "")).startswith("vmrnn")
    except (OSError, ValueError, AttributeError, RuntimeError):
        return False
    return False


def _png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file (keyword -> text)."""
    texts: dict[str, str] = {}
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return texts
        while header := handle.read(8):
            length, kind = struct.unpack(">I4s", header)
            data = handle.read(length)
            handle.read(4)  # CRC
            if kind == b"tEXt" and b"\0" in data:
                key, text = data.split(b"\0", 1)
                texts[key.decode("latin-1")] = text.decode("latin-1")
            if kind == b"IEND":
                break
    return texts


def check_output(target: Path, overwrite: bool, inputs: Iterable[Path] = (), directory: bool = False) -> None:
    """Refuse, before any compute, an output that cannot or must not be written (VmrnnError naming it).

    Refused: what `check_place` refuses; an existing output unless `overwrite`, and with it one vmrnn did not
    write (naming a foreign file).
    """
    check_place(target, inputs)
    if Path(target).exists():
        _check_replaceable(Path(target), overwrite, directory)


def check_place(target: Path, inputs: Iterable[Path] = ()) -> None:
    """Refuse an output path that is a symbolic link, the current directory or one holding it, an input or a
    directory holding one, or whose nearest existing folder is not a writable directory."""
    target = Path(target)
    if target.is_symlink():
        raise VmrnnError(f"{target}: is a symbolic link; give the real path of the output")
    resolved = target.resolve()
    if Path.cwd().resolve().is_relative_to(resolved):
        raise VmrnnError(f"{target}: is the current directory or holds it; give a new path for the output")
    for source in inputs:
        source = Path(source).resolve()
        if source == resolved or source.is_relative_to(resolved):
            what = "is one of the inputs" if source == resolved else f"holds the input {source}"
            raise VmrnnError(f"{target}: {what}; give another output (inputs are never replaced)")
    _check_parent(target)


def _check_replaceable(target: Path, overwrite: bool, directory: bool) -> None:
    if not overwrite:
        raise VmrnnError(f"{target}: already exists; pass `overwrite` to replace it")
    if directory != target.is_dir():
        kind = "a directory" if target.is_dir() else "a file"
        raise VmrnnError(f"{target}: is {kind}, not the kind of output asked for; give another path")
    if directory:
        foreign = foreign_file(target)
        if foreign is not None:
            reason = (
                "has no vmrnn manifest" if foreign.name == MANIFEST else f"holds {foreign}, which vmrnn did not write"
            )
            raise VmrnnError(f"{target}: {reason}; `overwrite` replaces only vmrnn's own outputs")
    elif not written_by_vmrnn(target):
        raise VmrnnError(f"{target}: was not written by vmrnn; `overwrite` replaces only vmrnn's own outputs")


def _check_parent(target: Path) -> None:
    """The nearest existing ancestor must be a directory this process may write into."""
    parent = target.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise VmrnnError(f"{target}: cannot be created, {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VmrnnError(f"{target}: cannot be written, {parent} is not writable (permission denied)")
