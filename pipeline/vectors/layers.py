"""The vector layers of a scene and their one schema, shared by the vector stage, the GeoPackage writer,
the evaluation and the synthetic ground truth.

Feature layers carry ``class``, ``score`` and a ground measure (``area_m2`` for polygons, ``length_m`` for
lines); once a scene is published they also carry the scene columns (:data:`SCENE_COLUMNS`). The
``scenes`` layer records each processed scene (``pipeline.vectors.gpkg``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import geopandas as gpd

__all__ = [
    "LayerSchema",
    "FEATURE_LAYERS",
    "LAYER_NAMES",
    "CLASS_LAYERS",
    "SCENES_LAYER",
    "SCENE_COLUMNS",
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
#: Columns every published feature carries beside its layer's own.
SCENE_COLUMNS: tuple[str, ...] = ("scene_id", "model", "run_id", "created_at")


@dataclass(frozen=True)
class VectorLayers:
    """The vector layers of one scene, in the scene CRS, with the columns of :data:`FEATURE_LAYERS`.

    Scene-level columns are added by :meth:`with_attributes`.
    """

    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    road_centerlines: gpd.GeoDataFrame

    def items(self) -> Iterator[tuple[str, gpd.GeoDataFrame]]:
        for name in LAYER_NAMES:
            yield name, getattr(self, name)

    def counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.items()}

    def with_attributes(self, *, scene_id: str, model: str, run_id: str, created_at: str) -> VectorLayers:
        """A copy whose layers carry the scene id, model (checkpoint id), run id and creation time."""
        extra = {"scene_id": scene_id, "model": model, "run_id": run_id, "created_at": created_at}
        return replace(self, **{name: frame.assign(**extra) for name, frame in self.items()})
