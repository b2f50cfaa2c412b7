"""A quick-look PNG of a scene's result: the scene, dimmed, with buildings and roads outlined.

Both rasters are read decimated to the preview's size (``out_shape``), so GDAL serves them from their
overviews where the files have them (the mask COG always has, built by mode resampling): a preview of a
scene of any size reads about as many pixels as the preview has. The outlines are the inner edges of
each class's regions in the decimated mask, so every outline pixel lies on a pixel of its class.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.windows import Window
from scipy.ndimage import binary_erosion

from pipeline.grid import Shape2d
from pipeline.raster.read import validity

__all__ = ["MAX_SIDE", "OUTLINE_COLORS", "Preview", "encode_png", "preview_shape", "render_preview", "write_preview"]

#: The preview's long side at most, in pixels.
MAX_SIDE = 1024

#: Outline colour per class name, drawn in this order (later ones on top). Each has a channel at 255,
#: which the dimmed scene never reaches, so an outline pixel is told from the scene by its colour alone.
OUTLINE_COLORS: dict[str, tuple[int, int, int]] = {"road": (255, 214, 0), "building": (255, 40, 40)}

#: The scene is shown at this brightness so that the outlines stand out (and stay distinguishable).
_DIM = 0.8
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


@dataclass(frozen=True)
class Preview:
    """A rendered quick-look: ``rgb`` is (rows, cols, 3) uint8; ``png`` its encoding."""

    rgb: np.ndarray
    png: bytes

    @property
    def shape(self) -> Shape2d:
        return Shape2d(int(self.rgb.shape[0]), int(self.rgb.shape[1]))


def preview_shape(scene: Shape2d, max_side: int = MAX_SIDE) -> Shape2d:
    """The scene's shape scaled so that its long side is at most ``max_side`` (never enlarged)."""
    scale = max(1.0, max(scene.rows, scene.cols) / max_side)
    return Shape2d(max(1, min(max_side, round(scene.rows / scale))), max(1, min(max_side, round(scene.cols / scale))))


def _stretch(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The bands onto 0..255 x the dimming: 8-bit bands as they are, others from their 2nd to their 98th
    percentile over valid pixels (16-bit and float scenes rarely use their whole range)."""
    out = np.zeros(bands.shape, dtype=np.uint8)
    for i, band in enumerate(bands.astype(np.float64)):
        values = band[valid]
        if values.size == 0:
            continue
        lo, hi = (0.0, 255.0) if bands.dtype == np.uint8 else np.percentile(values, (2, 98))
        scaled = (values - lo) / max(hi - lo, 1e-12)
        # Valid pixels only: an invalid one may be NaN, which has no uint8 value (it stays 0, black).
        out[i][valid] = np.round(np.clip(scaled, 0.0, 1.0) * 255 * _DIM).astype(np.uint8)
    return out


def _scene_rgb(scene_path: Path, shape: Shape2d) -> tuple[np.ndarray, np.ndarray]:
    """The scene's first three bands (or its first, as grey) at ``shape``, and where it has data
    (``read.validity``, as in the run).

    Read in strips of about one block row of the scene, each as a fractional window whose rows map onto
    the preview's exactly as in one whole read (the same pixels are sampled, tested): read whole, a
    decimated read of a pixel-interleaved scene without overviews decodes each block once per band when
    the block cache (``GDAL_CACHEMAX``, 64 MB in a run) is smaller than the scene (2.25 against 0.77 s
    for 8192^2 RGB).
    """
    with rasterio.open(scene_path) as src:
        indexes = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        rows_per_strip = max(1, src.block_shapes[0][0] * shape.rows // src.height)
        bands = np.empty((3, shape.rows, shape.cols), dtype=src.dtypes[0])
        valid = np.empty((shape.rows, shape.cols), dtype=bool)
        scale = src.height / shape.rows
        for top in range(0, shape.rows, rows_per_strip):
            bottom = min(shape.rows, top + rows_per_strip)
            window = Window(0, top * scale, src.width, (bottom - top) * scale)
            out = (bottom - top, shape.cols)
            strip = src.read(indexes, window=window, out_shape=(3, *out), resampling=Resampling.nearest)
            masks = src.read_masks(indexes, window=window, out_shape=(3, *out), resampling=Resampling.nearest)
            bands[:, top:bottom] = strip
            strip_valid = validity(strip, masks)  # the rule of the run: nodata value, alpha, mask, NaN
            valid[top:bottom] = True if strip_valid is None else strip_valid
    return bands, valid


def _mask(mask_path: Path, shape: Shape2d) -> tuple[np.ndarray, int | None]:
    with rasterio.open(mask_path) as src:
        mask = src.read(1, out_shape=(shape.rows, shape.cols), resampling=Resampling.nearest)
        nodata = None if src.nodata is None else int(src.nodata)
    return mask, nodata


def _outline(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` that touch (4-connected) a pixel outside it; the image edge is not an edge."""
    return region & ~binary_erosion(region, structure=_CROSS, border_value=1)


#: zlib level of the PNG: 2 encodes a quick-look several times faster than GDAL's default 6 for a file a
#: little larger (bench/RESULTS.md).
PNG_ZLEVEL = 2


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (rows, cols, 3) uint8 image, through GDAL's PNG driver."""
    rows, cols, _ = rgb.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=cols, height=rows, count=3, dtype="uint8",
                          ZLEVEL=PNG_ZLEVEL) as dst:
                dst.write(np.moveaxis(rgb, -1, 0))
            return bytes(mem.read())


def render_preview(
    scene_path: str | Path, mask_path: str | Path, classes: tuple[str, ...], max_side: int = MAX_SIDE
) -> Preview:
    """The scene at most ``max_side`` pixels on its long side, with each class of OUTLINE_COLORS outlined.

    ``classes`` are the mask's class names by value (the checkpoint's), e.g. background, building, road.
    """
    with rasterio.open(mask_path) as src:
        shape = preview_shape(Shape2d(src.height, src.width), max_side)
    bands, valid = _scene_rgb(Path(scene_path), shape)
    mask, nodata = _mask(Path(mask_path), shape)
    if nodata is not None:
        valid &= mask != nodata
    rgb = np.moveaxis(_stretch(bands, valid), 0, -1).copy()
    rgb[~valid] = 0
    for name, color in OUTLINE_COLORS.items():
        if name in classes:
            rgb[_outline(mask == classes.index(name))] = color
    return Preview(rgb, encode_png(rgb))


def write_preview(preview: Preview, path: str | Path) -> Path:
    """Write the PNG under a temporary name and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(preview.png)
    tmp.replace(path)
    return path
