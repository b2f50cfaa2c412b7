"""Scene values against the model's trained input: a range that does not fit is refused (or rescaled on
request), never turned into garbage; NaN is nodata, exactly as the scene's nodata value is."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from models.checkpoint import load_checkpoint
from pipeline.config import SegmentConfig
from pipeline.errors import SceneValidationError
from pipeline.raster.scene import input_normalization, open_scene
from pipeline.stages import infer_blocks, prepare, publish_masks
from tests.helpers import UTM, smooth_image, write_geotiff, write_tiny_checkpoint


def _mask(scene, out, checkpoint, block_size=48, **options) -> np.ndarray:
    job = prepare(scene, out, SegmentConfig(model=str(checkpoint), overwrite=True, block_size=block_size, **options))
    store = infer_blocks(job, journal_interval=0).store
    with rasterio.open(publish_masks(job, store).mask) as ds:
        return ds.read(1)


@pytest.mark.parametrize(
    "kind, data",
    [
        ("uint16 full range", lambda img: (img.astype(np.uint16) * 257)),
        ("float 0-1 reflectance", lambda img: (img / 255.0).astype(np.float32)),
        ("int16", lambda img: (img.astype(np.int16) * 16 - 1000)),
    ],
)
def test_values_outside_the_trained_range_are_refused_with_the_way_to_rescale(kind, data, tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", data(smooth_image(64, 64)))
    with pytest.raises(SceneValidationError) as info:
        prepare(scene, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint)))
    message = str(info.value)
    assert "s.tif" in message and "gdal_translate" in message and "--rescale" in message, message
    assert not (tmp_path / "out").exists()


def test_rescale_maps_the_scene_range_onto_the_trained_range(tmp_path, tiny_checkpoint):
    scene = open_scene(write_geotiff(tmp_path / "s.tif", (smooth_image(64, 64).astype(np.uint16) * 257)))
    card = load_checkpoint(tiny_checkpoint).card
    mean, std = input_normalization(scene, card, "tiny", rescale=True)
    with rasterio.open(scene.path) as ds:
        low, high = np.percentile(ds.read().astype(np.float64), [0.5, 99.5])
    for m, s, cm, cs in zip(mean, std, card.mean, card.std, strict=True):
        assert (low - m) / s == pytest.approx((0 - cm) / cs)
        assert (high - m) / s == pytest.approx((255 - cm) / cs)
    assert _mask(scene.path, tmp_path / "out", tiny_checkpoint, rescale=True).shape == (64, 64)


def test_another_dtype_holding_the_trained_values_gives_the_same_mask(tmp_path, tiny_checkpoint):
    image = smooth_image(64, 64)
    as_uint8 = write_geotiff(tmp_path / "u8.tif", image)
    as_uint16 = write_geotiff(tmp_path / "u16.tif", image.astype(np.uint16))
    np.testing.assert_array_equal(_mask(as_uint16, tmp_path / "a", tiny_checkpoint),
                                  _mask(as_uint8, tmp_path / "b", tiny_checkpoint))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_box_of_nan_gives_the_mask_of_the_same_box_of_nodata(tmp_path, tiny_checkpoint):
    image = smooth_image(96, 96, seed=4).astype(np.float32)
    with_nodata, with_nan = image.copy(), image.copy()
    with_nodata[:, 30:50, 40:70] = -9999.0
    with_nan[:, 30:50, 40:70] = np.nan
    a = _mask(write_geotiff(tmp_path / "nodata.tif", with_nodata, nodata=-9999.0), tmp_path / "a", tiny_checkpoint)
    b = _mask(write_geotiff(tmp_path / "nan.tif", with_nan, nodata=-9999.0), tmp_path / "b", tiny_checkpoint)
    np.testing.assert_array_equal(b, a)
    assert (b == 255).sum() == 20 * 30, "exactly the box is nodata: no valid pixel is marked"
    assert (b[30:50, 40:70] == 255).all()


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_nan_in_a_scene_without_nodata_is_nodata(tmp_path, tiny_checkpoint):
    image = smooth_image(64, 64, seed=4).astype(np.float32)
    image[0, 10:20, 10:20] = np.nan  # one band is enough
    mask = _mask(write_geotiff(tmp_path / "nan.tif", image), tmp_path / "a", tiny_checkpoint)
    assert (mask == 255).sum() == 100 and (mask[10:20, 10:20] == 255).all()


def _rgba(path, rgb: np.ndarray, alpha: np.ndarray):
    """A uint8 RGBA GeoTIFF whose fourth band is its alpha (GDAL masks the three colour bands with it)."""
    rgba = np.concatenate([rgb, alpha[None]])
    profile = dict(driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=4, dtype="uint8", crs=UTM,
                   transform=from_origin(300000.0, 3000000.0, 0.5, 0.5), photometric="RGB", alpha="YES")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgba)
    return path


def _internal_mask(path, rgb: np.ndarray, valid: np.ndarray):
    """A uint8 RGB GeoTIFF with a per-dataset GDAL mask (written with ``write_mask``)."""
    profile = dict(driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=3, dtype="uint8", crs=UTM,
                   transform=from_origin(300000.0, 3000000.0, 0.5, 0.5))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
        dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
    return path


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("model_gsd_m", [None, 0.25, 1.0], ids=["native", "resampled-finer", "resampled-coarser"])
def test_every_encoding_of_nodata_over_the_same_boxes_gives_the_same_mask(tmp_path, tiny_checkpoint, model_gsd_m):
    """NaN, a -9999 or 0 nodata value, an alpha band at 0 and an internal mask are one thing to the model: the
    pixels under them reach it as the same neutral fill, whatever values they hold, so the masks around the
    boxes are identical, and the boxes themselves are 255 (nodata) in each. One box crosses block seams, one
    lies in a corner of the scene (mirrored into the padding); block sizes differ between the runs. The same
    holds when the scene (0.5 m pixels) is read resampled to a model's ground sample distance."""
    checkpoint = tiny_checkpoint
    if model_gsd_m is not None:
        checkpoint = write_tiny_checkpoint(tmp_path / "gsd.pt", gsd_m=model_gsd_m)
    image = np.clip(smooth_image(128, 128, seed=4), 1, 255)  # no 0 outside the boxes: 0 is a nodata value below
    inside = np.zeros((128, 128), dtype=bool)
    inside[40:70, 30:90] = inside[100:, :20] = True
    junk = np.random.default_rng(1).integers(0, 256, size=image.shape, dtype=np.uint8)  # what an invalid pixel holds
    scenes = {}
    for name, value, nodata in [("nan", np.nan, None), ("minus9999", -9999.0, -9999.0), ("zero", 0.0, 0.0),
                                ("nan_with_nodata", np.nan, np.nan)]:
        data = image.astype(np.float32)
        data[:, inside] = value
        scenes[name] = write_geotiff(tmp_path / f"{name}.tif", data, nodata=nodata)
    alpha = np.where(inside, 0, 255).astype(np.uint8)
    scenes["alpha"] = _rgba(tmp_path / "alpha.tif", np.where(inside, junk, image), alpha)
    scenes["internal_mask"] = _internal_mask(tmp_path / "msk.tif", np.where(inside, junk, image), ~inside)
    masks = {name: _mask(path, tmp_path / name, checkpoint, block_size=48 if name == "nan" else 96,
                         precision="fp32") for name, path in scenes.items()}
    reference = masks.pop("nan")
    if model_gsd_m is None:
        assert (reference == 255).sum() == inside.sum() and (reference[inside] == 255).all()
    else:  # resampled there and back: the box's edge may move by a pixel, its inside is nodata
        assert (reference[inside] == 255).mean() > 0.85 and (reference[~inside] == 255).mean() < 0.02
    assert len(np.unique(reference[~inside])) > 1, "the model draws more than one class around the boxes"
    for name, mask in masks.items():
        np.testing.assert_array_equal(mask, reference, err_msg=name)
