"""One model across ground sample distances: training crops resampled to another GSD with targets made there,
and inference that reads a scene inside the card's GSD range at its own resolution."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine

from pipeline.config import SegmentConfig
from pipeline.grid import Region
from pipeline.stages import RESAMPLED_VIEW, prepare, segment_scene
from pipeline.training.data import LabelSpec, SceneData, TrainingSource, TrainTiles
from pipeline.training.targets import BOUNDARY, CONTACT, InstanceTargets
from tests.helpers import UTM, read_mask, smooth_image, write_geotiff, write_tiny_checkpoint

CLASSES = ["background", "building", BOUNDARY, CONTACT]
ORIGIN = (300000.0, 3000000.0)


def _buildings() -> list[shapely.Geometry]:
    """Rotated roofs of 4-14 m, an L-shaped one and a touching pair, in metres from the scene's corner."""
    rng = np.random.default_rng(2)
    roofs = []
    for _ in range(14):
        x, y = rng.uniform(8, 52, 2)
        w, h = rng.uniform(4, 14, 2)
        roofs.append(shapely.affinity.rotate(shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2), rng.uniform(0, 90)))
    roofs += [shapely.box(2, 2, 8, 12).union(shapely.box(2, 2, 14, 6)), shapely.box(40, 50, 46, 58),
              shapely.box(46, 50, 53, 58)]
    return roofs


@pytest.fixture(scope="module")
def fine_scene(tmp_path_factory):
    """A 60 m square scene at 0.1 m with building footprints (UTM)."""
    d = tmp_path_factory.mktemp("fine")
    image = write_geotiff(d / "fine.tif", smooth_image(600, 600, seed=3),
                          transform=Affine(0.1, 0, ORIGIN[0], 0, -0.1, ORIGIN[1]))
    world = [shapely.affinity.affine_transform(g, [1, 0, 0, -1, ORIGIN[0], ORIGIN[1]]) for g in _buildings()]
    labels = d / "labels.gpkg"
    gpd.GeoDataFrame(geometry=world, crs=UTM).to_file(labels, layer="buildings", engine="pyogrio")
    source = TrainingSource(image, labels, LabelSpec(class_column=None, layer_classes={"buildings": "building"}))
    return SceneData(source, CLASSES, [1, 2, 3], targets=InstanceTargets(boundary_m=0.4, contact_m=0.5))


def _building_m2(mask: np.ndarray, pixel_m: float) -> float:
    return float(np.isin(mask, (1, 2)).sum()) * pixel_m**2


def test_a_crop_at_a_coarser_gsd_keeps_its_buildings_area_and_averages_its_pixels(fine_scene):
    window = Region(0, 0, 600, 600)
    raw, native = fine_scene.read(window)
    for size in (150, 120):  # 0.4 m and 0.5 m pixels
        image, coarse = fine_scene.read_resampled(window, size)
        assert image.shape == (3, size, size) and coarse.shape == (size, size)
        assert _building_m2(coarse, 60 / size) == pytest.approx(_building_m2(native, 0.1), rel=0.05)
        # Boundary and contact exist at the coarse GSD too (at least a pixel wide).
        assert {1, 2, 3} <= set(np.unique(coarse))
    # Area averaging: each 0.4 m pixel is the mean of the 4 x 4 pixels it covers.
    image, _ = fine_scene.read_resampled(window, 150)
    blocks = raw.astype(np.float64).reshape(3, 150, 4, 150, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(image, blocks, atol=1e-3)


def test_training_tiles_across_a_gsd_range_are_tile_sized_and_repeat(fine_scene):
    def tiles(**gsd):
        return TrainTiles([fine_scene], 64, 12, [128.0] * 3, [64.0] * 3, None, seed=5, **gsd)

    ranged = tiles(gsd_range_m=(0.05, 0.6), gsd_p=1.0)
    sides = {ranged.window(i)[1].rows for i in range(12)}
    assert len(sides) > 6 and min(sides) < 64 < max(sides) <= 384  # finer and coarser than the scene's 0.1 m
    for i in range(4):
        image, mask = ranged[i]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        again_image, again_mask = ranged[i]
        assert torch.equal(image, again_image) and torch.equal(mask, again_mask)
    # Without a range the windows are the ones a run always drew.
    assert all(tiles().window(i)[1].rows == 64 for i in range(12))


MODEL_GSD_M = 0.5
GSD_RANGE_M = [0.3, 1.2]


@pytest.fixture(scope="module")
def range_checkpoint(tmp_path_factory):
    """A tiny untrained U-Net whose card says it was trained across 0.3-1.2 m (median 0.5 m)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("range") / "range.pt", gsd_m=MODEL_GSD_M,
                                 gsd_range_m=GSD_RANGE_M)


@pytest.mark.parametrize("pixel_m, rows, cols, run_gsd_m", [(1.0, 90, 110, None), (2.0, 60, 70, 1.2)])
def test_a_scene_inside_the_gsd_range_is_read_as_it_is_one_outside_at_the_nearer_end(
    tmp_path, range_checkpoint, pixel_m, rows, cols, run_gsd_m
):
    scene = write_geotiff(tmp_path / f"scene-{pixel_m}.tif", smooth_image(rows, cols, seed=4),
                          transform=Affine(pixel_m, 0, ORIGIN[0], 0, -pixel_m, ORIGIN[1]))
    config = dict(model=str(range_checkpoint), precision="fp32")
    job = prepare(scene, tmp_path / "probe", SegmentConfig(**config))
    if run_gsd_m is None:
        assert not job.resampled and job.block_job.scene_path == scene.resolve()
    else:
        assert job.resampled and job.run_grid.transform.a == pytest.approx(run_gsd_m)
        assert job.block_job.scene_path.name == RESAMPLED_VIEW
    masks = []
    for block in (32, 256):
        result = segment_scene(scene, tmp_path / f"b{block}", SegmentConfig(**config, block_size=block))
        with rasterio.open(result.mask_path) as ds, rasterio.open(scene) as src:
            assert (ds.height, ds.width) == (rows, cols) and ds.transform == src.transform
        masks.append(read_mask(result.mask_path))
    np.testing.assert_array_equal(masks[0], masks[1])
