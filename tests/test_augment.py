"""Augmentation moves image and mask together: images whose pixels encode their own coordinates show it."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from models.augment import (
    Augment,
    augment,
    blur_noise,
    brightness_contrast,
    elastic_deform,
    hue_rotate,
    random_flip_rot90,
)

ROWS, COLS = 48, 40


def _coordinate_pair() -> tuple[np.ndarray, np.ndarray]:
    """Image: channel 0 = row, channel 1 = col. Mask: label row * COLS + col of the same pixel."""
    rows, cols = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    image = np.stack([rows, cols]).astype(np.float64)
    mask = (rows * COLS + cols).astype(np.int32)
    return image, mask


def _decode(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return mask // COLS, mask % COLS


def test_elastic_keeps_every_label_on_the_pixel_it_labels() -> None:
    image, mask = _coordinate_pair()
    warped, warped_mask = elastic_deform(image, mask, np.random.default_rng(3), alpha=80.0, sigma=3.0)
    assert warped.shape == image.shape and warped_mask.shape == mask.shape
    assert warped_mask.dtype == mask.dtype
    # The deformation really moved things: pixels sample from other places, by more than a pixel on average.
    assert np.mean(np.hypot(warped[0] - image[0], warped[1] - image[1])) > 1.0
    assert np.mean(warped_mask != mask) > 0.5
    # Labels are never blended: every output label is an input label.
    assert np.isin(warped_mask, mask).all()
    # Bilinear interpolation of a linear ramp gives the sampled coordinate; the mask takes the nearest
    # pixel's label, so the two agree within half a pixel on both axes, away from the mirrored border.
    label_row, label_col = _decode(warped_mask)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(warped[0][inner] - label_row[inner]).max() <= 0.5 + 1e-9
    assert np.abs(warped[1][inner] - label_col[inner]).max() <= 0.5 + 1e-9


def test_elastic_alpha_zero_is_exactly_the_identity() -> None:
    image, mask = _coordinate_pair()
    image = image + np.random.default_rng(0).normal(size=image.shape)  # not a ramp: any blending would show
    warped, warped_mask = elastic_deform(image, mask, np.random.default_rng(1), alpha=0.0, sigma=4.0)
    np.testing.assert_array_equal(warped, image)
    np.testing.assert_array_equal(warped_mask, mask)


def test_elastic_is_repeatable_with_the_same_seed() -> None:
    image, mask = _coordinate_pair()
    a = elastic_deform(image, mask, np.random.default_rng(7), alpha=40.0, sigma=4.0)
    b = elastic_deform(image, mask, np.random.default_rng(7), alpha=40.0, sigma=4.0)
    c = elastic_deform(image, mask, np.random.default_rng(8), alpha=40.0, sigma=4.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_flip_rot90_moves_image_and_mask_together_and_reaches_all_eight() -> None:
    image, mask = _coordinate_pair()
    image, mask = image[:, :COLS, :COLS], mask[:COLS, :COLS]  # square, so all rotations keep the shape
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(64):
        out, out_mask = random_flip_rot90(image, mask, rng)
        assert out.flags.c_contiguous and out_mask.flags.c_contiguous
        label_row, label_col = _decode(out_mask)
        np.testing.assert_array_equal(out[0], label_row)
        np.testing.assert_array_equal(out[1], label_col)
        seen.add(out_mask.tobytes())
    assert len(seen) == 8


def test_brightness_contrast_is_one_affine_map_for_all_bands() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 16, 16)).astype(np.float32)
    out = brightness_contrast(image, np.random.default_rng(5), brightness=0.2, contrast=0.3)
    assert out.dtype == np.float32
    slope, intercept = np.polyfit(image.ravel(), out.ravel(), 1)
    np.testing.assert_allclose(out, image * slope + intercept, atol=1e-5)
    assert 0.7 <= slope <= 1.3 and abs(intercept) <= 0.2
    assert not np.allclose(out, image)


def test_augment_pipeline_keeps_pairs_aligned_and_config_is_strict() -> None:
    image, mask = _coordinate_pair()
    cfg = Augment(elastic_p=1.0, elastic_alpha=60.0, elastic_sigma=3.0, brightness=0.0, contrast=0.0)
    out, out_mask = augment(image, mask, np.random.default_rng(2), cfg)
    label_row, label_col = _decode(out_mask)
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(out[0][inner] - label_row[inner]).max() <= 0.5 + 1e-9
    assert np.abs(out[1][inner] - label_col[inner]).max() <= 0.5 + 1e-9
    with pytest.raises(ValidationError):
        Augment(elastic_probability=0.5)
    with pytest.raises(ValidationError):
        Augment(elastic_p=1.5)


def test_hue_rotation_turns_colours_about_the_grey_axis():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 16, 16)).astype(np.float32)
    turned = hue_rotate(image, np.random.default_rng(1), 60.0)
    assert turned.dtype == np.float32 and not np.allclose(turned, image)
    # Each pixel keeps its grey level (mean over bands) and its distance from grey (saturation).
    np.testing.assert_allclose(turned.mean(axis=0), image.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(turned - turned.mean(axis=0), axis=0),
                               np.linalg.norm(image - image.mean(axis=0), axis=0), rtol=1e-4)
    four = rng.normal(size=(4, 2, 2)).astype(np.float32)
    np.testing.assert_array_equal(hue_rotate(four, rng, 90.0), four)  # not RGB: as it is


def test_blur_and_noise_are_seeded_and_off_by_default():
    image = np.zeros((3, 32, 32), dtype=np.float32)
    image[:, 16:, :] = 1.0
    blurred = blur_noise(image, np.random.default_rng(3), blur_p=1.0, blur_sigma=2.0, noise=0.0)
    assert blurred.dtype == np.float32 and 0 < blurred[0, 15, 5] < 1  # the edge is soft
    noisy = blur_noise(image, np.random.default_rng(3), blur_p=0.0, blur_sigma=1.0, noise=0.5)
    assert noisy.std() > image.std()
    np.testing.assert_array_equal(noisy, blur_noise(image, np.random.default_rng(3), 0.0, 1.0, 0.5))
    mask = np.zeros((32, 32), dtype=np.int64)
    cfg = Augment(flip_rot90=False, elastic_p=0, brightness=0, contrast=0)
    out, _ = augment(image, mask, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(out, image)
    on = cfg.model_copy(update={"hue_degrees": 30.0, "blur_p": 1.0, "noise": 0.1})
    assert not np.array_equal(augment(image, mask, np.random.default_rng(0), on)[0], image)
