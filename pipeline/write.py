"""Writing masks: a raw working store while blocks arrive, then a Cloud-Optimized GeoTIFF in one pass.

Blocks and seams finish in any order and are not aligned with a compressed GeoTIFF's internal tiles;
partial updates of compressed tiles make GDAL rewrite them at the end of the file and cannot survive a
killed process. So units go into uncompressed memory-mapped arrays in a hidden working directory beside
the outputs (cheap random writes, flushed for resume), and when the scene is complete GDAL's COG
driver copies them through a raw VRT into a tiled, compressed, overviewed GeoTIFF under a temporary
name that is renamed into place. The published file is therefore always complete.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS

from pipeline.blend import NODATA_CLASS, UnitResult
from pipeline.errors import OutputError
from pipeline.grid import Region, Shape2d

__all__ = ["WorkingStore", "publish_raster", "CLASS_COLORS", "atomic_path"]

#: Palette written into the mask so GIS software shows classes without styling.
CLASS_COLORS: dict[str, tuple[int, int, int, int]] = {
    "background": (0, 0, 0, 0),
    "building": (220, 60, 40, 255),
    "road": (250, 200, 40, 255),
}


def atomic_path(dst: Path) -> Path:
    """A temporary name beside ``dst`` (same filesystem, so ``os.replace`` is atomic)."""
    return dst.with_name(f".{dst.name}.{os.getpid()}.tmp")


class WorkingStore:
    """Memory-mapped mask and confidence arrays of one scene, in a hidden working directory."""

    MASK = "mask.npy"
    CONFIDENCE = "confidence.npy"

    def __init__(self, directory: Path, shape: Shape2d):
        self.directory = Path(directory)
        self.shape = shape
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mask = self._open(self.MASK)
        self.confidence = self._open(self.CONFIDENCE)
        self.writes: Counter[Region] = Counter()
        #: Blocks a resumed run found already done (set by the run loop).
        self.resumed_blocks = 0

    def _open(self, name: str) -> np.memmap:
        path = self.directory / name
        dims = (self.shape.rows, self.shape.cols)
        if path.exists():
            array = np.load(path, mmap_mode="r+")
            if array.shape == dims and array.dtype == np.uint8:
                return array
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=dims)
        array[:] = NODATA_CLASS if name == self.MASK else 0
        return array

    def write(self, unit: UnitResult) -> None:
        rows, cols = unit.region.slices_in(Region.of_shape(self.shape))
        self.mask[rows, cols] = unit.mask
        self.confidence[rows, cols] = unit.confidence
        self.writes[unit.region] += 1

    def read(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Mask and confidence over ``region`` (inside the scene), as arrays."""
        rows, cols = region.slices_in(Region.of_shape(self.shape))
        return np.asarray(self.mask[rows, cols]), np.asarray(self.confidence[rows, cols])

    def flush(self) -> None:
        self.mask.flush()
        self.confidence.flush()

    def remove(self) -> None:
        del self.mask, self.confidence
        shutil.rmtree(self.directory, ignore_errors=True)


def _vrt_xml(
    array_path: Path, offset: int, shape: Shape2d, transform: Affine, crs: CRS,
    nodata: int | None, classes: Sequence[str] | None, description: str, tags: dict[str, str],
) -> str:
    # A raw VRT maps the .npy payload as a GDAL band without copying it; GDAL then streams it once.
    gt = ", ".join(format(v, ".17g") for v in transform.to_gdal())
    parts = [
        f'<VRTDataset rasterXSize="{shape.cols}" rasterYSize="{shape.rows}">',
        f"<SRS>{escape(crs.to_wkt())}</SRS><GeoTransform>{gt}</GeoTransform>",
        # Dataset metadata (model, run) travels into the COG with the copy.
        "<Metadata>" + "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in tags.items()) + "</Metadata>",
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">',
        f"<Description>{escape(description)}</Description>",
    ]
    if nodata is not None:
        parts.append(f"<NoDataValue>{nodata}</NoDataValue>")
    if classes:
        parts.append("<ColorInterp>Palette</ColorInterp><ColorTable>")
        for name in classes:
            c = CLASS_COLORS.get(name, (128, 128, 128, 255))
            parts.append(f'<Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="{c[3]}"/>')
        parts.append("</ColorTable><CategoryNames>")
        parts.extend(f"<Category>{escape(name)}</Category>" for name in classes)
        parts.append("</CategoryNames>")
    parts += [
        f'<SourceFilename relativeToVRT="0">{escape(str(array_path.resolve()))}</SourceFilename>',
        f"<ImageOffset>{offset}</ImageOffset><PixelOffset>1</PixelOffset>",
        f"<LineOffset>{shape.cols}</LineOffset><ByteOrder>LSB</ByteOrder>",
        "</VRTRasterBand></VRTDataset>",
    ]
    return "".join(parts)


def publish_raster(
    array: np.memmap,
    dst: Path,
    transform: Affine,
    crs: CRS,
    *,
    nodata: int | None,
    classes: Sequence[str] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
) -> Path:
    """Copy a uint8 memory-mapped ``.npy`` to a COG at ``dst`` (written to a temporary name, then renamed)."""
    array.flush()
    shape = Shape2d(*array.shape)
    xml = _vrt_xml(
        Path(array.filename), array.offset, shape, transform, crs, nodata, classes, description, tags or {}
    )
    tmp = atomic_path(dst)
    resampling = "MODE" if classes else "AVERAGE"
    try:
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(xml) as src:
            rasterio.shutil.copy(
                src, tmp, driver="COG", compress="DEFLATE", predictor="2", blocksize=512,
                overview_resampling=resampling, bigtiff="IF_SAFER",
            )
        os.replace(tmp, dst)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dst}: could not write the raster ({exc}). Check free space and permissions.") from exc
    return dst
