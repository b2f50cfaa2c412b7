"""Building change between two published acquisitions of the same area: the ``building_changes`` layer.

Two scenes published to the same GeoPackage are compared where both hold valid pixels: the intersection
of the valid areas of their masks (``<scene>_mask.tif`` beside the GeoPackage: every pixel but the nodata
class 255), derived per chunk, so a scene's nodata corners and stripes are never taken for demolished
or new buildings. The masks already record the valid pixels, so nothing more is stored at publishing
(a valid-area polygon there would be another pass over the whole scene, and a change to every
GeoPackage); where a mask is gone, the scene's footprint from the ``scenes`` layer stands in (the pair's
``valid_area`` says which).

* **new**: a later building that matches no earlier one; **removed**: an earlier building that matches
  no later one; **changed**: a matched pair whose areas differ by at least ``min_change_m2`` *and*
  ``min_change_pct`` percent of the earlier area.
* Misregistration: two acquisitions are never aligned to the pixel. Each chunk estimates the shift of the
  later scene against the earlier one (the median offset of mutually nearest building centroids within
  ``max_shift_m``), translates the earlier buildings by it, and matches one to one by IoU (at least
  ``min_iou``, highest first, as ``pipeline.metrics.match_buildings``). A building that matches none but
  lies mostly (``covered_fraction``) under the other scene's buildings is one building segmented as two,
  or two as one: not a change.
* Only buildings wholly inside the both-valid area shrunk by ``edge_margin_m`` are reported: a building
  cut by one scene's edge is not "smaller" in it. Their matches are sought among all the other scene's
  buildings, so a counterpart that crosses the margin still matches.
* Bounded memory: the overlap of the two footprints is cut into a grid of chunks (``chunk_px`` pixels of
  the finer mask a side); a building belongs to the chunk that holds its representative point, and a
  chunk reads only the buildings, centerlines and mask windows around its own. Rows are staged on disk
  chunk by chunk, then replace the pair's rows in one SQLite transaction (as ``pipeline.vectors.gpkg``
  publishes a scene): recomputing a pair gives the same rows.
* Roads: the centerline length of the later scene farther than ``road_buffer_m`` from the earlier one's
  (added) and the reverse (removed), inside the same valid area, per pair.

Which scene is earlier: the acquisition time in the scene file's metadata (:func:`acquisition_time`);
else the scene file's modification time, which re-processing leaves alone (the processing time does not:
re-running the earlier scene, or a nightly batch processing scenes concurrently, would swap the pair and
turn every removed building into a new one); else, the file gone, the time it was processed. Every row
says which (``time_source``: acquisition, file or processing).
"""

from __future__ import annotations

import glob
import itertools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import rasterio.features
import rasterio.transform
import rasterio.windows
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import box

from pipeline.classes import NODATA
from pipeline.errors import ConfigError, OutputError, SceneSegError
from pipeline.metadata import acquisition_time
from pipeline.vectors.gpkg import BUSY_TIMEOUT_S, GPKG_VERSION, grow_extent, read_scenes, staged_transaction
from pipeline.vectors.matching import match_by_iou
from pipeline.vectors.styles import write_default_styles

__all__ = [
    "CHANGES_LAYER",
    "CHANGE_COLUMNS",
    "ChangeSettings",
    "SceneTime",
    "Acquisition",
    "PairChanges",
    "scene_time",
    "compare_buildings",
    "compare_centerlines",
    "compare_scenes",
    "publish_changes",
    "update_changes",
    "totals",
    "change_report",
]

CHANGES_LAYER = "building_changes"
#: The columns of the layer, besides its geometry (the new or removed building, or the later one of a change).
CHANGE_COLUMNS: tuple[str, ...] = (
    "change", "scene_id", "earlier_scene_id", "scene_time", "earlier_time", "time_source", "earlier_time_source",
    "area_m2", "earlier_area_m2", "area_change_m2", "score", "earlier_score", "iou", "created_at",
)  # fmt: skip
_TEXT = {"change", "scene_id", "earlier_scene_id", "scene_time", "earlier_time", "time_source",
         "earlier_time_source", "created_at"}
_serial = itertools.count()
#: Change rows held in memory before they are written to the staging file.
_STAGE_BATCH = 20_000
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeSettings:
    """How two scenes' buildings are compared (lengths in metres of the working CRS).

    Measured on five 512^2 synthetic towns (seeds 3, 4, 5, 6, 11), each resampled with its content moved by
    1.5, 2.5 and 3 px (0.5 m pixels) and both segmented by ``synthetic-demo`` (``bench/changes.py --towns``):
    no change in any of the 15 pairs; the matched buildings' mean IoU 0.55-0.77 before the alignment and
    0.87-0.97 after it. Over 9 of the pairs single IoUs went down to 0.28 before and 0.63 after, and matched
    areas differed by at most 11 m^2 or 15 % but for one building (17 m^2, 33 %).
    """

    #: Least IoU of a match, after the alignment.
    min_iou: float = 0.3
    #: Smaller new or removed buildings are not reported: segmenting the same town twice flickers specks of
    #: 6.9 and 7.4 m^2 (seed 5, 1.5 px; the synthetic town's smallest building is 36 m^2).
    min_area_m2: float = 10.0
    #: Largest misregistration sought between the scenes.
    max_shift_m: float = 4.0
    #: A matched pair is changed when its areas differ by both this much and this percentage of the earlier.
    min_change_m2: float = 15.0
    min_change_pct: float = 25.0
    #: An unmatched building lying this much under the other scene's buildings is a split or a merge.
    covered_fraction: float = 0.5
    #: The both-valid area is shrunk by this much: a building cut by a scene's edge is not compared.
    edge_margin_m: float = 2.0
    #: A centerline farther than this from the other scene's is added (or removed) road.
    road_buffer_m: float = 3.0
    #: Chunk side, in pixels of the finer of the two masks.
    chunk_px: int = 2048

    def __post_init__(self) -> None:
        if not 0 < self.min_iou <= 1 or not 0 < self.covered_fraction <= 1:
            raise ConfigError(f"min_iou and covered_fraction must be in (0, 1], got {self.min_iou}, {self.covered_fraction}")
        if min(self.min_area_m2, self.max_shift_m, self.min_change_m2, self.min_change_pct, self.edge_margin_m) < 0:
            raise ConfigError("min_area_m2, max_shift_m, min_change_m2, min_change_pct and edge_margin_m must not be "
                              "negative")
        if self.road_buffer_m <= 0 or self.chunk_px < 64:
            raise ConfigError(f"road_buffer_m must be positive and chunk_px at least 64, got {self.road_buffer_m}, "
                              f"{self.chunk_px}")


@dataclass(frozen=True)
class SceneTime:
    """When a scene was taken: ``source`` is "acquisition" (the file's metadata), "file" (its modification
    time) or "processing" (the file is gone)."""

    time: datetime
    source: str

    def iso(self) -> str:
        return self.time.isoformat(timespec="seconds")


def scene_time(path: str | os.PathLike[str], processed_at: str | datetime) -> SceneTime:
    """The scene's acquisition time, else its file's modification time, else the time it was processed
    (``processed_at``: a DATETIME of the scenes layer, or ISO 8601 text as GeoPackages before it hold)."""
    taken = acquisition_time(path)
    if taken is not None:
        return SceneTime(taken.time.astimezone(UTC), "acquisition")
    try:
        return SceneTime(datetime.fromtimestamp(os.stat(path).st_mtime, UTC), "file")
    except OSError:
        pass
    processed = processed_at if isinstance(processed_at, datetime) else datetime.fromisoformat(processed_at)
    return SceneTime(processed if processed.tzinfo else processed.replace(tzinfo=UTC), "processing")


# --------------------------------------------------------------------------------------------------
# The pure comparison


def _estimate_shift(earlier: np.ndarray, later: np.ndarray, max_shift: float) -> tuple[float, float]:
    """Median offset from earlier to later centroids over mutually nearest pairs within ``max_shift``."""
    if earlier.size == 0 or later.size == 0 or max_shift <= 0:
        return 0.0, 0.0
    e, l = shapely.centroid(earlier), shapely.centroid(later)
    ei, li = shapely.STRtree(l).query_nearest(e, max_distance=max_shift, all_matches=False)
    back_l, back_e = shapely.STRtree(e).query_nearest(l, max_distance=max_shift, all_matches=False)
    nearest_of_l = dict(zip(back_l.tolist(), back_e.tolist(), strict=True))
    mutual = np.array([nearest_of_l.get(j) == i for i, j in zip(ei.tolist(), li.tolist(), strict=True)], dtype=bool)
    if mutual.sum() < 3:  # too few to tell a shift from a change
        return 0.0, 0.0
    dx = shapely.get_x(l[li[mutual]]) - shapely.get_x(e[ei[mutual]])
    dy = shapely.get_y(l[li[mutual]]) - shapely.get_y(e[ei[mutual]])
    return float(np.median(dx)), float(np.median(dy))


def _match(earlier: np.ndarray, later: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches by IoU, highest first: for each earlier building its later index (-1: none), and its IoU."""
    match = np.full(earlier.size, -1, dtype=np.int64)
    ious = np.zeros(earlier.size)
    ei, li, iou = match_by_iou(earlier, later, min_iou)
    match[ei], ious[ei] = li, iou
    return match, ious


def _hosts(geoms: np.ndarray, others: np.ndarray, fraction: float) -> np.ndarray:
    """For each geometry lying at least ``fraction`` under the union of ``others``, the index of the one that
    covers most of it; -1 for the others."""
    out = np.full(geoms.size, -1, dtype=np.int64)
    if geoms.size == 0 or others.size == 0:
        return out
    gi, oi = shapely.STRtree(others).query(geoms, predicate="intersects")
    shared = shapely.area(shapely.intersection(geoms[gi], others[oi]))
    for i in np.unique(gi):
        mine = gi == i
        under = shapely.area(shapely.intersection(geoms[i], shapely.union_all(others[oi[mine]])))
        if under >= fraction * shapely.area(geoms[i]):
            out[i] = oi[mine][np.argmax(shared[mine])]
    return out


def _owned(geoms: np.ndarray, owner: tuple[float, float, float, float] | None) -> np.ndarray:
    """Whether each geometry's representative point lies in ``owner`` (half-open: one chunk owns each point)."""
    if owner is None:
        return np.ones(geoms.size, dtype=bool)
    points = shapely.point_on_surface(geoms)
    x, y = shapely.get_x(points), shapely.get_y(points)
    x0, y0, x1, y1 = owner
    return (x >= x0) & (x < x1) & (y >= y0) & (y < y1)


def compare_buildings(
    earlier: gpd.GeoDataFrame,
    later: gpd.GeoDataFrame,
    valid: shapely.Geometry | None = None,
    owner: tuple[float, float, float, float] | None = None,
    settings: ChangeSettings | None = None,
) -> tuple[gpd.GeoDataFrame, tuple[float, float]]:
    """Compare two scenes' buildings (one chunk, or all of them): the changes and the shift found.

    Args:
        earlier: the earlier scene's buildings (columns ``area_m2`` and ``score``), in a projected CRS.
        later: the later scene's, in the same CRS; both may hold buildings around the chunk (candidates).
        valid: where both scenes have valid pixels; only buildings inside it, shrunk by ``edge_margin_m``,
            are reported (None: everywhere).
        owner: the chunk's (minx, miny, maxx, maxy); only buildings whose representative point it holds are
            reported (None: all).
        settings: thresholds (default :class:`ChangeSettings`).

    Returns:
        One row per change, with ``change`` (new, removed, changed), ``area_m2``, ``earlier_area_m2``,
        ``area_change_m2``, ``score``, ``earlier_score`` and ``iou`` and the building's geometry (the later
        one, the earlier one for removed), in the later frame's CRS; and the (dx, dy) the earlier
        buildings were moved by before matching.
    """
    s = settings or ChangeSettings()
    e_geom, l_geom = np.asarray(earlier.geometry.values, dtype=object), np.asarray(later.geometry.values, dtype=object)
    shift = _estimate_shift(e_geom, l_geom, s.max_shift_m)
    aligned = shapely.transform(e_geom, lambda xy: xy + np.asarray(shift)) if e_geom.size else e_geom
    match, ious = _match(aligned, l_geom, s.min_iou)
    matched_later = np.full(l_geom.size, -1, dtype=np.int64)
    matched_later[match[match >= 0]] = np.flatnonzero(match >= 0)

    inside_valid = valid
    if valid is not None and s.edge_margin_m > 0:
        inside_valid = shapely.buffer(valid, -s.edge_margin_m, join_style="mitre")
    if inside_valid is not None:
        shapely.prepare(inside_valid)

    def eligible(geoms: np.ndarray) -> np.ndarray:
        ok = _owned(geoms, owner)
        if inside_valid is not None and geoms.size:
            ok &= shapely.within(geoms, inside_valid)
        return ok

    e_area, l_area = earlier["area_m2"].to_numpy(float), later["area_m2"].to_numpy(float)
    e_score, l_score = earlier["score"].to_numpy(float), later["score"].to_numpy(float)
    # Unmatched buildings under the other scene's: one building segmented as several, or several as one.
    e_free, l_free = np.flatnonzero(match < 0), np.flatnonzero(matched_later < 0)
    e_host, l_host = np.full(e_geom.size, -1), np.full(l_geom.size, -1)
    e_host[e_free] = _hosts(aligned[e_free], l_geom, s.covered_fraction)
    l_host[l_free] = _hosts(l_geom[l_free], aligned, s.covered_fraction)
    removed = eligible(e_geom) & (match < 0) & (e_host < 0) & (e_area >= s.min_area_m2)
    new = eligible(l_geom) & (matched_later < 0) & (l_host < 0) & (l_area >= s.min_area_m2)
    # A matched pair's areas include the parts split off it: a split is not a smaller building.
    e_group, l_group = e_area.copy(), l_area.copy()
    for j in np.flatnonzero(l_host >= 0):
        if match[l_host[j]] >= 0:
            l_group[match[l_host[j]]] += l_area[j]
    for i in np.flatnonzero(e_host >= 0):
        if matched_later[e_host[i]] >= 0:
            e_group[matched_later[e_host[i]]] += e_area[i]
    li = np.flatnonzero(eligible(l_geom) & (matched_later >= 0))
    ei = matched_later[li]
    delta = l_group[li] - e_group[ei]
    big = (np.abs(delta) >= s.min_change_m2) & (np.abs(delta) >= s.min_change_pct / 100 * e_group[ei])
    li, ei, delta = li[big], ei[big], delta[big]

    def none(n: int) -> np.ndarray:
        return np.full(int(n), np.nan)

    rows = {
        "change": ["new"] * int(new.sum()) + ["removed"] * int(removed.sum()) + ["changed"] * li.size,
        "area_m2": np.r_[l_area[new], none(removed.sum()), l_group[li]],
        "earlier_area_m2": np.r_[none(new.sum()), e_area[removed], e_group[ei]],
        "area_change_m2": np.r_[l_area[new], -e_area[removed], delta],
        "score": np.r_[l_score[new], none(removed.sum()), l_score[li]],
        "earlier_score": np.r_[none(new.sum()), e_score[removed], e_score[ei]],
        "iou": np.r_[none(new.sum() + removed.sum()), ious[ei]],
    }
    geometry = np.r_[l_geom[new], e_geom[removed], l_geom[li]] if e_geom.size + l_geom.size else []
    frame = gpd.GeoDataFrame(rows, geometry=gpd.GeoSeries(list(geometry), crs=later.crs), crs=later.crs)
    return frame, shift


def compare_centerlines(
    earlier: np.ndarray, later: np.ndarray, area: shapely.Geometry, shift: tuple[float, float], buffer_m: float
) -> tuple[float, float]:
    """(added, removed) centerline length inside ``area``: later lines farther than ``buffer_m`` from the
    earlier ones (moved by ``shift``), and the reverse. Lines outside ``area`` only serve as neighbours."""
    e = shapely.union_all(shapely.transform(earlier, lambda xy: xy + np.asarray(shift))) if earlier.size else None
    l = shapely.union_all(later) if later.size else None

    def away(lines: shapely.Geometry | None, others: shapely.Geometry | None) -> float:
        if lines is None:
            return 0.0
        inside = shapely.intersection(lines, area)
        if others is not None:
            inside = shapely.difference(inside, shapely.buffer(others, buffer_m))
        return float(shapely.length(inside))

    return away(l, e), away(e, l)


# --------------------------------------------------------------------------------------------------
# Two published scenes, chunk by chunk


@dataclass(frozen=True)
class Acquisition:
    """A published scene as the comparison sees it."""

    scene_id: str
    time: SceneTime
    footprint: shapely.Geometry  # in the layers' CRS
    mask: Path | None  # None: the mask file is gone; the footprint stands in for the valid area


@dataclass
class PairChanges:
    """The changes of one pair of scenes: what ``sceneseg changes`` prints and a run records."""

    earlier: str
    later: str
    earlier_time: str
    later_time: str
    time_source: dict[str, str]
    valid_area: str
    chunks: int = 0
    new: int = 0
    removed: int = 0
    changed: int = 0
    road_added_m: float = 0.0
    road_removed_m: float = 0.0
    shift_m: list[float] = field(default_factory=lambda: [0.0, 0.0])
    seconds: float = 0.0

    def summary(self) -> dict:
        out = asdict(self)
        out["road_added_m"], out["road_removed_m"] = round(self.road_added_m, 1), round(self.road_removed_m, 1)
        out["shift_m"] = [round(v, 2) for v in self.shift_m]
        out["seconds"] = round(self.seconds, 3)
        return out


def _quote_sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _scenes(gpkg: Path, scene_id: str, other: str | None) -> tuple[dict[str, Acquisition], list[str]]:
    """``scene_id`` and ``other`` as published successfully (else every scene overlapping ``scene_id``), with
    their times, footprints and masks; and the ids of every scene published successfully.

    Only these scenes' files are opened for their times: a GeoPackage of many scenes costs one query.
    """
    rows = read_scenes(gpkg)
    rows = rows[(rows["status"] == "ok") & rows.geometry.notna() & ~rows.geometry.is_empty]
    published = sorted(map(str, rows["scene_id"]))
    rows = rows.set_index("scene_id", drop=False)
    if scene_id not in rows.index:
        return {}, published
    if other is None:
        footprints = np.asarray(rows.geometry.values, dtype=object)
        wanted = shapely.area(shapely.intersection(footprints, rows.geometry[scene_id])) > 0
        rows = rows[wanted | (rows.index == scene_id)]
    else:
        rows = rows[rows.index.isin([scene_id, other])]
    out = {}
    for row in rows.itertuples(index=False):
        mask = gpkg.parent / f"{row.scene_id}_mask.tif"
        out[str(row.scene_id)] = Acquisition(str(row.scene_id), scene_time(row.path, row.processed_at),
                                             row.geometry, mask if mask.exists() else None)
    return out, published


def _layer_crs(gpkg: Path) -> CRS:
    info = pyogrio.read_info(gpkg, layer="buildings")
    if not info["crs"]:
        raise OutputError(f"{gpkg}: the buildings layer has no CRS; publish the scenes again")
    return CRS.from_user_input(info["crs"])


def _ordered(a: Acquisition, b: Acquisition) -> tuple[Acquisition, Acquisition]:
    """(earlier, later): by time, then by id, so that a pair always has the same order."""
    return (a, b) if (a.time.time, a.scene_id) <= (b.time.time, b.scene_id) else (b, a)


def _valid_cells(valid: np.ndarray, transform: Affine, cell: int) -> shapely.Geometry:
    """The valid pixels of a window as polygons, built of ``cell`` x ``cell`` pixel cells that are wholly valid.

    Conservative by less than a cell, which the comparison's edge margin covers, and ``cell``^2 times fewer
    pixels to polygonize (a 2048^2 window: 0.5 s a mask at one pixel, measured). A window valid throughout
    is its rectangle.
    """
    rows, cols = valid.shape
    if valid.all():
        return box(*rasterio.transform.array_bounds(rows, cols, transform))
    if cell > 1:
        padded = np.zeros((-(-rows // cell) * cell, -(-cols // cell) * cell), dtype=bool)
        padded[:rows, :cols] = valid
        valid = padded.reshape(padded.shape[0] // cell, cell, padded.shape[1] // cell, cell).all(axis=(1, 3))
        transform = transform @ Affine.scale(cell)
    shapes = [shapely.geometry.shape(g) for g, v in rasterio.features.shapes(
        valid.astype(np.uint8), mask=valid, transform=transform, connectivity=4) if v]
    return shapely.union_all(shapes) if shapes else shapely.Polygon()


class _Reader:
    """Reads one scene's features and valid pixels around a box of the working CRS."""

    def __init__(self, gpkg: Path, scene: Acquisition, layer_crs: CRS, work_crs: CRS, cell: int = 1) -> None:
        self.gpkg, self.scene, self.layer_crs, self.work_crs, self.cell = gpkg, scene, layer_crs, work_crs, cell
        self.where = f"scene_id = {_quote_sql(scene.scene_id)}"

    def features(self, layer: str, bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
        """The scene's features of ``layer`` that intersect ``bounds`` (working CRS), in the working CRS."""
        bbox = bounds if self.layer_crs == self.work_crs else transform_bounds(self.work_crs, self.layer_crs, *bounds)
        columns = ["score", "area_m2"] if layer == "buildings" else ["length_m"]
        frame = pyogrio.read_dataframe(self.gpkg, layer=layer, bbox=bbox, where=self.where, columns=columns)
        frame = frame[~frame.geometry.is_empty & frame.geometry.notna()]
        frame = frame.set_crs(self.layer_crs, allow_override=True)
        return frame if self.layer_crs == self.work_crs else frame.to_crs(self.work_crs)

    def valid(self, bounds: tuple[float, float, float, float]) -> shapely.Geometry:
        """Where the scene has valid pixels within ``bounds`` (working CRS): its mask's, on cells of
        ``cell`` pixels (:func:`_valid_cells`), else its footprint."""
        footprint = gpd.GeoSeries([self.scene.footprint], crs=self.layer_crs).to_crs(self.work_crs).iloc[0]
        area = shapely.intersection(footprint, box(*bounds))
        if self.scene.mask is None or area.is_empty:
            return area
        with rasterio.open(self.scene.mask) as ds:
            mask_crs = CRS.from_user_input(ds.crs)
            (r0, r1), (c0, c1) = rasterio.windows.from_bounds(
                *transform_bounds(self.work_crs, mask_crs, *area.bounds), transform=ds.transform
            ).toranges()
            r0, c0 = max(math.floor(r0), 0), max(math.floor(c0), 0)  # every pixel the bounds touch
            r1, c1 = min(math.ceil(r1), ds.height), min(math.ceil(c1), ds.width)
            window = rasterio.windows.Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))
            valid = ds.read(1, window=window) != (NODATA if ds.nodata is None else ds.nodata)
            transform = ds.transform @ Affine.translation(c0, r0)
        pixels = _valid_cells(valid, transform, self.cell)
        if not mask_crs.equals(self.work_crs):
            pixels = gpd.GeoSeries([pixels], crs=mask_crs).to_crs(self.work_crs).iloc[0]
        return shapely.intersection(pixels, area)

    def pixel_size(self) -> float | None:
        if self.scene.mask is None:
            return None
        with rasterio.open(self.scene.mask) as ds:
            return float(min(abs(ds.res[0]), abs(ds.res[1])))


def _grid(bounds: tuple[float, float, float, float], size: float) -> Iterator[tuple[float, float, float, float]]:
    x0, y0, x1, y1 = bounds
    for i in range(max(1, math.ceil((y1 - y0) / size))):
        for j in range(max(1, math.ceil((x1 - x0) / size))):
            yield x0 + j * size, y0 + i * size, x0 + (j + 1) * size, y0 + (i + 1) * size


def _grow(bounds: tuple[float, float, float, float], by: float) -> tuple[float, float, float, float]:
    return bounds[0] - by, bounds[1] - by, bounds[2] + by, bounds[3] + by


def _union_bounds(*bounds: tuple[float, ...]) -> tuple[float, float, float, float]:
    b = np.asarray([x for x in bounds if np.all(np.isfinite(x))])
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def compare_scenes(
    gpkg_path: str | os.PathLike[str], earlier: Acquisition, later: Acquisition, settings: ChangeSettings | None = None,
) -> tuple[PairChanges, Iterator[gpd.GeoDataFrame]]:
    """Compare two published scenes chunk by chunk: the pair's summary and a generator of change rows.

    The summary is complete once the generator is exhausted. Rows are in the layers' CRS.
    """
    s = settings or ChangeSettings()
    gpkg = Path(gpkg_path)
    layer_crs = _layer_crs(gpkg)
    # Distances are metres: a geographic layer CRS is compared in the later scene's (projected) mask CRS.
    work_crs = layer_crs
    if not layer_crs.is_projected:
        if later.mask is None:
            raise OutputError(f"{gpkg}: layers in {layer_crs.to_string()} need the mask of {later.scene_id} to "
                              "compare in metres, and it is gone; publish the scene again")
        with rasterio.open(later.mask) as ds:
            work_crs = CRS.from_user_input(ds.crs)
    readers = [_Reader(gpkg, scene, layer_crs, work_crs) for scene in (earlier, later)]
    pixel = min((p for p in (r.pixel_size() for r in readers) if p), default=0.5)
    for reader in readers:  # valid cells no wider than the edge margin
        reader.cell = max(1, int(s.edge_margin_m / pixel))
    both = "masks" if earlier.mask is not None and later.mask is not None else "footprints"
    pair = PairChanges(earlier.scene_id, later.scene_id, earlier.time.iso(), later.time.iso(),
                       {earlier.scene_id: earlier.time.source, later.scene_id: later.time.source}, both)
    footprints = gpd.GeoSeries([earlier.footprint, later.footprint], crs=layer_crs).to_crs(work_crs)
    overlap = shapely.intersection(footprints.iloc[0], footprints.iloc[1])
    chunk = s.chunk_px * pixel
    reach = s.max_shift_m + s.edge_margin_m + s.road_buffer_m + pixel

    def chunks() -> Iterator[gpd.GeoDataFrame]:
        start = datetime.now(UTC)
        shifts = []
        created = start.isoformat(timespec="seconds")
        for owner in ([] if overlap.is_empty or overlap.area == 0 else _grid(overlap.bounds, chunk)):
            if not shapely.intersects(box(*owner), overlap):
                continue
            pair.chunks += 1
            search = _grow(owner, reach)
            frames = [r.features("buildings", search) for r in readers]
            # The chunk's own buildings may reach beyond the search box: their candidates are around them all.
            owned = [f[_owned(np.asarray(f.geometry.values), owner)] for f in frames]
            around = _grow(_union_bounds(search, *(f.total_bounds for f in owned if len(f))), reach)
            if around != search:
                frames = [r.features("buildings", around) for r in readers]
            valid = shapely.intersection(readers[0].valid(around), readers[1].valid(around))
            found, shift = compare_buildings(frames[0], frames[1], valid, owner, s)
            shifts.append(shift)
            lines = [r.features("road_centerlines", around) for r in readers]
            road_area = shapely.intersection(shapely.buffer(valid, -s.edge_margin_m), box(*owner))
            added, removed = compare_centerlines(*(np.asarray(f.geometry.values) for f in lines), road_area, shift,
                                                 s.road_buffer_m)
            pair.road_added_m += added
            pair.road_removed_m += removed
            for kind in ("new", "removed", "changed"):
                setattr(pair, kind, getattr(pair, kind) + int((found["change"] == kind).sum()))
            if len(found):
                found = found.to_crs(layer_crs) if work_crs != layer_crs else found
                yield found.assign(
                    scene_id=later.scene_id, earlier_scene_id=earlier.scene_id, scene_time=later.time.iso(),
                    earlier_time=earlier.time.iso(), time_source=later.time.source,
                    earlier_time_source=earlier.time.source, created_at=created,
                )
        if shifts:
            pair.shift_m = np.median(np.asarray(shifts), axis=0).tolist()
        pair.seconds = (datetime.now(UTC) - start).total_seconds()

    return pair, chunks()


# --------------------------------------------------------------------------------------------------
# The layer in the GeoPackage


def _typed(frame: gpd.GeoDataFrame | None, crs: CRS) -> gpd.GeoDataFrame:
    """``frame`` with the layer's columns in order and types (an empty layer when None)."""
    if frame is None:
        data = {c: pd.Series(dtype="object" if c in _TEXT else "float64") for c in CHANGE_COLUMNS}
        return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return frame[[*CHANGE_COLUMNS, frame.geometry.name]]


def _write(frame: gpd.GeoDataFrame, path: Path, append: bool) -> None:
    pyogrio.write_dataframe(
        frame, path, layer=CHANGES_LAYER, driver="GPKG", geometry_type="Polygon", promote_to_multi=False,
        append=append, dataset_options=None if path.exists() else {"VERSION": GPKG_VERSION},
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _commit(path: Path, stage: Path, pairs: list[tuple[str, str]], timeout: float) -> None:
    """Replace the rows of ``pairs`` (scene ids, either order) by the staged ones, in one transaction."""
    with staged_transaction(path, stage, timeout) as con:
        table = _quote(CHANGES_LAYER)
        geom = con.execute("SELECT column_name FROM main.gpkg_geometry_columns WHERE table_name = ?",
                           (CHANGES_LAYER,)).fetchone()[0]
        con.execute(f"CREATE INDEX IF NOT EXISTS main.idx_building_changes_pair ON {table} (scene_id, earlier_scene_id)")
        for earlier, later in pairs:
            con.execute(f"DELETE FROM main.{table} WHERE (scene_id = ? AND earlier_scene_id = ?) OR "
                        "(scene_id = ? AND earlier_scene_id = ?)", (later, earlier, earlier, later))
        columns = ", ".join(_quote(c) for c in (geom, *CHANGE_COLUMNS))
        con.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM stage.{table} ORDER BY fid")
        grow_extent(con, CHANGES_LAYER)
        write_default_styles(con, [CHANGES_LAYER])


def publish_changes(
    gpkg_path: str | os.PathLike[str], pairs: list[tuple[Acquisition, Acquisition]], settings: ChangeSettings | None = None,
    *, drop: list[tuple[str, str]] = (), timeout: float = BUSY_TIMEOUT_S,
) -> list[PairChanges]:
    """Compare each (earlier, later) pair and replace its rows of ``building_changes``, all in one transaction.

    Rows are staged on disk chunk by chunk (``.<gpkg>.<pid>.<n>.stage.gpkg``, removed afterwards or by the
    next publish), so memory does not grow with the scenes. The rows of the pairs of scene ids in ``drop``
    are removed in the same transaction.
    """
    path = Path(gpkg_path)
    crs = _layer_crs(path)
    stage = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}c.stage.gpkg")
    results = []
    try:
        if CHANGES_LAYER not in {str(n) for n, _ in pyogrio.list_layers(path)}:
            _write(_typed(None, crs), path, append=True)
        _write(_typed(None, crs), stage, append=False)
        held: list[gpd.GeoDataFrame] = []  # rows wait for a batch: a pyogrio write costs 0.1 s however small
        for earlier, later in pairs:
            pair, frames = compare_scenes(path, earlier, later, settings)
            for frame in frames:
                held.append(_typed(frame, crs))
                if sum(map(len, held)) >= _STAGE_BATCH:
                    _write(pd.concat(held, ignore_index=True), stage, append=True)
                    held = []
            results.append(pair)
        if held:
            _write(pd.concat(held, ignore_index=True), stage, append=True)
        _commit(path, stage, [*((e.scene_id, l.scene_id) for e, l in pairs), *drop], timeout)
    except SceneSegError:
        raise
    except Exception as exc:
        raise OutputError(f"comparing scenes in GeoPackage {path} failed ({exc}); its {CHANGES_LAYER} layer is "
                          "unchanged: check free space and permissions, then run `sceneseg changes` again") from exc
    finally:
        for leftover in stage.parent.glob(glob.escape(stage.name) + "*"):
            leftover.unlink(missing_ok=True)
    return results


def _neighbours(scene: Acquisition, others: list[Acquisition]) -> list[tuple[Acquisition, Acquisition]]:
    """The pairs of ``scene`` with the overlapping scene just before it and the one just after it in time."""
    overlapping = [o for o in others if o.scene_id != scene.scene_id
                   and shapely.area(shapely.intersection(o.footprint, scene.footprint)) > 0]
    before = [o for o in overlapping if _ordered(o, scene)[0] is o]
    after = [o for o in overlapping if _ordered(o, scene)[0] is scene]
    key = lambda o: (o.time.time, o.scene_id)  # noqa: E731
    pairs = [(max(before, key=key), scene)] if before else []
    return pairs + ([(scene, min(after, key=key))] if after else [])


def update_changes(
    gpkg_path: str | os.PathLike[str], scene_id: str, other: str | None = None,
    settings: ChangeSettings | None = None,
) -> list[dict]:
    """Recompute the changes of a published scene: against ``other``, else against the overlapping scenes
    just before and just after it in time (and drop the rows of those two as a pair, which it now sits
    between). Returns each pair's summary (empty: no overlapping scene).

    Raises:
        OutputError: no GeoPackage, or a scene id that is not published (successfully) in it.
    """
    path = Path(gpkg_path)
    if not path.exists():
        raise OutputError(f"{path}: no GeoPackage here; segment the scenes into this directory first")
    scenes, published = _scenes(path, scene_id, other)
    missing = [s for s in (scene_id, other) if s is not None and s not in scenes]
    if missing:
        raise OutputError(f"{path}: no successfully published scene {missing[0]!r} (published: "
                          f"{', '.join(published) or 'none'}); pass a scene id of its scenes layer")
    if other is not None:
        if other == scene_id:
            raise ConfigError(f"compare two different scenes, got {scene_id!r} twice")
        pairs = [_ordered(scenes[scene_id], scenes[other])]
    else:
        pairs = _neighbours(scenes[scene_id], list(scenes.values()))
    if not pairs:
        return []
    # A scene published between two others: they are no longer neighbours, and their pair's rows go.
    drop = [(pairs[0][0].scene_id, pairs[1][1].scene_id)] if len(pairs) == 2 else []
    return [pair.summary() for pair in publish_changes(path, pairs, settings, drop=drop)]


def totals(pairs: list[dict]) -> dict[str, float]:
    """The changes of several pairs added up (what a run's summary shows)."""
    keys = ("new", "removed", "changed", "road_added_m", "road_removed_m")
    return {k: round(sum(p[k] for p in pairs), 1) if k.endswith("_m") else sum(p[k] for p in pairs) for k in keys}


def change_report(gpkg_path: str | os.PathLike[str], scene_id: str, settings: ChangeSettings | None = None) -> dict:
    """A just-published scene's changes as its run records them: the totals, each pair, and ``error``.

    A comparison that fails does not fail the scene, which is published already: ``error`` says why (and
    the ``building_changes`` layer is as it was); ``sceneseg changes`` runs it again.
    """
    try:
        pairs, error = update_changes(gpkg_path, scene_id, settings=settings), None
    except Exception as exc:  # the scene stays published; the report says what went wrong
        pairs, error = [], str(exc) if isinstance(exc, SceneSegError) else f"{type(exc).__name__}: {exc}"
        _log.warning("building changes of %s not computed: %s", scene_id, error)
    return {**totals(pairs), "pairs": pairs, "error": error}
