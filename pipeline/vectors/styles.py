"""Default QGIS styles inside the GeoPackage, in the ``layer_styles`` table QGIS reads them from.

QGIS looks up a layer's default style in the GeoPackage table ``layer_styles`` (its own convention,
with its own columns) and otherwise draws every layer in a random colour. The QML and SLD of each layer
are in ``pipeline/vectors/qgis/`` exactly as QGIS 3.22 wrote them (``pipeline/vectors/qgis/qgis_styles.py`` made them
with PyQGIS and can remake them): buildings outlined and filled by ``score``, roads as a translucent fill,
centerlines as a line, scene footprints as a dashed outline, building changes by kind (new green, removed
red, changed amber; ``building_changes.qml`` follows QGIS 3.22's categorized renderer, written from the
others' template: no PyQGIS at hand).

The table, its registration in ``gpkg_contents`` and OGR's feature count for it are created as QGIS
(through OGR) creates them. A layer gets its row once, when it has none: a style a user saved later
(another row, or this one edited in QGIS) is never replaced.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from importlib.resources import files

__all__ = ["STYLED_LAYERS", "LAYER_STYLES_COLUMNS", "default_style", "write_default_styles"]

#: The layers that have a default style (files ``qgis/<layer>.qml`` and ``.sld``).
STYLED_LAYERS = ("buildings", "roads", "road_centerlines", "scenes", "building_changes")

#: The columns of QGIS's layer_styles table, in its order.
LAYER_STYLES_COLUMNS = (
    "id", "f_table_catalog", "f_table_schema", "f_table_name", "f_geometry_column", "styleName", "styleQML",
    "styleSLD", "useAsDefault", "description", "owner", "ui", "update_time",
)  # fmt: skip

# What QGIS 3.22 through OGR (GDAL 3.6) creates, read back from a GeoPackage it styled.
_CREATE_TABLE = (
    'CREATE TABLE "layer_styles" ( "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "f_table_catalog" TEXT(256), '
    '"f_table_schema" TEXT(256), "f_table_name" TEXT(256), "f_geometry_column" TEXT(256), "styleName" TEXT(30), '
    '"styleQML" TEXT, "styleSLD" TEXT, "useAsDefault" BOOLEAN, "description" TEXT, "owner" TEXT(30), '
    '"ui" TEXT(30), "update_time" DATETIME DEFAULT (strftime(\'%Y-%m-%dT%H:%M:%fZ\',\'now\')))'
)
_COUNT_TRIGGERS = (
    'CREATE TRIGGER "trigger_insert_feature_count_layer_styles" AFTER INSERT ON "layer_styles" BEGIN '
    "UPDATE gpkg_ogr_contents SET feature_count = feature_count + 1 WHERE lower(table_name) = lower('layer_styles'); END",
    'CREATE TRIGGER "trigger_delete_feature_count_layer_styles" AFTER DELETE ON "layer_styles" BEGIN '
    "UPDATE gpkg_ogr_contents SET feature_count = feature_count - 1 WHERE lower(table_name) = lower('layer_styles'); END",
)


def default_style(layer: str) -> tuple[str, str]:
    """The (QML, SLD) documents of a layer's default style."""
    folder = files("pipeline.vectors").joinpath("qgis")
    return (folder.joinpath(f"{layer}.qml").read_text(encoding="utf-8"),
            folder.joinpath(f"{layer}.sld").read_text(encoding="utf-8"))


def _now() -> str:
    # GeoPackage timestamps: ISO 8601 in UTC with milliseconds and Z, or GDAL reports non-conformant content.
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _create_table(con: sqlite3.Connection) -> None:
    con.execute(_CREATE_TABLE)
    con.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change, srs_id) "
        "VALUES ('layer_styles', 'attributes', 'layer_styles', '', ?, 0)", (_now(),),
    )
    if _has_table(con, "gpkg_ogr_contents"):
        con.execute("INSERT INTO gpkg_ogr_contents (table_name, feature_count) VALUES ('layer_styles', 0)")
        for trigger in _COUNT_TRIGGERS:
            con.execute(trigger)


def _insert_defaults(con: sqlite3.Connection, layers: Iterable[str]) -> list[str]:
    if not _has_table(con, "layer_styles"):
        _create_table(con)
    geometry_columns = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
    styled = {row[0] for row in con.execute("SELECT DISTINCT f_table_name FROM layer_styles")}
    written = []
    for layer in layers:
        if layer in styled or layer not in geometry_columns or layer not in STYLED_LAYERS:
            continue
        qml, sld = default_style(layer)
        con.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
            "styleQML, styleSLD, useAsDefault, description, owner, ui, update_time) "
            "VALUES ('', '', ?, ?, ?, ?, ?, 1, ?, '', NULL, ?)",
            (layer, geometry_columns[layer], layer, qml, sld, f"sceneseg default style of {layer}", _now()),
        )
        written.append(layer)
    return written


def write_default_styles(
    gpkg: sqlite3.Connection | str | os.PathLike[str], layers: Iterable[str] = STYLED_LAYERS
) -> list[str]:
    """Give each of ``layers`` that exists in the GeoPackage and has no style yet its default style.

    ``gpkg`` is an open connection (the caller's transaction is used and not committed) or a path (a
    transaction of its own). Returns the layers styled now.
    """
    if isinstance(gpkg, sqlite3.Connection):
        return _insert_defaults(gpkg, layers)
    with closing(sqlite3.connect(gpkg)) as con, con:
        return _insert_defaults(con, layers)
