"""Publish a scene's vector layers to a GeoPackage in place, in one SQLite transaction per scene.

The GeoPackage holds the layers buildings, roads, road_centerlines and scenes (one row per scene: its
footprint, source path, checksum, model, counts and status). A GeoPackage is SQLite, so a publish is one
transaction on the file itself, never a copy of it: its cost is proportional to the scene, not to the
GeoPackage, and a killed writer leaves a hot journal that the next open rolls back.

Why a staging GeoPackage: pyogrio (GDAL) is the writer that encodes geometries, the CRS and the layer
schema exactly as GDAL, QGIS and ArcGIS expect, but it cannot delete rows nor join its writes to our
transaction. So a publish

1. writes the scene's features with pyogrio into a small staging GeoPackage beside the output
   (``.<gpkg>.<pid>.<n>.stage.gpkg``: cost proportional to the scene);
2. ATTACHes it to a sqlite3 connection on the output and, inside ``BEGIN IMMEDIATE`` (the write lock up
   front; ``busy_timeout`` makes a concurrent writer wait instead of failing), deletes the scene's old
   rows and copies the staged ones in. The GeoPackage's own triggers keep the R-tree spatial index and
   ``gpkg_ogr_contents`` feature counts right; their ``ST_*`` functions are registered on the connection
   (:func:`_register_gpkg_functions`); ``gpkg_contents`` extents grow by the staged extents;
3. commits (atomic), and removes the staging file. Staging files of killed processes are removed by the
   next publish.

The GeoPackage is created once, by :func:`_create_gpkg`, with every layer empty, under a temporary name
that is hard-linked into place so that a concurrent creator never replaces a file that already exists.
A layer keeps the CRS it was created in: scenes in other CRSs are reprojected into it. The default
rollback journal is used, not WAL, which is unsafe on network filesystems.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import json
import os
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from pipeline.errors import OutputError, SceneSegError
from pipeline.files import process_alive
from pipeline.vectors.layers import FEATURE_LAYERS, SCENE_COLUMNS, SCENES_LAYER, VectorLayers, frame_batches
from pipeline.vectors.styles import write_default_styles

__all__ = [
    "GPKG_NAME",
    "SceneRecord", "publish_scene", "read_scenes", "published_checksums", "published_path", "layer_crs", "SCENES_LAYER",
    "BUSY_TIMEOUT_S", "GPKG_VERSION", "check_gpkg", "published_status", "staged_transaction", "grow_extent",
]  # fmt: skip

_GEOMETRY_TYPES = {**{s.name: s.geometry_type for s in FEATURE_LAYERS}, SCENES_LAYER: "Polygon"}
_FEATURE_COLUMNS = {s.name: s.columns for s in FEATURE_LAYERS}
_SCENE_COLUMNS = list(SCENE_COLUMNS)
_RECORD_COLUMNS = [
    "scene_id", "path", "checksum", "crs", "processed_at", "model", "run_id", "status", "error",
    "n_buildings", "n_roads", "n_road_centerlines", "counts",
]  # fmt: skip
#: GeoPackage version of new files: GDAL 3.6 (Debian 12, QGIS 3.22-3.28) warns on every open of the 1.4
#: that newer GDALs write by default, and opens 1.3 cleanly. Existing files keep their version.
#: The GeoPackage every scene of an output directory is published to.
GPKG_NAME = "sceneseg.gpkg"
GPKG_VERSION = "1.3"
_INTEGER_COLUMNS = {"n_buildings", "n_roads", "n_road_centerlines"}
#: GeoPackage DATETIME fields (UTC), so that QGIS filters and sorts them as dates. Files written before
#: have TEXT columns there; appending to them copies the same ISO 8601 text in.
_DATETIME_COLUMNS = {"created_at", "processed_at"}
_TEXT_COLUMNS = {"class", *_SCENE_COLUMNS, *_RECORD_COLUMNS} - _INTEGER_COLUMNS - _DATETIME_COLUMNS
# pyarrow is optional: pyogrio's Arrow path is faster but the classic one writes the same file.
_USE_ARROW = importlib.util.find_spec("pyarrow") is not None
#: How long a publish waits for another process's write to the same GeoPackage to finish.
BUSY_TIMEOUT_S = float(os.environ.get("SCENESEG_GPKG_BUSY_TIMEOUT", "600"))
_staging_serial = itertools.count()


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


def layer_crs(gpkg_path: str | os.PathLike[str]) -> dict[str, CRS]:
    """The CRS of each layer already in a GeoPackage (empty when the file does not exist)."""
    path = Path(gpkg_path)
    if not path.exists():
        return {}
    check_gpkg(path)
    out = {}
    for name, _ in pyogrio.list_layers(path):
        info = pyogrio.read_info(path, layer=name)
        if info["crs"]:
            out[str(name)] = CRS.from_user_input(info["crs"])
    return out


def _typed_empty(name: str, crs: CRS) -> gpd.GeoDataFrame:
    """An empty layer with the column types of the schema (text, datetime, real, integer)."""
    columns = _RECORD_COLUMNS if name == SCENES_LAYER else [*_FEATURE_COLUMNS[name], *_SCENE_COLUMNS]

    def dtype(column: str) -> str:
        if column in _DATETIME_COLUMNS:
            return "datetime64[ms, UTC]"  # pyogrio writes it as a DATETIME field
        return "object" if column in _TEXT_COLUMNS else "int64" if column in _INTEGER_COLUMNS else "float64"

    data = {c: pd.Series(dtype=dtype(c)) for c in columns}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _create_gpkg(path: Path, targets: dict[str, CRS]) -> None:
    """Create the GeoPackage with every layer empty, unless another process created it first.

    The one place a GeoPackage comes into being (dataset creation options belong here). It is written under
    a temporary name and hard-linked into place: the link fails if the file exists, so two concurrent first
    publishes never replace each other's file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_staging_serial)}.new.gpkg")
    try:
        for name in _GEOMETRY_TYPES:
            _write(_typed_empty(name, targets[name]), tmp, name)
        _check_complete(tmp, path)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another writer created it: publish into theirs
    finally:
        tmp.unlink(missing_ok=True)


def _check_complete(written: Path, meant: Path) -> None:
    """GDAL reports some failed writes (a full disk at close) only as warnings: check the file is whole, and sync it."""
    try:
        con = sqlite3.connect(f"file:{written}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        finally:
            con.close()
    except sqlite3.Error:
        tables = set()
    if not set(_GEOMETRY_TYPES) <= tables:
        free = shutil.disk_usage(written.parent).free
        raise OutputError(
            f"{meant}: GDAL could not write the GeoPackage completely ({free / 2**20:.1f} MiB free on its disk); "
            "free space (or fix permissions) and run the same command again"
        )
    with open(written, "rb+") as fh:
        os.fsync(fh.fileno())


def _utc(times: pd.Series | str) -> pd.Series | pd.Timestamp:
    """ISO 8601 times as UTC datetimes (what pyogrio writes as DATETIME); a bad one is a ValueError."""
    return pd.to_datetime(times, utc=True, format="ISO8601")


def _feature_frame(name: str, frame: gpd.GeoDataFrame, record: SceneRecord, target: CRS) -> gpd.GeoDataFrame:
    missing = [c for c in _FEATURE_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise OutputError(f"layer {name} lacks columns {missing}: publish the output of vectorize_scene")
    defaults = {"model": record.model, "run_id": record.run_id, "created_at": record.processed_at}
    missing_defaults = {k: v for k, v in defaults.items() if k not in frame.columns}
    frame = frame.assign(**missing_defaults, scene_id=record.scene_id)
    frame = frame.assign(created_at=_utc(frame["created_at"]))
    # Columns beyond the schema (another stage's additions) travel along; the publish adds them to the layer.
    extra = [c for c in frame.columns if c not in (*_FEATURE_COLUMNS[name], *_SCENE_COLUMNS, frame.geometry.name)]
    frame = frame[[*_FEATURE_COLUMNS[name], *_SCENE_COLUMNS, *extra, frame.geometry.name]]
    if frame.crs is None:
        return frame.set_crs(target)
    return frame if CRS(frame.crs).equals(target) else frame.to_crs(target)


def _scene_frame(record: SceneRecord, counts: dict[str, int], target: CRS) -> gpd.GeoDataFrame:
    all_counts = {**record.counts, **counts}
    row = {
        "scene_id": record.scene_id, "path": record.path, "checksum": record.checksum, "crs": record.crs,
        "processed_at": _utc(record.processed_at), "model": record.model, "run_id": record.run_id,
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


def _write(frame: gpd.GeoDataFrame, path: Path, layer: str, append: bool = False) -> None:
    pyogrio.write_dataframe(
        frame, path, layer=layer, driver="GPKG", geometry_type=_GEOMETRY_TYPES[layer], promote_to_multi=False,
        use_arrow=_USE_ARROW and not frame.empty, append=append,
        dataset_options=None if path.exists() else {"VERSION": GPKG_VERSION},
    )


# The GeoPackage R-tree triggers call these SQL functions (GDAL registers them on its own connections).
_ENVELOPE_DOUBLES = {0: 0, 1: 4, 2: 6, 3: 6, 4: 8}


def _envelope(blob: bytes) -> tuple[float, float, float, float] | None:
    """(minx, maxx, miny, maxy) of a GeoPackage geometry blob; None when empty."""
    flags = blob[3]
    if flags & 0x10:
        return None
    n = _ENVELOPE_DOUBLES[(flags >> 1) & 0x07]
    if n:
        return struct.unpack_from("<4d" if flags & 1 else ">4d", blob, 8)
    geom = shapely.from_wkb(bytes(blob[8:]))
    if geom.is_empty:
        return None
    x0, y0, x1, y1 = geom.bounds
    return x0, x1, y0, y1


def _envelope_part(i: int):
    def part(blob: bytes | None) -> float | None:
        env = _envelope(blob) if blob is not None else None
        return None if env is None else env[i]

    return part


def _register_gpkg_functions(con: sqlite3.Connection) -> None:
    con.create_function("ST_IsEmpty", 1, lambda b: None if b is None else int(_envelope(b) is None), deterministic=True)
    for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
        con.create_function(name, 1, _envelope_part(i), deterministic=True)
    con.create_function("sceneseg_srs_id", 2, lambda b, srs: None if b is None else b[:4] + struct.pack(
        "<i" if b[3] & 1 else ">i", srs) + b[8:], deterministic=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(con: sqlite3.Connection, schema: str, table: str) -> dict[str, str]:
    return {row[1]: row[2] for row in con.execute(f"PRAGMA {schema}.table_info({_quote(table)})")}


def _geometry_column(con: sqlite3.Connection, schema: str, table: str) -> tuple[str, int]:
    row = con.execute(
        f"SELECT column_name, srs_id FROM {schema}.gpkg_geometry_columns WHERE lower(table_name) = lower(?)", (table,)
    ).fetchone()
    if row is None:
        raise OutputError(f"layer {table} has no geometry column registered in gpkg_geometry_columns")
    return str(row[0]), int(row[1])


def _move_layer(con: sqlite3.Connection, table: str, scene_id: str) -> None:
    """Inside the transaction: replace the scene's rows of ``table`` by the staged ones."""
    q = _quote(table)
    main_cols, stage_cols = _columns(con, "main", table), _columns(con, "stage", table)
    main_geom, main_srs = _geometry_column(con, "main", table)
    stage_geom, stage_srs = _geometry_column(con, "stage", table)
    for column, decl in stage_cols.items():  # columns another stage added to its layers
        if column not in main_cols and column not in ("fid", stage_geom):
            con.execute(f"ALTER TABLE main.{q} ADD COLUMN {_quote(column)} {decl}")
    # The delete by scene id would scan the table: an index keeps it proportional to the scene.
    index = _quote(f"idx_{table}_scene_id")
    con.execute(f"CREATE INDEX IF NOT EXISTS main.{index} ON {q} (scene_id)")
    con.execute(f"DELETE FROM main.{q} WHERE scene_id = ?", (scene_id,))
    attrs = [c for c in stage_cols if c not in ("fid", stage_geom)]
    geometry = _quote(stage_geom)
    if stage_srs != main_srs:
        geometry = f"sceneseg_srs_id({geometry}, {main_srs})"
    targets = ", ".join(_quote(c) for c in [main_geom, *attrs])
    sources = ", ".join([geometry, *(_quote(c) for c in attrs)])
    con.execute(f"INSERT INTO main.{q} ({targets}) SELECT {sources} FROM stage.{q} ORDER BY fid")
    grow_extent(con, table)
    counted = con.execute(
        "SELECT count(*) FROM main.sqlite_master WHERE type = 'trigger' AND name = ?",
        (f"trigger_insert_feature_count_{table}",),
    ).fetchone()[0]
    if not counted:  # a writer that died with the count triggers dropped: count afresh
        con.execute(
            f"UPDATE main.gpkg_ogr_contents SET feature_count = (SELECT count(*) FROM main.{q}) "
            "WHERE lower(table_name) = lower(?)", (table,),
        )  # fmt: skip


@contextmanager
def staged_transaction(path: Path, stage: Path, timeout: float) -> Iterator[sqlite3.Connection]:
    """A write transaction on the GeoPackage with a staging GeoPackage attached as ``stage``.

    ``BEGIN IMMEDIATE`` takes the write lock up front and ``busy_timeout`` waits for another writer; the
    GeoPackage's R-tree triggers find their ``ST_*`` functions; the body's statements commit together, or
    roll back on any error. Leaving the body with the transaction rolled back already is allowed.
    """
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    try:
        _register_gpkg_functions(con)
        con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        con.execute("ATTACH DATABASE ? AS stage", (str(stage),))
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            if con.in_transaction:
                con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def grow_extent(con: sqlite3.Connection, table: str) -> None:
    """Inside a staged transaction: grow ``gpkg_contents``' extent of ``table`` by the staged rows' extent."""
    extent = con.execute(
        "SELECT min_x, min_y, max_x, max_y FROM stage.gpkg_contents WHERE lower(table_name) = lower(?)", (table,)
    ).fetchone()
    if extent is not None and None not in extent:
        con.execute(
            "UPDATE main.gpkg_contents SET min_x = min(coalesce(min_x, :x0), :x0), min_y = min(coalesce(min_y, :y0), :y0),"
            " max_x = max(coalesce(max_x, :x1), :x1), max_y = max(coalesce(max_y, :y1), :y1),"
            " last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE lower(table_name) = lower(:t)",
            dict(zip(("x0", "y0", "x1", "y1"), extent, strict=True), t=table),
        )


def _commit_staged(path: Path, stage: Path, scene_id: str, timeout: float, keep_published: bool = False) -> bool:
    """Move the staged layers into the GeoPackage in one transaction, waiting for other writers.

    ``keep_published``: a failure record, which never replaces a scene published ``ok`` (a refused or failed
    re-run must not delete what an earlier run published); checked inside the transaction, so a concurrent
    publish cannot slip in between. Returns whether anything was written.
    """
    with staged_transaction(path, stage, timeout) as con:
        if keep_published and _status(con, scene_id) == "ok":
            con.execute("ROLLBACK")
            return False
        for table in _GEOMETRY_TYPES:
            _move_layer(con, table, scene_id)
        write_default_styles(con, _GEOMETRY_TYPES)  # QGIS default styles, for layers that have none yet
    return True


def _status(con: sqlite3.Connection, scene_id: str) -> str | None:
    row = con.execute(f"SELECT status FROM main.{_quote(SCENES_LAYER)} WHERE scene_id = ? LIMIT 1", (scene_id,)).fetchone()
    return None if row is None else str(row[0])


def remove_orphan_stages(directory: Path) -> None:
    """Remove staging and creation files that processes no longer alive left beside a GeoPackage."""
    for orphan in [*directory.glob(".*.stage.gpkg*"), *directory.glob(".*.new.gpkg*"), *directory.glob(".*.tmp.gpkg")]:
        parts = orphan.name.split(".")
        pid = next((int(p) for p in parts if p.isdigit()), None)
        if orphan.name.endswith(".tmp.gpkg") or pid is None or not process_alive(pid):  # .tmp.gpkg: earlier versions' copies
            orphan.unlink(missing_ok=True)


_SQLITE_MAGIC = b"SQLite format 3\x00"
_WHAT_TO_DO = "Move it away (or restore it from a backup) and run again, or choose another --out."


def check_gpkg(path: str | os.PathLike[str]) -> None:
    """Make sure an existing output GeoPackage can be published to: recover it, then check it is sceneseg's.

    A writer killed inside its transaction leaves a hot journal; SQLite rolls it back on the next open that
    can write, but every read-only open (GDAL's, pyogrio's) fails until then ("attempt to write a readonly
    database"). So whatever opens the GeoPackage first in a run comes here: a read-write connection rolls
    the journal back (waiting for a live writer's lock), as SQLite's own recovery does.

    Then the file must be whole and ours: an SQLite database (not a text file, not 0 bytes), not shorter than
    its header says (a truncated copy), a GeoPackage (``gpkg_contents``) holding sceneseg's ``scenes``
    layer. Checks read the header and the schema only, never the features: the cost does not grow with the file.

    Raises:
        OutputError: naming the file, what was found and what to do. The file is not modified.
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise OutputError(f"{path}: the output GeoPackage cannot be read ({exc}). Fix its permissions, or "
                          "choose another --out.") from exc
    if size == 0:
        raise OutputError(f"{path}: the output GeoPackage is an empty file (0 bytes), not a GeoPackage. "
                          + _WHAT_TO_DO)
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise OutputError(f"{path}: is not a GeoPackage (not an SQLite database: it starts with {header[:16]!r}). "
                          + _WHAT_TO_DO)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The in-header page count is valid when the change counter matches the version-valid-for number.
    if header[24:28] == header[92:96] and pages * page_size > size and not _journal(path).exists():
        raise OutputError(
            f"{path}: the GeoPackage is truncated ({size:,} bytes, its header says {pages * page_size:,}): a copy "
            "or a disk that stopped short. " + _WHAT_TO_DO
        )
    try:
        _recover(path)
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            tables = {str(r[0]).lower() for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            contents = ({str(r[0]).lower() for r in con.execute("SELECT table_name FROM gpkg_contents")}
                        if "gpkg_contents" in tables else set())
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise OutputError(f"{path}: the GeoPackage is damaged ({exc}). " + _WHAT_TO_DO) from exc
    if "gpkg_contents" not in tables:
        raise OutputError(f"{path}: is an SQLite database but not a GeoPackage (no gpkg_contents table). "
                          + _WHAT_TO_DO)
    if SCENES_LAYER not in contents:
        raise OutputError(
            f"{path}: is a GeoPackage, but not one sceneseg wrote (no {SCENES_LAYER!r} layer; it has "
            f"{sorted(contents) or 'no layers'}). sceneseg does not add its layers to another file: "
            + _WHAT_TO_DO
        )


def _journal(path: Path) -> Path:
    return path.with_name(path.name + "-journal")


def _recover(path: Path) -> None:
    """Roll back the hot journal a killed writer left (a read-write open does it), before any read-only open."""
    if _journal(path).exists():
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()


def _check_crs(path: Path, existing: dict[str, CRS], wanted: CRS | None) -> None:
    if wanted is None:
        return
    clash = {n: c.to_string() for n, c in existing.items() if n in _GEOMETRY_TYPES and not c.equals(wanted)}
    if clash:
        raise OutputError(
            f"GeoPackage {path} has layers in another CRS than the requested {wanted.to_string()}: {clash}; "
            "publish in that CRS (leave the output CRS unset) or write to a new GeoPackage"
        )


def publish_scene(
    gpkg_path: str | os.PathLike[str],
    layers: VectorLayers | None,
    scene_record: SceneRecord,
    *,
    crs: CRS | str | int | None = None,
    timeout: float = BUSY_TIMEOUT_S,
) -> dict[str, int]:
    """Replace one scene's features and its scenes row in a GeoPackage, in one transaction.

    Args:
        gpkg_path: the GeoPackage; created with all four layers if missing.
        layers: the scene's vector layers; None (or any layers) for a failed scene, which gets no features.
            A failed scene's record never replaces a scene published ``ok``: its features and row are kept.
        scene_record: the scene's row in the scenes layer.
        crs: CRS for layers created now (default: the scene's). Existing layers keep theirs; asking for
            another one is an error.
        timeout: seconds to wait for another process's publish to the same GeoPackage.

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
    stage = path.with_name(f".{path.name}.{os.getpid()}.{next(_staging_serial)}.stage.gpkg")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphan_stages(path.parent)
        existing = layer_crs(path)
        _check_crs(path, existing, wanted)
        # A failed scene may have no CRS; if it is the first ever published, WGS84 is the only safe choice.
        scene_crs = CRS.from_user_input(scene_record.crs) if scene_record.crs else CRS.from_epsg(4326)
        default = wanted or existing.get(SCENES_LAYER) or scene_crs
        if not existing:
            _create_gpkg(path, {name: default for name in _GEOMETRY_TYPES})
            existing = layer_crs(path)  # ours, or the one a concurrent first publish made
            _check_crs(path, existing, wanted)
        for name in [n for n in _GEOMETRY_TYPES if n not in existing]:  # a layer added to the schema since
            pyogrio.write_dataframe(_typed_empty(name, existing.get(SCENES_LAYER, default)), path, layer=name,
                                    driver="GPKG", geometry_type=_GEOMETRY_TYPES[name], append=True)
            existing = layer_crs(path)
        for name in _FEATURE_COLUMNS:
            layer = frames.get(name)
            if layer is None:
                layer = _typed_empty(name, existing[name])
            # A layer staged on disk arrives in batches: the first creates the stage's layer, the rest append.
            for i, frame in enumerate(frame_batches(layer)):
                _write(_feature_frame(name, frame, scene_record, existing[name]), stage, name, append=i > 0)
        _write(_scene_frame(scene_record, counts, existing[SCENES_LAYER]), stage, SCENES_LAYER)
        _check_complete(stage, path)
        _commit_staged(path, stage, scene_record.scene_id, timeout, keep_published=failed)
    except SceneSegError:
        raise
    except sqlite3.OperationalError as exc:
        hint = ("another process held the write lock too long; run again" if "locked" in str(exc)
                else "check free space and permissions")
        raise OutputError(
            f"publishing scene {scene_record.scene_id} to GeoPackage {path} failed ({exc}); the GeoPackage is "
            f"unchanged: {hint}"
        ) from exc
    except Exception as exc:
        raise OutputError(
            f"publishing scene {scene_record.scene_id} to GeoPackage {path} failed ({exc}); "
            "the GeoPackage is unchanged: check free space and permissions"
        ) from exc
    finally:
        for leftover in stage.parent.glob(glob.escape(stage.name) + "*"):
            leftover.unlink(missing_ok=True)
    return counts


def read_scenes(gpkg_path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """The scenes layer of a GeoPackage; empty when the file or the layer does not exist yet."""
    path = Path(gpkg_path)
    if path.exists():
        check_gpkg(path)
        return pyogrio.read_dataframe(path, layer=SCENES_LAYER)
    return gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in _RECORD_COLUMNS}, geometry=gpd.GeoSeries([]))


def published_checksums(gpkg_path: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """Scene id -> (checksum, model) of the scenes published successfully (failed ones are to be retried)."""
    scenes = read_scenes(gpkg_path)
    ok = scenes[scenes["status"] == "ok"]
    rows = zip(ok["scene_id"], ok["checksum"], ok["model"], strict=True)
    return {str(s): (str(c), str(m)) for s, c, m in rows}


def published_path(gpkg_path: str | os.PathLike[str], scene_id: str) -> str | None:
    """The source path recorded for ``scene_id`` in the scenes layer (None: no such row, or no GeoPackage)."""
    row = _scene_row(Path(gpkg_path), scene_id)
    return None if row is None else row[0]


def published_status(gpkg_path: str | os.PathLike[str], scene_id: str) -> str | None:
    """The status (``ok``/``failed``) recorded for ``scene_id`` in the scenes layer (None: no such row)."""
    row = _scene_row(Path(gpkg_path), scene_id)
    return None if row is None else row[1]


def _scene_row(path: Path, scene_id: str) -> tuple[str, str] | None:
    if not path.exists():
        return None
    check_gpkg(path)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            row = con.execute(f"SELECT path, status FROM {_quote(SCENES_LAYER)} WHERE scene_id = ? LIMIT 1",
                              (scene_id,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise OutputError(f"{path}: the GeoPackage is damaged ({exc}). " + _WHAT_TO_DO) from exc
    return None if row is None else (str(row[0]), str(row[1]))
