"""The vector layers of a scene and their one schema, shared by the vector stage, the GeoPackage writer,
the evaluation and the synthetic ground truth.

Feature layers carry ``class``, ``score`` and a ground measure (``area_m2`` for polygons, ``length_m`` for
lines); once a scene is published they also carry the scene columns (:data:`SCENE_COLUMNS`). The road
layers of the vector stage also carry :data:`ROAD_CELL_COLUMN`, the road cell each piece lies in
(``pipeline.vectors.assemble``); it is not required of every frame (ground truth has none), so the
GeoPackage writer adds it as a column beyond the schema. The ``scenes`` layer records each processed scene
(``pipeline.vectors.gpkg``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # geopandas is imported where frames are built: a vector chunk process never needs it
    import geopandas as gpd

__all__ = [
    "LayerSchema",
    "FEATURE_LAYERS",
    "LAYER_NAMES",
    "CLASS_LAYERS",
    "SCENES_LAYER",
    "SCENE_COLUMNS",
    "ROAD_CELL_COLUMN",
    "LayerBatches",
    "Layer",
    "frame_batches",
    "VectorLayers",
]


@dataclass(frozen=True)
class LayerSchema:
    """One feature layer: its name, geometry type, the class its features are of, and its columns."""

    name: str
    geometry_type: str
    feature_class: str
    measure: str

    @property
    def columns(self) -> list[str]:
        return ["class", "score", self.measure]


FEATURE_LAYERS: tuple[LayerSchema, ...] = (
    LayerSchema("buildings", "Polygon", "building", "area_m2"),
    LayerSchema("roads", "Polygon", "road", "area_m2"),
    LayerSchema("road_centerlines", "LineString", "road", "length_m"),
)
LAYER_NAMES: tuple[str, ...] = tuple(s.name for s in FEATURE_LAYERS)
#: The polygon layer that holds each class's footprints (what a mask of that class becomes).
CLASS_LAYERS: dict[str, str] = {s.feature_class: s.name for s in FEATURE_LAYERS if s.geometry_type == "Polygon"}
SCENES_LAYER = "scenes"
#: Columns every published feature carries beside its layer's own; ``created_at`` is an ISO 8601 time,
#: a DATETIME field in the GeoPackage.
SCENE_COLUMNS: tuple[str, ...] = ("scene_id", "model", "run_id", "created_at")
#: The road cell (row * cells per row + col, in the vector stage's road cell grid) of a road piece.
ROAD_CELL_COLUMN = "cell"


@dataclass(frozen=True)
class LayerBatches:
    """A layer read in batches, for one too big to hold at once (a scene's buildings staged on disk).

    ``read(start, stop)`` returns rows [start, stop) as a GeoDataFrame with the layer's columns;
    ``columns`` are constant columns added to every batch (what ``GeoDataFrame.assign`` does to a frame).
    """

    length: int
    read: Callable[[int, int], gpd.GeoDataFrame]
    columns: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 50_000

    def __len__(self) -> int:
        return self.length

    def assign(self, **columns: Any) -> LayerBatches:
        return replace(self, columns={**self.columns, **columns})

    def batches(self) -> Iterator[gpd.GeoDataFrame]:
        """The rows in order, ``batch_size`` at a time; one empty frame for an empty layer."""
        for start in range(0, max(self.length, 1), self.batch_size):
            yield self.read(start, min(start + self.batch_size, self.length)).assign(**self.columns)

    def to_frame(self) -> gpd.GeoDataFrame:
        """The whole layer in memory (for small scenes and tests)."""
        import geopandas as gpd
        import pandas as pd

        parts = list(self.batches())
        return parts[0] if len(parts) == 1 else gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=parts[0].crs)


#: A layer held in memory or read in batches.
Layer = Union["gpd.GeoDataFrame", LayerBatches]


def frame_batches(layer: Layer) -> Iterator[gpd.GeoDataFrame]:
    """A layer as frames in order: itself when in memory, else its batches (at least one frame)."""
    if isinstance(layer, LayerBatches):
        yield from layer.batches()
    else:
        yield layer


@dataclass(frozen=True)
class VectorLayers:
    """The vector layers of one scene, in the scene CRS, with the columns of :data:`FEATURE_LAYERS`.

    Scene-level columns are added by :meth:`with_attributes`. The buildings of a scene vectorized by the
    pipeline are :class:`LayerBatches` staged on disk (``pipeline.vectors.spool``); ``frame_batches``
    reads either kind.
    """

    buildings: Layer
    roads: gpd.GeoDataFrame
    road_centerlines: gpd.GeoDataFrame

    def items(self) -> Iterator[tuple[str, Layer]]:
        for name in LAYER_NAMES:
            yield name, getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.items()}

    def with_attributes(self, *, scene_id: str, model: str, run_id: str, created_at: str) -> VectorLayers:
        """A copy whose layers carry the scene id, model (checkpoint id), run id and creation time."""
        extra = {"scene_id": scene_id, "model": model, "run_id": run_id, "created_at": created_at}
        return replace(self, **{name: frame.assign(**extra) for name, frame in self.items()})
