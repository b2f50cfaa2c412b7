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
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
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
    "ChunkVectors",
    "SceneVectorizer",
    "ChunkStream",
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
            # Classes are disjoint: shift this class's labels past the previous ones and add them in.
            np.add(lab, len(label_class) - 1, out=lab, where=lab > 0)
            labels += lab
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

    geoms = _label_polygons(labels, n_labels, Affine.translation(region.col, region.row))
    flat = labels.ravel()
    score_sums = np.bincount(flat, weights=confidence.ravel().astype(np.float64), minlength=n_labels + 1)[1:]
    pixel_counts = np.bincount(flat, minlength=n_labels + 1)[1:]
    minx, miny, maxx, maxy = shapely.bounds(geoms).T
    on_edge = (minx <= region.col) | (miny <= region.row)
    on_edge |= (maxx >= region.col_stop) | (maxy >= region.row_stop)
    return ChunkPolygons(
        region, geoms, np.asarray(label_class[1:], dtype=np.uint8), score_sums, pixel_counts, on_edge
    )


def _label_polygons(labels: np.ndarray, n_labels: int, transform: Affine) -> np.ndarray:
    """The polygon of each label 1..n (4-connected components, so one polygon each), in label order.

    ``rasterio.features.shapes`` traces them; the GeoJSON rings it yields are turned into shapely
    polygons in three vectorized calls, because ``shapely.geometry.shape`` per polygon cost as much as the
    tracing itself (1.45 s against 1.58 s for the 16 chunks of an 8192^2 scene).
    """
    features = sorted(
        ((int(value), geom["coordinates"]) for geom, value in
         rasterio.features.shapes(labels, mask=labels > 0, connectivity=4, transform=transform)),
        key=lambda feature: feature[0],
    )
    if [value for value, _ in features] != list(range(1, n_labels + 1)):
        raise AssertionError(f"polygonizing {n_labels} components gave {len(features)} polygons")
    rings = [np.asarray(ring, dtype=np.float64) for _, coordinates in features for ring in coordinates]
    ring_polygon = np.repeat(np.arange(n_labels), [len(coordinates) for _, coordinates in features])
    ring_index = np.repeat(np.arange(len(rings)), [len(ring) for ring in rings])
    linear_rings = shapely.linearrings(np.concatenate(rings), indices=ring_index)
    return shapely.polygons(linear_rings, indices=ring_polygon)


def _sort_keys(geoms: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Keys that order polygons the same way whichever chunk they were finished in."""
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    return np.column_stack([bounds[:, 1], bounds[:, 0], bounds[:, 2], bounds[:, 3], counts]).astype(np.float64)


def _key_order(keys: np.ndarray) -> np.ndarray:
    return np.lexsort(keys.T[::-1]) if len(keys) else np.zeros(0, dtype=np.int64)


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
    order = _key_order(np.column_stack([class_ids, _sort_keys(geoms, counts)]))
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


@dataclass(frozen=True)
class ChunkVectors:
    """What one chunk contributes to the scene's layers.

    Attributes:
        pieces: polygons that may continue in a neighbour (on the chunk edge) and every non-building
            polygon, in pixel coordinates, still to be stitched.
        buildings: buildings wholly inside the chunk, already cleaned, in the scene CRS.
        building_scores: their mean confidence, 0..1.
        building_keys: their pixel-space sort keys ``(n, 5)``: min row, min col, max col, max row, pixels.
        lines: road centerline pieces in pixel coordinates.
    """

    pieces: ChunkPolygons
    buildings: np.ndarray
    building_scores: np.ndarray
    building_keys: np.ndarray
    lines: np.ndarray


class SceneVectorizer:
    """The vector stage of one scene, cut into chunk work that may run as soon as a chunk's pixels are final.

    ``chunk`` does everything that needs only one chunk's window (polygonizing, skeletonizing, cleaning the
    buildings that lie wholly inside the chunk); ``finish`` stitches what crosses chunk edges, cleans it and
    builds the layers. Chunks may be handed in any order: the layers do not depend on it, nor on the chunk
    size (see :func:`stitch` and ``pipeline.centerlines``).
    """

    def __init__(
        self,
        shape: Shape2d,
        transform: Affine,
        crs: CRS | str | int,
        *,
        classes: Mapping[int, str] = DEFAULT_CLASSES,
        settings: VectorSettings = VectorSettings(),
    ):
        self.shape = shape
        self.crs = CRS.from_user_input(crs)
        self.classes = dict(classes)
        self.settings = settings
        names = {name: cid for cid, name in classes.items()}
        if not {"building", "road"} & names.keys():
            raise ConfigError(f"classes must name a 'building' or a 'road' class, got {dict(classes)}")
        # A model without one of the classes (a building-only model, say) gets that layer empty.
        self.building_id, self.road_id = names.get("building", -1), names.get("road", -1)
        self.frame = GroundFrame.for_scene(transform, self.crs, shape)
        self.min_road_px = int(np.ceil(settings.min_road_area_m2 / self.frame.pixel_area_m2))
        self.tolerance_m = settings.simplify_tolerance_px * self.frame.pixel_size_m

    def windows(self) -> list[tuple[Region, Region]]:
        """Every chunk as (core, window): the pixels it owns, and those plus the halo it reads."""
        scene, h = Region.of_shape(self.shape), self.settings.halo_px
        out = []
        for core in chunk_regions(self.shape, self.settings.chunk_size):
            halo = Region.from_bounds(core.row - h, core.col - h, core.row_stop + h, core.col_stop + h)
            out.append((core, halo.intersection(scene)))
        return out

    def chunk(self, core: Region, window: Region, mask: np.ndarray, confidence: np.ndarray) -> ChunkVectors:
        """The contribution of the chunk ``core`` from its ``window``'s mask and confidence."""
        expected = (window.rows, window.cols)
        if mask.shape != expected or confidence.shape != expected:
            raise SceneReadError(
                f"read_chunk returned mask {mask.shape} and confidence {confidence.shape} for window {window}, "
                f"expected {expected}: the mask reader must return exactly the requested window"
            )
        rows, cols = core.slices_in(window)
        polygons = polygonize_chunk(mask[rows, cols], confidence[rows, cols], core, self.classes.keys())
        inner = ~polygons.on_edge & (polygons.class_ids == self.building_id)
        geoms = shapely.normalize(shapely.simplify(polygons.geometries[inner], 0.0))
        counts = polygons.pixel_counts[inner]
        scores = polygons.score_sums[inner] / np.maximum(counts, 1) / 255.0
        buildings, scores, keep = self._clean_buildings(geoms, scores)
        lines = np.zeros(0, dtype=object)
        if self.road_id >= 0:
            lines = skeleton_lines(mask == self.road_id, window, core, self.shape, min_component_px=self.min_road_px)
        rest = ~inner
        pieces = replace(
            polygons, geometries=polygons.geometries[rest], class_ids=polygons.class_ids[rest],
            score_sums=polygons.score_sums[rest], pixel_counts=polygons.pixel_counts[rest],
            on_edge=polygons.on_edge[rest],
        )
        return ChunkVectors(pieces, buildings, scores, _sort_keys(geoms[keep], counts[keep]), lines)

    def _clean_buildings(
        self, geoms: np.ndarray, scores: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clean footprints given in pixel coordinates; return them in the CRS, their scores and source indices."""
        s = self.settings
        cleaned, index = clean_buildings(
            apply_affine(geoms, self.frame.to_ground),
            pixel_size=self.frame.pixel_size_m,
            min_area=s.min_building_area_m2,
            hole_area=s.building_hole_area_m2,
            simplify_tolerance=self.tolerance_m,
            regularize=s.regularize,
        )
        return apply_affine(cleaned, self.frame.to_crs), scores[index], index

    def finish(self, chunks: Iterable[ChunkVectors]) -> VectorLayers:
        """Stitch, clean and assemble the layers from every chunk's contribution."""
        chunks = list(chunks)
        crs = self.crs
        stitched = stitch(c.pieces for c in chunks)

        b = stitched.of_class(self.building_id)
        b_geoms, b_scores, keep = self._clean_buildings(b.geometries, b.scores)
        b_geoms = np.concatenate([b_geoms, *(c.buildings for c in chunks)])
        b_scores = np.concatenate([b_scores, *(c.building_scores for c in chunks)])
        keys = np.concatenate(
            [_sort_keys(b.geometries[keep], b.pixel_counts[keep]), *(c.building_keys for c in chunks)]
        )
        order = _key_order(keys)
        b_geoms, b_scores = b_geoms[order], b_scores[order]
        buildings = _frame("building", b_geoms, b_scores, "area_m2", ground_areas_m2(b_geoms, crs), crs)

        tolerance_m, frame = self.tolerance_m, self.frame
        r = stitched.of_class(self.road_id)
        keep = r.pixel_counts >= self.min_road_px
        r_ground = apply_affine(r.geometries[keep], frame.to_ground)
        if tolerance_m > 0 and len(r_ground):
            r_ground = shapely.simplify(r_ground, tolerance_m, preserve_topology=True)
        r_geoms = shapely.normalize(apply_affine(r_ground, frame.to_crs))
        roads = _frame("road", r_geoms, r.scores[keep], "area_m2", ground_areas_m2(r_geoms, crs), crs)

        pieces = [c.lines for c in chunks if len(c.lines)]
        lines_px = merge_centerlines(
            np.concatenate(pieces) if pieces else np.zeros(0, dtype=object),
            prune_length=self.settings.centerline_prune_m / frame.pixel_size_m,
        )
        line_scores = np.zeros(len(lines_px))
        if len(lines_px) and len(r.geometries):
            # A centerline takes the score of the road polygon it runs in.
            mid = shapely.line_interpolate_point(lines_px, 0.5, normalized=True)
            # Point in polygon first, each road polygon prepared once as the query geometry: a nearest-
            # distance search over road polygons of many thousand vertices cost 1.4 s for the 1,161
            # lines of an 8192^2 scene. Only midpoints outside every polygon need the nearest.
            poly_idx, line_idx = shapely.STRtree(mid).query(r.geometries, predicate="intersects")
            line_scores[line_idx] = r.scores[poly_idx]
            rest = np.setdiff1d(np.arange(len(lines_px)), line_idx)
            if len(rest):
                near_idx, near_poly = shapely.STRtree(r.geometries).query_nearest(mid[rest], all_matches=False)
                line_scores[rest[near_idx]] = r.scores[near_poly]
        l_ground = apply_affine(lines_px, frame.to_ground)
        if tolerance_m > 0 and len(l_ground):
            l_ground = shapely.simplify(l_ground, tolerance_m, preserve_topology=True)
        l_geoms = apply_affine(l_ground, frame.to_crs)
        centerlines = _frame("road", l_geoms, line_scores, "length_m", ground_lengths_m(l_geoms, crs), crs)
        return VectorLayers(buildings, roads, centerlines)


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
    vectorizer = SceneVectorizer(shape, transform, crs, classes=classes, settings=settings)
    return vectorizer.finish(
        vectorizer.chunk(core, window, *read_chunk(window)) for core, window in vectorizer.windows()
    )


def _chunk_task(vectorizer: SceneVectorizer, core: Region, window: Region, read: ReadChunk) -> ChunkVectors:
    """One chunk, as it runs in the vectorizing process (a module-level function, so it pickles)."""
    return vectorizer.chunk(core, window, *read(window))


class ChunkStream:
    """Runs a scene's chunk vectorization in the background while the mask is still being written.

    The inference loop reports every region it writes (:meth:`final`); a chunk is handed to the
    background as soon as every pixel of its window (core plus halo) is final, so polygonizing overlaps
    inference and only the stitching and the last row of chunks are left for after it. Regions must
    not overlap (a scene's output units partition it); a region reported twice (a retried stage, a
    resumed run) counts once.

    The background is one process by default (``processes=True``, for scenes of more than one chunk;
    ``read`` must then pickle, as ``WorkingStore.reader()`` does): polygon clean-up is Python code that holds the GIL, and in a thread
    it slowed the forward passes beside it by 30 % more than its share of the CPU (1.44 against 1.10 s
    per batch on 2 cores). Not the Dask workers: they may be on other machines, and the chunks read the
    working store of this one.
    """

    def __init__(self, vectorizer: SceneVectorizer, *, processes: bool = True):
        self.vectorizer = vectorizer
        self.chunks = vectorizer.windows()
        # A single chunk is only ready when the whole mask is: nothing to overlap, no process to start.
        self.processes = processes and len(self.chunks) > 1
        self._remaining = [window.size for _, window in self.chunks]
        self._seen: set[Region] = set()
        self._futures: dict[int, Future[ChunkVectors]] = {}
        self._read: ReadChunk | None = None
        self._pool: Executor | None = None
        self._step = vectorizer.settings.chunk_size
        self._cols = -(-vectorizer.shape.cols // self._step)
        self._halo = vectorizer.settings.halo_px
        #: Chunks started before the last block's results came in (set by the inference loop): the
        #: vector work that ran alongside inference.
        self.started_before_last_block = 0

    def start(self, read: ReadChunk) -> None:
        """Begin taking regions; chunks are read with ``read`` (the working store's reader)."""
        self._read = read
        if self._pool is None:
            if self.processes:
                # spawn, not fork: this process runs Dask's and torch's threads.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            else:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sceneseg-vectorize")

    def _run(self, i: int) -> ChunkVectors:
        core, window = self.chunks[i]
        return _chunk_task(self.vectorizer, core, window, self._read)

    def final(self, region: Region) -> None:
        """``region`` of the mask is final: start every chunk whose window it completes."""
        if self._read is None:
            raise RuntimeError("ChunkStream.start() must come before final()")
        if region in self._seen or region.is_empty:
            return
        self._seen.add(region)
        # The chunk rows and columns whose windows (core +- halo) can reach the region.
        step, h, n_rows = self._step, self._halo, len(self.chunks) // self._cols
        rows = range(max(0, (region.row - h) // step), min(n_rows, (region.row_stop + h - 1) // step + 1))
        cols = range(max(0, (region.col - h) // step), min(self._cols, (region.col_stop + h - 1) // step + 1))
        for r in rows:
            for c in cols:
                i = r * self._cols + c
                overlap = self.chunks[i][1].intersection(region)
                if overlap.is_empty:
                    continue
                self._remaining[i] -= overlap.size
                if self._remaining[i] == 0:
                    core, window = self.chunks[i]
                    self._futures[i] = self._pool.submit(_chunk_task, self.vectorizer, core, window, self._read)

    @property
    def started_chunks(self) -> int:
        """Chunks handed to the thread so far."""
        return len(self._futures)

    def results(self) -> list[ChunkVectors]:
        """Every chunk's contribution in raster order; chunks never completed are read and run now."""
        if self._read is None:
            raise RuntimeError("ChunkStream.start() must come before results()")
        try:
            return [
                self._futures[i].result() if i in self._futures else self._run(i) for i in range(len(self.chunks))
            ]
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background worker; chunks not yet started are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
