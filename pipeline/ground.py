"""Ground measures: pixels to metres on the ground, and true areas and lengths of geometries in any CRS.

The vocabulary the engine measures in: clean-up thresholds in m and m^2 apply in a scene's *ground frame*
(:class:`GroundFrame`: local metres east and north of the scene origin, one affine from pixels); reported
areas and lengths are true on the ground: planar where the projection's scale is 1 (UTM, local CRSs), on
the ellipsoid for geographic CRSs and for projections whose scale varies (Web Mercator, other conformal
projections of large areas). Pure pyproj / shapely / numpy, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer

from pipeline.grid import GeoGrid

__all__ = ["GroundFrame", "apply_affine", "ground_areas_m2", "ground_lengths_m", "PLANAR_SCALE_TOLERANCE"]


@dataclass(frozen=True)
class GroundFrame:
    """Pixel (col, row) to local ground metres, and ground metres to the CRS.

    Attributes:
        to_ground: affine from pixel coordinates (x=col, y=row) to metres east/north of the scene origin.
        to_crs: affine from those metres to coordinates of the scene CRS.
        pixel_size_m: the mean side of a pixel on the ground.
    """

    to_ground: Affine
    to_crs: Affine
    pixel_size_m: float

    @classmethod
    def for_grid(cls, grid: GeoGrid) -> GroundFrame:
        """The frame of a scene; geographic CRSs are scaled at the scene centre (~0.1 % off 10 km away)."""
        transform, crs, shape = grid.transform, CRS.from_user_input(grid.crs), grid.shape
        a, b, _, d, e, _ = transform[:6]
        if crs.is_geographic:
            centre_x, centre_y = transform @ (shape.cols / 2, shape.rows / 2)
            geod = crs.get_geod() or Geod(ellps="WGS84")
            step = 1e-4
            east = geod.line_length([centre_x - step, centre_x + step], [centre_y, centre_y]) / (2 * step)
            north = geod.line_length([centre_x, centre_x], [centre_y - step, centre_y + step]) / (2 * step)
        else:
            east = north = crs.axis_info[0].unit_conversion_factor
            centre = shapely.points([transform @ (shape.cols / 2, shape.rows / 2)])
            if not _planar_is_ground(centre, crs):  # Web Mercator etc.: a CRS unit is 1/k metres here
                lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(*centre[0].coords[0])
                factors = Proj(crs).get_factors(lon, lat)
                east, north = east / factors.parallel_scale, north / factors.meridional_scale
        to_ground = Affine(a * east, b * east, 0.0, d * north, e * north, 0.0)
        pixel_size_m = math.sqrt(abs(to_ground.determinant))
        return cls(to_ground, transform @ ~to_ground, pixel_size_m)

    @property
    def pixel_area_m2(self) -> float:
        return abs(self.to_ground.determinant)



def apply_affine(geoms: np.ndarray, affine: Affine) -> np.ndarray:
    """Apply an affine to an array of geometries, vectorized over all their coordinates."""
    a, b, c, d, e, f = affine[:6]
    linear = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return shapely.transform(np.asarray(geoms, dtype=object), lambda xy: xy @ linear + offset)


def _geod(crs: CRS) -> Geod:
    return crs.get_geod() or Geod(ellps="WGS84")


def _unit_factor(crs: CRS) -> float:
    return crs.axis_info[0].unit_conversion_factor


#: Largest areal scale error (|k^2 - 1|) at which planar measures count as ground measures (UTM: < 0.1 %).
PLANAR_SCALE_TOLERANCE = 1e-3


def _planar_is_ground(geoms: np.ndarray, crs: CRS) -> bool:
    """Whether the projection's scale is ~1 at every geometry, so planar areas and lengths are ground ones.

    UTM and other local projections are (0.04 % at most inside a zone); Web Mercator and other conformal
    projections of large areas are not (EPSG:3857 scales areas by 1/cos^2(latitude)).
    """
    if crs.is_geographic:
        return False
    if not crs.is_projected or len(geoms) == 0:
        return True  # engineering (local) CRSs are ground metres by definition
    centres = shapely.centroid(geoms)
    x, y = shapely.get_x(centres), shapely.get_y(centres)
    lon, lat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
    factors = Proj(crs).get_factors(lon, lat, errcheck=False)
    areal = np.asarray(factors.areal_scale, dtype=np.float64)
    return bool(np.all(np.abs(areal - 1.0) <= PLANAR_SCALE_TOLERANCE))


def _to_geographic(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Densified (so long edges follow the projection) and transformed to the CRS's own geographic CRS."""
    transformer = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    lengths = shapely.length(geoms)
    dense = np.array([shapely.segmentize(g, max(length / 64, 1e-9)) for g, length in zip(geoms, lengths, strict=True)],
                     dtype=object)
    return shapely.transform(dense, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))


def ground_areas_m2(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Areas in m^2 on the ground of geometries in ``crs``.

    Planar where the projection's scale is 1 to 0.1 % at the geometries (UTM, local CRSs); otherwise on the
    ellipsoid (geographic CRSs, and Web Mercator and other projections whose scale varies across a scene).
    """
    geoms = np.asarray(geoms, dtype=object)
    if _planar_is_ground(geoms, crs):
        return shapely.area(geoms) * _unit_factor(crs) ** 2
    geod = _geod(crs)
    lonlat = geoms if crs.is_geographic else _to_geographic(geoms, crs)
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in lonlat], dtype=np.float64)


def ground_lengths_m(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Lengths in m on the ground of lines in ``crs``: planar or geodesic by the same rule as the areas."""
    geoms = np.asarray(geoms, dtype=object)
    if _planar_is_ground(geoms, crs):
        return shapely.length(geoms) * _unit_factor(crs)
    geod = _geod(crs)
    lonlat = geoms if crs.is_geographic else _to_geographic(geoms, crs)
    return np.array([geod.geometry_length(g) for g in lonlat], dtype=np.float64)
