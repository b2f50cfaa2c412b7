"""Shared fixtures: small real GeoTIFFs and a tiny real checkpoint, written to temporary directories."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

# Keep torch from fighting pytest for the two CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")

UTM = "EPSG:32645"


def write_geotiff(path: Path, data: np.ndarray, *, crs: str | None = UTM, transform=None, nodata=None) -> Path:
    """Write ``data`` (bands, rows, cols) as a tiled GeoTIFF with a real CRS and transform."""
    bands, rows, cols = data.shape
    transform = transform if transform is not None else from_origin(300000.0, 3000000.0, 0.5, 0.5)
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype.name,
                   transform=transform, nodata=nodata)
    if crs is not None:
        profile["crs"] = crs
    if rows >= 16 and cols >= 16:
        profile.update(tiled=True, blockxsize=16 * max(1, min(cols, 256) // 16), blockysize=16 * max(1, min(rows, 256) // 16))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def coordinate_image(rows: int, cols: int) -> np.ndarray:
    """Three bands whose values encode each pixel's (row, col): tiling bugs show as wrong numbers."""
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([r, c, r * cols + c]).astype(np.float32)


@pytest.fixture
def coord_scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "coords.tif", coordinate_image(157, 203))
