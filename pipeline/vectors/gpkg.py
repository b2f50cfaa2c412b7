"""Publish a scene's vector layers to a GeoPackage, atomically, replacing that scene's earlier features.

The GeoPackage holds the layers buildings, roads, road_centerlines and scenes (one row per scene: its
footprint, source path, checksum, model, counts and status). Every publish works on a copy in the same
directory: the scene's old rows are deleted with SQL (the GeoPackage's own triggers keep the R-tree
spatial index and feature counts right), the new features are appended in bulk with pyogrio, and the copy
is renamed over the original. A publish that fails or is killed part-way leaves the previous file as it was.

A layer keeps the CRS it was created in: scenes in other CRSs are reprojected into it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from pipeline.errors import OutputError, SceneSegError
from pipeline.vectors.layers import FEATURE_LAYERS, SCENE_COLUMNS, SCENES_LAYER, VectorLayers
from pipeline.vectors.styles import write_default_styles

__all__ = ["GPKG_VERSION", "SceneRecord", "publish_scene", "read_scenes", "published_checksums", "SCENES_LAYER"]

_GEOMETRY_TYPES = {**{s.name: s.geometry_type for s in FEATURE_LAYERS}, SCENES_LAYER: "Polygon"}
_FEATURE_COLUMNS = {s.name: s.columns for s in FEATURE_LAYERS}
_SCENE_COLUMNS = list(SCENE_COLUMNS)
_RECORD_COLUMNS = [
    "scene_id", "path", "checksum", "crs", "processed_at", "model", "run_id", "status", "error",
    "n_buildings", "n_roads", "n_road_centerlines", "counts",
]  # fmt: skip
#: GeoPackage version of new files: GDAL 3.6 (Debian 12, QGIS 3.22-3.28) warns on every open of the 1.4
#: that newer GDALs write by default, and opens 1.3 cleanly. Existing files keep their version.
GPKG_VERSION = "1.3"
# pyarrow is optional: pyogrio's Arrow path is faster but the classic one writes the same file.
_USE_ARROW = importlib.util.find_spec("pyarrow") is not None


@dataclass(frozen=True)
class SceneRecord:
    """What the scenes layer records about one processed scene.

    Attributes:
        footprint: the scene outline in the scene CRS (None when the scene could not be opened).
        crs: the scene CRS as a string (e.g. "EPSG:32645").
        processed_at: ISO 8601 time the scene was processed.
        status: "ok" or "failed"; a failed scene has an ``error`` and no features.
        counts: extra counts to keep (the published layer counts are added by :func:`publish_scene`).
    """

    scene_id: str
    path: str
    checksum: str
    crs: str
    footprint: BaseGeometry | None
    processed_at: str
    model: str
    run_id: str
    status: str = "ok"
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failed"):
            raise ValueError(f"SceneRecord status must be 'ok' or 'failed', got {self.status!r}")
        if self.status == "failed" and not self.error:
            raise ValueError(f"SceneRecord for failed scene {self.scene_id!r} needs an error message")


def _layer_crs(path: Path) -> dict[str, CRS]:
    """The CRS of each layer already in the GeoPackage."""
    out = {}
    for name, _ in pyogrio.list_layers(path):
        info = pyogrio.read_info(path, layer=name)
        if info["crs"]:
            out[str(name)] = CRS.from_user_input(info["crs"])
    return out


def _delete_scene(path: Path, layers: list[str], scene_id: str) -> None:
    # pyogrio cannot delete rows; plain SQL on the copy can, and the GeoPackage triggers update the
    # R-tree and the feature counts. Layer names come from our own constants, never from input.
    con = sqlite3.connect(path)
    try:
        with con:
            for name in layers:
                con.execute(f'DELETE FROM "{name}" WHERE scene_id = ?', (scene_id,))
    finally:
        con.close()


def _feature_frame(name: str, frame: gpd.GeoDataFrame, record: SceneRecord, target: CRS) -> gpd.GeoDataFrame:
    missing = [c for c in _FEATURE_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise OutputError(f"layer {name} lacks columns {missing}: publish the output of vectorize_scene")
    defaults = {"model": record.model, "run_id": record.run_id, "created_at": record.processed_at}
    missing_defaults = {k: v for k, v in defaults.items() if k not in frame.columns}
    frame = frame.assign(**missing_defaults, scene_id=record.scene_id)
    frame = frame[[*_FEATURE_COLUMNS[name], *_SCENE_COLUMNS, frame.geometry.name]]
    if frame.crs is None:
        return frame.set_crs(target)
    return frame if CRS(frame.crs).equals(target) else frame.to_crs(target)


def _scene_frame(record: SceneRecord, counts: dict[str, int], target: CRS) -> gpd.GeoDataFrame:
    all_counts = {**record.counts, **counts}
    row = {
        "scene_id": record.scene_id, "path": record.path, "checksum": record.checksum, "crs": record.crs,
        "processed_at": record.processed_at, "model": record.model, "run_id": record.run_id,
        "status": record.status, "error": record.error or "",
        **{f"n_{name}": int(counts.get(name, 0)) for name in _FEATURE_COLUMNS},
        "counts": json.dumps(all_counts, sort_keys=True),
    }  # fmt: skip
    footprint = record.footprint
    if footprint is not None:
        # Densify so that the outline stays faithful when reprojected.
        footprint = shapely.segmentize(footprint, max(footprint.length / 400, 1e-9))
    if footprint is None:  # a scene that could not be opened has no outline and no CRS of its own
        geometry = gpd.GeoSeries([None], crs=target)
    else:
        geometry = gpd.GeoSeries([footprint], crs=record.crs).to_crs(target)
    return gpd.GeoDataFrame(pd.DataFrame([row])[_RECORD_COLUMNS], geometry=geometry, crs=target)


def _write(frame: gpd.GeoDataFrame, path: Path, layer: str, exists: bool) -> None:
    if exists and frame.empty:
        return
    pyogrio.write_dataframe(
        frame,
        path,
        layer=layer,
        driver="GPKG",
        append=exists,
        geometry_type=_GEOMETRY_TYPES[layer],
        promote_to_multi=False,
        use_arrow=_USE_ARROW,
        dataset_options=None if path.exists() else {"VERSION": GPKG_VERSION},
    )


def publish_scene(
    gpkg_path: str | os.PathLike[str],
    layers: VectorLayers | None,
    scene_record: SceneRecord,
    *,
    crs: CRS | str | int | None = None,
) -> dict[str, int]:
    """Replace one scene's features and its scenes row in a GeoPackage, atomically.

    Args:
        gpkg_path: the GeoPackage; created with all four layers if missing.
        layers: the scene's vector layers; None (or any layers) for a failed scene, which gets no features.
        scene_record: the scene's row in the scenes layer.
        crs: CRS for layers created now (default: the scene's). Existing layers keep theirs; asking for
            another one is an error.

    Returns:
        The number of features published per layer.

    Raises:
        OutputError: the GeoPackage cannot be read or written, or its layers are in another CRS than ``crs``.
    """
    path = Path(gpkg_path)
    wanted = CRS.from_user_input(crs) if crs is not None else None
    failed = scene_record.status == "failed" or layers is None
    frames = {} if failed else dict(layers.items())
    counts = {name: len(frames.get(name, ())) for name in _FEATURE_COLUMNS}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.gpkg", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(
            f"cannot write next to GeoPackage {path}: {exc}; check the directory and its permissions"
        ) from exc
    tmp = Path(tmp_name)
    try:
        if path.exists():
            shutil.copyfile(path, tmp)
            existing = _layer_crs(tmp)
        else:
            tmp.unlink()
            existing = {}
        if wanted is not None:
            clash = {n: c.to_string() for n, c in existing.items() if not c.equals(wanted)}
            if clash:
                raise OutputError(
                    f"GeoPackage {path} has layers in another CRS than the requested "
                    f"{wanted.to_string()}: {clash}; "
                    "publish in that CRS (leave the output CRS unset) or write to a new GeoPackage"
                )
        # A failed scene may have no CRS; if it is the first ever published, WGS84 is the only safe choice.
        scene_crs = CRS.from_user_input(scene_record.crs) if scene_record.crs else CRS.from_epsg(4326)
        default = wanted or existing.get(SCENES_LAYER) or scene_crs
        targets = {name: existing.get(name, default) for name in _GEOMETRY_TYPES}
        if existing:
            _delete_scene(tmp, [n for n in _GEOMETRY_TYPES if n in existing], scene_record.scene_id)
        for name, columns in _FEATURE_COLUMNS.items():
            frame = frames.get(name)
            if frame is None:
                frame = gpd.GeoDataFrame(
                    {c: pd.Series(dtype="float64" if c != "class" else object) for c in columns}
                    | {c: pd.Series(dtype=object) for c in _SCENE_COLUMNS},
                    geometry=gpd.GeoSeries([], crs=targets[name]),
                )
            _write(_feature_frame(name, frame, scene_record, targets[name]), tmp, name, name in existing)
        scenes = _scene_frame(scene_record, counts, targets[SCENES_LAYER])
        _write(scenes, tmp, SCENES_LAYER, SCENES_LAYER in existing)
        write_default_styles(tmp, _GEOMETRY_TYPES)  # QGIS default styles, for layers that have none yet
        for name in _GEOMETRY_TYPES:
            pyogrio.read_info(tmp, layer=name)  # the copy must open before it replaces the original
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except SceneSegError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"publishing scene {scene_record.scene_id} to GeoPackage {path} failed ({exc}); "
            "the previous file is unchanged"
        ) from exc
    return counts


def read_scenes(gpkg_path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """The scenes layer of a GeoPackage; empty when the file or the layer does not exist yet."""
    path = Path(gpkg_path)
    if path.exists() and SCENES_LAYER in {str(n) for n, _ in pyogrio.list_layers(path)}:
        return pyogrio.read_dataframe(path, layer=SCENES_LAYER)
    return gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in _RECORD_COLUMNS}, geometry=gpd.GeoSeries([]))


def published_checksums(gpkg_path: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """Scene id -> (checksum, model) of the scenes published successfully (failed ones are to be retried)."""
    scenes = read_scenes(gpkg_path)
    ok = scenes[scenes["status"] == "ok"]
    rows = zip(ok["scene_id"], ok["checksum"], ok["model"], strict=True)
    return {str(s): (str(c), str(m)) for s, c, m in rows}
