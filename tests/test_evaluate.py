"""`sceneseg evaluate`: truth against itself scores perfectly; a shifted prediction scores less; bad pairs are named."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely import affinity
from typer.testing import CliRunner

from flows.cli import app
from pipeline.grid import GeoGrid, Shape2d
from pipeline.synthetic import write_synthetic_scene
from pipeline.vectors.labels import rasterize_layers, read_layers

runner = CliRunner()


@pytest.fixture(scope="module")
def truth_scene(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("eval") / "scene.tif", 384, 384, seed=11)


def _evaluate(*args):
    result = runner.invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_truth_against_itself_is_perfect(truth_scene):
    scores = _evaluate(truth_scene.truth_path, truth_scene.truth_path)
    assert scores["building_tp"] > 3
    assert scores["building_f1"] == 1.0
    assert scores["centerline_completeness"] == pytest.approx(1.0)
    assert scores["centerline_correctness"] == pytest.approx(1.0)


def test_shifted_buildings_lose_matches_and_masks_get_pixel_iou(truth_scene, tmp_path):
    truth = read_layers(truth_scene.truth_path)
    shifted = truth["buildings"].copy()
    shifted["geometry"] = [affinity.translate(g, 6.0, 0.0) for g in shifted.geometry]  # 6 m east
    pred = tmp_path / "pred.gpkg"
    gpd.GeoDataFrame(shifted, crs=truth["buildings"].crs).to_file(pred, layer="buildings", engine="pyogrio")
    scores = _evaluate(pred, truth_scene.truth_path)
    assert scores["building_f1"] < 0.5

    mask_path = tmp_path / "mask.tif"
    mask = rasterize_layers(truth, GeoGrid(truth_scene.shape, truth_scene.transform, truth_scene.crs))
    with rasterio.open(mask_path, "w", driver="GTiff", width=384, height=384, count=1, dtype="uint8",
                       crs=truth_scene.crs, transform=truth_scene.transform) as dst:
        dst.write(mask, 1)
    pixel = _evaluate(mask_path, truth_scene.truth_path)
    assert pixel["building_pixel_iou"] == pytest.approx(1.0) and pixel["road_pixel_iou"] == pytest.approx(1.0)
    assert Shape2d(*mask.shape) == truth_scene.shape


def test_masks_on_different_grids_are_refused(tmp_path, truth_scene):
    paths = []
    for name, size in (("a.tif", 64), ("b.tif", 65)):
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                           crs=truth_scene.crs, transform=truth_scene.transform) as dst:
            dst.write(np.zeros((size, size), dtype=np.uint8), 1)
        paths.append(path)
    result = runner.invoke(app, ["evaluate", *map(str, paths)])
    assert result.exit_code != 0 and "same grid" in " ".join(result.output.split())


def test_road_lines_buffer_to_polygons_of_the_given_width(tmp_path):
    import geopandas as gpd
    import shapely

    from pipeline.vectors.labels import buffer_lines

    # An OSM-like road in geographic coordinates: 1 km east-west and 600 m north-south near Kathmandu.
    line = shapely.LineString([(85.30, 27.70), (85.31, 27.70), (85.31, 27.7054)])
    frame = gpd.GeoDataFrame({"class": ["road"]}, geometry=[line], crs="EPSG:4326")
    utm = frame.estimate_utm_crs()
    length = frame.to_crs(utm).length.iloc[0]
    polygons = buffer_lines(frame, 6.0)
    assert polygons.crs == frame.crs and polygons.geom_type.iloc[0] == "Polygon"
    assert polygons.to_crs(utm).area.iloc[0] == pytest.approx(6.0 * length, rel=0.02)

    path = tmp_path / "osm.gpkg"
    frame.to_file(path, layer="roads", engine="pyogrio")
    layers = read_layers(path, road_width_m=8.0)
    assert layers["road_centerlines"].geom_type.tolist() == ["LineString"]
    assert layers["roads"].to_crs(utm).area.iloc[0] == pytest.approx(8.0 * length, rel=0.02)


def _evaluate_fails(*args) -> str:
    result = runner.invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


def test_a_layer_missing_from_the_prediction_is_an_error(truth_scene, tmp_path):
    truth = read_layers(truth_scene.truth_path)
    pred = tmp_path / "roads-only.gpkg"
    truth["roads"].to_file(pred, layer="roads", engine="pyogrio")
    gpd.GeoDataFrame({"scene_id": ["s"]}, geometry=[truth["roads"].union_all().envelope],
                     crs=truth["roads"].crs).to_file(pred, layer="scenes", engine="pyogrio")
    message = _evaluate_fails(pred, truth_scene.truth_path)
    assert "has no layer" in message and "buildings" in message, message


def test_a_scene_id_that_selects_nothing_is_an_error(truth_scene, tmp_path):
    from pipeline.vectors.gpkg import SceneRecord, publish_scene
    from pipeline.vectors.layers import VectorLayers

    truth = read_layers(truth_scene.truth_path)
    layers = VectorLayers(*(truth[n].assign(score=1.0, **({"area_m2": 1.0} if n != "road_centerlines" else
                                                           {"length_m": 1.0}), **{"class": "x"})
                            for n in ("buildings", "roads", "road_centerlines")))
    pred = tmp_path / "pred.gpkg"
    crs = truth["buildings"].crs.to_string()
    publish_scene(pred, layers, SceneRecord(scene_id="scene", path="/s.tif", checksum="", crs=crs,
                                            footprint=truth["roads"].union_all().envelope, processed_at="now",
                                            model="m", run_id="r"))
    assert _evaluate(pred, truth_scene.truth_path, "--scene-id", "scene")["building_f1"] == 1.0
    message = _evaluate_fails(pred, truth_scene.truth_path, "--scene-id", "typo")
    assert "--scene-id typo selects nothing" in message and "scene" in message, message
