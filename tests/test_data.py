"""Training data: masks rasterized from real vector files on the scene grid, mirror padding, area splits."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from models.augment import Augment
from pipeline.errors import ConfigError
from pipeline.grid import GeoGrid, Region, reflect_indices
from pipeline.training.data import (
    LabelSpec,
    SceneData,
    TrainingSource,
    TrainTiles,
    ValidationTiles,
    band_stats,
    read_labels,
    split_by_area,
    split_by_bounds,
    split_rows,
    synthetic_scenes,
)
from pipeline.vectors.labels import rasterize_layers, read_layers
from tests.helpers import smooth_image, write_geotiff

CLASSES = ["background", "building", "road"]
SIZE = 192


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[TrainingSource]:
    return synthetic_scenes(tmp_path_factory.mktemp("syn"), seeds=[3, 11], size=SIZE)


@pytest.fixture(scope="module")
def per_layer_labels(sources, tmp_path_factory):
    """The first scene's truth re-written as one layer per class (layer name = class), no class column."""
    path = tmp_path_factory.mktemp("labels") / "per-layer.gpkg"
    truth = read_layers(sources[0].labels)
    for layer, name in (("buildings", "building"), ("roads", "road")):
        gdf = truth[layer][["geometry"]]
        pyogrio.write_dataframe(gdf, path, layer=name, driver="GPKG")
    return path


def _scene_mask(source: TrainingSource) -> np.ndarray:
    scene = SceneData(source, CLASSES, [1, 2, 3])
    return scene.read(Region(0, 0, SIZE, SIZE))[1]


def test_mask_matches_the_synthetic_truth_rasterized_on_the_scene_grid(sources):
    with rasterio.open(sources[0].image) as ds:
        expected = rasterize_layers(sources[0].labels, GeoGrid.of_dataset(ds), tuple(CLASSES))
    mask = _scene_mask(sources[0])
    assert mask.dtype == np.int64
    assert set(np.unique(mask)) == {0, 1, 2}
    np.testing.assert_array_equal(mask, expected)


def test_class_column_and_one_layer_per_class_give_the_same_mask(sources, per_layer_labels):
    by_column = _scene_mask(sources[0])
    by_layer = _scene_mask(TrainingSource(sources[0].image, per_layer_labels, LabelSpec(class_column=None)))
    np.testing.assert_array_equal(by_layer, by_column)
    # Layers mapped to classes by name, as for a file whose layer is "buildings".
    mapped = SceneData(
        TrainingSource(
            sources[0].image,
            sources[0].labels,
            LabelSpec(class_column=None, layer_classes={"buildings": "building"}),
        ),
        CLASSES,
        [1, 2, 3],
    ).read(Region(0, 0, SIZE, SIZE))[1]
    np.testing.assert_array_equal(mapped, np.where(by_column == 1, 1, 0))


def test_labels_in_another_crs_are_reprojected_to_the_scene(sources, tmp_path):
    truth = read_layers(sources[0].labels)
    path = tmp_path / "labels.geojson"
    both = gpd.GeoDataFrame(
        np.concatenate([truth["buildings"].to_numpy(), truth["roads"].to_numpy()]),
        columns=truth["roads"].columns,
        geometry="geometry",
        crs=truth["roads"].crs,
    ).to_crs("EPSG:4326")
    both.to_file(path, driver="GeoJSON", engine="pyogrio")
    labels = read_labels(path, CLASSES, LabelSpec(), rasterio.open(sources[0].image).crs)
    assert labels.crs.to_epsg() == 32645 and sorted(labels["class_id"].unique()) == [1, 2]
    mask = _scene_mask(TrainingSource(sources[0].image, path))
    # Reprojection moves vertices by far less than a pixel: only edge pixels may change class.
    assert (mask != _scene_mask(sources[0])).mean() < 0.002


def test_labels_without_the_classes_name_what_was_found(sources):
    with pytest.raises(ConfigError, match="class_name.*found layer 'buildings'"):
        read_labels(sources[0].labels, CLASSES, LabelSpec(class_column="class_name"), "EPSG:32645")
    with pytest.raises(ConfigError, match="layer_classes"):
        read_labels(sources[0].labels, ["background", "tree"], LabelSpec(), "EPSG:32645")


def test_windows_past_the_edge_are_mirror_padded_like_the_whole_scene(sources):
    in_memory = SceneData(sources[1], CLASSES, [1, 2, 3])
    windowed = SceneData(sources[1], CLASSES, [1, 2, 3], in_memory_pixels=0)
    whole_image, whole_mask = in_memory.read(Region(0, 0, SIZE, SIZE))
    pad = 40
    padded_image = np.pad(whole_image, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    padded_mask = np.pad(whole_mask, pad, mode="reflect")
    for window in (Region(-pad, -pad, 96, 96), Region(SIZE - 64, 100, 64 + pad, 64), Region(50, 60, 64, 64)):
        inside = Region(window.row + pad, window.col + pad, window.rows, window.cols).slices_in(
            Region(0, 0, SIZE + 2 * pad, SIZE + 2 * pad)
        )
        for scene in (in_memory, windowed):
            image, mask = scene.read(window)
            np.testing.assert_array_equal(image, padded_image[(slice(None), *inside)])
            np.testing.assert_array_equal(mask, padded_mask[inside])


def test_train_and_validation_windows_never_share_a_pixel(sources):
    train, val = split_rows(sources, val_fraction=1 / 3, gap=16)
    assert [s.region for s in train] == [Region(0, 0, 112, SIZE)] * 2
    assert [s.region for s in val] == [Region(128, 0, 64, SIZE)] * 2
    scenes = [SceneData(s, CLASSES, [1, 2, 3]) for s in train]
    tiles = TrainTiles(scenes, 64, 200, [0.0] * 3, [1.0] * 3, seed=5)
    val_tiles = ValidationTiles([SceneData(s, CLASSES, [1, 2, 3]) for s in val], 64, [0.0] * 3, [1.0] * 3)
    val_rows = {k: set() for k in range(2)}
    for k, w in val_tiles.windows:
        val_rows[k] |= set(reflect_indices(w.row, w.row_stop, SIZE).tolist())
    assert val_rows[0] == set(range(128, SIZE))
    seen_edge = False
    for epoch in range(3):
        tiles.epoch = epoch
        for i in range(len(tiles)):
            k, w = tiles.window(i)
            rows = set(reflect_indices(w.row, w.row_stop, SIZE).tolist())
            assert rows <= set(range(0, 112)) and not rows & val_rows[k]
            seen_edge |= w.row < 0 or w.col < 0 or w.col_stop > SIZE
    assert seen_edge  # windows do reach past the scene edge (mirror padded) where the region meets it


def _grid_tile(path, x, y, size=32):
    """A tile of a 'web map' grid: column x, row y (rows increase southwards)."""
    transform = from_origin(85.5 + x * 1e-4, 27.7 - y * 1e-4, 1e-4 / size, 1e-4 / size)
    return write_geotiff(
        path / f"OAM-{x}-{y}-19.tif",
        smooth_image(size, size, seed=x + 10 * y),
        crs="EPSG:4326",
        transform=transform,
    )


def test_tiles_in_rows_split_by_rows_with_a_gap_row(tmp_path, sources):
    paths = {(x, y): _grid_tile(tmp_path, x, y) for x in range(2) for y in range(10, 15)}
    grid = [TrainingSource(p, sources[0].labels) for p in paths.values()]
    train, val = split_by_bounds(grid)
    assert sorted(s.image for s in val) == sorted(paths[x, 14] for x in range(2))
    assert sorted(s.image for s in train) == sorted(paths[x, y] for x in range(2) for y in range(10, 13))
    assert split_by_area(grid) == (train, val)
    # A single row of tiles cannot be split by rows: each scene is cut into bands instead.
    row = [TrainingSource(paths[x, 10], sources[0].labels) for x in range(2)]
    with pytest.raises(ConfigError, match="single row"):
        split_by_bounds(row)
    train, val = split_by_area(row, val_fraction=0.25)
    assert [s.region for s in val] == [Region(24, 0, 8, 32)] * 2


def test_band_stats_and_tiles_are_seeded_and_normalized(sources):
    scenes = [SceneData(s, CLASSES, [1, 2, 3]) for s in sources]
    mean, std = band_stats(scenes, 64, n_tiles=40, seed=0)
    pixels = np.concatenate([s.read(Region(0, 0, SIZE, SIZE))[0].reshape(3, -1) for s in scenes], axis=1)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=0.1)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=0.2)
    a = TrainTiles(scenes, 64, 8, mean, std, Augment(), seed=1)
    b = TrainTiles(scenes, 64, 8, mean, std, Augment(), seed=1)
    image, mask = a[3]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert mask.dtype == torch.int64 and mask.shape == (64, 64)
    torch.testing.assert_close(b[3][0], image)
    assert torch.equal(b[3][1], mask)
    assert abs(float(image.mean())) < 1.5
    assert not torch.equal(TrainTiles(scenes, 64, 8, mean, std, Augment(), seed=2)[3][0], image)


def test_training_burns_road_lines_at_their_width(tmp_path):
    import geopandas as gpd
    import shapely

    from pipeline.training.data import LabelSpec, read_labels

    line = shapely.LineString([(300010, 2999950), (300090, 2999950)])  # 80 m along a row
    labels = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame({"class": ["road"]}, geometry=[line], crs="EPSG:32645").to_file(labels, engine="pyogrio")
    frame = read_labels(labels, ["background", "building", "road"], LabelSpec(line_widths_m={"road": 5.0}),
                        "EPSG:32645")
    assert frame["class_id"].tolist() == [2]
    assert frame.area.iloc[0] == pytest.approx(80 * 5.0, rel=0.02)
