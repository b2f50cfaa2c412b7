"""Building clean-up: specks, holes, simplification, right angles, and ground measures."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage
from shapely import affinity

from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.ground import GroundFrame, ground_areas_m2, ground_lengths_m
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.polygons import (
    clean_buildings,
    dominant_angle,
    fill_small_holes,
    regularize_building,
)
from tests.helpers import ArrayReader

UTM = CRS.from_user_input("EPSG:32645")
TRANSFORM = Affine(0.5, 0.0, 300000.0, 0.0, -0.5, 3000000.0)


def corner_angles(poly: shapely.Polygon) -> np.ndarray:
    """Interior angles (degrees) at each vertex of the exterior ring."""
    pts = np.asarray(poly.exterior.coords)[:-1]
    prev = np.roll(pts, 1, axis=0) - pts
    nxt = np.roll(pts, -1, axis=0) - pts
    cos = (prev * nxt).sum(1) / (np.linalg.norm(prev, axis=1) * np.linalg.norm(nxt, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def noisy_mask(shape_px: shapely.Polygon, size: int, seed: int) -> np.ndarray:
    """Rasterize a polygon (pixel coordinates) and flip boundary pixels at random: a network's ragged edge."""
    rng = np.random.default_rng(seed)
    mask = rasterio.features.rasterize([shape_px], out_shape=(size, size), transform=Affine.identity()).astype(bool)
    edge = mask ^ ndimage.binary_erosion(mask)
    rim = ndimage.binary_dilation(mask) ^ mask
    mask[edge & (rng.random(mask.shape) < 0.3)] = False
    mask[rim & (rng.random(mask.shape) < 0.3)] = True
    return mask.astype(np.uint8)


def reader(mask: np.ndarray) -> ArrayReader:
    return ArrayReader(mask, fill_confidence=230)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noisy_rotated_rectangle_becomes_four_right_angles(seed):
    rect = affinity.rotate(shapely.box(40, 60, 120, 100), 7 + seed * 11, origin="centroid")
    mask = noisy_mask(rect, 160, seed)
    layers = vectorize_scene(reader(mask), GeoGrid(Shape2d(160, 160), TRANSFORM, UTM), settings=VectorSettings(chunk_size=64))
    assert len(layers.buildings) == 1
    footprint = layers.buildings.geometry.iloc[0]
    assert len(footprint.exterior.coords) == 5
    np.testing.assert_allclose(corner_angles(footprint), 90.0, atol=2.0)
    truth = gpd.GeoSeries([rect], crs=UTM).affine_transform([0.5, 0, 0, -0.5, 300000.0, 3000000.0]).iloc[0]
    assert footprint.intersection(truth).area / footprint.union(truth).area > 0.9


def test_l_shaped_building_keeps_six_right_angled_corners():
    ell = shapely.Polygon([(0, 0), (60, 0), (60, 20), (25, 20), (25, 50), (0, 50)])
    ell = affinity.translate(affinity.rotate(ell, 23, origin=(0, 0)), 50, 30)
    mask = noisy_mask(ell, 140, 4)
    layers = vectorize_scene(reader(mask), GeoGrid(Shape2d(140, 140), TRANSFORM, UTM))
    footprint = layers.buildings.geometry.iloc[0]
    assert len(footprint.exterior.coords) == 7
    angles = corner_angles(footprint)
    np.testing.assert_allclose(np.minimum(abs(angles - 90), abs(angles - 270)), 0, atol=2.0)


def test_noisy_round_building_is_not_squared():
    mask = noisy_mask(shapely.Point(70, 70).buffer(30), 140, 5)
    layers = vectorize_scene(reader(mask), GeoGrid(Shape2d(140, 140), TRANSFORM, UTM))
    footprint = layers.buildings.geometry.iloc[0]
    angles = corner_angles(footprint)
    assert (np.minimum(abs(angles - 90), abs(angles - 270)) > 5).mean() > 0.5
    circle = gpd.GeoSeries([shapely.Point(70, 70).buffer(30)]).affine_transform([0.5, 0, 0, -0.5, 300000.0, 3000000.0])
    assert shapely.hausdorff_distance(footprint, circle.iloc[0]) < 1.5


def test_irregular_shapes_are_left_close_to_the_mask():
    circle = shapely.Point(0, 0).buffer(20, quad_segs=16)
    assert regularize_building(circle, min_side=2, max_hausdorff=2).equals_exact(circle, 0)
    # A triangle is not rectilinear either.
    tri = shapely.Polygon([(0, 0), (40, 0), (20, 30)])
    assert regularize_building(tri, min_side=2, max_hausdorff=2).equals_exact(tri, 0)


def test_regularization_is_refused_when_it_moves_the_outline_too_far():
    # Mostly rectilinear, but one long oblique edge: squaring it would cut off a wedge.
    poly = shapely.Polygon([(0, 0), (40, 0), (40, 30), (20, 30), (0, 10)])
    out = regularize_building(poly, min_side=2, max_hausdorff=1.0)
    assert out.equals_exact(poly, 0)


def test_dominant_angle_of_a_rotated_square():
    square = affinity.rotate(shapely.box(0, 0, 10, 10), 33, origin=(0, 0))
    theta = dominant_angle(np.asarray(square.exterior.coords))
    assert math.degrees(theta) % 90 == pytest.approx(33, abs=1e-9)


def test_clean_buildings_drops_specks_and_fills_only_small_holes():
    big = shapely.Polygon(
        shapely.box(0, 0, 20, 20).exterior.coords,
        [shapely.box(2, 2, 3, 3).exterior.coords, shapely.box(10, 10, 15, 15).exterior.coords],
    )
    speck = shapely.box(30, 30, 31.5, 31.5)  # 2.25 m^2
    geoms, index = clean_buildings(
        np.array([speck, big], dtype=object), pixel_size=0.5, min_area=4.0, hole_area=2.0,
        simplify_tolerance=0.5, regularize=True,
    )  # fmt: skip
    assert list(index) == [1]
    assert len(geoms[0].interiors) == 1
    assert geoms[0].area == pytest.approx(400 - 25)


def test_fill_small_holes_keeps_the_exterior():
    poly = shapely.box(0, 0, 10, 10).difference(shapely.box(4, 4, 5, 5))
    (filled,) = fill_small_holes(np.array([poly], dtype=object), 2.0)
    assert filled.equals(shapely.box(0, 0, 10, 10))


def test_ground_areas_and_lengths_on_the_ellipsoid_match_utm():
    utm = gpd.GeoSeries([shapely.box(300000, 3050000, 300040, 3050025), shapely.LineString([(300000, 3050000), (300500, 3050300)])], crs=UTM)
    geo = utm.to_crs("EPSG:4326")
    wgs84 = CRS.from_user_input("EPSG:4326")
    assert ground_areas_m2(geo.values[:1], wgs84)[0] == pytest.approx(1000.0, rel=0.002)
    assert ground_lengths_m(geo.values[1:], wgs84)[0] == pytest.approx(utm.length.iloc[1], rel=0.002)
    assert ground_areas_m2(utm.values[:1], UTM)[0] == pytest.approx(1000.0)


def test_ground_frame_composes_back_to_the_scene_transform():
    for transform, crs in [(TRANSFORM, UTM), (Affine(5e-6, 0, 85.5, 0, -5e-6, 27.6), CRS.from_user_input("EPSG:4326"))]:
        frame = GroundFrame.for_grid(GeoGrid(Shape2d(1000, 1000), transform, crs))
        composed = frame.to_crs @ frame.to_ground
        assert composed.almost_equals(transform, precision=1e-12)
    geo = GroundFrame.for_grid(GeoGrid(Shape2d(10, 10), Affine(5e-6, 0, 85.5, 0, -5e-6, 27.6), CRS.from_user_input("EPSG:4326")))
    # At 27.6 N a degree of longitude is ~0.886 of a degree of latitude: pixels are not square on the ground.
    assert abs(geo.to_ground.a / geo.to_ground.e) == pytest.approx(0.887, abs=0.005)


def test_web_mercator_areas_and_lengths_are_within_one_percent_of_geodesic():
    import pyproj

    from pipeline.ground import ground_areas_m2, ground_lengths_m

    geod = pyproj.Geod(ellps="WGS84")
    to_merc = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    # 20 m buildings and a 2 km road at 45 N (planar Mercator is 2x the area there) and at 27.6 N (Banepa).
    for lon, lat in ((10.0, 45.0), (85.5, 27.6)):
        x, y = to_merc.transform(lon, lat)
        ring = shapely.box(x, y, x + 20, y + 20)
        line = shapely.LineString([(x, y), (x + 1500, y + 1300)])
        lonlat = shapely.transform(np.array([ring, line]), lambda xy: np.column_stack(
            to_merc.transform(xy[:, 0], xy[:, 1], direction="INVERSE")))
        true_area = abs(geod.geometry_area_perimeter(lonlat[0])[0])
        true_length = geod.geometry_length(lonlat[1])
        area = ground_areas_m2(np.array([ring]), pyproj.CRS("EPSG:3857"))[0]
        length = ground_lengths_m(np.array([line]), pyproj.CRS("EPSG:3857"))[0]
        assert area == pytest.approx(true_area, rel=0.01) and length == pytest.approx(true_length, rel=0.01)
        assert ring.area > 1.2 * true_area, "the planar Mercator measure is far off: the test means something"
    # UTM keeps its planar measures (scale within 0.1 %).
    utm = shapely.box(300000, 3000000, 300020, 3000020)
    assert ground_areas_m2(np.array([utm]), pyproj.CRS("EPSG:32645"))[0] == pytest.approx(400.0, rel=1e-12)


def test_vectorized_buildings_of_a_web_mercator_scene_have_geodesic_areas():
    import pyproj

    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[20:60, 20:80] = 1
    mask[100:180, 120:160] = 1
    conf = np.full_like(mask, 255)
    x0, y0 = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(10.0, 45.0)

    def read_chunk(region: Region):
        rows, cols = region.slices_in(Region(0, 0, 200, 200))
        return mask[rows, cols], conf[rows, cols]

    grid = GeoGrid(Shape2d(200, 200), Affine(0.7, 0, x0, 0, -0.7, y0), "EPSG:3857")
    buildings = vectorize_scene(read_chunk, grid, settings=VectorSettings(chunk_size=128)).buildings
    assert len(buildings) == 2
    geod = pyproj.Geod(ellps="WGS84")
    true = [abs(geod.geometry_area_perimeter(g)[0]) for g in buildings.to_crs("EPSG:4326").geometry]
    np.testing.assert_allclose(buildings["area_m2"], true, rtol=0.01)
    assert (buildings.geometry.area > 1.9 * np.array(true)).all(), "planar Mercator would be 2x"
