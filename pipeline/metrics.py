"""Accuracy of masks and vectors against ground truth. Pure functions: arrays and geometries in, scores out.

Conventions for empty inputs: a ratio whose denominator is empty counts as perfect (nothing predicted
means nothing predicted wrongly), so a model that predicts nothing scores precision 1, recall 0, F1 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import geopandas as gpd
import numpy as np
import shapely

from pipeline.errors import ConfigError
from pipeline.vectors.matching import match_by_iou

__all__ = [
    "BuildingScores",
    "CenterlineScores",
    "match_buildings",
    "pixel_iou",
    "confusion",
    "centerline_scores",
    "evaluate_vectors",
]

Geometries = Sequence[shapely.Geometry] | np.ndarray | gpd.GeoSeries | gpd.GeoDataFrame


@dataclass(frozen=True)
class BuildingScores:
    """Object-level building scores under one-to-one matching."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    mean_iou_matched: float


@dataclass(frozen=True)
class CenterlineScores:
    """Wiedemann's buffer-based measures for road centerlines."""

    completeness: float
    correctness: float
    quality: float


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 1.0


def _geometry_array(geoms: Geometries, name: str) -> np.ndarray:
    """Non-empty, valid shapely geometries as an object array; refuses geographic CRSs."""
    crs = getattr(geoms, "crs", None)
    if crs is not None and not crs.is_projected:
        raise ConfigError(
            f"{name} are in {crs.to_string()}, a geographic CRS: areas and lengths need a projected CRS, "
            "reproject with .to_crs() first"
        )
    if isinstance(geoms, gpd.GeoDataFrame):
        geoms = geoms.geometry
    arr = np.asarray(list(geoms), dtype=object)
    if arr.size == 0:
        return np.empty(0, dtype=object)
    arr = arr[~shapely.is_missing(arr)]
    arr = arr[~shapely.is_empty(arr)]
    # Polygonized or hand-edited shapes are sometimes self-intersecting; GEOS overlays refuse those.
    invalid = ~shapely.is_valid(arr)
    if invalid.any():
        arr = arr.copy()
        arr[invalid] = shapely.make_valid(arr[invalid])
    return arr


def _same_crs(pred: Geometries, truth: Geometries) -> Geometries:
    """``pred`` in the CRS of ``truth`` when both carry one."""
    p_crs, t_crs = getattr(pred, "crs", None), getattr(truth, "crs", None)
    if p_crs is not None and t_crs is not None and p_crs != t_crs:
        return pred.to_crs(t_crs)
    return pred


def match_buildings(pred: Geometries, truth: Geometries, iou_threshold: float = 0.5) -> BuildingScores:
    """Match predicted to true footprints one to one (the SpaceNet rule).

    Candidate pairs are those whose shapes intersect; they are taken in order of decreasing IoU, each
    footprint used at most once, and a pair counts as a true positive when its IoU is at least
    ``iou_threshold``.

    Args:
        pred: Predicted polygons (a sequence, array, GeoSeries or GeoDataFrame).
        truth: True polygons, in the same projected CRS.
        iou_threshold: Least IoU of a match, in (0, 1].

    Returns:
        Counts, precision, recall, F1 and the mean IoU of the matched pairs (0 when none).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    pred = _same_crs(pred, truth)
    p = _geometry_array(pred, "predicted buildings")
    t = _geometry_array(truth, "true buildings")
    ious = match_by_iou(p, t, iou_threshold)[2]
    tp = int(ious.size)
    fp, fn = int(p.size) - tp, int(t.size) - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return BuildingScores(tp, fp, fn, precision, recall, f1, float(ious.mean()) if tp else 0.0)


def confusion(
    pred: np.ndarray, true: np.ndarray, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """Confusion matrix of class-id masks: ``[true class, predicted class]`` pixel counts (int64)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ConfigError(f"predicted mask {pred.shape} and true mask {true.shape} differ in shape")
    if valid is not None:
        pred, true = pred[np.asarray(valid, dtype=bool)], true[np.asarray(valid, dtype=bool)]
    pred, true = pred.ravel().astype(np.int64), true.ravel().astype(np.int64)
    for name, a in (("predicted", pred), ("true", true)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ConfigError(
                f"{name} mask holds class ids {a.min()}..{a.max()}, outside 0..{num_classes - 1}: "
                "pass the right num_classes or mask the nodata pixels with valid="
            )
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def pixel_iou(
    pred_mask: np.ndarray, true_mask: np.ndarray, class_id: int, valid: np.ndarray | None = None
) -> float:
    """Intersection over union of one class in two class-id masks; NaN when neither holds the class."""
    pred_mask, true_mask = np.asarray(pred_mask), np.asarray(true_mask)
    if pred_mask.shape != true_mask.shape:
        raise ConfigError(f"predicted mask {pred_mask.shape} and true mask {true_mask.shape} differ in shape")
    p, t = pred_mask == class_id, true_mask == class_id
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        p, t = p & v, t & v
    union = np.count_nonzero(p | t)
    return float(np.count_nonzero(p & t) / union) if union else float("nan")


def centerline_scores(pred_lines: Geometries, true_lines: Geometries, buffer: float) -> CenterlineScores:
    """Completeness, correctness and quality of road centerlines (Wiedemann).

    Completeness is the length of true lines within ``buffer`` of a predicted line over the true length;
    correctness the length of predicted lines within ``buffer`` of a true line over the predicted length;
    quality the matched predicted length over (predicted length + unmatched true length).
    """
    if not buffer > 0:
        raise ConfigError(f"the centerline buffer must be positive (in CRS units), got {buffer}")
    pred_lines = _same_crs(pred_lines, true_lines)
    p = shapely.union_all(_geometry_array(pred_lines, "predicted centerlines"))
    t = shapely.union_all(_geometry_array(true_lines, "true centerlines"))
    p_len, t_len = shapely.length(p), shapely.length(t)
    t_matched = shapely.length(shapely.intersection(t, shapely.buffer(p, buffer))) if p_len else 0.0
    p_matched = shapely.length(shapely.intersection(p, shapely.buffer(t, buffer))) if t_len else 0.0
    return CenterlineScores(
        completeness=_ratio(t_matched, t_len),
        correctness=_ratio(p_matched, p_len),
        quality=_ratio(p_matched, p_len + (t_len - t_matched)),
    )


def evaluate_vectors(
    pred_layers: Mapping[str, Geometries],
    truth_layers: Mapping[str, Geometries],
    *,
    iou_threshold: float = 0.5,
    centerline_buffer_m: float = 2.0,
) -> dict[str, float]:
    """All vector scores for the layers present in both inputs.

    Args:
        pred_layers: Predicted layers by name (``buildings``, ``roads``, ``road_centerlines``).
        truth_layers: True layers by the same names.
        iou_threshold: Least IoU of a building match.
        centerline_buffer_m: Buffer of the centerline measures, in CRS units.

    Returns:
        ``building_*`` (tp, fp, fn, precision, recall, f1, mean_iou), ``road_iou`` (area IoU of the road
        polygons) and ``centerline_*`` (completeness, correctness, quality), each when both sides have it.
    """
    scores: dict[str, float] = {}
    if "buildings" in pred_layers and "buildings" in truth_layers:
        b = match_buildings(pred_layers["buildings"], truth_layers["buildings"], iou_threshold)
        scores |= {f"building_{k}": v for k, v in asdict(b).items()}
        scores["building_mean_iou"] = scores.pop("building_mean_iou_matched")
    if "roads" in pred_layers and "roads" in truth_layers:
        pred_roads = _same_crs(pred_layers["roads"], truth_layers["roads"])
        p = shapely.union_all(_geometry_array(pred_roads, "predicted roads"))
        t = shapely.union_all(_geometry_array(truth_layers["roads"], "true roads"))
        union = shapely.area(shapely.union(p, t))
        scores["road_iou"] = float(shapely.area(shapely.intersection(p, t)) / union) if union else 1.0
    if "road_centerlines" in pred_layers and "road_centerlines" in truth_layers:
        c = centerline_scores(pred_layers["road_centerlines"], truth_layers["road_centerlines"], centerline_buffer_m)
        scores |= {f"centerline_{k}": v for k, v in asdict(c).items()}
    return scores
