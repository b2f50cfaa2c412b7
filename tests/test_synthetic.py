"""Synthetic scenes: real GeoTIFFs and GeoPackages written to a temp folder and read back."""

from __future__ import annotations

import affine
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window
from scipy.ndimage import binary_erosion, label

from pipeline.errors import ConfigError, SceneReadError
from pipeline.grid import GeoGrid, Shape2d
from pipeline.synthetic import write_synthetic_scene
from pipeline.vectors.labels import rasterize_layers, read_layers
from pipeline.vectors.layers import LAYER_NAMES as TRUTH_LAYERS

ROWS, COLS = 384, 448
SEED = 7


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("a") / "scene.tif", ROWS, COLS, seed=SEED, block_size=1024)


@pytest.fixture(scope="module")
def pixels(scene):
    with rasterio.open(scene.path) as src:
        return src.read()


@pytest.fixture(scope="module")
def truth(scene):
    return read_layers(scene.truth_path)


def test_geotiff_has_requested_georeferencing_and_layout(scene, pixels):
    with rasterio.open(scene.path) as src:
        assert src.crs.to_epsg() == 32645
        assert (src.height, src.width, src.count) == (ROWS, COLS, 3)
        assert src.dtypes == ("uint8", "uint8", "uint8")
        assert src.transform == scene.transform
        assert src.block_shapes[0] == (512, 512)
        assert src.compression.name.lower() == "deflate"
    t = scene.transform
    assert (t.a, t.e) == (0.5, -0.5)
    assert t.c % 1000 == 0 and t.f % 1000 == 0
    assert 300_000 <= t.c < 500_000 and 3_000_000 <= t.f < 3_200_000
    assert scene.shape == Shape2d(ROWS, COLS) and scene.seed == SEED
    assert sorted(p.name for p in scene.path.parent.iterdir()) == ["scene.gpkg", "scene.tif"]
    assert pixels.std() > 10


def test_nir_band_other_crs_and_origin_keep_the_rgb(tmp_path, scene, pixels):
    origin = (scene.transform.c, scene.transform.f)
    nir = write_synthetic_scene(tmp_path / "nir.tif", ROWS, COLS, seed=SEED, bands=4, crs="EPSG:32644", origin=origin)
    with rasterio.open(nir.path) as src:
        assert src.count == 4 and src.crs.to_epsg() == 32644 and src.transform == scene.transform
        four = src.read()
    np.testing.assert_array_equal(four[:3], pixels)
    # Vegetation is bright in the near infrared, roads and roofs are not.
    mask = rasterize_layers(read_layers(nir.truth_path), GeoGrid(nir.shape, nir.transform, nir.crs))
    green = (four[1].astype(int) > four[0].astype(int) + 10) & (mask == 0)
    assert four[3][green].mean() > four[3][mask == 2].mean() + 40


def test_same_seed_same_scene_other_seed_other_scene(tmp_path, scene, pixels, truth):
    again = write_synthetic_scene(tmp_path / "again.tif", ROWS, COLS, seed=SEED, block_size=1024)
    with rasterio.open(again.path) as src:
        assert src.read().tobytes() == pixels.tobytes()
    assert again.transform == scene.transform
    truth_again = read_layers(again.truth_path)
    for name in TRUTH_LAYERS:
        assert truth_again[name].geometry.to_wkb().tolist() == truth[name].geometry.to_wkb().tolist()
        assert truth_again[name].drop(columns="geometry").equals(truth[name].drop(columns="geometry"))

    other = write_synthetic_scene(tmp_path / "other.tif", ROWS, COLS, seed=SEED + 1)
    with rasterio.open(other.path) as src:
        assert np.mean(src.read() != pixels) > 0.5
    assert other.transform != scene.transform
    other_truth = read_layers(other.truth_path)["buildings"].geometry.to_wkb().tolist()
    assert other_truth != truth["buildings"].geometry.to_wkb().tolist()


@pytest.mark.parametrize("block_size", [128, 100])
def test_pixels_do_not_depend_on_block_size(tmp_path, pixels, block_size):
    blocky = write_synthetic_scene(tmp_path / "blocky.tif", ROWS, COLS, seed=SEED, block_size=block_size)
    with rasterio.open(blocky.path) as src:
        np.testing.assert_array_equal(src.read(), pixels)


def test_truth_layers_are_separable_and_inside_the_scene(scene, truth):
    assert set(truth) == set(TRUTH_LAYERS)
    buildings, roads, lines = truth["buildings"], truth["roads"], truth["road_centerlines"]
    assert len(buildings) >= 5 and len(roads) >= 1 and len(lines) >= 1
    assert set(buildings.geom_type) == {"Polygon"} and set(roads.geom_type) == {"Polygon"}
    assert set(lines.geom_type) == {"LineString"}
    assert (buildings["class"] == "building").all() and (roads["class"] == "road").all()
    assert ((lines["width_m"] >= 4) & (lines["width_m"] <= 14)).all()
    for gdf in truth.values():
        assert gdf.crs.to_epsg() == 32645

    b = buildings.geometry.values
    rects = [np.asarray(g.minimum_rotated_rectangle.exterior.coords) for g in b]
    sides = [np.linalg.norm(np.diff(r, axis=0), axis=1) for r in rects]
    assert min(s.min() for s in sides) >= 5.9 and max(s.max() for s in sides) <= 60
    left, right = shapely.STRtree(b).query(b, predicate="dwithin", distance=1.5)
    assert (left == right).all(), "two buildings closer than 1.5 m"
    assert shapely.distance(shapely.union_all(roads.geometry.values), b).min() >= 1.5

    x0, y1 = scene.transform.c, scene.transform.f
    bounds = shapely.box(x0, y1 - ROWS * 0.5, x0 + COLS * 0.5, y1)
    for gdf in truth.values():
        assert shapely.covered_by(gdf.geometry.values, bounds.buffer(1e-6)).all()


def test_truth_mask_is_aligned_with_the_image(scene, pixels, truth):
    mask = rasterize_layers(scene.truth_path, GeoGrid(scene.shape, scene.transform, scene.crs))
    assert mask.shape == (ROWS, COLS) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1, 2}
    img = pixels.astype(np.float64)

    # A roof is one colour; the same footprint shifted by a few pixels mixes roof and ground.
    footprints, n = label(binary_erosion(mask == 1, iterations=2))
    def spread(dr: int, dc: int) -> float:
        shifted = np.roll(img, (dr, dc), axis=(1, 2))
        return float(np.median([shifted[:, footprints == k].std(axis=1).mean() for k in range(1, n + 1)]))
    assert n >= 5
    assert spread(0, 0) < 0.6 * min(spread(5, 0), spread(0, 5), spread(-5, -5))

    # Roads differ from the ground around them.
    ground, road = img[:, mask == 0].mean(axis=1), img[:, mask == 2].mean(axis=1)
    assert np.abs(ground - road).max() > 15

    # Any window of the truth rasterizes as the same crop of the whole mask.
    t = scene.transform @ affine.Affine.translation(101, 57)
    window = rasterize_layers(truth, GeoGrid(Shape2d(200, 150), t, scene.crs))
    np.testing.assert_array_equal(window, mask[57:257, 101:251])
    only_buildings = rasterize_layers(truth, GeoGrid(scene.shape, scene.transform, scene.crs), classes=("background", "building"))
    np.testing.assert_array_equal(only_buildings, np.where(mask == 1, 1, 0))


def test_window_reads_match_whole_reads(scene, pixels):
    with rasterio.open(scene.path) as src:
        np.testing.assert_array_equal(src.read(window=Window(200, 100, 64, 80)), pixels[:, 100:180, 200:264])


def test_bad_options_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="bands"):
        write_synthetic_scene(tmp_path / "x.tif", 64, 64, bands=2)
    with pytest.raises(ConfigError, match="projected"):
        write_synthetic_scene(tmp_path / "x.tif", 64, 64, crs="EPSG:4326")
    with pytest.raises(ConfigError, match="rows"):
        write_synthetic_scene(tmp_path / "x.tif", 0, 64)
    with pytest.raises(SceneReadError, match="missing.gpkg"):
        read_layers(tmp_path / "missing.gpkg")
    assert list(tmp_path.iterdir()) == []
