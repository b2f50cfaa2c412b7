"""Vector labels in, class masks out: the one reader of building/road layers and the one rasterizer.

A label file is a GeoPackage or GeoJSON whose layers are named as sceneseg's (``buildings``, ``roads``,
``road_centerlines``, any subset), or that has a ``class`` column of ``building``/``road`` values, or a
single layer taken as buildings. Evaluation, the synthetic ground truth and the tests read them here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from rasterio.features import rasterize

from pipeline.classes import USER_CLASSES
from pipeline.errors import ConfigError, SceneReadError, SceneValidationError
from pipeline.grid import GeoGrid
from pipeline.vectors.layers import CLASS_LAYERS, LAYER_NAMES, SCENES_LAYER

__all__ = ["ROAD_WIDTH_M", "buffer_lines", "read_layers", "rasterize_layers"]

#: Width of a road polygon made from a road centerline label (OpenStreetMap roads are lines), in metres.
ROAD_WIDTH_M = 6.0
_LINES = ("LineString", "MultiLineString")


def buffer_lines(frame: gpd.GeoDataFrame, width_m: float) -> gpd.GeoDataFrame:
    """The line features of ``frame`` as polygons ``width_m`` wide on the ground, in ``frame``'s CRS.

    Buffered in the local UTM zone, so the width is metres whatever the CRS (geographic, Web Mercator);
    flat ends, so a straight line of length L becomes an L x width rectangle.
    """
    if not width_m > 0:
        raise ConfigError(f"a line label width must be positive, got {width_m} m")
    lines = frame[frame.geom_type.isin(_LINES)]
    if lines.empty:
        return lines
    metric = lines.to_crs(lines.estimate_utm_crs())
    buffered = shapely.buffer(metric.geometry.values, width_m / 2, cap_style="flat", join_style="round")
    return metric.set_geometry(gpd.GeoSeries(buffered, crs=metric.crs)).to_crs(frame.crs)


def read_layers(
    path: str | Path, scene_id: str | None = None, road_width_m: float = ROAD_WIDTH_M
) -> dict[str, gpd.GeoDataFrame]:
    """The building/road layers of a vector file by sceneseg layer name, in the file's CRS.

    Road labels given as lines (OpenStreetMap centerlines) are the ``road_centerlines`` (unless the file
    has that layer) and, buffered to ``road_width_m``, the ``roads``.

    Args:
        path: the GeoPackage or GeoJSON.
        scene_id: keep only the features of this scene (layers that have a ``scene_id`` column).
        road_width_m: width of the road polygons made from road lines.

    Raises:
        SceneReadError: the file is missing or not a vector file.
        SceneValidationError: no layer of it holds buildings or roads.
    """
    path = Path(path)
    if not path.is_file():
        raise SceneReadError(f"{path}: no such file. Give a GeoPackage or GeoJSON of buildings/roads.")
    try:
        names = [str(name) for name, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as exc:
        raise SceneReadError(f"{path}: not a vector file GDAL can read ({exc}).") from exc
    layers: dict[str, gpd.GeoDataFrame] = {}
    for name in names:
        if name == SCENES_LAYER:  # scene footprints and their status: never features
            continue
        frame = gpd.read_file(path, layer=name, engine="pyogrio")
        if scene_id is not None and "scene_id" in frame.columns:
            frame = frame[frame["scene_id"] == scene_id]
        if name in LAYER_NAMES:
            layers[name] = frame
        elif "class" in frame.columns:
            for cls, part in frame.groupby("class"):
                if cls in CLASS_LAYERS:
                    layers[CLASS_LAYERS[cls]] = part
        elif len(names) == 1:
            layers["buildings"] = frame
    roads = layers.get("roads")
    if roads is not None and roads.geom_type.isin(_LINES).any():
        layers.setdefault("road_centerlines", roads[roads.geom_type.isin(_LINES)])
        polygons = roads[~roads.geom_type.isin(_LINES)]
        layers["roads"] = gpd.GeoDataFrame(pd.concat([polygons, buffer_lines(roads, road_width_m)]), crs=roads.crs)
    if not layers:
        raise SceneValidationError(
            f"{path}: found layers {names} but none named {list(LAYER_NAMES)} nor a 'class' column with "
            "building/road values. Rename the layer or add a class column."
        )
    return layers


def rasterize_layers(
    layers: Mapping[str, gpd.GeoDataFrame] | str | Path,
    grid: GeoGrid,
    classes: Sequence[str] = USER_CLASSES,
) -> np.ndarray:
    """A class-id mask (uint8) of the labels over ``grid``; buildings are drawn over roads.

    Args:
        layers: layers by name (as :func:`read_layers` returns) or the file to read them from; they are
            reprojected to the grid's CRS where theirs differs.
        grid: the mask's grid (a whole scene or any window of it).
        classes: class names by id; id 0 is the background, "building" and "road" are drawn.
    """
    layers = read_layers(layers) if isinstance(layers, (str, Path)) else layers
    unknown = [c for c in classes[1:] if c not in CLASS_LAYERS]
    if unknown:
        raise ConfigError(f"classes {unknown} have no label layer; known classes are {sorted(CLASS_LAYERS)}")
    out = np.zeros((grid.shape.rows, grid.shape.cols), dtype=np.uint8)
    if grid.shape.size == 0:
        return out
    bounds = shapely.box(*grid.bounds)
    for name in ("road", "building"):
        if name not in classes or CLASS_LAYERS[name] not in layers:
            continue
        frame = layers[CLASS_LAYERS[name]]
        if frame.crs is not None and frame.crs != grid.crs:
            frame = frame.to_crs(grid.crs)
        geoms = frame.geometry.values[frame.sindex.query(bounds)]
        if len(geoms):
            rasterize(((g, classes.index(name)) for g in geoms), out=out, transform=grid.transform)
    return out
