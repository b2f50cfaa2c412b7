from __future__ import annotations

import numpy as np
import pytest
import rasterio

from pipeline.grid import BlockPlan, Region, Shape2d
from pipeline.raster.read import SceneReader, mirror_read
from tests.helpers import coordinate_image, smooth_image, write_geotiff


@pytest.mark.parametrize("tile,overlap,block", [(32, 8, 48), (64, 16, 96), (48, 4, 400)])
def test_padded_block_reads_equal_numpy_reflect_pad_of_the_whole_image(coord_scene, tile, overlap, block):
    image = coordinate_image(157, 203)
    plan = BlockPlan.for_scene(Shape2d(157, 203), tile, overlap, block)
    pad = 3 * tile
    whole = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    blocks = list(plan.blocks())
    corners_and_edges = [b for b in blocks if b.index[0] in (0, plan.n_blocks.rows - 1)
                         or b.index[1] in (0, plan.n_blocks.cols - 1)]
    assert len(corners_and_edges) >= min(4, len(blocks))
    with rasterio.open(coord_scene) as ds:
        for b in corners_and_edges:
            got = mirror_read(ds, b.extent, [1, 2, 3])
            e = b.extent
            expected = whole[:, e.row + pad : e.row_stop + pad, e.col + pad : e.col_stop + pad]
            np.testing.assert_array_equal(got, expected, err_msg=f"block {b.index}")


def test_pad_wider_than_a_small_scene(tmp_path):
    image = coordinate_image(5, 7)
    path = write_geotiff(tmp_path / "small.tif", image)
    with rasterio.open(path) as ds:
        got = mirror_read(ds, Region(-20, -30, 45, 60), [1, 2, 3])
    expected = np.pad(image, ((0, 0), (20, 20), (30, 23)), mode="reflect")
    np.testing.assert_array_equal(got, expected)


def test_reader_normalizes_and_reports_nodata(tmp_path):
    data = np.full((2, 20, 20), 10, dtype=np.uint16)
    data[:, :5, :] = 0
    path = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    reader = SceneReader(path, [2, 1], mean=[10.0, 4.0], std=[2.0, 3.0], has_mask=True)
    out = reader.read(Region(0, 0, 20, 20))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 10], 0.0)
    np.testing.assert_allclose(out[1, 10], 2.0)
    assert (out[:, :5] == 0).all(), "nodata reaches the model as the band mean"
    valid = reader.read_raw(Region(0, 0, 20, 20)).valid
    assert not valid[:5].any() and valid[5:].all()
    reader.close()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
def test_raw_tiles_normalized_while_packed_give_the_bits_of_a_normalized_read(tmp_path, tiny_checkpoint, dtype,
                                                                               channels_last):
    """What a block holds is the raw read (uint8 a quarter of float32); the probabilities are unchanged."""
    from pipeline.grid import Block
    from pipeline.raster.blocks import tile_views
    from pipeline.raster.infer import InferenceSettings, Normalization, get_predictor

    rng = np.random.default_rng(5)
    data = (smooth_image(100, 90).astype(np.float64) * (200 if dtype in (np.uint16, np.int32) else 1)).astype(dtype)
    if dtype == np.float64:
        data = data + rng.random(data.shape)
        data[1, 10:14, 20:30] = np.nan
    path = write_geotiff(tmp_path / "scene.tif", data)
    reader = SceneReader(path, [1, 2, 3], mean=[120.5, 99.0, 140.25], std=[60.0, 33.3, 71.7], has_mask=False)
    extent = Region(-8, -8, 116, 106)  # mirror padding on every side
    raw = reader.read_raw(extent)
    assert raw.data.dtype == (np.float32 if dtype == np.float64 else dtype)
    assert (raw.valid is None) == (dtype != np.float64)
    normalized = reader.read(extent)
    block = Block(index=(0, 0), extent=extent, core=Region(0, 0, 100, 90),
                  tiles=tuple(Region(r, c, 64, 64) for r in (-8, 44) for c in (-8, 34)))
    predictor = get_predictor(tiny_checkpoint, InferenceSettings(device="cpu", batch_size=3, channels_last=channels_last))
    expected = predictor.predict(tile_views(normalized, block))
    valid = None if raw.valid is None else tile_views(raw.valid, block)
    got = predictor.predict(tile_views(raw.data, block), Normalization(reader.mean, reader.std), valid)
    np.testing.assert_array_equal(got, expected)
    reader.close()
