"""Writing masks: a raw working store while blocks arrive, then a Cloud-Optimized GeoTIFF in one pass.

Blocks and seams finish in any order and are not aligned with a compressed GeoTIFF's internal tiles;
partial updates of compressed tiles make GDAL rewrite them at the end of the file and cannot survive a
killed process. So units go into uncompressed raw arrays in a hidden working directory beside the
outputs (cheap random writes, fsynced for resume), and when the scene is complete GDAL's COG
driver copies them through a raw VRT into a tiled, compressed, overviewed GeoTIFF under a temporary
name that is renamed into place. The published file is therefore always complete. A class mask gets its
sidecars the same way (:mod:`pipeline.raster.style`): the ``.aux.xml`` holding its raster attribute table
and the QGIS default style ``<basename>.qml``, renamed into place just before the raster.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil

from pipeline.errors import OutputError
from pipeline.files import atomic_path, process_alive
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.raster.blend import UnitResult
from pipeline.raster.style import class_color, mask_qml, rat_xml, style_path

__all__ = [
    "RawBand", "StoreReader", "WorkingStore", "publish_raster", "remove_orphans",
]  # fmt: skip

def remove_orphans(directory: Path) -> list[Path]:
    """Remove the temporaries (``.<name>.<pid>.tmp*``, GDAL's ``.ovr.tmp`` among them) of dead processes."""
    removed = []
    for path in directory.glob(".*.tmp*"):
        parts = path.name.split(".")
        pids = [int(p) for p in parts if p.isdigit()]
        if pids and not process_alive(pids[-1]) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class RawBand:
    """A uint8 ``.npy`` file on disk, mapped a row band at a time.

    A long-lived mapping of the whole file would count every page ever touched in the process's resident
    memory, which then grows with the scene; mapping only the rows a write or read needs keeps it flat.
    """

    path: Path
    shape: Shape2d
    offset: int

    @classmethod
    def open(cls, path: Path, shape: Shape2d) -> RawBand:
        """Open ``path`` if it holds a uint8 array of ``shape``, else create it (sparse: no bytes written)."""
        dims = (shape.rows, shape.cols)
        if path.exists():
            existing = np.load(path, mmap_mode="r")  # reads the header; touches no data page
            usable = existing.shape == dims and existing.dtype == np.uint8 and existing.flags.c_contiguous
            offset = existing.offset
            del existing
            if usable:
                return cls(path, shape, offset)
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": dims})
            offset = f.tell()
            f.truncate(offset + shape.size)
            # Reserve the blocks now: a memory-mapped write to a sparse file on a full disk is a SIGBUS,
            # a failed reservation is an ENOSPC here, with a message.
            try:
                os.posix_fallocate(f.fileno(), 0, offset + shape.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        return cls(path, shape, offset)

    def _rows(self, region: Region, mode: str) -> np.memmap:
        return np.memmap(self.path, dtype=np.uint8, mode=mode, offset=self.offset + region.row * self.shape.cols,
                         shape=(region.rows, self.shape.cols))

    def write(self, region: Region, values: np.ndarray) -> None:
        """Write ``values`` over ``region``. Not durable until :meth:`fsync`.

        No msync per write: a unit narrower than a page (a seam 48 pixels wide) would write a whole page
        per row each time, and neighbouring units rewrite shared pages (measured: a 32768^2 run had
        written 74 GB by the time its mask was published, for 2 GB of working arrays; 2048^2 units over an
        8192^2 band wrote 4x their bytes). Dirty pages go out once, by the kernel or at the fsync of the
        next journal checkpoint, which is all that resuming needs.
        """
        band = self._rows(region, "r+")
        band[:, region.col : region.col_stop] = values
        del band

    def read(self, region: Region) -> np.ndarray:
        band = self._rows(region, "r")
        out = np.array(band[:, region.col : region.col_stop])
        del band
        return out

    def fsync(self) -> None:
        with open(self.path, "rb+") as f:
            os.fsync(f.fileno())


@dataclass(frozen=True)
class StoreReader:
    """Reads mask and confidence windows of a working store; small and picklable, so another process
    on the same machine can read the store while it is being written."""

    mask: RawBand
    confidence: RawBand

    def __call__(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        return self.mask.read(region), self.confidence.read(region)


class WorkingStore:
    """The mask and confidence of one scene as raw arrays in a hidden working directory."""

    MASK = "mask.npy"
    CONFIDENCE = "confidence.npy"

    def __init__(self, directory: Path, shape: Shape2d):
        self.directory = Path(directory)
        self.shape = shape
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.mask = RawBand.open(self.directory / self.MASK, shape)
            self.confidence = RawBand.open(self.directory / self.CONFIDENCE, shape)
        except OSError as exc:
            raise OutputError(
                f"{self.directory}: cannot hold the working arrays of {shape.rows} x {shape.cols} pixels ({exc}). "
                "Free space on that disk (or fix its permissions) and run the same command again."
            ) from exc

    def write(self, unit: UnitResult) -> None:
        """Write a final unit; every pixel of the scene is written exactly once per run."""
        if not Region.of_shape(self.shape).contains(unit.region):
            raise ValueError(f"{unit.region} lies outside the scene {self.shape}")
        self.mask.write(unit.region, unit.mask)
        self.confidence.write(unit.region, unit.confidence)

    def read(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Mask and confidence over ``region`` (inside the scene), as arrays."""
        return self.mask.read(region), self.confidence.read(region)

    def reader(self) -> StoreReader:
        """A picklable reader of this store (for a vectorizing process)."""
        return StoreReader(self.mask, self.confidence)

    def flush(self) -> None:
        """Make everything written so far durable (the journal's checkpoints rely on it)."""
        self.mask.fsync()
        self.confidence.fsync()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _raw_source(array_path: Path, offset: int, shape: Shape2d) -> str:
    # A raw band maps the .npy payload as a GDAL band without copying it; GDAL then streams it once.
    return (
        f'<SourceFilename relativeToVRT="0">{escape(str(array_path.resolve()))}</SourceFilename>'
        f"<ImageOffset>{offset}</ImageOffset><PixelOffset>1</PixelOffset>"
        f"<LineOffset>{shape.cols}</LineOffset><ByteOrder>LSB</ByteOrder>"
    )


def _vrt_xml(
    grid: GeoGrid, source: str, *, raw: bool, nodata: int | None = None, classes: Sequence[str] | None = None,
    description: str = "", tags: dict[str, str] | None = None,
) -> str:
    """A one-band Byte VRT on ``grid``: a raw band (``raw``), or one made of the ``source`` elements."""
    shape, transform, crs = grid.shape, grid.transform, grid.crs
    gt = ", ".join(format(v, ".17g") for v in transform.to_gdal())
    parts = [
        f'<VRTDataset rasterXSize="{shape.cols}" rasterYSize="{shape.rows}">',
        f"<SRS>{escape(crs.to_wkt())}</SRS><GeoTransform>{gt}</GeoTransform>",
        # Dataset metadata (model, run) travels into the COG with the copy.
        "<Metadata>" + "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in (tags or {}).items())
        + "</Metadata>",
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">' if raw
        else '<VRTRasterBand dataType="Byte" band="1">',
        f"<Description>{escape(description)}</Description>",
    ]
    if nodata is not None:
        parts.append(f"<NoDataValue>{nodata}</NoDataValue>")
    if classes:
        parts.append("<ColorInterp>Palette</ColorInterp><ColorTable>")
        for name in classes:
            c = class_color(name)
            parts.append(f'<Entry c1="{c[0]}" c2="{c[1]}" c3="{c[2]}" c4="{c[3]}"/>')
        parts.append("</ColorTable><CategoryNames>")
        parts.extend(f"<Category>{escape(name)}</Category>" for name in classes)
        parts.append("</CategoryNames>")
        # GeoTIFF has no tag for category names (GDAL keeps them in PAM): the band metadata in the file's
        # GDAL_METADATA tag carries them, as CLASS_<id>=<name> and CLASS_NAMES=<id>:<name>,...
        items = {f"CLASS_{i}": name for i, name in enumerate(classes)}
        items["CLASS_NAMES"] = ",".join(f"{i}:{name}" for i, name in enumerate(classes))
        parts.append("<Metadata>" + "".join(f'<MDI key="{k}">{escape(v)}</MDI>' for k, v in items.items()) + "</Metadata>")
        parts.append(rat_xml(classes))
    parts += [source, "</VRTRasterBand></VRTDataset>"]
    return "".join(parts)


def _published_vrt(
    band: RawBand, grid: GeoGrid, target: GeoGrid, lut: np.ndarray | None, **band_options
) -> str:
    """The VRT the COG is copied from: the raw band itself, or, to fold values or change the grid, a
    ComplexSource over the raw band (saved beside it) with a <LUT> and a destination rectangle.

    Both happen on the fly as GDAL streams the copy, so neither costs a pass over the scene nor a copy
    of it. ``target`` must share ``grid``'s CRS and origin (a resampled view of the scene does): the
    band then covers ``grid.shape`` times the pixel-size ratio of the target's pixels, read by nearest
    neighbour, and the VRT (unlike a warped one) keeps the palette, category names and metadata.
    """
    if lut is None and target == grid:
        return _vrt_xml(grid, _raw_source(band.path, band.offset, band.shape), raw=True, **band_options)
    raw = band.path.with_name(f"{band.path.stem}.raw.vrt")
    raw.write_text(_vrt_xml(grid, _raw_source(band.path, band.offset, band.shape), raw=True))
    sx, sy = grid.transform.a / target.transform.a, grid.transform.e / target.transform.e
    if (target.crs != grid.crs or not np.isclose(grid.transform.c, target.transform.c)
            or not np.isclose(grid.transform.f, target.transform.f) or sx <= 0 or sy <= 0):
        raise ValueError(f"target grid {target} is not a rescaling of {grid}")
    dst_rect = f'<DstRect xOff="0" yOff="0" xSize="{grid.shape.cols * sx:.10g}" ySize="{grid.shape.rows * sy:.10g}"/>'
    # Every value listed: GDAL interpolates between the entries of a LUT.
    lut_xml = f"<LUT>{','.join(f'{v}:{lut[v]}' for v in range(256))}</LUT>" if lut is not None else ""
    source = (
        f'<ComplexSource resampling="nearest"><SourceFilename relativeToVRT="0">{escape(str(raw.resolve()))}'
        f"</SourceFilename><SourceBand>1</SourceBand>"
        f'<SrcRect xOff="0" yOff="0" xSize="{grid.shape.cols}" ySize="{grid.shape.rows}"/>{dst_rect}{lut_xml}'
        "</ComplexSource>"
    )
    return _vrt_xml(target, source, raw=False, **band_options)


def publish_raster(
    band: RawBand,
    dst: Path,
    grid: GeoGrid,
    *,
    nodata: int | None,
    classes: Sequence[str] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    lut: np.ndarray | None = None,
    target: GeoGrid | None = None,
) -> Path:
    """Copy a raw band to a COG on ``grid`` at ``dst`` (written to a temporary name, then renamed).

    ``lut`` (256 uint8 values) maps the band's values on the way, e.g. a model's classes to the user's;
    ``target`` (default ``grid``) is the grid of the COG, a rescaling of ``grid``: the band is read onto
    it by nearest neighbour (a mask inferred on a resampled view of the scene goes back on the scene's grid).
    A class mask (``classes``, value ``i`` is ``classes[i]``) also gets ``<dst>.aux.xml`` with its raster
    attribute table and the QGIS default style ``<basename>.qml`` (replacing those of an earlier mask).
    """
    if band.shape != grid.shape:
        raise ValueError(f"band of {band.shape} does not fit the grid of {grid.shape}")
    xml = _published_vrt(
        band, grid, target or grid, lut, nodata=nodata, classes=classes, description=description, tags=tags
    )
    tmp = atomic_path(dst)
    # The sidecars' temporaries are named after the raster's, so a failure or an orphan sweep takes them too.
    aux_tmp, qml_tmp = tmp.with_name(tmp.name + ".aux.xml"), tmp.with_name(tmp.name + ".qml")
    renames = [(aux_tmp, dst.with_name(dst.name + ".aux.xml")), (qml_tmp, style_path(dst))] if classes else []
    renames.append((tmp, dst))  # the raster last: once it is in place, so are its sidecars
    resampling = "MODE" if classes else "AVERAGE"
    try:
        # PAM only for a class mask: GDAL writes what a GeoTIFF has no tag for (the RAT, category names) to
        # the temporary's .aux.xml, renamed with it. Band metadata (CLASS_NAMES) stays in the GDAL_METADATA tag.
        pam = "YES" if classes else "NO"
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_PAM_ENABLED=pam), rasterio.open(xml) as src:
            rasterio.shutil.copy(
                src, tmp, driver="COG", compress="DEFLATE", predictor="2", blocksize=512,
                overview_resampling=resampling, bigtiff="IF_SAFER",
            )
        if classes:
            if not aux_tmp.is_file():
                raise OSError("GDAL wrote no .aux.xml with the raster attribute table")
            qml_tmp.write_text(mask_qml(classes), encoding="utf-8")
        for written, final in renames:
            os.replace(written, final)
    except Exception as exc:
        for leftover in tmp.parent.glob(glob.escape(tmp.name) + "*"):
            leftover.unlink(missing_ok=True)
        raise OutputError(f"{dst}: could not write the raster ({exc}). Check free space and permissions.") from exc
    return dst
