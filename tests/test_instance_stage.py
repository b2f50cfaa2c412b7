"""Instance models through the vector stage and the pipeline: touching roofs come out as separate polygons,
the same for any block size and vector chunk size, and the mask users read holds only their classes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from pipeline.config import SegmentConfig
from pipeline.grid import GeoGrid, Shape2d
from pipeline.stages import segment_scene
from pipeline.training.targets import burn_instance_targets
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.instances import BOUNDARY, CONTACT, fold_lut
from tests.helpers import read_features, read_mask, smooth_image, write_geotiff, write_tiny_checkpoint

INSTANCE_CLASSES = ["background", "building", BOUNDARY, CONTACT]
TRANSFORM = Affine(0.25, 0, 300000, 0, -0.25, 3000000)  # 0.25 m pixels


def rows_of_touching_houses(rows: int = 3, per_row: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and confidence of rows of houses sharing their side walls, as an instance model predicts."""
    boxes = [shapely.box(10 + i * 20, 12 + r * 50, 10 + (i + 1) * 20, 12 + r * 50 + 32)
             for r in range(rows) for i in range(per_row)]
    footprint = np.zeros((12 + rows * 50 + 10, 20 + per_row * 20), dtype=np.uint8)
    for b in boxes:
        x0, y0, x1, y1 = (int(v) for v in b.bounds)
        footprint[y0:y1, x0:x1] = 1
    classes = burn_instance_targets(footprint, boxes, building_id=1, boundary_id=2, contact_id=3,
                                    boundary_px=3, contact_px=2)
    confidence = np.where(classes == 1, 240, 170).astype(np.uint8)
    return classes, confidence


def test_rows_of_touching_houses_are_one_polygon_each_for_any_chunk_size():
    classes, confidence = rows_of_touching_houses()
    grid = GeoGrid(Shape2d(*classes.shape), TRANSFORM, "EPSG:32645")

    def read(w):
        return classes[w.row : w.row_stop, w.col : w.col_stop], confidence[w.row : w.row_stop, w.col : w.col_stop]

    names = dict(enumerate(INSTANCE_CLASSES))
    del names[0]
    layers = {
        chunk: vectorize_scene(read, grid, classes=names, settings=VectorSettings(
            chunk_size=chunk, seed_confidence=0.9, min_seed_m2=1.0, grow_m=1.5, min_building_area_m2=1.0))
        for chunk in (32, 77, 1000)
    }
    reference = layers[1000].buildings
    assert len(reference) == 18  # one polygon per house, though each row is one blob of footprint pixels
    # Each grows back to its footprint of 5 m x 8 m, less the thin seam where houses touch.
    assert reference["area_m2"].to_numpy() == pytest.approx(40.0, rel=0.12)
    for chunk in (32, 77):
        got = layers[chunk].buildings
        assert list(got.geometry.to_wkb()) == list(reference.geometry.to_wkb()), chunk
        np.testing.assert_allclose(got["score"], reference["score"])


def test_folding_a_models_classes_into_the_users_mask():
    assert fold_lut(["background", "building", "road"]) == (("background", "building", "road"), None)
    classes, lut = fold_lut(["background", "building", "road", BOUNDARY, CONTACT])
    assert classes == ("background", "building", "road")
    assert lut[[0, 1, 2, 3, 4, 255]].tolist() == [0, 1, 2, 1, 0, 255]
    # A building-only instance model (buildings-banepa's classes): its mask names no road.
    classes, lut = fold_lut(["background", "building", BOUNDARY, CONTACT])
    assert classes == ("background", "building")
    assert lut[[0, 1, 2, 3, 255]].tolist() == [0, 1, 1, 0, 255]


@pytest.fixture(scope="module")
def instance_checkpoint(tmp_path_factory):
    """A tiny untrained U-Net with an instance model's four classes (its masks are arbitrary, but fixed)."""
    return write_tiny_checkpoint(
        tmp_path_factory.mktemp("instance") / "instance.pt", tuple(INSTANCE_CLASSES), seed=1, boundary_m=0.5,
        contact_m=0.5, separation={"seed_confidence": 0.6, "min_seed_m2": 0.5, "grow_m": 1.0, "min_building_area_m2": 1.0},
    )


@pytest.mark.slow
def test_instance_model_layers_do_not_depend_on_block_or_chunk_size(tmp_path, instance_checkpoint):
    scene = write_geotiff(tmp_path / "scene.tif", smooth_image(300, 280, seed=3))
    runs = {}
    for block, chunk in ((64, 64), (256, 128)):
        config = SegmentConfig(model=str(instance_checkpoint), block_size=block, vector_chunk_size=chunk)
        runs[block, chunk] = segment_scene(scene, tmp_path / f"b{block}c{chunk}", config)
    (a, b) = runs.values()
    assert a.counts["buildings"] > 5
    assert read_features(a.gpkg_path, "buildings") == read_features(b.gpkg_path, "buildings")
    mask = read_mask(a.mask_path)
    np.testing.assert_array_equal(mask, read_mask(b.mask_path))
    assert set(np.unique(mask)) <= {0, 1}  # boundary folded into building, contact into background
    with rasterio.open(a.mask_path) as ds:
        assert ds.tags()["sceneseg_classes"] == "background,building"


def test_a_building_only_models_item_style_and_attribute_table_list_no_road(tmp_path, instance_checkpoint):
    import xml.etree.ElementTree as ET

    import pystac

    scene = write_geotiff(tmp_path / "scene.tif", smooth_image(120, 130, seed=5))
    result = segment_scene(scene, tmp_path / "out", SegmentConfig(model=str(instance_checkpoint)))
    item = pystac.Item.from_file(str(tmp_path / "out" / f"{result.scene_id}_item.json"))
    names = [c["name"] for c in item.assets["mask"].extra_fields["classification:classes"] if not c.get("nodata")]
    assert names == ["background", "building"]
    qml = ET.parse(result.mask_path.with_suffix(".qml"))
    assert [e.get("label") for e in qml.iter("paletteEntry")] == ["background", "building"]
    rat = ET.parse(result.mask_path.with_name(result.mask_path.name + ".aux.xml")).find(".//GDALRasterAttributeTable")
    assert [row.findall("F")[1].text for row in rat.iter("Row")] == ["background", "building"]
