"""Reading block extents from a scene: window plus halo, mirror padding at the scene edges, normalization.

rasterio's ``boundless`` reads fill with a constant, so mirror padding is a clipped read followed by an
index map (``grid.reflect_indices``) that reproduces ``numpy.pad(mode="reflect")`` of the whole scene
for any window, even one whose pad is wider than the part of the window inside the scene.

NaN is nodata: a NaN pixel is replaced by the scene's nodata value (by the band mean, which normalizes to
zero, when the scene has none) before normalization, and is marked invalid exactly as a nodata pixel is.
So NaN never reaches the model or the class arithmetic, and a box of NaN gives the mask a box of the
nodata value gives.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from pipeline.errors import SceneReadError
from pipeline.grid import GeoGrid, Region, Shape2d, reflect_indices

__all__ = ["mirror_read", "normalize", "SceneReader", "model_grid", "write_resampled_view"]


def _source_window(region: Region, scene: Shape2d) -> tuple[Window, np.ndarray, np.ndarray]:
    rows = reflect_indices(region.row, region.row_stop, scene.rows)
    cols = reflect_indices(region.col, region.col_stop, scene.cols)
    r0, c0 = int(rows.min()), int(cols.min())
    window = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
    return window, rows - r0, cols - c0


def mirror_read(dataset: rasterio.DatasetReader, region: Region, bands: list[int]) -> np.ndarray:
    """Read ``region`` (which may leave the scene) as ``(bands, rows, cols)``, mirror-padded outside."""
    scene = Shape2d(dataset.height, dataset.width)
    if Region.of_shape(scene).contains(region):
        window = Window(region.col, region.row, region.cols, region.rows)
        return dataset.read(bands, window=window)
    window, rows, cols = _source_window(region, scene)
    data = dataset.read(bands, window=window)
    return data[:, rows[:, None], cols[None, :]]


def normalize(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-band ``(x - mean) / std`` as float32; ``mean`` and ``std`` have one value per band."""
    out = raw.astype(np.float32)
    out -= mean.astype(np.float32)[:, None, None]
    out /= std.astype(np.float32)[:, None, None]
    return out


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
    """
    with rasterio.open(scene_path) as src:
        coarser = abs(grid.transform.a) > abs(src.transform.a)
        resampling = Resampling.average if coarser else Resampling.bilinear
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.shape.cols, height=grid.shape.rows,
                       resampling=resampling) as vrt:
            tmp = dst.with_name(f".{dst.name}.tmp")
            rasterio.shutil.copy(vrt, tmp, driver="VRT")
    tmp.replace(dst)
    return dst


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

    def _floating(self, ds: rasterio.DatasetReader) -> bool:
        return np.issubdtype(np.dtype(ds.dtypes[0]), np.floating)

    def read(self, region: Region) -> np.ndarray:
        """The normalized, mirror-padded image over ``region`` as float32 ``(bands, rows, cols)``."""
        return normalize(self.read_raw(region), self.mean, self.std)

    def read_raw(self, region: Region) -> np.ndarray:
        """The mirror-padded image over ``region`` in the scene's own values, NaN filled, not normalized.

        What a block holds while its tiles are inferred: a uint8 block is a quarter of its float32
        normalized image (11 against 44 MB for an RGB block extent of 1904^2, the default), and the
        predictor normalizes each batch as it packs it (``Predictor.predict_batches(normalization=...)``),
        to the same bits as :meth:`read`. float64 scenes come back as float32, the first step of
        :func:`normalize`.
        """
        try:
            ds = self._dataset()
            raw = mirror_read(ds, region, self.bands)
        except RasterioError as exc:
            raise self._failed(region, exc) from exc
        if self._floating(ds):
            nan = np.isnan(raw)
            if nan.any():
                nodata = ds.nodata
                fill = self.mean[:, None, None] if nodata is None or np.isnan(nodata) else np.float64(nodata)
                raw = np.where(nan, np.broadcast_to(fill, raw.shape).astype(raw.dtype), raw)
        return raw.astype(np.float32) if raw.dtype.itemsize > 4 else raw

    def valid(self, region: Region) -> np.ndarray | None:
        """Where the scene has data inside ``region`` (which must lie in the scene); None if all valid.

        A pixel is invalid where the scene's mask says so or where any band is NaN.
        """
        window = Window(region.col, region.row, region.cols, region.rows)
        try:
            ds = self._dataset()
            valid = np.any(ds.read_masks(self.bands, window=window) > 0, axis=0) if self.has_mask else None
            if self._floating(ds):
                finite = ~np.isnan(ds.read(self.bands, window=window)).any(axis=0)
                valid = finite if valid is None else valid & finite
        except RasterioError as exc:
            raise self._failed(region, exc) from exc
        if valid is not None and valid.all():
            return None
        return valid

    def close(self) -> None:
        """Close the handles of every thread that read through this reader."""
        with self._lock:
            for ds in self._opened:
                ds.close()
            self._opened.clear()
