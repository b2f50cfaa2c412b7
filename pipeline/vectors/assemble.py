"""The vector stage of one scene: chunk work and the finish that turns it into the scene's layers.

The mask is read chunk by chunk, each with a halo of context for the skeleton. A chunk polygonizes its
core (``pipeline.vectors.polygonize``), cleans the buildings wholly inside it and skeletonizes its roads;
the finish stitches what crosses chunk edges, cleans it and builds the layers
(``pipeline.vectors.layers``). Polygons are moved from pixel space to the ground frame for clean-up and
to the CRS for output only after stitching.

Roads come out in pieces: polygons and centerlines are split at a fixed grid of *road cells*
(``VectorSettings.road_cell_px``, a :class:`~pipeline.vectors.polygonize.CellGrid`), and each cell's
pieces are finished on their own (stitched, simplified, centerlines merged and pruned, scored), so no step
handles a road network that grows with the scene. A chunk finishes the cells that lie wholly in its core
(every cell, when the chunk size is a multiple of the cell size, as the defaults are); the finish does the
cells that chunks share. The pieces are the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import CRS

from pipeline.config import DEFAULTS
from pipeline.errors import ConfigError, SceneReadError
from pipeline.grid import GeoGrid, Region
from pipeline.ground import GroundFrame, apply_affine, ground_areas_m2, ground_lengths_m
from pipeline.vectors.centerlines import drop_road_specks, merge_centerlines, skeleton_lines, split_lines
from pipeline.vectors.instances import BOUNDARY, CONTACT, USER_CLASSES, separate_buildings
from pipeline.vectors.layers import ROAD_CELL_COLUMN, Layer, VectorLayers
from pipeline.vectors.polygonize import (
    CellGrid,
    ChunkPolygons,
    StitchedPolygons,
    chunk_regions,
    key_order,
    polygonize_chunk,
    sort_keys,
    stitch,
)
from pipeline.vectors.polygons import clean_buildings

if TYPE_CHECKING:
    import geopandas as gpd

    from pipeline.vectors.spool import BuildingSpool

__all__ = ["VectorSettings", "RoadFeatures", "ChunkVectors", "SceneVectorizer", "ReadChunk", "vectorize_scene"]

#: Returns (mask, confidence), both uint8 (rows, cols), for a window clipped to the scene.
ReadChunk = Callable[[Region], tuple[np.ndarray, np.ndarray]]
DEFAULT_CLASSES: Mapping[int, str] = {1: "building", 2: "road"}


@dataclass(frozen=True)
class VectorSettings:
    """Options of the vector stage. Areas in m^2 and lengths in m on the ground, whatever the CRS."""

    min_building_area_m2: float = 4.0
    building_hole_area_m2: float = 2.0
    simplify_tolerance_px: float = 1.0
    regularize: bool = True
    min_road_area_m2: float = 20.0
    centerline_prune_m: float = 6.0
    chunk_size: int = DEFAULTS["vector_chunk_size"]
    #: Side of the road cells (pixels) that road polygons and centerlines are split at. The default chunk
    #: size is a multiple, so each chunk finishes its cells' roads itself.
    road_cell_px: int = DEFAULTS["vector_chunk_size"]
    halo_px: int = 64
    #: Building separation (models with instance classes, see ``pipeline.vectors.instances``): the least
    #: interior probability of a seed pixel, the smallest seed, and how far a seed grows over the footprint.
    seed_confidence: float = 0.7
    min_seed_m2: float = 1.0
    grow_m: float = 3.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "regularize" and value < 0:
                raise ConfigError(f"vector setting {f.name} must not be negative, got {value}")
        for name in ("chunk_size", "road_cell_px"):
            if getattr(self, name) < 16:
                raise ConfigError(f"vector setting {name} must be at least 16 pixels, got {getattr(self, name)}")
        if not 0 < self.seed_confidence <= 1:
            raise ConfigError(f"--seed-confidence must lie in (0, 1], got {self.seed_confidence}")


def _frame(
    class_name: str, geoms: np.ndarray, scores: np.ndarray, measure: str, values: np.ndarray, crs: CRS,
    extra: Mapping[str, np.ndarray] | None = None,
) -> gpd.GeoDataFrame:
    # Imported here, not at the top: the chunk processes (``pipeline.vectors.stream``) import this module
    # and never build a frame, and pandas and geopandas would add to each one's memory and start.
    import geopandas as gpd
    import pandas as pd

    data = pd.DataFrame(
        {
            "class": pd.Series([class_name] * len(geoms), dtype=object),
            "score": scores.astype(np.float64),
            measure: values,
            **(extra or {}),
        }
    )
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def building_frame(geoms: np.ndarray, scores: np.ndarray, crs: CRS) -> gpd.GeoDataFrame:
    """The buildings layer's frame of footprints in ``crs`` and their scores."""
    return _frame("building", geoms, scores, "area_m2", ground_areas_m2(geoms, crs), crs)


@dataclass(frozen=True)
class RoadFeatures:
    """Finished road pieces (polygons or centerlines) of some road cells, in the scene CRS.

    Attributes:
        geometries: the pieces.
        scores: their mean confidence, 0..1.
        cells: the road cell of each.
        keys: their sort keys ``(n, 6)`` from pixel space: cell, then bounds and pixels (or length).
    """

    geometries: np.ndarray
    scores: np.ndarray
    cells: np.ndarray
    keys: np.ndarray

    @classmethod
    def concat(cls, parts: Iterable[RoadFeatures]) -> RoadFeatures:
        """All ``parts`` in the scene's order (by key), whichever chunk or the finish made them."""
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0, dtype=object), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, 6)))
        geoms, scores, cells, keys = (np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls))
        order = key_order(keys)
        return cls(geoms[order], scores[order], cells[order], keys[order])


@dataclass(frozen=True)
class ChunkVectors:
    """What one chunk contributes to the scene's layers.

    Attributes:
        pieces: polygons that may continue in a neighbour (on the chunk edge) and the road polygons of
            road cells this chunk does not hold whole, in pixel coordinates, still to be stitched.
        buildings: buildings wholly inside the chunk, already cleaned, in the scene CRS.
        building_scores: their mean confidence, 0..1.
        building_keys: their pixel-space sort keys ``(n, 5)``: min row, min col, max col, max row, pixels.
        lines: road centerline pieces of the road cells this chunk does not hold whole, in pixel coordinates.
        line_cells: the road cell of each.
        roads: the finished road polygons of the road cells that lie wholly in the chunk's core.
        centerlines: the finished centerlines of those cells.
    """

    pieces: ChunkPolygons
    buildings: np.ndarray
    building_scores: np.ndarray
    building_keys: np.ndarray
    lines: np.ndarray
    line_cells: np.ndarray
    roads: RoadFeatures
    centerlines: RoadFeatures

    def without_buildings(self) -> ChunkVectors:
        """This contribution with its finished buildings taken out (once they are staged on disk)."""
        return replace(self, buildings=self.buildings[:0], building_scores=self.building_scores[:0],
                       building_keys=self.building_keys[:0])


class SceneVectorizer:
    """The vector stage of one scene, cut into chunk work that may run as soon as a chunk's pixels are final.

    ``chunk`` does everything that needs only one chunk's window (polygonizing, skeletonizing, cleaning the
    buildings that lie wholly inside the chunk); ``finish`` stitches what crosses chunk edges, cleans it and
    builds the layers. Chunks may be handed in any order: the layers do not depend on it, nor on the chunk
    size (see ``pipeline.vectors.polygonize.stitch`` and ``pipeline.vectors.centerlines``).
    """

    def __init__(
        self,
        grid: GeoGrid,
        *,
        classes: Mapping[int, str] = DEFAULT_CLASSES,
        settings: VectorSettings = VectorSettings(),
    ):
        self.shape = grid.shape
        self.crs = CRS.from_user_input(grid.crs)
        self.settings = settings
        names = {name: cid for cid, name in classes.items()}
        if not {"building", "road"} & names.keys():
            raise ConfigError(f"classes must name a 'building' or a 'road' class, got {dict(classes)}")
        self.frame = GroundFrame.for_grid(grid)
        self.cells = CellGrid(grid.shape, settings.road_cell_px)
        self.min_road_px = int(np.ceil(settings.min_road_area_m2 / self.frame.pixel_area_m2))
        self.tolerance_m = settings.simplify_tolerance_px * self.frame.pixel_size_m
        self.separation: dict[str, float] | None = None
        if BOUNDARY in names:
            # An instance model: each chunk window is separated first, into a plain mask of user-facing ids.
            px = self.frame.pixel_size_m
            self.separation = {
                "interior_id": names.get("building", -1), "boundary_id": names[BOUNDARY],
                "contact_id": names.get(CONTACT), "road_id": names.get("road"),
                "seed_confidence": settings.seed_confidence,
                "min_seed_px": max(1, round(settings.min_seed_m2 / px**2)), "grow_px": settings.grow_m / px,
            }
            names = {n: i for i, n in enumerate(USER_CLASSES) if n in names}
            # A seed that reaches a core pixel from outside the window crosses at least halo - grow pixels
            # of it; with this halo those are already min_seed_px, so no seed is dropped in one chunk and
            # kept in another, and the layers stay the same for every chunk size.
            self.halo_px = max(settings.halo_px, math.ceil(self.separation["grow_px"]) + self.separation["min_seed_px"] + 2)
        else:
            self.halo_px = settings.halo_px
        self.classes = {cid: name for name, cid in names.items() if name in ("building", "road")}
        # A model without one of the classes (a building-only model, say) gets that layer empty.
        self.building_id, self.road_id = names.get("building", -1), names.get("road", -1)

    def windows(self) -> list[tuple[Region, Region]]:
        """Every chunk as (core, window): the pixels it owns, and those plus the halo it reads."""
        scene, h = Region.of_shape(self.shape), self.halo_px
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
        if self.separation is not None:
            mask = separate_buildings(mask, confidence, **self.separation)
        lines = np.zeros(0, dtype=object)
        if self.road_id >= 0:
            road = mask == self.road_id
            lines = skeleton_lines(road, window, core, self.shape, min_component_px=self.min_road_px)
            # Road specks go before polygonizing: once split into cells, a piece's size says nothing.
            specks = road & ~drop_road_specks(road, window, self.shape, self.min_road_px)
            if specks.any():
                mask = np.where(specks, 0, mask)
        rows, cols = core.slices_in(window)
        polygons = polygonize_chunk(
            mask[rows, cols], confidence[rows, cols], core, self.classes.keys(), cells=self.cells,
            split=(self.road_id,),
        )
        inner = ~polygons.on_edge & (polygons.class_ids == self.building_id)
        geoms = shapely.normalize(shapely.simplify(polygons.geometries[inner], 0.0))
        counts = polygons.pixel_counts[inner]
        scores = polygons.score_sums[inner] / np.maximum(counts, 1) / 255.0
        buildings, scores, keep = self._clean_buildings(geoms, scores)

        # Road cells wholly in the core are finished here; the others' pieces go on to the finish.
        lines, line_cells = split_lines(lines, self.cells)
        whole = np.asarray(self.cells.within(core), dtype=np.int64)
        is_road = polygons.class_ids == self.road_id
        done = is_road & np.isin(polygons.cells, whole)
        road_polygons = polygons.select(done)
        finished = StitchedPolygons(
            shapely.normalize(shapely.simplify(road_polygons.geometries, 0.0)), road_polygons.class_ids,
            road_polygons.score_sums / np.maximum(road_polygons.pixel_counts, 1) / 255.0,
            road_polygons.pixel_counts, road_polygons.cells,
        )
        lines_done = np.isin(line_cells, whole)
        roads, centerlines = self._finish_roads(finished, lines[lines_done], line_cells[lines_done])
        return ChunkVectors(
            polygons.select(~inner & ~done), buildings, scores, sort_keys(geoms[keep], counts[keep]),
            lines[~lines_done], line_cells[~lines_done], roads, centerlines,
        )

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

    def finish(self, chunks: Iterable[ChunkVectors], spool: BuildingSpool | None = None) -> VectorLayers:
        """Stitch, clean and assemble the layers from every chunk's contribution.

        With a ``spool``, the buildings are staged there (those the chunks still carry and the stitched
        ones) and the buildings layer is read back from it in batches; the features are the same.
        """
        chunks = list(chunks)
        crs = self.crs
        stitched = stitch(c.pieces for c in chunks)

        b = stitched.of_class(self.building_id)
        b_geoms, b_scores, keep = self._clean_buildings(b.geometries, b.scores)
        b_keys = sort_keys(b.geometries[keep], b.pixel_counts[keep])
        buildings: Layer
        if spool is None:
            b_geoms = np.concatenate([b_geoms, *(c.buildings for c in chunks)])
            b_scores = np.concatenate([b_scores, *(c.building_scores for c in chunks)])
            order = key_order(np.concatenate([b_keys, *(c.building_keys for c in chunks)]))
            buildings = building_frame(b_geoms[order], b_scores[order], crs)
        else:
            for i, c in enumerate(chunks):
                if len(c.buildings):
                    spool.put(i, c.buildings, c.building_scores, c.building_keys)
            spool.put("stitched", b_geoms, b_scores, b_keys)
            buildings = spool.layer(partial(building_frame, crs=crs))

        # The road cells no chunk held whole: their pieces, stitched above, finished cell by cell here.
        line_parts = [(c.lines, c.line_cells) for c in chunks if len(c.lines)]
        lines = np.concatenate([p[0] for p in line_parts]) if line_parts else np.zeros(0, dtype=object)
        line_cells = np.concatenate([p[1] for p in line_parts]) if line_parts else np.zeros(0, dtype=np.int64)
        roads, centerlines = self._finish_roads(stitched.of_class(self.road_id), lines, line_cells)
        roads = RoadFeatures.concat([*(c.roads for c in chunks), roads])
        centerlines = RoadFeatures.concat([*(c.centerlines for c in chunks), centerlines])
        return VectorLayers(
            buildings,
            _frame("road", roads.geometries, roads.scores, "area_m2", ground_areas_m2(roads.geometries, crs), crs,
                   {ROAD_CELL_COLUMN: roads.cells}),
            _frame("road", centerlines.geometries, centerlines.scores, "length_m",
                   ground_lengths_m(centerlines.geometries, crs), crs, {ROAD_CELL_COLUMN: centerlines.cells}),
        )

    def _finish_roads(
        self, polygons: StitchedPolygons, lines: np.ndarray, line_cells: np.ndarray
    ) -> tuple[RoadFeatures, RoadFeatures]:
        """Finish whole road cells: their stitched polygons and their centerline pieces, in pixel coordinates.

        Each cell's centerline pieces are merged and pruned on their own; every polygon and line is
        simplified on its own, in the ground frame, and moved to the CRS.
        """
        tolerance_m, frame = self.tolerance_m, self.frame
        r_ground = apply_affine(polygons.geometries, frame.to_ground)
        if tolerance_m > 0 and len(r_ground):
            r_ground = shapely.simplify(r_ground, tolerance_m, preserve_topology=True)
        roads = RoadFeatures(
            shapely.normalize(apply_affine(r_ground, frame.to_crs)), polygons.scores, polygons.cells,
            np.column_stack([polygons.cells, sort_keys(polygons.geometries, polygons.pixel_counts)]),
        )

        prune_px = self.settings.centerline_prune_m / frame.pixel_size_m
        merged, merged_cells = [np.zeros(0, dtype=object)], [np.zeros(0, dtype=np.int64)]
        by_cell = np.argsort(line_cells, kind="stable")
        cells, starts = np.unique(line_cells[by_cell], return_index=True)
        for cell, members in zip(cells, np.split(by_cell, starts[1:]) if len(cells) else [], strict=True):
            cell_lines = merge_centerlines(lines[members], prune_length=prune_px, cuts=True)
            merged.append(cell_lines)
            merged_cells.append(np.full(len(cell_lines), cell, dtype=np.int64))
        lines_px, line_cells = np.concatenate(merged), np.concatenate(merged_cells)
        line_scores = _line_scores(lines_px, line_cells, polygons)
        l_ground = apply_affine(lines_px, frame.to_ground)
        if tolerance_m > 0 and len(l_ground):
            l_ground = shapely.simplify(l_ground, tolerance_m, preserve_topology=True)
        bounds = shapely.bounds(lines_px).reshape(-1, 4)
        centerlines = RoadFeatures(
            apply_affine(l_ground, frame.to_crs), line_scores, line_cells,
            np.column_stack([line_cells, bounds, shapely.length(lines_px)]).astype(np.float64),
        )
        return roads, centerlines


def _line_scores(lines: np.ndarray, line_cells: np.ndarray, roads: StitchedPolygons) -> np.ndarray:
    """Each centerline's score: that of the road polygon of its cell it runs in (pixel coordinates)."""
    scores = np.zeros(len(lines))
    if not len(lines) or not len(roads.geometries):
        return scores
    mid = shapely.line_interpolate_point(lines, 0.5, normalized=True)
    # Point in polygon first, each road polygon prepared once as the query geometry: a nearest-distance
    # search over road polygons of many thousand vertices is slow (bench/RESULTS.md). Only midpoints
    # outside every polygon of their cell need the nearest.
    poly_idx, line_idx = shapely.STRtree(mid).query(roads.geometries, predicate="intersects")
    same = roads.cells[poly_idx] == line_cells[line_idx]
    scores[line_idx[same]] = roads.scores[poly_idx[same]]
    for i in np.setdiff1d(np.arange(len(lines)), line_idx[same]):
        in_cell = np.flatnonzero(roads.cells == line_cells[i])
        if len(in_cell):
            scores[i] = roads.scores[in_cell[np.argmin(shapely.distance(roads.geometries[in_cell], mid[i]))]]
    return scores


def vectorize_scene(
    read_chunk: ReadChunk,
    grid: GeoGrid,
    *,
    classes: Mapping[int, str] = DEFAULT_CLASSES,
    settings: VectorSettings = VectorSettings(),
) -> VectorLayers:
    """Polygonize, stitch and clean a scene's class mask; build road centerlines.

    Args:
        read_chunk: returns (mask, confidence), both uint8 (rows, cols), for a window clipped to the scene.
            Mask values: class ids, 0 background, 255 nodata; confidence: the class probability * 255.
        grid: the scene's grid; output layers are in its CRS.
        classes: class id to name; the names "building" and "road" select the clean-up.
        settings: thresholds, chunk size and halo.

    Returns:
        The buildings, roads and road_centerlines layers in the scene CRS.
    """
    vectorizer = SceneVectorizer(grid, classes=classes, settings=settings)
    return vectorizer.finish(
        vectorizer.chunk(core, window, *read_chunk(window)) for core, window in vectorizer.windows()
    )
