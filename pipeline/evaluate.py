"""Scoring outputs against ground truth files: the I/O edge of ``pipeline.metrics``.

Predictions are a sceneseg GeoPackage (optionally one scene of it) and/or a mask GeoTIFF; truth is a
GeoPackage or GeoJSON with layers ``buildings``, ``roads``, ``road_centerlines`` (any subset), or a
single layer with a ``class`` column, or a mask GeoTIFF on the same grid. Geographic CRSs are scored in
the local UTM zone, so every measure is in metres.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio

from pipeline.errors import SceneReadError, SceneValidationError
from pipeline.grid import Shape2d
from pipeline.metrics import evaluate_vectors, pixel_iou

__all__ = ["read_layers", "evaluate_outputs", "evaluate_paths"]

LAYERS = ("buildings", "roads", "road_centerlines")
_CLASS_LAYER = {"building": "buildings", "road": "roads"}
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")


def read_layers(path: Path, scene_id: str | None = None) -> dict[str, gpd.GeoDataFrame]:
    """The building/road layers of a vector file, by sceneseg layer name, in a projected CRS."""
    if not path.is_file():
        raise SceneReadError(f"{path}: no such file. Give a GeoPackage or GeoJSON of buildings/roads.")
    try:
        names = [str(name) for name, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as exc:
        raise SceneReadError(f"{path}: not a vector file GDAL can read ({exc}).") from exc
    layers: dict[str, gpd.GeoDataFrame] = {}
    for name in names:
        frame = gpd.read_file(path, layer=name, engine="pyogrio")
        if scene_id is not None and "scene_id" in frame.columns:
            frame = frame[frame["scene_id"] == scene_id]
        if name in LAYERS:
            layers[name] = frame
        elif "class" in frame.columns:
            for cls, part in frame.groupby("class"):
                if cls in _CLASS_LAYER:
                    layers[_CLASS_LAYER[cls]] = part
        elif len(names) == 1:
            layers["buildings"] = frame
    if not layers:
        raise SceneValidationError(
            f"{path}: found layers {names} but none named {list(LAYERS)} nor a 'class' column with "
            "building/road values. Rename the layer or add a class column."
        )
    return {name: _projected(frame) for name, frame in layers.items()}


def _projected(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.crs is not None and not frame.crs.is_projected and len(frame):
        return frame.to_crs(frame.estimate_utm_crs())
    return frame


def _mask_scores(pred: np.ndarray, truth: np.ndarray, classes: dict[int, str]) -> dict[str, float]:
    valid = (pred != 255) & (truth != 255)
    return {f"{name}_pixel_iou": pixel_iou(pred, truth, cls, valid) for cls, name in classes.items()}


def _read_mask(path: Path) -> tuple[np.ndarray, rasterio.Affine, Shape2d, object]:
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, Shape2d(ds.height, ds.width), ds.crs


def _mask_against_vectors(mask_path: Path, truth: dict[str, gpd.GeoDataFrame]) -> dict[str, float]:
    from pipeline.synthetic import rasterize_truth

    mask, transform, shape, crs = _read_mask(mask_path)
    in_grid = {k: v.to_crs(crs) for k, v in truth.items() if k in ("buildings", "roads")}
    return _mask_scores(mask, rasterize_truth(in_grid, transform, shape), {1: "building", 2: "road"})


def evaluate_paths(
    pred: Path, truth: Path, *, scene_id: str | None = None, iou_threshold: float = 0.5,
    centerline_buffer_m: float = 2.0,
) -> dict[str, float]:
    """Scores for any pairing of vector files and mask GeoTIFFs (the ``sceneseg evaluate`` command)."""
    pred_is_raster = pred.suffix.lower() in RASTER_SUFFIXES
    truth_is_raster = truth.suffix.lower() in RASTER_SUFFIXES
    if pred_is_raster and truth_is_raster:
        p, pt, ps, _ = _read_mask(pred)
        t, tt, ts, _ = _read_mask(truth)
        if (ps, pt) != (ts, tt):
            raise SceneValidationError(
                f"{pred} ({ps.rows} x {ps.cols}) and {truth} ({ts.rows} x {ts.cols}) are not on the same grid. "
                "Resample one onto the other's grid first (e.g. gdalwarp -tr/-te)."
            )
        return _mask_scores(p, t, {1: "building", 2: "road"})
    if truth_is_raster:
        raise SceneValidationError(f"{truth}: a mask truth needs a mask prediction; {pred} is a vector file.")
    truth_layers = read_layers(truth)
    if pred_is_raster:
        return _mask_against_vectors(pred, truth_layers)
    return evaluate_vectors(read_layers(pred, scene_id), truth_layers, iou_threshold=iou_threshold,
                            centerline_buffer_m=centerline_buffer_m)


def evaluate_outputs(
    mask_path: Path, gpkg_path: Path, truth_path: Path, *, scene_id: str | None = None,
    iou_threshold: float = 0.5, centerline_buffer_m: float = 2.0,
) -> dict[str, float]:
    """Vector scores of a scene's GeoPackage features and pixel IoU of its mask, against vector truth."""
    vectors = evaluate_paths(gpkg_path, truth_path, scene_id=scene_id, iou_threshold=iou_threshold,
                             centerline_buffer_m=centerline_buffer_m)
    return vectors | evaluate_paths(mask_path, truth_path)
