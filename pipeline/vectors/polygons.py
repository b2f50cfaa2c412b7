"""Polygon clean-up: pure shapely / numpy functions, no I/O.

Clean-up works in a scene's *ground frame* (``pipeline.ground.GroundFrame``: local metres east and north
of the scene origin, one affine from pixels), so thresholds given in m and m^2 apply directly and right
angles are right angles on the ground even where a geographic CRS has non-square pixels.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon

__all__ = [
    "fill_small_holes",
    "dominant_angle",
    "regularize_building",
    "clean_buildings",
]


def fill_small_holes(geoms: np.ndarray, max_area: float) -> np.ndarray:
    """Drop interior rings smaller than ``max_area`` (in the geometries' units)."""
    out = np.array(geoms, dtype=object, copy=True)
    if max_area <= 0 or len(out) == 0:
        return out
    for i in np.flatnonzero(shapely.get_num_interior_rings(out) > 0):
        poly = out[i]
        kept = [ring for ring in poly.interiors if Polygon(ring).area >= max_area]
        if len(kept) < len(poly.interiors):
            out[i] = Polygon(poly.exterior, kept)
    return out


def dominant_angle(ring: np.ndarray) -> float:
    """The dominant edge direction of a closed ring, in radians modulo 90 degrees.

    The length^2-weighted circular mean of the edge angles taken four times, so that edges at right
    angles vote for the same axis and long edges (the walls) outvote short ones (the noise).
    """
    d = np.diff(ring, axis=0)
    weights = d[:, 0] ** 2 + d[:, 1] ** 2
    angles = np.arctan2(d[:, 1], d[:, 0])
    sin, cos = float((weights * np.sin(4 * angles)).sum()), float((weights * np.cos(4 * angles)).sum())
    return math.atan2(sin, cos) / 4


def _rotate(xy: np.ndarray, theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return xy @ np.array([[c, s], [-s, c]])


def _orthogonal_ring(xy: np.ndarray, min_side: float) -> np.ndarray | None:
    """Fit an axis-parallel ring to a closed ring already rotated onto its dominant axes.

    Consecutive edges of the same orientation form a side whose position is their length-weighted mean;
    sides shorter than ``min_side`` are absorbed into their neighbours; corners are where consecutive
    sides meet. None when fewer than four sides remain.
    """
    # ``xy`` is closed (last point = first), so edge i runs from xy[i] to xy[i + 1]; np.roll is avoided
    # here because its per-call overhead dominated these small rings (bench/RESULTS.md).
    pts = xy[:-1]
    d = xy[1:] - pts
    lengths = np.hypot(d[:, 0], d[:, 1])
    horizontal = np.abs(d[:, 0]) >= np.abs(d[:, 1])
    # np.concatenate, not np.r_: 3-4 against 11-14 us a call, a few percent of regularizing a building
    changes = np.flatnonzero(horizontal != np.concatenate((horizontal[-1:], horizontal[:-1])))
    if len(changes) < 4:
        return None
    order = (np.arange(len(pts)) + int(changes[0])) % len(pts)
    mid = (pts + xy[1:]) / 2
    sides: list[list[float]] = []  # [is_horizontal, position, length]
    for i in order:
        pos = mid[i, 1] if horizontal[i] else mid[i, 0]
        if sides and bool(sides[-1][0]) == bool(horizontal[i]):
            side = sides[-1]
            total = side[2] + lengths[i]
            if total > 0:
                side[1] = (side[1] * side[2] + pos * lengths[i]) / total
            side[2] = total
        else:
            sides.append([float(horizontal[i]), float(pos), float(lengths[i])])
    corners = _corners(sides)
    while len(sides) > 4:
        # A side's fitted length, not the length of the edges it came from: a zigzag of noise has long
        # edges but spans almost nothing.
        fitted = np.hypot(*(corners - np.concatenate((corners[-1:], corners[:-1]))).T)
        k = int(np.argmin(fitted))
        if fitted[k] >= min_side:
            break
        n = len(sides)
        before, after = sides[(k - 1) % n], sides[(k + 1) % n]
        total = before[2] + after[2]
        position = (before[1] * before[2] + after[1] * after[2]) / total if total > 0 else before[1]
        merged = [before[0], position, total]
        drop = {k, (k + 1) % n}
        sides = [merged if j == (k - 1) % n else side for j, side in enumerate(sides) if j not in drop]
        corners = _corners(sides)
    if len(sides) < 4 or len(sides) % 2:
        return None
    return np.vstack([corners, corners[:1]])


def _corners(sides: list[list[float]]) -> np.ndarray:
    """Where each axis-parallel side meets the next: side j ends at corner j."""
    corners = []
    for j, side in enumerate(sides):
        nxt = sides[(j + 1) % len(sides)]
        corners.append((nxt[1], side[1]) if side[0] else (side[1], nxt[1]))
    return np.asarray(corners, dtype=np.float64)


def _squared(poly: Polygon, theta: float, min_side: float) -> Polygon | None:
    """``poly`` with every ring fitted by axis-parallel sides in the frame rotated by ``theta``."""
    shell = _orthogonal_ring(_rotate(np.asarray(poly.exterior.coords), -theta), min_side)
    if shell is None:
        return None
    holes = []
    for ring in poly.interiors:
        fitted = _orthogonal_ring(_rotate(np.asarray(ring.coords), -theta), min_side)
        holes.append(_rotate(fitted, theta) if fitted is not None else np.asarray(ring.coords))
    squared = Polygon(_rotate(shell, theta), holes)
    return squared if squared.is_valid and not squared.is_empty else None


def regularize_building(
    poly: Polygon,
    *,
    min_side: float,
    max_hausdorff: float,
    min_iou: float = 0.85,
    max_perimeter_ratio: float = 1.1,
) -> Polygon:
    """Square a near-rectilinear footprint along its dominant orientation; leave other shapes as they are.

    The orientation is the better (by overlap) of the outline's dominant edge direction and its minimum
    rotated rectangle. A shape counts as near-rectilinear when its squared version stays close to it:
    an axis-parallel staircase around a round or oblique outline is visibly longer than the outline
    (by 4/pi for a circle), so the perimeter ratio separates the two.

    Args:
        poly: the footprint, in a frame with equal units on both axes (ground metres or pixels).
        min_side: sides shorter than this are absorbed into their neighbours (noise steps).
        max_hausdorff: the squared shape may move no further than this from ``poly``.
        min_iou: and must overlap ``poly`` at least this much (intersection over union).
        max_perimeter_ratio: and its perimeter may exceed that of ``poly`` at most this much.

    Returns:
        The squared polygon (exact right angles), or ``poly`` unchanged when it is irregular or when
        squaring would move it too far from the mask.
    """
    if poly.is_empty or poly.geom_type != "Polygon":
        return poly
    rectangle = np.asarray(shapely.minimum_rotated_rectangle(poly).exterior.coords)
    candidates = [dominant_angle(np.asarray(poly.exterior.coords)), dominant_angle(rectangle)]
    gap = abs(candidates[0] - candidates[1]) % (math.pi / 2)
    if min(gap, math.pi / 2 - gap) < math.radians(0.5):
        candidates = candidates[:1]  # both agree: one fit is enough
    best, best_iou = None, -1.0
    for theta in candidates:
        squared = _squared(poly, theta, min_side)
        if squared is None:
            continue
        # |A u B| = |A| + |B| - |A n B|: one overlay instead of two.
        inter = shapely.intersection(squared, poly).area
        union = squared.area + poly.area - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best_iou:
            best, best_iou = squared, iou
    if best is None or best_iou < min_iou:
        return poly
    if best.exterior.length > max_perimeter_ratio * poly.exterior.length:
        return poly
    if shapely.hausdorff_distance(best, poly) > max_hausdorff:
        return poly
    return best


def clean_buildings(
    geoms: np.ndarray,
    *,
    pixel_size: float,
    min_area: float,
    hole_area: float,
    simplify_tolerance: float,
    regularize: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Drop specks, fill small holes, simplify and square building footprints.

    Args:
        geoms: footprints in a frame with equal units on both axes (ground metres).
        pixel_size: the side of a pixel in those units (scales the regularization tolerances).
        min_area: footprints smaller than this, before or after simplification, are dropped.
        hole_area: holes smaller than this are filled.
        simplify_tolerance: Douglas-Peucker tolerance (topology preserving).
        regularize: square near-rectilinear footprints (see :func:`regularize_building`).

    Returns:
        The cleaned polygons and, for each, the index of the input footprint it came from.
    """
    geoms = np.asarray(geoms, dtype=object)
    keep = np.flatnonzero(shapely.area(geoms) >= min_area) if len(geoms) else np.zeros(0, np.int64)
    out = fill_small_holes(geoms[keep], hole_area)
    if simplify_tolerance > 0 and len(out):
        out = shapely.simplify(out, simplify_tolerance, preserve_topology=True)
    if regularize:
        min_side = max(2.0 * simplify_tolerance, 3.0 * pixel_size)
        max_hausdorff = max(3.0 * simplify_tolerance, 3.0 * pixel_size)
        out = np.array(
            [regularize_building(p, min_side=min_side, max_hausdorff=max_hausdorff) for p in out],
            dtype=object,
        )
    # Simplifying and squaring can shrink a footprint that was just above the threshold.
    valid = shapely.area(out) >= max(min_area, np.finfo(float).tiny) if len(out) else np.zeros(0, bool)
    return shapely.normalize(out[valid]), keep[valid]
