"""Scoring outputs against ground truth files: the I/O edge of ``pipeline.metrics``.

Predictions are a sceneseg GeoPackage (optionally one scene of it) and/or a mask GeoTIFF; truth is a
GeoPackage or GeoJSON with layers ``buildings``, ``roads``, ``road_centerlines`` (any subset), or a
single layer with a ``class`` column, or a mask GeoTIFF on the same grid. Geographic CRSs are scored in
the local UTM zone, so every measure is in metres.

Nothing is scored silently as zero: a layer the truth has and the prediction lacks, or a ``scene_id`` that
selects no scene of the prediction, is an error that says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio

from pipeline.errors import SceneValidationError
from pipeline.grid import GeoGrid
from pipeline.metrics import evaluate_vectors, pixel_iou
from pipeline.vectors.labels import rasterize_layers, read_layers
from pipeline.vectors.layers import SCENES_LAYER

__all__ = ["evaluate_outputs", "evaluate_paths"]

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
_MASK_CLASSES = {1: "building", 2: "road"}


def _projected_layers(path: Path, scene_id: str | None = None) -> dict[str, gpd.GeoDataFrame]:
    return {name: _projected(frame) for name, frame in read_layers(path, scene_id).items()}


def _check_selection(pred: Path, scene_id: str | None, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """A ``scene_id`` must name a scene of the prediction (its scenes layer, else its features)."""
    if scene_id is None:
        return
    names = {str(n) for n, _ in pyogrio.list_layers(pred)}
    if SCENES_LAYER in names:
        scenes = pyogrio.read_dataframe(pred, layer=SCENES_LAYER, columns=["scene_id"], read_geometry=False)
        known = sorted(str(s) for s in scenes["scene_id"])
        if scene_id in known:
            return
    elif any(len(frame) for frame in layers.values()):
        return
    else:
        known = []
    shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "") if known else "none recorded"
    raise SceneValidationError(
        f"{pred}: --scene-id {scene_id} selects nothing (its scenes: {shown}). Give one of those scene ids."
    )


def _check_layers(pred: Path, truth: Path, pred_layers: dict, truth_layers: dict) -> None:
    """A sceneseg GeoPackage (it has a scenes layer) must have every layer of the truth; any other prediction
    must share at least one, and the layers it lacks are named in a warning, never scored as zero."""
    missing = sorted(set(truth_layers) - set(pred_layers))
    if not missing:
        return
    sceneseg = SCENES_LAYER in {str(n) for n, _ in pyogrio.list_layers(pred)}
    if sceneseg or not set(truth_layers) & set(pred_layers):
        raise SceneValidationError(
            f"{pred}: has no layer {', '.join(missing)}, which {truth} has; those scores would be missing or zero. "
            "Score a prediction that has the layer, or a truth without it."
        )
    warnings.warn(f"{pred}: has no layer {', '.join(missing)}; only {', '.join(sorted(pred_layers))} scored",
                  stacklevel=3)


def _projected(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.crs is not None and not frame.crs.is_projected and len(frame):
        return frame.to_crs(frame.estimate_utm_crs())
    return frame


def _mask_scores(pred: np.ndarray, truth: np.ndarray, classes: dict[int, str]) -> dict[str, float]:
    valid = (pred != 255) & (truth != 255)
    return {f"{name}_pixel_iou": pixel_iou(pred, truth, cls, valid) for cls, name in classes.items()}


def _read_mask(path: Path) -> tuple[np.ndarray, GeoGrid]:
    with rasterio.open(path) as ds:
        return ds.read(1), GeoGrid.of_dataset(ds)


def _mask_against_vectors(mask_path: Path, truth: dict[str, gpd.GeoDataFrame]) -> dict[str, float]:
    mask, grid = _read_mask(mask_path)
    return _mask_scores(mask, rasterize_layers(truth, grid), _MASK_CLASSES)


def evaluate_paths(
    pred: Path, truth: Path, *, scene_id: str | None = None, iou_threshold: float = 0.5,
    centerline_buffer_m: float = 2.0,
) -> dict[str, float]:
    """Scores for any pairing of vector files and mask GeoTIFFs (the ``sceneseg evaluate`` command)."""
    pred_is_raster = pred.suffix.lower() in RASTER_SUFFIXES
    truth_is_raster = truth.suffix.lower() in RASTER_SUFFIXES
    if pred_is_raster and truth_is_raster:
        p, pg = _read_mask(pred)
        t, tg = _read_mask(truth)
        if (pg.shape, pg.transform) != (tg.shape, tg.transform):
            raise SceneValidationError(
                f"{pred} ({pg.shape.rows} x {pg.shape.cols}) and {truth} ({tg.shape.rows} x {tg.shape.cols}) are "
                "not on the same grid. Resample one onto the other's grid first (e.g. gdalwarp -tr/-te)."
            )
        return _mask_scores(p, t, _MASK_CLASSES)
    if truth_is_raster:
        raise SceneValidationError(f"{truth}: a mask truth needs a mask prediction; {pred} is a vector file.")
    if pred_is_raster:
        return _mask_against_vectors(pred, read_layers(truth))
    pred_layers, truth_layers = _projected_layers(pred, scene_id), _projected_layers(truth)
    _check_selection(pred, scene_id, pred_layers)
    _check_layers(pred, truth, pred_layers, truth_layers)
    return evaluate_vectors(pred_layers, truth_layers, iou_threshold=iou_threshold,
                            centerline_buffer_m=centerline_buffer_m)


def evaluate_outputs(
    mask_path: Path, gpkg_path: Path, truth_path: Path, *, scene_id: str | None = None,
    iou_threshold: float = 0.5, centerline_buffer_m: float = 2.0,
) -> dict[str, float]:
    """Vector scores of a scene's GeoPackage features and pixel IoU of its mask, against vector truth."""
    vectors = evaluate_paths(gpkg_path, truth_path, scene_id=scene_id, iou_threshold=iou_threshold,
                             centerline_buffer_m=centerline_buffer_m)
    return vectors | evaluate_paths(mask_path, truth_path)
