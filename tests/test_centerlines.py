"""Road centerlines: accurate against known centerlines, pruned, connected, the same for every chunking."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine

from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.metrics import centerline_scores
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.centerlines import merge_centerlines, skeleton_lines
from tests.helpers import TRANSFORM, UTM, ArrayReader

SIZE = 420


def true_roads_px() -> list[shapely.LineString]:
    """Two curved roads and a straight one meeting them at junctions, in pixel coordinates (x=col, y=row)."""
    t = np.linspace(0, 1, 200)
    curve = shapely.LineString(np.column_stack([10 + 400 * t, 100 + 60 * np.sin(np.pi * t * 1.5)]))
    arc = shapely.LineString(np.column_stack([300 + 100 * np.cos(np.pi * t * 0.9), 400 - 250 * np.sin(np.pi * t * 0.45)]))
    cross = shapely.LineString([(150, 0), (160, 419)])
    return [curve, arc, cross]


def road_mask(width_px: float = 14.0) -> np.ndarray:
    lines = true_roads_px()
    road = rasterio.features.rasterize(
        [shapely.buffer(g, width_px / 2, cap_style="flat") for g in lines], out_shape=(SIZE, SIZE), transform=Affine.identity()
    )
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[road > 0] = 2
    return mask


def reader(mask: np.ndarray) -> ArrayReader:
    return ArrayReader(mask, fill_confidence=200)


def to_map(lines_px: list[shapely.LineString]) -> gpd.GeoSeries:
    return gpd.GeoSeries(lines_px, crs=UTM).affine_transform([0.5, 0, 0, -0.5, 300000.0, 3000000.0])


@pytest.mark.parametrize("chunk", [96, 2048])
def test_centerlines_match_the_true_roads_within_two_metres(chunk):
    mask = road_mask()
    settings = VectorSettings(chunk_size=chunk, halo_px=48)
    layers = vectorize_scene(reader(mask), GeoGrid(Shape2d(SIZE, SIZE), TRANSFORM, UTM), settings=settings)
    lines = layers.road_centerlines
    # The true lines clipped to the scene; the skeleton cannot reach closer to the border than a half width.
    truth = to_map(true_roads_px()).clip(shapely.box(300000 + 5, 3000000 - 205, 300000 + 205, 3000000 - 5))
    scores = centerline_scores(lines, truth, 2.0)
    assert scores.completeness >= 0.9
    assert scores.correctness >= 0.9
    assert (lines["length_m"] > 0).all()
    np.testing.assert_allclose(lines["length_m"], lines.length)
    assert lines["score"].eq(200 / 255).all()
    # Junctions connected: the whole network is one piece.
    assert shapely.get_num_geometries(shapely.union_all(shapely.buffer(lines.geometry.values, 0.01))) == 1
    # Spurs pruned: every dangling branch is at least the prune length (or a true road end at the border).
    ends = shapely.get_coordinates(shapely.boundary(lines.geometry.values))
    _, counts = np.unique(ends, axis=0, return_counts=True)
    free = {tuple(p) for p, n in zip(np.unique(ends, axis=0), counts, strict=True) if n == 1}
    for geom, length in zip(lines.geometry, lines["length_m"], strict=True):
        if {tuple(geom.coords[0]), tuple(geom.coords[-1])} & free:
            assert length >= settings.centerline_prune_m


def road_centerlines(road: np.ndarray, *, prune_length_px: float) -> np.ndarray:
    """Centerlines of a whole road mask held in memory, in pixel coordinates: the unchunked reference."""
    full = Region(0, 0, *road.shape)
    return merge_centerlines(skeleton_lines(road, full, full, full.shape), prune_length=prune_length_px)


def test_chunked_centerlines_equal_the_whole_image_ones():
    mask = road_mask()
    whole = road_centerlines(mask == 2, prune_length_px=12.0)
    for chunk in (64, 150):
        layers = vectorize_scene(
            reader(mask), GeoGrid(Shape2d(SIZE, SIZE), TRANSFORM, UTM), settings=VectorSettings(chunk_size=chunk, simplify_tolerance_px=0)
        )
        got = layers.road_centerlines.geometry
        expected = to_map(list(whole))
        assert len(got) == len(expected)
        assert shapely.hausdorff_distance(shapely.union_all(got.values), shapely.union_all(expected.values)) < 1e-9


def test_spurs_are_pruned_and_the_junction_rejoined():
    # A straight road with a short stub: the stub goes, and the two halves become one line again.
    pieces = np.array(
        [
            shapely.LineString([(0, 0), (50, 0)]),
            shapely.LineString([(50, 0), (100, 0)]),
            shapely.LineString([(50, 0), (50, 4)]),  # spur shorter than 6
            shapely.LineString([(100, 0), (100, 30)]),  # a real branch
            shapely.LineString([(100, 0), (130, 0)]),
            shapely.LineString([(200, 200), (202, 202)]),  # an isolated speck
        ],
        dtype=object,
    )
    merged = merge_centerlines(pieces, prune_length=6.0)
    assert len(merged) == 3
    assert any(g.equals(shapely.LineString([(0, 0), (100, 0)])) for g in merged)
    assert shapely.length(merged).sum() == pytest.approx(160.0)


def test_geographic_lengths_match_utm_within_one_percent():
    mask = road_mask()
    transform = Affine(5e-6, 0.0, 85.52, 0.0, -4.5e-6, 27.63)
    layers = vectorize_scene(reader(mask), GeoGrid(Shape2d(SIZE, SIZE), transform, "EPSG:4326"))
    lines = layers.road_centerlines
    assert len(lines) >= 3
    np.testing.assert_allclose(lines["length_m"].values, lines.to_crs(UTM).length.values, rtol=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_thinning_the_bounding_box_gives_the_skeleton_of_the_whole_chunk(seed):
    from skimage.morphology import skeletonize

    from pipeline.vectors.centerlines import _skeletonize_in_bounds

    rng = np.random.default_rng(seed)
    binary = np.zeros((300, 260), dtype=bool)
    for _ in range(rng.integers(1, 6)):  # thick strokes, some through the chunk edges (seeds 0, 3: the corner)
        r0, c0 = rng.integers(-20, 280), rng.integers(-20, 240)
        if seed % 3 == 0:
            r0, c0 = -5, -5
        h, w = rng.integers(3, 60), rng.integers(3, 200)
        binary[max(r0, 0): max(r0 + h, 0), max(c0, 0): max(c0 + w, 0)] = True
    binary &= rng.random(binary.shape) > 0.02  # holes and ragged edges
    np.testing.assert_array_equal(_skeletonize_in_bounds(binary), skeletonize(binary))
    assert not _skeletonize_in_bounds(np.zeros((5, 5), bool)).any()


def test_road_clean_up_over_the_bounding_box_equals_the_whole_window(monkeypatch):
    """Specks and holes removed over the road's bounding box give the whole window's answer, for windows
    inside the scene and on its edges; where the box could differ it falls back to the whole window."""
    from pipeline.vectors import centerlines

    whole = centerlines._clean_road_whole
    fallbacks = []
    monkeypatch.setattr(centerlines, "_clean_road_whole",
                        lambda *a: fallbacks.append(1) or whole(*a))  # counts, then the real function
    scene = Shape2d(1000, 1000)
    rng = np.random.default_rng(11)
    for case in range(60):
        rows, cols = int(rng.integers(20, 160)), int(rng.integers(20, 160))
        road = np.zeros((rows, cols), dtype=bool)
        for _ in range(int(rng.integers(1, 5))):
            r, c = int(rng.integers(-10, rows)), int(rng.integers(-10, cols))
            h, w = int(rng.integers(1, 40)), int(rng.integers(1, 120))
            road[max(r, 0): max(r + h, 0), max(c, 0): max(c + w, 0)] = True
        road &= rng.random(road.shape) > 0.05  # holes and specks
        at = [(0, 0), (500, 500), (1000 - rows, 1000 - cols), (0, 500)][case % 4]  # corner, inside, edges
        window = Region(at[0], at[1], rows, cols)
        open_sides = (window.row > 0, window.row_stop < scene.rows, window.col > 0, window.col_stop < scene.cols)
        for min_px in (4, 30, int(rng.integers(50, 3000))):
            np.testing.assert_array_equal(centerlines._clean_road(road, window, scene, min_px),
                                          whole(road, open_sides, min_px), err_msg=f"case {case}, min_px {min_px}")
    calls = 60 * 3
    assert 0 < len(fallbacks) < calls // 2  # both ways were taken, the box mostly
    # A scene of one window, a road across it: the background above (500 px) is under min_px and touches
    # no open side, so the whole window fills it; the box sees only its margin of it and must not decide.
    road = np.zeros((300, 10), dtype=bool)
    road[50:150] = True
    filled = centerlines._clean_road(road, Region(0, 0, 300, 10), Shape2d(300, 10), 600)
    assert filled[:150].all() and not filled[150:].any()  # 500 px above filled, 1500 below kept
