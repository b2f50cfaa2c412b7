"""Reading block extents from a scene: window plus halo, mirror padding at the scene edges, validity, normalization.

rasterio's ``boundless`` reads fill with a constant, so mirror padding is a clipped read followed by an
index map (``grid.reflect_indices``) that reproduces ``numpy.pad(mode="reflect")`` of the whole scene
for any window, even one whose pad is wider than the part of the window inside the scene.

Nodata has many encodings: the scene's nodata value (-9999, or 0 on a satellite collar), an alpha band at
0, an internal or per-dataset GDAL mask, and NaN (or an infinity) in a float band. :func:`validity` alone
decides from all of them where a pixel has data, and :func:`fill_invalid` alone decides what an invalid
pixel reaches the model as: 0 in every band after normalization, the band mean, whatever value the scene
holds there. So a box of any encoding over the same pixels gives the same model input, hence the same
mask around it, and the same nodata (255) in it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from pipeline.errors import SceneReadError
from pipeline.grid import GeoGrid, Region, Shape2d, reflect_indices

__all__ = [
    "mirror_read", "has_mask", "validity", "fill_invalid", "normalize", "RawImage", "SceneReader", "model_grid",
    "write_resampled_view",
]  # fmt: skip


def _source_window(region: Region, scene: Shape2d) -> tuple[Window, np.ndarray, np.ndarray]:
    rows = reflect_indices(region.row, region.row_stop, scene.rows)
    cols = reflect_indices(region.col, region.col_stop, scene.cols)
    r0, c0 = int(rows.min()), int(cols.min())
    window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
    return window, rows - r0, cols - c0


def _reflect(array: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    # Two takes: much faster than one fancy index over both axes (bench/RESULTS.md).
    return array.take(rows, axis=-2).take(cols, axis=-1)


def _mirror_plan(dataset: rasterio.DatasetReader, region: Region) -> tuple[Window, Callable[[np.ndarray], np.ndarray]]:
    """The window of the scene's pixels under ``region``, and the map that mirror-pads to ``region`` any
    array ``(..., rows, cols)`` of that window (the image, its validity)."""
    scene = Shape2d(dataset.height, dataset.width)
    if Region.of_shape(scene).contains(region):
        return Window(region.col, region.row, region.cols, region.rows), lambda array: array
    window, rows, cols = _source_window(region, scene)
    return window, lambda array: _reflect(array, rows, cols)


def mirror_read(dataset: rasterio.DatasetReader, region: Region, bands: list[int]) -> np.ndarray:
    """Read ``region`` (which may leave the scene) as ``(bands, rows, cols)``, mirror-padded outside."""
    window, mirror = _mirror_plan(dataset, region)
    return mirror(dataset.read(bands, window=window))


def has_mask(dataset: rasterio.DatasetReader) -> bool:
    """Whether GDAL masks any band of ``dataset``: a nodata value, an alpha band, an internal or per-dataset mask.

    Where it does not, :func:`validity` needs no masks read (NaN it finds in the pixels themselves).
    """
    return dataset.count > 0 and any(MaskFlags.all_valid not in flags for flags in dataset.mask_flag_enums)


def validity(data: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray | None:
    """Where pixels of ``data`` ``(bands, rows, cols)`` have data: ``(rows, cols)`` bool, None if all do.

    The one rule for every encoding of nodata. A pixel is invalid where GDAL's masks of the bands
    (``read_masks``: the nodata value, an alpha band at 0, an internal or per-dataset mask) are 0 in every
    band, as in rasterio's ``dataset_mask`` (an 8-bit pixel with one band at a nodata value of 0 is a dark
    pixel, not a hole), or where any band is not finite (NaN, which GDAL masks only when it is the declared
    nodata value, or an infinity): no model input can be computed from it.

    Args:
        data: the pixels, in the scene's own values.
        masks: GDAL's masks of the same bands and pixels (0 invalid, 255 valid), or None if the scene has none.
    """
    valid = None if masks is None else masks.any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data).all(axis=0)
        valid = finite if valid is None else valid & finite
    if valid is None or valid.all():
        return None
    return valid


def fill_invalid(normalized: np.ndarray, valid: np.ndarray | None, *, channels_last: bool = False) -> np.ndarray:
    """Set every band of the invalid pixels of a normalized image to 0 (the band mean), in place; returns it.

    What every invalid pixel reaches the model as, whatever its encoding and its value: the neutral input
    of a band, which the model's normalization maps the band mean to.

    Args:
        normalized: ``(bands, rows, cols)``, or ``(rows, cols, bands)`` with ``channels_last``.
        valid: ``(rows, cols)`` from :func:`validity`; None leaves the image as it is.
    """
    if valid is None:
        return normalized
    # The faster of the two for each layout (bench/RESULTS.md): bands first, copyto broadcasting the mask;
    # bands last, the boolean index.
    if channels_last:
        normalized[~valid] = 0.0
    else:
        np.copyto(normalized, np.float32(0), where=~valid)
    return normalized


def normalize(
    raw: np.ndarray, mean: np.ndarray, std: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Per-band ``(x - mean) / std`` as float32, invalid pixels filled (:func:`fill_invalid`).

    ``mean`` and ``std`` have one value per band; ``valid`` is the image's :func:`validity`.
    """
    out = raw.astype(np.float32)
    out -= mean.astype(np.float32)[:, None, None]
    out /= std.astype(np.float32)[:, None, None]
    return fill_invalid(out, valid)


def model_grid(scene: GeoGrid, scene_gsd_m: float, model_gsd_m: float) -> GeoGrid:
    """The scene's extent on pixels of the model's ground sample distance (same CRS and origin)."""
    factor = model_gsd_m / scene_gsd_m
    shape = Shape2d(math.ceil(scene.shape.rows / factor), math.ceil(scene.shape.cols / factor))
    return GeoGrid(shape, scene.transform @ Affine.scale(factor), scene.crs)


def write_resampled_view(scene_path: Path, grid: GeoGrid, dst: Path) -> Path:
    """A GDAL warped VRT of the scene on ``grid``: every later read resamples on the fly, window by window.

    Averaging when the grid is coarser than the scene (drone imagery for a satellite model), bilinear when
    finer. A VRT file, not an array: it costs no pass over the scene and nothing in memory, Dask workers
    open it like the scene itself, and any window of it reads the same pixels whatever the block size.

    A scene that can hold nodata (a float scene, or one with a nodata value, an alpha band or a GDAL mask)
    is viewed as float32 with NaN for nodata: GDAL's warper leaves its invalid pixels out of every average
    and interpolation, whichever way they are encoded (NaN is declared the source nodata of a float scene
    that declares none), and writes NaN where no valid pixel contributes, which :func:`validity` reads as
    invalid. In the scene's own dtype the view could not say so: a uint8 warp drops an internal mask, and
    the view's pixels would be valid there. Other scenes keep their dtype: the warp is faster without a
    nodata value (a 2048^2 uint8 block bilinear 0.44 against 1.20 s in float32 with NaN, 2 cores).
    """
    with rasterio.open(scene_path) as src:
        coarser = abs(grid.transform.a) > abs(src.transform.a)
        resampling = Resampling.average if coarser else Resampling.bilinear
        floating = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
        nodata = {}
        if floating or has_mask(src):
            src_nodata = np.nan if src.nodata is None and floating else src.nodata
            nodata = dict(src_nodata=src_nodata, nodata=np.nan, dtype="float32")
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.shape.cols, height=grid.shape.rows,
                       resampling=resampling, **nodata) as vrt:
            tmp = dst.with_name(f".{dst.name}.tmp")
            rasterio.shutil.copy(vrt, tmp, driver="VRT")
    tmp.replace(dst)
    return dst


@dataclass(frozen=True)
class RawImage:
    """Pixels of a region in the scene's own values and where they are valid (see :func:`validity`)."""

    #: ``(bands, rows, cols)``: the scene's dtype, float64 as float32; invalid pixels hold whatever the scene does.
    data: np.ndarray
    #: ``(rows, cols)`` bool, or None where every pixel is valid.
    valid: np.ndarray | None


class SceneReader:
    """Reads block extents of one scene; one rasterio handle per thread (datasets are not thread-safe)."""

    def __init__(self, path: str | Path, bands: list[int], mean: list[float], std: list[float], has_mask: bool):
        self.path = Path(path)
        self.bands = list(bands)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.has_mask = has_mask
        self._local = threading.local()
        self._opened: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()

    def _dataset(self) -> rasterio.DatasetReader:
        ds = getattr(self._local, "dataset", None)
        if ds is None or ds.closed:
            ds = rasterio.open(self.path)
            self._local.dataset = ds
            with self._lock:
                self._opened.append(ds)
        return ds

    def _failed(self, region: Region, exc: Exception) -> SceneReadError:
        return SceneReadError(
            f"{self.path}: reading rows {region.row}-{region.row_stop}, columns {region.col}-{region.col_stop} failed "
            f"({exc}); the file is truncated or corrupt. Copy it again from its source."
        )

    def read(self, region: Region) -> np.ndarray:
        """The model's input over ``region``: normalized, mirror-padded, invalid pixels filled; float32."""
        raw = self.read_raw(region)
        return normalize(raw.data, self.mean, self.std, raw.valid)

    def read_raw(self, region: Region) -> RawImage:
        """The mirror-padded image over ``region`` in the scene's own values, and its :func:`validity`.

        What a block holds while its tiles are inferred: a uint8 block is a quarter of its float32
        normalized image (11 against 44 MB for an RGB block extent of 1904^2, the default), and the
        predictor normalizes and fills each batch as it packs it (``Predictor.predict_batches``), to the
        same bits as :meth:`read`. float64 scenes come back as float32, the first step of :func:`normalize`.
        """
        try:
            ds = self._dataset()
            window, mirror = _mirror_plan(ds, region)
            data = ds.read(self.bands, window=window)
            masks = ds.read_masks(self.bands, window=window) if self.has_mask else None
        except RasterioError as exc:
            raise self._failed(region, exc) from exc
        # Validity once per scene pixel, then mirrored as the image is: a tile's input depends on the scene
        # alone, never on the block it was read in.
        valid = validity(data, masks)
        data = mirror(data)
        return RawImage(data.astype(np.float32) if data.dtype.itemsize > 4 else data,
                        None if valid is None else mirror(valid))

    def close(self) -> None:
        """Close the handles of every thread that read through this reader."""
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()
