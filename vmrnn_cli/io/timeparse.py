"""Find the time of a raster from its file name (ISO dates or a strftime pattern) or its TIFF tag."""

from __future__ import annotations

import re
from datetime import datetime

# Most specific first; digits must not touch other digits, so "x20240305y" matches but "120240305" does not.
_ISO_PATTERNS = [
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})[T_ ](\d{2}):?(\d{2})(?::?(\d{2}))?(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})?(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
]

_STRFTIME_REGEX = {
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%m": r"\d{1,2}",
    "%d": r"\d{1,2}",
    "%H": r"\d{1,2}",
    "%M": r"\d{1,2}",
    "%S": r"\d{1,2}",
    "%j": r"\d{1,3}",
    "%b": r"[A-Za-z]{3}",
    "%B": r"[A-Za-z]+",
    "%%": "%",
}


def time_from_name(name: str) -> datetime | None:
    """The leftmost valid ISO-like date/time anywhere in `name` (2024-03-05, 20240305T1200 ...).

    At one position the most specific pattern (with a time of day) wins.
    """
    found: list[tuple[int, datetime]] = []
    for pattern in _ISO_PATTERNS:
        for match in pattern.finditer(name):
            parts = [int(g) for g in match.groups() if g is not None]
            try:
                found.append((match.start(), datetime(*parts)))
            except ValueError:
                continue
            break
    return min(found, key=lambda item: item[0])[1] if found else None


def time_from_format(name: str, time_format: str) -> datetime | None:
    """The time matching strftime pattern `time_format` anywhere in `name`, or None."""
    regex = re.sub(r"%[A-Za-z%]|[^%]+", lambda m: _STRFTIME_REGEX.get(m.group(), re.escape(m.group())), time_format)
    for match in re.finditer(regex, name):
        try:
            return datetime.strptime(match.group(), time_format)
        except ValueError:
            continue
    return None


def time_from_tiff_tag(value: str | None) -> datetime | None:
    """Parse a TIFFTAG_DATETIME value ("YYYY:MM:DD HH:MM:SS"), or None when absent or malformed."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
