"""Vectorize a scene's class mask: polygons per chunk, stitched exactly, cleaned, plus road centerlines.

The mask is read chunk by chunk (each with a halo of context for the skeleton). Each chunk's core is
polygonized in *pixel* space, where every vertex is an integer pixel corner: pieces that touch a chunk
edge are then unioned per class, which is exact on such coordinates, so a building crossing any number of
chunks comes out as the polygon the whole image would give, whatever the chunk size. Each piece carries
its confidence sum and pixel count, so a stitched polygon's score is the mean confidence over its pixels.
Only then are polygons moved to the ground frame for clean-up and to the CRS for output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from pipeline.centerlines import merge_centerlines, skeleton_lines
from pipeline.errors import ConfigError, SceneReadError
from pipeline.grid import Region, Shape2d
from pipeline.polygons import GroundFrame, apply_affine, clean_buildings, ground_areas_m2, ground_lengths_m

__all__ = [
    "VectorSettings",
    "ChunkPolygons",
    "StitchedPolygons",
    "VectorLayers",
    "chunk_regions",
    "polygonize_chunk",
    "stitch",
    "vectorize_scene",
]

ReadChunk = Callable[[Region], tuple[np.ndarray, np.ndarray]]
DEFAULT_CLASSES: Mapping[int, str] = {1: "building", 2: "road"}
_CROSS = ndimage.generate_binary_structure(2, 1)  # 4-connectivity, as rasterio.features.shapes uses


@dataclass(frozen=True)
class VectorSettings:
    """Options of the vector stage. Areas in m^2 and lengths in m on the ground, whatever the CRS."""

    min_building_area_m2: float = 4.0
    building_hole_area_m2: float = 2.0
    simplify_tolerance_px: float = 1.0
    regularize: bool = True
    min_road_area_m2: float = 20.0
    centerline_prune_m: float = 6.0
    chunk_size: int = 2048
    halo_px: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "regularize" and value < 0:
                raise ConfigError(f"vector setting {f.name} must not be negative, got {value}")
        if self.chunk_size < 16:
            raise ConfigError(f"vector setting chunk_size must be at least 16 pixels, got {self.chunk_size}")


@dataclass(frozen=True)
class ChunkPolygons:
    """The polygons of one chunk's core, in scene pixel coordinates (x = col, y = row, integer corners).

    Attributes:
        region: the chunk core that was polygonized.
        geometries: one Polygon per 4-connected component of a class (holes included).
        class_ids: the class of each polygon.
        score_sums: the sum of the confidence (0..255) over each polygon's pixels.
        pixel_counts: the number of pixels of each polygon.
        on_edge: whether the polygon touches the chunk's border, so may continue in a neighbour.
    """

    region: Region
    geometries: np.ndarray
    class_ids: np.ndarray
    score_sums: np.ndarray
    pixel_counts: np.ndarray
    on_edge: np.ndarray


@dataclass(frozen=True)
class StitchedPolygons:
    """Polygons of a whole scene in pixel coordinates, one per connected component, normalized.

    ``scores`` is the mean confidence over the polygon's pixels, scaled to 0..1.
    """

    geometries: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    pixel_counts: np.ndarray

    def of_class(self, class_id: int) -> StitchedPolygons:
        sel = self.class_ids == class_id
        return StitchedPolygons(
            self.geometries[sel], self.class_ids[sel], self.scores[sel], self.pixel_counts[sel]
        )


@dataclass(frozen=True)
class VectorLayers:
    """The vector layers of one scene, in the scene CRS.

    ``buildings`` and ``roads`` have columns class, score, area_m2; ``road_centerlines`` class, score,
    length_m. Scene-level columns are added by :meth:`with_attributes`.
    """

    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    road_centerlines: gpd.GeoDataFrame

    LAYERS = ("buildings", "roads", "road_centerlines")

    def items(self) -> Iterator[tuple[str, gpd.GeoDataFrame]]:
        for name in self.LAYERS:
            yield name, getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.items()}

    def with_attributes(self, *, scene_id: str, model: str, run_id: str, created_at: str) -> VectorLayers:
        """A copy whose layers carry the scene id, model (checkpoint id), run id and creation time."""
        extra = {"scene_id": scene_id, "model": model, "run_id": run_id, "created_at": created_at}
        return replace(self, **{name: frame.assign(**extra) for name, frame in self.items()})


def chunk_regions(shape: Shape2d, chunk_size: int) -> Iterator[Region]:
    """The scene cut into chunks of ``chunk_size`` squared (smaller at the far edges), in raster order."""
    for row in range(0, shape.rows, chunk_size):
        for col in range(0, shape.cols, chunk_size):
            row_stop, col_stop = min(row + chunk_size, shape.rows), min(col + chunk_size, shape.cols)
            yield Region.from_bounds(row, col, row_stop, col_stop)


def polygonize_chunk(
    mask: np.ndarray, confidence: np.ndarray, region: Region, class_ids: Iterable[int]
) -> ChunkPolygons:
    """Polygonize the given classes of one chunk core in scene pixel coordinates.

    Components are labelled first (4-connected, per class), so that each polygon's confidence sum and
    pixel count come from one bincount, then polygonized by value with ``rasterio.features.shapes``.
    """
    labels = np.zeros(mask.shape, dtype=np.int32)
    label_class = [0]
    for class_id in class_ids:
        lab, n = ndimage.label(mask == class_id, structure=_CROSS)
        if n:
            hit = lab > 0
            labels[hit] = lab[hit] + (len(label_class) - 1)
            label_class.extend([class_id] * n)
    n_labels = len(label_class) - 1
    if n_labels == 0:
        empty = np.zeros(0)
        return ChunkPolygons(
            region,
            geometries=empty.astype(object),
            class_ids=empty.astype(np.uint8),
            score_sums=empty,
            pixel_counts=empty.astype(np.int64),
            on_edge=empty.astype(bool),
        )

    origin = Affine.translation(region.col, region.row)
    geoms = np.empty(n_labels, dtype=object)
    for geom, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=origin):
        geoms[int(value) - 1] = shapely.geometry.shape(geom)
    flat = labels.ravel()
    score_sums = np.bincount(flat, weights=confidence.ravel().astype(np.float64), minlength=n_labels + 1)[1:]
    pixel_counts = np.bincount(flat, minlength=n_labels + 1)[1:]
    minx, miny, maxx, maxy = shapely.bounds(geoms).T
    on_edge = (minx <= region.col) | (miny <= region.row)
    on_edge |= (maxx >= region.col_stop) | (maxy >= region.row_stop)
    return ChunkPolygons(
        region, geoms, np.asarray(label_class[1:], dtype=np.uint8), score_sums, pixel_counts, on_edge
    )


def stitch(chunks: Iterable[ChunkPolygons]) -> StitchedPolygons:
    """Join the pieces of all chunks into one polygon per component of the whole scene.

    Pieces that touch a chunk edge are unioned per class; on integer pixel corners this is exact, and
    pieces meeting only at a corner stay apart, as 4-connectivity wants. Collinear vertices left on the
    seams are removed and every polygon normalized, so the result does not depend on the chunking.
    """
    parts = list(chunks)
    if not parts:
        empty = np.zeros(0)
        return StitchedPolygons(empty.astype(object), empty.astype(np.uint8), empty, empty.astype(np.int64))
    geoms = np.concatenate([c.geometries for c in parts])
    class_ids = np.concatenate([c.class_ids for c in parts])
    sums = np.concatenate([c.score_sums for c in parts])
    counts = np.concatenate([c.pixel_counts for c in parts])
    on_edge = np.concatenate([c.on_edge for c in parts])

    inner = ~on_edge
    out_geoms, out_cls = [geoms[inner]], [class_ids[inner]]
    out_sums, out_counts = [sums[inner]], [counts[inner]]
    for class_id in np.unique(class_ids[on_edge]):
        sel = np.flatnonzero(on_edge & (class_ids == class_id))
        merged = shapely.get_parts(shapely.union_all(geoms[sel]))
        # Each piece lies inside exactly one merged polygon: find it from a point inside the piece.
        inside = shapely.point_on_surface(geoms[sel])
        piece, target = shapely.STRtree(merged).query(inside, predicate="within")
        if len(piece) != len(sel):
            raise AssertionError(f"stitching matched {len(piece)} of {len(sel)} pieces of class {class_id}")
        out_geoms.append(merged)
        out_cls.append(np.full(len(merged), class_id, dtype=np.uint8))
        out_sums.append(np.bincount(target, weights=sums[sel][piece], minlength=len(merged)))
        merged_counts = np.bincount(target, weights=counts[sel][piece], minlength=len(merged))
        out_counts.append(merged_counts.astype(np.int64))

    geoms = shapely.normalize(shapely.simplify(np.concatenate(out_geoms), 0.0))
    class_ids = np.concatenate(out_cls)
    sums = np.concatenate(out_sums)
    counts = np.concatenate(out_counts)
    bounds = shapely.bounds(geoms)
    order = np.lexsort((counts, bounds[:, 3], bounds[:, 2], bounds[:, 0], bounds[:, 1], class_ids))
    scores = sums[order] / counts[order] / 255.0
    return StitchedPolygons(geoms[order], class_ids[order], scores, counts[order])


def _frame(
    class_name: str, geoms: np.ndarray, scores: np.ndarray, measure: str, values: np.ndarray, crs: CRS
) -> gpd.GeoDataFrame:
    data = pd.DataFrame(
        {
            "class": pd.Series([class_name] * len(geoms), dtype=object),
            "score": scores.astype(np.float64),
            measure: values,
        }
    )
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def _read(read_chunk: ReadChunk, window: Region) -> tuple[np.ndarray, np.ndarray]:
    mask, confidence = read_chunk(window)
    expected = (window.rows, window.cols)
    if mask.shape != expected or confidence.shape != expected:
        raise SceneReadError(
            f"read_chunk returned mask {mask.shape} and confidence {confidence.shape} for window {window}, "
            f"expected {expected}: the mask reader must return exactly the requested window"
        )
    return mask, confidence


def vectorize_scene(
    read_chunk: ReadChunk,
    shape: Shape2d,
    transform: Affine,
    crs: CRS | str | int,
    *,
    classes: Mapping[int, str] = DEFAULT_CLASSES,
    settings: VectorSettings = VectorSettings(),
) -> VectorLayers:
    """Polygonize, stitch and clean a scene's class mask; build road centerlines.

    Args:
        read_chunk: returns (mask, confidence), both uint8 (rows, cols), for a window clipped to the scene.
            Mask values: class ids, 0 background, 255 nodata; confidence: the class probability * 255.
        shape: the scene size.
        transform: the scene's affine (pixel corner to CRS).
        crs: the scene CRS; output layers are in it.
        classes: class id to name; the names "building" and "road" select the clean-up.
        settings: thresholds, chunk size and halo.

    Returns:
        The buildings, roads and road_centerlines layers in the scene CRS.
    """
    crs = CRS.from_user_input(crs)
    names = {name: cid for cid, name in classes.items()}
    if not {"building", "road"} & names.keys():
        raise ConfigError(f"classes must name a 'building' or a 'road' class, got {dict(classes)}")
    # A model without one of the classes (a building-only model, say) gets that layer empty.
    building_id, road_id = names.get("building", -1), names.get("road", -1)
    frame = GroundFrame.for_scene(transform, crs, shape)
    px_area = frame.pixel_area_m2
    min_road_px = int(np.ceil(settings.min_road_area_m2 / px_area))

    chunks, pieces = [], []
    scene = Region.of_shape(shape)
    h = settings.halo_px
    for core in chunk_regions(shape, settings.chunk_size):
        halo = Region.from_bounds(core.row - h, core.col - h, core.row_stop + h, core.col_stop + h)
        window = halo.intersection(scene)
        mask, confidence = _read(read_chunk, window)
        rows, cols = core.slices_in(window)
        chunks.append(polygonize_chunk(mask[rows, cols], confidence[rows, cols], core, classes.keys()))
        if road_id >= 0:
            pieces.append(skeleton_lines(mask == road_id, window, core, shape, min_component_px=min_road_px))
    stitched = stitch(chunks)

    tolerance_m = settings.simplify_tolerance_px * frame.pixel_size_m
    b = stitched.of_class(building_id)
    b_geoms, b_index = clean_buildings(
        apply_affine(b.geometries, frame.to_ground),
        pixel_size=frame.pixel_size_m,
        min_area=settings.min_building_area_m2,
        hole_area=settings.building_hole_area_m2,
        simplify_tolerance=tolerance_m,
        regularize=settings.regularize,
    )
    b_geoms = apply_affine(b_geoms, frame.to_crs)
    buildings = _frame("building", b_geoms, b.scores[b_index], "area_m2", ground_areas_m2(b_geoms, crs), crs)

    r = stitched.of_class(road_id)
    keep = r.pixel_counts >= min_road_px
    r_ground = apply_affine(r.geometries[keep], frame.to_ground)
    if tolerance_m > 0 and len(r_ground):
        r_ground = shapely.simplify(r_ground, tolerance_m, preserve_topology=True)
    r_geoms = shapely.normalize(apply_affine(r_ground, frame.to_crs))
    roads = _frame("road", r_geoms, r.scores[keep], "area_m2", ground_areas_m2(r_geoms, crs), crs)

    lines_px = merge_centerlines(
        np.concatenate(pieces) if pieces else np.zeros(0, dtype=object),
        prune_length=settings.centerline_prune_m / frame.pixel_size_m,
    )
    line_scores = np.zeros(len(lines_px))
    if len(lines_px) and len(r.geometries):
        # A centerline takes the score of the road polygon it runs in.
        mid = shapely.line_interpolate_point(lines_px, 0.5, normalized=True)
        line_idx, poly_idx = shapely.STRtree(r.geometries).query_nearest(mid, all_matches=False)
        line_scores[line_idx] = r.scores[poly_idx]
    l_ground = apply_affine(lines_px, frame.to_ground)
    if tolerance_m > 0 and len(l_ground):
        l_ground = shapely.simplify(l_ground, tolerance_m, preserve_topology=True)
    l_geoms = apply_affine(l_ground, frame.to_crs)
    centerlines = _frame("road", l_geoms, line_scores, "length_m", ground_lengths_m(l_geoms, crs), crs)
    return VectorLayers(buildings, roads, centerlines)
