"""Scenes: open a raster, describe it, and check it against a model before a pixel is read."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from pipeline.errors import SceneReadError, SceneValidationError
from pipeline.grid import GeoGrid, Shape2d
from pipeline.raster.read import has_mask

__all__ = [
    "SceneInfo", "configure_gdal", "open_scene", "check_scene_fits", "check_scene_readable", "input_normalization",
    "file_checksum", "scene_id_for",
]  # fmt: skip


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
    if str(path).startswith("/vsi") or "://" in str(path):
        raise SceneReadError(
            f"{path}: GDAL virtual paths (/vsizip/, /vsicurl/, URLs) are not supported: sceneseg checksums, "
            "resumes and rereads a scene as a local file. Download or unzip it to a local GeoTIFF first."
        )
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise SceneReadError(
                f"{path}: a symbolic link that leads nowhere (to {os.readlink(path)!r}: a missing file or a loop "
                "of links). Point it at the scene's GeoTIFF or remove it."
            )
        raise SceneReadError(f"{path}: no such file. Check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise SceneReadError(f"{path}: is a directory, not a raster. Give a GeoTIFF file.")
    try:
        with rasterio.open(path) as ds:
            shape, crs, transform = Shape2d(ds.height, ds.width), ds.crs, ds.transform
            band_count, dtype, nodata = ds.count, ds.dtypes[0] if ds.count else "", ds.nodata
            masked = has_mask(ds)
    except RasterioError as exc:
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
        dtype=dtype, nodata=nodata, has_mask=masked,
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


def check_scene_readable(scene: SceneInfo) -> None:
    """Read the scene's last pixel of every band: a truncated file fails here, before inference.

    Raises:
        SceneReadError: naming the file and what GDAL said.
    """
    last = Window(scene.shape.cols - 1, scene.shape.rows - 1, 1, 1)
    try:
        with rasterio.open(scene.path) as ds:
            ds.read(window=last)
    except RasterioError as exc:
        raise SceneReadError(
            f"{scene.path}: the raster cannot be read to its end ({exc}); the file is truncated or corrupt. "
            "Copy it again from its source."
        ) from exc


class _Card(Protocol):
    bands: list[int]
    mean: list[float]
    std: list[float]
    input_dtype: str | None
    input_range: list[float] | None


def _expected_range(card: _Card) -> tuple[str | None, float, float]:
    """The dtype and raw value range a model was trained on; from its normalization when the card lacks them."""
    if card.input_range is not None:
        return card.input_dtype, float(card.input_range[0]), float(card.input_range[1])
    mean, std = np.asarray(card.mean), np.asarray(card.std)
    if (mean > 0).all() and (mean < 255).all() and (std <= 128).all():
        return "uint8", 0.0, 255.0  # every packaged model: 8-bit imagery normalized by its statistics
    return card.input_dtype, float((mean - 4 * std).min()), float((mean + 4 * std).max())


def _value_range(scene: SceneInfo, bands: list[int]) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles of the scene's valid values, from a decimated read (at most ~512^2)."""
    step = max(1, int(np.ceil(max(scene.shape.rows, scene.shape.cols) / 512)))
    shape = (len(bands), max(1, scene.shape.rows // step), max(1, scene.shape.cols // step))
    try:
        with rasterio.open(scene.path) as ds:
            data = ds.read(bands, out_shape=shape, masked=True).astype(np.float64)
    except RasterioError as exc:
        raise SceneReadError(f"{scene.path}: could not be read ({exc}). Copy it again from its source.") from exc
    values = data.compressed()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high)


def input_normalization(
    scene: SceneInfo, card: _Card, model_name: str, *, rescale: bool = False
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-band mean and std to normalize this scene with, after checking its values fit the model.

    A scene of the dtype the model was trained on is taken as is. Any other dtype is sampled: its values
    (0.5-99.5 percentiles) must lie in the trained range and span at least a tenth of it, else the scene is
    refused with the way to rescale it, or, with ``rescale``, mapped linearly from its own range onto the
    trained one (folded into the mean and std: ``(a x + b - mean) / std``).

    Raises:
        SceneValidationError: the values do not fit and ``rescale`` is off.
    """
    dtype, low, high = _expected_range(card)
    mean, std = tuple(float(m) for m in card.mean), tuple(float(s) for s in card.std)
    if dtype is not None and scene.dtype == dtype:
        return mean, std
    found_low, found_high = _value_range(scene, list(card.bands))
    span = high - low
    fits = low - 0.01 * span <= found_low and found_high <= high + 0.01 * span and found_high - found_low >= 0.1 * span
    if fits:
        return mean, std
    if not rescale or found_high <= found_low:
        trained = f"{dtype} values {low:g}..{high:g}" if dtype else f"values {low:g}..{high:g}"
        raise SceneValidationError(
            f"{scene.path}: {scene.dtype} values {found_low:g}..{found_high:g} (0.5-99.5 %) do not fit model "
            f"{model_name}, trained on {trained}; its predictions would be garbage. Rescale the scene first, e.g. "
            f"`gdal_translate -ot Byte -scale {found_low:g} {found_high:g} {low:g} {high:g} in.tif out.tif`, or "
            f"pass --rescale to map {found_low:g}..{found_high:g} linearly onto {low:g}..{high:g}."
        )
    a = (high - low) / (found_high - found_low)
    b = low - a * found_low
    return tuple((m - b) / a for m in mean), tuple(s / a for s in std)


def file_checksum(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """SHA-256 of the file's bytes: identifies a scene's content for the nightly skip logic."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
