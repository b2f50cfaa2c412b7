"""Separate touching buildings: grow each interior seed back over the predicted footprint.

A model trained on instance-aware targets (:mod:`pipeline.training.targets`) predicts a building
interior, a boundary ring and a contact gap. Its argmax mask, read plainly, still joins touching roofs
through their boundary pixels. :func:`separate_buildings` turns it into a plain building mask whose
4-connected components are the instances:

1. seeds: 4-connected components of (interior class and confidence >= ``seed_confidence``) with at
   least ``min_seed_px`` pixels;
2. every footprint pixel (interior or boundary class) within ``grow_px`` of a seed takes the label of its
   nearest seed pixel;
3. a pixel 4-adjacent to a pixel of another seed becomes background, so touching buildings are cut
   apart by a thin gap; auxiliary classes are folded away.

Why nearest-seed assignment (``scipy.ndimage.distance_transform_edt`` with ``return_indices``) and not
``skimage.segmentation.watershed``: a pixel's label here depends only on the seeds within ``grow_px`` of
it (and on which component each seed pixel belongs to), so the result on a chunk read with a halo of at
least ``grow_px + 1`` pixels, plus the extent of the seeds that reach into it, equals the result on the
whole scene. A watershed floods in priority order over the whole connected mask: a pixel's label can
depend on seeds arbitrarily far away, so it would change with the chunk size. The price is that growth
follows straight lines, not the image's ridges; with seeds eroded from the footprint by a boundary ring
a few pixels wide, the two agree almost everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from pipeline.classes import NODATA, USER_CLASSES

__all__ = ["NODATA", "BOUNDARY", "CONTACT", "USER_CLASSES", "fold_lut", "separate_buildings"]

#: The auxiliary classes of an instance model, after its user-facing ones.
BOUNDARY = "building_boundary"
CONTACT = "building_contact"
_FOLDED = {BOUNDARY: "building", CONTACT: "background"}


def fold_lut(model_classes: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The mask users read for a model's classes: its class names by id, and the lookup from model ids.

    An instance model's boundary pixels become building and its contact pixels background, in the ids of
    :data:`USER_CLASSES`; nodata stays 255. A model without auxiliary classes keeps its own ids (None).
    The names end at the last class the model predicts: a building-only model's mask has no road.
    """
    if not _FOLDED.keys() & set(model_classes):
        return tuple(model_classes), None
    lut = np.arange(256, dtype=np.uint8)
    for i, name in enumerate(model_classes):
        lut[i] = USER_CLASSES.index(_FOLDED.get(name, name))
    return USER_CLASSES[: int(lut[: len(model_classes)].max()) + 1], lut
_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity, as the vector stage polygonizes


def separate_buildings(
    mask: np.ndarray,
    confidence: np.ndarray,
    *,
    interior_id: int,
    boundary_id: int,
    contact_id: int | None = None,
    road_id: int | None = None,
    seed_confidence: float = 0.8,
    min_seed_px: int = 1,
    grow_px: float = 16.0,
    building_out: int = 1,
    road_out: int = 2,
) -> np.ndarray:
    """A user-facing mask (0 background, 1 building, 2 road, 255 nodata) with touching buildings apart.

    Args:
        mask: uint8 argmax class ids of the model (its own class order), 255 nodata.
        confidence: uint8 winning-class probability x 255, same shape.
        interior_id: the model's building (interior) class.
        boundary_id: the model's building boundary class.
        contact_id: the model's contact class (folded to background), if any.
        road_id: the model's road class (kept as ``road_out``), if any.
        seed_confidence: least interior probability (0..1) of a seed pixel.
        min_seed_px: least pixels of a seed component (smaller ones are dropped).
        grow_px: how far (pixels, Euclidean) a seed grows over the footprint.
        building_out: value of building pixels in the result.
        road_out: value of road pixels in the result.

    Returns:
        uint8 array of ``mask``'s shape: buildings, roads, background and nodata.
    """
    mask = np.asarray(mask)
    confidence = np.asarray(confidence)
    if mask.shape != confidence.shape or mask.ndim != 2:
        raise ValueError(f"mask {mask.shape} and confidence {confidence.shape} must be equal 2-D shapes")
    threshold = int(np.ceil(seed_confidence * 255 - 1e-9))
    seeds = (mask == interior_id) & (confidence >= threshold)
    labels, n = ndimage.label(seeds, structure=_CROSS)
    if n and min_seed_px > 1:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_seed_px
        small[0] = False
        labels[small[labels]] = 0
    out = np.zeros(mask.shape, dtype=np.uint8)
    if road_id is not None:
        out[mask == road_id] = road_out
    out[mask == NODATA] = NODATA
    if not labels.any():
        return out
    footprint = (mask == interior_id) | (mask == boundary_id)
    distance, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[rows, cols]
    owner[~footprint | (distance > grow_px)] = 0
    # A pixel next to a pixel of another seed becomes background: both sides of the seam, so the result
    # does not depend on how seeds are numbered (which varies with the chunk).
    seam = np.zeros(mask.shape, dtype=bool)
    for a, b in (
        (owner[1:, :], owner[:-1, :]),
        (owner[:, 1:], owner[:, :-1]),
    ):
        differ = (a != b) & (a > 0) & (b > 0)
        if a.shape[0] != owner.shape[0]:
            seam[1:, :] |= differ
            seam[:-1, :] |= differ
        else:
            seam[:, 1:] |= differ
            seam[:, :-1] |= differ
    out[(owner > 0) & ~seam] = building_out
    return out
