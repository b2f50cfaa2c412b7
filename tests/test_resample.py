"""Resolution-aware inference: a scene at another ground sample distance than the model's is read resampled
to it, and its mask is written back on the scene's own grid, the same for any block size."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline.config import SegmentConfig
from pipeline.stages import prepare, segment_scene
from tests.helpers import read_mask, smooth_image, write_geotiff, write_tiny_checkpoint

MODEL_GSD_M = 0.5


@pytest.fixture(scope="module")
def gsd_checkpoint(tmp_path_factory):
    """A tiny untrained U-Net whose card says it was trained on 0.5 m pixels."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("gsd") / "gsd.pt", gsd_m=MODEL_GSD_M)


def _scene(tmp_path, pixel_m: float, rows: int, cols: int):
    transform = Affine(pixel_m, 0, 300000, 0, -pixel_m, 3000000)
    return write_geotiff(tmp_path / f"scene-{pixel_m}.tif", smooth_image(rows, cols, seed=4), transform=transform)


@pytest.mark.parametrize("pixel_m, rows, cols", [(2 * MODEL_GSD_M, 90, 110), (MODEL_GSD_M / 2, 330, 290)])
def test_mask_is_on_the_scenes_grid_and_independent_of_the_block_size(tmp_path, gsd_checkpoint, pixel_m, rows, cols):
    scene = _scene(tmp_path, pixel_m, rows, cols)
    job = prepare(scene, tmp_path / "probe", SegmentConfig(model=str(gsd_checkpoint)))
    assert job.resampled and job.run_grid.transform.a == pytest.approx(MODEL_GSD_M)
    masks = []
    for block in (64, 256):
        result = segment_scene(scene, tmp_path / f"b{block}", SegmentConfig(model=str(gsd_checkpoint), block_size=block))
        with rasterio.open(result.mask_path) as ds, rasterio.open(scene) as src:
            assert (ds.height, ds.width) == (rows, cols)
            assert ds.transform == src.transform and ds.crs == src.crs
            assert ds.tags()["sceneseg_classes"] == "background,building,road"
            assert ds.colormap(1)[1][:3] != (0, 0, 0)
        masks.append(read_mask(result.mask_path))
        assert result.counts["buildings"] > 0
    np.testing.assert_array_equal(masks[0], masks[1])
    assert set(np.unique(masks[0])) <= {0, 1, 2}


def test_no_resample_reads_the_scene_as_it_is(tmp_path, gsd_checkpoint):
    scene = _scene(tmp_path, 2 * MODEL_GSD_M, 90, 110)
    job = prepare(scene, tmp_path / "out", SegmentConfig(model=str(gsd_checkpoint), resample=False))
    assert not job.resampled and job.plan.scene.rows == 90
    near = _scene(tmp_path, MODEL_GSD_M * 1.05, 90, 110)  # within 10 %: not worth a resampling
    assert not prepare(near, tmp_path / "out", SegmentConfig(model=str(gsd_checkpoint))).resampled
