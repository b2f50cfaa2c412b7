"""Instance-aware building targets: interior, boundary and contact classes computed per polygon.

A two-class mask cannot say where one roof ends and the next begins. These targets can (RAMP's
multimask, see ../shared/REFERENCE.md "Building instances"):

- interior: each footprint rasterized and eroded by the boundary width **on its own**, so a wall shared
  by two touching buildings gets boundary pixels on both sides (eroding the merged raster, as solaris
  does, loses exactly those walls);
- boundary: the union of the footprints minus the union of the interiors;
- contact: pixels outside every footprint that lie within the contact gap of two different buildings
  (where two footprints grown by the gap overlap).

Widths are given in metres and converted to pixels with the scene's resolution (:func:`pixel_size_m`,
geographic CRSs at the scene's latitude). Each polygon is handled in a window around its own bounds, so
the cost grows with the buildings' area, not with the scene's. Pure functions: polygons and arrays in,
arrays out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from pipeline.grid import GeoGrid, Shape2d
from pipeline.ground import GroundFrame
from pipeline.vectors.instances import BOUNDARY, CONTACT

__all__ = [
    "BOUNDARY",
    "CONTACT",
    "InstanceTargets",
    "pixel_size_m",
    "disk",
    "instance_masks",
    "burn_instance_targets",
]

#: Class names of the auxiliary classes; a model's classes list them last, after building (and road).


@dataclass(frozen=True)
class InstanceTargets:
    """Widths of the auxiliary building classes, in metres on the ground.

    Attributes:
        boundary_m: how far each footprint is eroded (on its own) to give its interior.
        contact_m: the gap between two buildings' footprints that becomes contact pixels.
    """

    boundary_m: float = 0.4
    contact_m: float = 0.5

    def __post_init__(self) -> None:
        if not (self.boundary_m >= 0 and self.contact_m >= 0):
            raise ValueError(f"target widths must not be negative, got {self.boundary_m}, {self.contact_m}")

    def in_pixels(self, pixel_m: float) -> tuple[float, float]:
        """(boundary, contact) widths in pixels of side ``pixel_m`` metres."""
        if not pixel_m > 0:
            raise ValueError(f"pixel size must be positive, got {pixel_m}")
        return self.boundary_m / pixel_m, self.contact_m / pixel_m


def pixel_size_m(transform: Affine, crs: object, shape: Shape2d) -> float:
    """The mean side of a pixel on the ground in metres (geographic CRSs: at the scene centre)."""
    return GroundFrame.for_grid(GeoGrid(shape, transform, crs)).pixel_size_m


def disk(radius: float) -> np.ndarray:
    """Boolean disk of pixel offsets within ``radius`` (a 1 x 1 True for radius < 1)."""
    r = int(math.floor(radius + 1e-9))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= radius**2 + 1e-9


def instance_masks(
    polygons: Sequence[shapely.Geometry] | np.ndarray,
    shape: tuple[int, int],
    boundary_px: float,
    contact_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Footprint, interior and contact masks (bool, ``shape``) of polygons in pixel coordinates.

    Polygons are in the frame of the output array: x = column, y = row, pixel (r, c) covering
    [c, c + 1) x [r, r + 1) (rasterio's convention: a pixel is in when its centre is). Each polygon is
    rasterized and eroded in a window around its own bounds that reaches past the array where the
    polygon does, so a building cut by the array's edge gets no boundary along that edge.

    Args:
        polygons: building footprints (Polygon or MultiPolygon; empty ones are skipped).
        shape: (rows, cols) of the output.
        boundary_px: erosion radius of each footprint, in pixels (0: no boundary).
        contact_px: gap between two footprints that counts as contact, in pixels (0: no contact).
    """
    rows, cols = shape
    footprint = np.zeros(shape, dtype=bool)
    interior = np.zeros(shape, dtype=bool)
    near = np.zeros(shape, dtype=np.uint8)  # how many footprints grown by the gap reach each pixel
    erode, grow = disk(boundary_px), disk(contact_px)
    pad = max(erode.shape[0], grow.shape[0]) // 2 + 1
    geoms = np.asarray(list(polygons), dtype=object)
    if geoms.size:
        geoms = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
    for geom in geoms:
        x0, y0, x1, y1 = shapely.bounds(geom)
        c0, r0 = int(math.floor(x0)) - pad, int(math.floor(y0)) - pad
        c1, r1 = int(math.ceil(x1)) + pad, int(math.ceil(y1)) + pad
        if c1 <= 0 or r1 <= 0 or c0 >= cols or r0 >= rows:
            continue
        local = rasterize(
            [(geom, 1)], out_shape=(r1 - r0, c1 - c0), transform=Affine.translation(c0, r0), dtype=np.uint8
        ).astype(bool)
        if not local.any():
            continue
        inner = ndimage.binary_erosion(local, erode) if boundary_px > 0 else local
        grown = ndimage.binary_dilation(local, grow) if contact_px > 0 else local
        # The part of the window inside the array.
        a0, b0 = max(r0, 0), max(c0, 0)
        a1, b1 = min(r1, rows), min(c1, cols)
        win = (slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
        out = (slice(a0, a1), slice(b0, b1))
        footprint[out] |= local[win]
        interior[out] |= inner[win]
        near[out] += grown[win].astype(np.uint8)
    contact = (near >= 2) & ~footprint
    return footprint, interior, contact


def burn_instance_targets(
    mask: np.ndarray,
    polygons: Sequence[shapely.Geometry] | np.ndarray,
    *,
    building_id: int,
    boundary_id: int,
    contact_id: int,
    boundary_px: float,
    contact_px: float,
) -> np.ndarray:
    """``mask`` (class ids) with building boundary and contact pixels of ``polygons`` burnt in.

    Pixels of ``building_id`` in a footprint but in no interior become ``boundary_id``; background
    pixels (0) in a contact gap become ``contact_id``. Other classes (roads, say) keep their pixels.
    Returns a new array; ``mask`` is not modified.
    """
    footprint, interior, contact = instance_masks(polygons, mask.shape, boundary_px, contact_px)
    out = mask.copy()
    out[footprint & ~interior & (mask == building_id)] = boundary_id
    out[contact & (mask == 0)] = contact_id
    return out
