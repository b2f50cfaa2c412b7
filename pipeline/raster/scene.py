"""Scenes: open a raster, describe it, and check it against a model before a pixel is read."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError

from pipeline.errors import SceneReadError, SceneValidationError
from pipeline.grid import GeoGrid, Shape2d

__all__ = ["SceneInfo", "configure_gdal", "open_scene", "check_scene_fits", "file_checksum", "scene_id_for"]


def configure_gdal() -> None:
    """GDAL settings of a run, set where a run starts (``prepare``, and each block worker).

    GDAL's block cache defaults to 5 % of RAM and keeps decoded scene tiles until it is full, so resident
    memory would grow with the scene up to that size (measured on an 8192^2 scene: peak RSS 1617 MiB with
    256 MB, 1430 MiB with 64 MB, 73 vs 76 s). Blocks are read once plus a thin halo, so a small cache
    loses nothing; GDAL reads this when it first uses the cache. A user's own ``GDAL_CACHEMAX`` wins.
    """
    os.environ.setdefault("GDAL_CACHEMAX", "64")


@dataclass(frozen=True)
class SceneInfo:
    """What sceneseg needs to know about a scene, read from its header."""

    path: Path
    scene_id: str
    grid: GeoGrid
    band_count: int
    dtype: str
    nodata: float | None
    has_mask: bool

    @property
    def shape(self) -> Shape2d:
        return self.grid.shape

    @property
    def crs(self) -> CRS:
        return self.grid.crs

    @property
    def transform(self) -> Affine:
        return self.grid.transform

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.grid.bounds


def scene_id_for(path: Path) -> str:
    """The scene's identifier in outputs and in the GeoPackage: the file name without extension."""
    name = path.name
    for suffix in (".tif", ".tiff", ".TIF", ".TIFF", ".vrt", ".jp2", ".img"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def open_scene(path: str | Path) -> SceneInfo:
    """Read a scene's header and check that it is a georeferenced raster sceneseg can tile.

    Raises:
        SceneReadError: the file is missing or is not a raster GDAL can read.
        SceneValidationError: the raster has no CRS, no georeferencing, or no pixels.
    """
    path = Path(path)
    if not path.exists():
        raise SceneReadError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise SceneReadError(f"{path}: is a directory, not a raster. Give a GeoTIFF file.")
    try:
        with rasterio.open(path) as ds:
            shape, crs, transform = Shape2d(ds.height, ds.width), ds.crs, ds.transform
            band_count, dtype, nodata = ds.count, ds.dtypes[0] if ds.count else "", ds.nodata
            has_mask = ds.count > 0 and any(MaskFlags.all_valid not in flags for flags in ds.mask_flag_enums)
    except RasterioIOError as exc:
        raise SceneReadError(
            f"{path}: not a raster GDAL can read ({exc}). Give a GeoTIFF or another GDAL raster format."
        ) from exc
    if band_count == 0 or shape.size == 0:
        raise SceneValidationError(f"{path}: the raster has no pixels ({band_count} bands, "
                                   f"{shape.rows} x {shape.cols}). Give a scene with image data.")
    if crs is None:
        raise SceneValidationError(
            f"{path}: the raster has no CRS, so its masks and polygons could not be placed on a map. "
            "Georeference it first, e.g. `gdal_edit.py -a_srs EPSG:32645 -a_ullr ...`, or write it with its CRS."
        )
    if transform == Affine.identity():
        raise SceneValidationError(
            f"{path}: the raster has a CRS but no geotransform (pixel size and origin). "
            "Georeference it first, e.g. with `gdal_edit.py -a_ullr` or `gdal_translate -a_ullr`."
        )
    info = SceneInfo(
        path=path, scene_id=scene_id_for(path), grid=GeoGrid(shape, transform, crs), band_count=band_count,
        dtype=dtype, nodata=nodata, has_mask=has_mask,
    )
    return info


def check_scene_fits(scene: SceneInfo, bands: list[int], model_name: str) -> None:
    """Check that the scene has every band the model reads.

    Raises:
        SceneValidationError: a band the model needs is missing, naming the file, the count and the fix.
    """
    missing = [b for b in bands if not 1 <= b <= scene.band_count]
    if missing:
        raise SceneValidationError(
            f"{scene.path}: has {scene.band_count} band(s) but model {model_name} reads bands {bands} "
            f"(1-based; missing {missing}). Use a scene with those bands, or a model trained on "
            f"{scene.band_count}-band imagery."
        )


def file_checksum(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """SHA-256 of the file's bytes: identifies a scene's content for the nightly skip logic."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
