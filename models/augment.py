"""Training augmentation on numpy arrays: an image (C, H, W) and its mask (H, W), transformed together.

Every random choice comes from the ``numpy.random.Generator`` passed in, so a seeded generator repeats a
run exactly. Geometric transforms move image and mask identically; photometric ones touch the image only.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

__all__ = [
    "random_flip_rot90",
    "elastic_deform",
    "brightness_contrast",
    "scale_jitter",
    "colour_jitter",
    "hue_rotate",
    "blur_noise",
    "Augment",
    "augment",
]


def _check_pair(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or mask.shape != image.shape[1:]:
        raise ValueError(f"expected image (C, H, W) and mask (H, W), got {image.shape} and {mask.shape}")


def random_flip_rot90(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one of the 8 symmetries of the square (k * 90 degree rotation, optional flip) at random.

    Returns contiguous copies (torch.from_numpy refuses negative strides).
    """
    _check_pair(image, mask)
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    image = np.rot90(image, k, axes=(1, 2))
    mask = np.rot90(mask, k, axes=(0, 1))
    if flip:
        image = image[:, :, ::-1]
        mask = mask[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


def elastic_deform(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation (Simard et al. 2003) applied identically to image and mask.

    One displacement field per axis: uniform in (-1, 1) per pixel, smoothed by a Gaussian of ``sigma``
    pixels, scaled by ``alpha`` pixels. The image is resampled bilinearly, the mask by nearest neighbour
    (labels are never blended); both mirror at the border. ``alpha = 0`` returns the input unchanged.

    Args:
        image: (C, H, W) float image.
        mask: (H, W) label ids.
        rng: random generator.
        alpha: displacement scale in pixels.
        sigma: smoothing of the displacement field in pixels.
    """
    _check_pair(image, mask)
    rows, cols = mask.shape
    d_row = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, (rows, cols)), sigma) * alpha
    d_col = ndimage.gaussian_filter(rng.uniform(-1.0, 1.0, (rows, cols)), sigma) * alpha
    grid_row, grid_col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    coords = np.stack([grid_row + d_row, grid_col + d_col])
    out_dtype = np.result_type(image.dtype, np.float32)
    warped = np.stack(
        [
            ndimage.map_coordinates(band.astype(out_dtype, copy=False), coords, order=1, mode="reflect")
            for band in image
        ]
    )
    warped_mask = ndimage.map_coordinates(mask, coords, order=0, mode="reflect")
    return warped, warped_mask


def brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.1, contrast: float = 0.1
) -> np.ndarray:
    """Random contrast and brightness on a normalized (zero-mean, unit-std) image: ``image * c + b``.

    ``c`` is drawn uniform in ``[1 - contrast, 1 + contrast]`` and ``b`` in ``[-brightness, brightness]``,
    once for all bands, so band ratios (which spectral indices rely on) survive.
    """
    c = rng.uniform(1.0 - contrast, 1.0 + contrast)
    b = rng.uniform(-brightness, brightness)
    return (image * c + b).astype(image.dtype, copy=False)


def scale_jitter(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Zoom image and mask about the tile centre by a factor drawn log-uniform in [1 - scale, 1 + scale].

    The output keeps the input's size (zooming out mirrors at the border); the image is resampled
    bilinearly, the mask by nearest neighbour.
    """
    _check_pair(image, mask)
    factor = float(np.exp(rng.uniform(np.log(1.0 - scale), np.log(1.0 + scale))))
    rows, cols = mask.shape
    grid_row, grid_col = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    centre_row, centre_col = (rows - 1) / 2, (cols - 1) / 2
    coords = np.stack([centre_row + (grid_row - centre_row) / factor, centre_col + (grid_col - centre_col) / factor])
    out_dtype = np.result_type(image.dtype, np.float32)
    zoomed = np.stack(
        [
            ndimage.map_coordinates(band.astype(out_dtype, copy=False), coords, order=1, mode="mirror")
            for band in image
        ]
    )
    return zoomed, ndimage.map_coordinates(mask, coords, order=0, mode="mirror")


def colour_jitter(image: np.ndarray, rng: np.random.Generator, gain: float, saturation: float) -> np.ndarray:
    """Per-band gain in [1 - gain, 1 + gain] and a saturation change in [1 - saturation, 1 + saturation].

    On a normalized image: saturation scales each pixel's departure from its mean over bands, so tints
    and greyer or more vivid roofs are seen in training.
    """
    g = rng.uniform(1.0 - gain, 1.0 + gain, size=(image.shape[0], 1, 1))
    s = rng.uniform(1.0 - saturation, 1.0 + saturation)
    scaled = image * g
    grey = scaled.mean(axis=0, keepdims=True)
    return (grey + (scaled - grey) * s).astype(image.dtype, copy=False)


def hue_rotate(image: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Rotate each pixel's colour about the grey axis by an angle drawn in [-degrees, degrees] (3 bands).

    On a normalized image the axis is that of equal z-scores, close to grey for RGB: the rotation turns hues
    (red soil, green roofs, blue tarps) into one another and keeps each pixel's mean over bands and its
    distance from that axis. Images of other band counts are returned as they are.
    """
    if image.shape[0] != 3:
        return image
    theta = np.deg2rad(rng.uniform(-degrees, degrees))
    # Rodrigues' rotation about the unit vector (1, 1, 1) / sqrt(3).
    c, s = np.cos(theta), np.sin(theta)
    k = np.full((3, 3), (1 - c) / 3)
    cross = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]]) * s / np.sqrt(3)
    rotation = (k + np.eye(3) * c + cross).astype(image.dtype)
    return np.einsum("ij,jhw->ihw", rotation, image).astype(image.dtype, copy=False)


def blur_noise(
    image: np.ndarray, rng: np.random.Generator, blur_p: float, blur_sigma: float, noise: float
) -> np.ndarray:
    """With probability ``blur_p`` a Gaussian blur of sigma in [0, blur_sigma] pixels (soft focus, haze,
    an upsampled scene), then Gaussian noise of standard deviation in [0, noise] (sensor noise)."""
    if blur_p > 0 and rng.random() < blur_p:
        sigma = rng.uniform(0.0, blur_sigma)
        image = ndimage.gaussian_filter(image, (0, sigma, sigma), mode="reflect")
    if noise > 0:
        image = image + rng.normal(0.0, rng.uniform(0.0, noise), image.shape)
    return image.astype(np.float32 if image.dtype == np.float64 else image.dtype, copy=False)


class Augment(BaseModel):
    """Which augmentations to apply during training, and how strongly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flip_rot90: bool = Field(default=True, description="Random rotation by k * 90 degrees and flip.")
    elastic_p: float = Field(default=0.5, ge=0, le=1, description="Probability of an elastic deformation.")
    elastic_alpha: float = Field(default=34.0, ge=0, description="Elastic displacement scale, pixels.")
    elastic_sigma: float = Field(default=4.0, gt=0, description="Elastic field smoothing, pixels.")
    brightness: float = Field(default=0.1, ge=0, description="Max additive shift on the normalized image.")
    contrast: float = Field(default=0.1, ge=0, lt=1, description="Max relative contrast change.")
    scale: float = Field(default=0.0, ge=0, lt=1, description="Max relative zoom (scale jitter); 0: off.")
    colour_gain: float = Field(default=0.0, ge=0, lt=1, description="Max relative per-band gain; 0: off.")
    saturation: float = Field(default=0.0, ge=0, lt=1, description="Max relative saturation change; 0: off.")
    hue_degrees: float = Field(default=0.0, ge=0, le=180, description="Max hue rotation in degrees (RGB); 0: off.")
    blur_p: float = Field(default=0.0, ge=0, le=1, description="Probability of a Gaussian blur; 0: off.")
    blur_sigma: float = Field(default=1.0, gt=0, description="Max blur sigma, pixels.")
    noise: float = Field(default=0.0, ge=0, description="Max std of Gaussian noise on the normalized image; 0: off.")


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: Augment
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the augmentations ``cfg`` enables to a normalized image (C, H, W) and its mask (H, W)."""
    if cfg.flip_rot90:
        image, mask = random_flip_rot90(image, mask, rng)
    if cfg.elastic_p > 0 and rng.random() < cfg.elastic_p:
        image, mask = elastic_deform(image, mask, rng, cfg.elastic_alpha, cfg.elastic_sigma)
    # Drawn only when enabled, so configs without them repeat the augmentations they always had.
    if cfg.scale > 0:
        image, mask = scale_jitter(image, mask, rng, cfg.scale)
    if cfg.brightness > 0 or cfg.contrast > 0:
        image = brightness_contrast(image, rng, cfg.brightness, cfg.contrast)
    if cfg.colour_gain > 0 or cfg.saturation > 0:
        image = colour_jitter(image, rng, cfg.colour_gain, cfg.saturation)
    if cfg.hue_degrees > 0:
        image = hue_rotate(image, rng, cfg.hue_degrees)
    if cfg.blur_p > 0 or cfg.noise > 0:
        image = blur_noise(image, rng, cfg.blur_p, cfg.blur_sigma, cfg.noise)
    return image, mask
