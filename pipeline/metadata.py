"""What a scene file says about itself beyond its pixels: when it was acquired.

One reader for the STAC item's ``datetime`` (:mod:`pipeline.outputs.stac`) and for which of two scenes is
the earlier in the building change layer (:mod:`pipeline.vectors.changes`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import rasterio
import rasterio.errors

__all__ = ["Acquisition", "acquisition_time"]


@dataclass(frozen=True)
class Acquisition:
    """When a scene was acquired, and the metadata item that says so."""

    time: datetime
    source: str


# Metadata items that hold an acquisition time, most specific first (compared case-insensitively):
# GDAL's IMAGERY domain (filled from satellite metadata files), common keys of the default domain, and
# the TIFF DateTime tag, which drone and camera software set to the capture time.
_TIME_KEYS = (
    "ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "ACQUISITION_DATE", "ACQUISITIONDATE", "ACQUISITION_TIME",
    "DATE_ACQUIRED", "DATETIME", "TIFFTAG_DATETIME",
)  # fmt: skip
_TIFF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)")


def _parse_time(text: str) -> datetime | None:
    """An ISO 8601 or TIFF ("YYYY:MM:DD HH:MM:SS") time; a time without zone is taken as UTC."""
    text = text.strip()
    if match := _TIFF_TIME.fullmatch(text):
        text = f"{match[1]}-{match[2]}-{match[3]}T{match[4]}"
    try:
        time = datetime.fromisoformat(text)
    except ValueError:
        return None  # "0000:00:00 00:00:00", free text: not a time
    return time if time.tzinfo else time.replace(tzinfo=UTC)


def acquisition_time(scene: str | os.PathLike[str]) -> Acquisition | None:
    """The acquisition time in a scene's metadata (None when it has none that parses as a time, or the file
    cannot be read)."""
    try:
        with rasterio.open(scene) as src:
            domains = [("IMAGERY", src.tags(ns="IMAGERY")), ("", src.tags())]
    except (rasterio.errors.RasterioError, OSError):  # the file is gone or unreadable: no time to read
        return None
    found = {key.upper(): (domain, key, value) for domain, tags in domains for key, value in tags.items()}
    for key in _TIME_KEYS:
        if key in found and (time := _parse_time(found[key][2])) is not None:
            domain, name, _ = found[key]
            return Acquisition(time, f"{domain}:{name}" if domain else name)
    return None
