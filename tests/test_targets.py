"""Instance-aware building targets: boundaries on shared walls, contact in narrow gaps, widths in metres."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine

from pipeline.grid import Shape2d
from pipeline.training.data import LabelSpec, SceneData, TrainingSource
from pipeline.training.targets import (
    BOUNDARY,
    CONTACT,
    InstanceTargets,
    burn_instance_targets,
    disk,
    instance_masks,
    pixel_size_m,
)
from tests.helpers import write_geotiff

# Two rectangles sharing the wall x = 20, and two more 2 px apart (x = 50 .. 52), in pixel coordinates.
TOUCHING = [shapely.box(5, 5, 20, 25), shapely.box(20, 5, 35, 25)]
GAPPED = [shapely.box(36, 30, 50, 45), shapely.box(52, 30, 60, 45)]
IDS = dict(building_id=1, boundary_id=2, contact_id=3)


def test_disk():
    assert disk(0.5).tolist() == [[True]]
    assert disk(1).sum() == 5 and disk(2).shape == (5, 5)


def test_touching_rectangles_get_boundary_pixels_on_both_sides_of_their_shared_wall():
    mask = np.zeros((40, 64), dtype=np.uint8)
    mask[5:25, 5:35] = 1
    out = burn_instance_targets(mask, TOUCHING, boundary_px=2, contact_px=0, **IDS)
    # Columns 18, 19 (left building) and 20, 21 (right building) along the shared wall are boundary.
    assert (out[8:22, 18:22] == 2).all()
    assert (out[8:22, 17] == 1).all() and (out[8:22, 22] == 1).all()
    # The merged raster eroded as one would have kept the wall as interior: not here.
    interior_cols = np.flatnonzero((out[15] == 1))
    assert 18 not in interior_cols and 21 not in interior_cols
    assert (out[5:7, 5:35] == 2).all() and (out[23:25, 5:35] == 2).all()
    assert not (out == 3).any()


def test_a_narrow_gap_between_two_buildings_gets_contact_pixels():
    mask = np.zeros((64, 64), dtype=np.uint8)
    for g in GAPPED:
        x0, y0, x1, y1 = map(int, g.bounds)
        mask[y0:y1, x0:x1] = 1
    out = burn_instance_targets(mask, GAPPED, boundary_px=1, contact_px=3, **IDS)
    assert (out[31:44, 50:52] == 3).all()  # the two gap columns
    assert (out == 3).sum() <= 2 * 15 + 8  # only the gap (and its corners), not around each building
    assert not (out[:, :34] == 3).any() and (out[:, 36:50][mask[:, 36:50] == 1] != 3).all()
    # A lone building is far from any other: no contact around the others.
    lone = burn_instance_targets(mask, GAPPED[:1], boundary_px=1, contact_px=3, **IDS)
    assert not (lone == 3).any()


def test_buildings_cut_by_the_array_edge_get_no_boundary_along_the_edge():
    footprint, interior, _ = instance_masks([shapely.box(-10, 4, 10, 14)], (20, 20), 2, 0)
    assert footprint[4:14, :10].all()
    assert interior[6:12, 0:8].all()  # no ring at column 0
    assert not interior[6:12, 8:].any()


def test_other_classes_keep_their_pixels():
    mask = np.zeros((40, 64), dtype=np.uint8)
    mask[5:25, 5:35] = 1
    mask[10:12, :] = 2  # a road across, drawn later, wins over the building
    out = burn_instance_targets(mask, TOUCHING, building_id=1, boundary_id=3, contact_id=4, boundary_px=2,
                                contact_px=2)
    assert (out[10:12] == 2).all()


def test_widths_in_metres_use_the_scene_resolution_also_in_a_geographic_crs():
    utm = pixel_size_m(Affine(0.3, 0, 500000, 0, -0.3, 3000000), "EPSG:32645", Shape2d(100, 100))
    assert utm == pytest.approx(0.3)
    # 1.2e-6 degrees at latitude 27.6: ~0.133 m east-west (cos 27.6 x 111.3 km), ~0.133 m north-south.
    geo = pixel_size_m(Affine(1.35e-6, 0, 85.5, 0, -1.2e-6, 27.6), "EPSG:4326", Shape2d(512, 512))
    assert geo == pytest.approx(np.sqrt(1.35e-6 * 111_320 * np.cos(np.radians(27.6)) * 1.2e-6 * 110_800), rel=0.01)
    assert InstanceTargets(0.4, 0.5).in_pixels(0.2) == pytest.approx((2.0, 2.5))


def test_scene_data_burns_instance_targets_from_vector_labels(tmp_path):
    transform = Affine(0.2, 0, 500000, 0, -0.2, 3000000)
    image = write_geotiff(tmp_path / "s.tif", np.full((3, 48, 64), 100, dtype=np.uint8), transform=transform)
    world = [shapely.affinity.affine_transform(g, [0.2, 0, 0, -0.2, 500000, 3000000]) for g in TOUCHING + GAPPED]
    gpd.GeoDataFrame(geometry=world, crs="EPSG:32645").to_file(tmp_path / "l.gpkg", layer="buildings")
    classes = ["background", "building", BOUNDARY, CONTACT]
    source = TrainingSource(image, tmp_path / "l.gpkg", LabelSpec(class_column=None, layer_classes={"buildings": "building"}))
    scene = SceneData(source, classes, [1, 2, 3], targets=InstanceTargets(boundary_m=0.4, contact_m=0.6))
    _, mask = scene.read(scene.region)
    assert (mask[8:22, 18:22] == 2).all() and (mask[8:22, 17] == 1).all()
    assert (mask[31:44, 50:52] == 3).all()
    # Window by window (as large scenes are read) gives the same targets.
    windowed = SceneData(source, classes, [1, 2, 3], in_memory_pixels=0,
                         targets=InstanceTargets(boundary_m=0.4, contact_m=0.6))
    from pipeline.grid import Region

    _, part = windowed.read(Region(20, 40, 28, 24))
    assert np.array_equal(part, mask[20:48, 40:64])
    with pytest.raises(Exception, match="building_contact"):
        SceneData(source, classes[:3], [1, 2, 3], targets=InstanceTargets())
