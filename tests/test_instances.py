"""Seeded growth: touching buildings of a class/probability raster become separate components."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from scipy import ndimage

from pipeline.grid import GeoGrid, Shape2d
from pipeline.training.targets import burn_instance_targets
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.instances import separate_buildings

CROSS = ndimage.generate_binary_structure(2, 1)
IDS = dict(interior_id=1, boundary_id=2, contact_id=3)


def _row_of_houses(n: int = 2, width: int = 14, rows: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and uint8 confidence of ``n`` touching houses side by side, as a model would predict them."""
    boxes = [shapely.box(4 + i * width, 6, 4 + (i + 1) * width, 30) for i in range(n)]
    mask = np.zeros((rows, 8 + n * width), dtype=np.uint8)
    mask[6:30, 4 : 4 + n * width] = 1
    classes = burn_instance_targets(mask, boxes, building_id=1, boundary_id=2, contact_id=3,
                                    boundary_px=2, contact_px=0)
    confidence = np.where(classes == 1, 230, 160).astype(np.uint8)
    return classes, confidence


def test_two_touching_buildings_become_two_components():
    classes, confidence = _row_of_houses(2)
    plain = ndimage.label(np.isin(classes, (1, 2)), structure=CROSS)[1]
    assert plain == 1  # read plainly, the footprint is one blob
    out = separate_buildings(classes, confidence, seed_confidence=0.8, min_seed_px=4, grow_px=4, **IDS)
    labels, n = ndimage.label(out == 1, structure=CROSS)
    assert n == 2
    assert set(np.unique(out)) <= {0, 1}
    # Each grows back to (nearly) its footprint: all but the seam column on each side.
    sizes = np.bincount(labels.ravel())[1:]
    assert all(sizes == 24 * 13)
    assert (out[6:30, 17] == 0).all() and (out[6:30, 18] == 0).all()


def test_the_separated_mask_vectorizes_to_two_polygons():
    classes, confidence = _row_of_houses(2)
    out = separate_buildings(classes, confidence, seed_confidence=0.8, min_seed_px=4, grow_px=4, **IDS)
    transform = Affine(0.5, 0, 300000, 0, -0.5, 3000000)
    layers = vectorize_scene(
        lambda w: (out[w.row : w.row_stop, w.col : w.col_stop], confidence[w.row : w.row_stop, w.col : w.col_stop]), GeoGrid(Shape2d(*out.shape), transform, "EPSG:32645"), classes={1: "building"},
        settings=VectorSettings(min_building_area_m2=1.0, chunk_size=16, halo_px=8),
    )
    assert len(layers.buildings) == 2
    assert layers.buildings["area_m2"].to_numpy() == pytest.approx([13 * 24 * 0.25] * 2, rel=0.15)


def test_small_seeds_low_confidence_and_far_pixels_are_dropped():
    classes, confidence = _row_of_houses(2)
    confidence[:, :18] = np.where(classes[:, :18] == 1, 150, confidence[:, :18])  # left seed below threshold
    out = separate_buildings(classes, confidence, seed_confidence=0.8, min_seed_px=4, grow_px=4, **IDS)
    # Only the right house is left (its seed reaches grow_px into the left one's wall, no further).
    assert ndimage.label(out == 1, structure=CROSS)[1] == 1 and not out[:, :14].any()
    none = separate_buildings(classes, confidence, seed_confidence=0.8, min_seed_px=10_000, grow_px=4, **IDS)
    assert not none.any()
    short = separate_buildings(classes, confidence, seed_confidence=0.8, min_seed_px=4, grow_px=1, **IDS)
    assert (short == 1).sum() < (out == 1).sum()


def test_roads_and_nodata_are_kept_and_auxiliary_classes_folded():
    classes, confidence = _row_of_houses(2)
    classes[0, :] = 4
    classes[-1, :] = 255
    classes[32, 10:20] = 3  # contact
    out = separate_buildings(classes, confidence, road_id=4, seed_confidence=0.8, min_seed_px=4, grow_px=4, **IDS)
    assert (out[0] == 2).all() and (out[-1] == 255).all() and not out[32].any()


def test_local_a_crop_with_a_halo_gives_the_whole_result_in_its_core():
    rng = np.random.default_rng(0)
    classes, confidence = _row_of_houses(6, rows=60)
    confidence = np.clip(confidence.astype(int) + rng.integers(-40, 40, confidence.shape), 0, 255).astype(np.uint8)
    kwargs = dict(seed_confidence=0.75, min_seed_px=1, grow_px=5, **IDS)
    whole = separate_buildings(classes, confidence, **kwargs)
    halo = 6 + 1  # grow_px + the seam
    for c0 in range(0, classes.shape[1], 16):
        c1 = min(c0 + 16, classes.shape[1])
        a, b = max(0, c0 - halo), min(classes.shape[1], c1 + halo)
        part = separate_buildings(classes[:, a:b], confidence[:, a:b], **kwargs)
        assert np.array_equal(part[:, c0 - a : c1 - a], whole[:, c0:c1])
