"""STAC records of the outputs: one Item per published scene and a Catalog of an output directory.

An item (``<scene>_item.json`` beside the outputs) has the scene footprint in EPSG:4326 as geometry and
bbox, the projection extension with the scene's CRS, shape and transform, and assets with hrefs
relative to the item: the mask COG (with the classification extension's classes and its nodata value),
its QGIS style, the GeoPackage, the preview PNG and the run JSON. ``catalog.json`` links the items of
an output directory, so stac-browser, pystac or titiler can walk them.

A footprint that crosses the antimeridian is cut there into a MultiPolygon, and its bbox has west > east
(RFC 7946 section 3.1.9 and 5.2, as the STAC spec asks). The item's ``datetime`` is the scene's
acquisition time where its metadata has one (:func:`acquisition_time`); otherwise it is null and
``start_datetime`` = ``end_datetime`` = the processing time. ``sceneseg:datetime_source`` says which.

Validation never reaches the network: pystac-core bundles the core STAC 1.1 JSON schemas and the GeoJSON
ones, and :func:`validate_offline` validates against those only. No package bundles the projection or
classification extension schemas; their fields are written and read back through pystac's extension
classes, which check their types.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import shapely
from pyproj import CRS, Transformer
from pystac.errors import STACError
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.stac_io import DefaultStacIO
from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.geometry.polygon import orient

from pipeline.grid import GeoGrid
from pipeline.metadata import Acquisition
from pipeline.raster.style import class_color

__all__ = [
    "CATALOG_NAME",
    "GPKG_MEDIA_TYPE",
    "QML_MEDIA_TYPE",
    "ItemAssets",
    "scene_item",
    "write_item",
    "update_catalog",
    "validate_offline",
]

CATALOG_NAME = "catalog.json"
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"
#: A QGIS style (QML) is an XML document; it has no registered media type of its own.
QML_MEDIA_TYPE = "application/xml"

_NODATA_NAME = "nodata"


@dataclass(frozen=True)
class ItemAssets:
    """The files of one published scene that its item lists."""

    mask: Path
    gpkg: Path
    preview: Path
    run: Path
    #: The mask's QGIS default style (``<scene>_mask.qml``), when it has one.
    style: Path | None = None


def _lonlat_ring(grid: GeoGrid) -> np.ndarray:
    """The scene outline in longitude, latitude, densified so that a curved outline stays faithful, with
    longitudes continuous along it (a ring crossing the antimeridian goes past 180 instead of jumping)."""
    outline = box(*grid.bounds)
    outline = shapely.segmentize(outline, max(outline.length / 400, 1e-9))
    to_wgs84 = Transformer.from_crs(CRS.from_user_input(grid.crs), CRS.from_epsg(4326), always_xy=True)
    xy = shapely.get_coordinates(outline.exterior)
    lon, lat = to_wgs84.transform(xy[:, 0], xy[:, 1])
    lon = np.unwrap(np.asarray(lon), period=360.0)
    lon -= 360.0 * np.floor((lon.min() + 180.0) / 360.0)  # the western edge in [-180, 180)
    return np.column_stack([lon, lat])


def _footprint_wgs84(grid: GeoGrid) -> tuple[Polygon | MultiPolygon, list[float]]:
    """The scene outline in EPSG:4326 as GeoJSON wants it (counterclockwise, cut at the antimeridian), and
    its bbox: across the antimeridian, west (of the western part) > east (of the eastern one), RFC 7946 5.2."""
    ring = _lonlat_ring(grid)
    (west, south), (east, north) = ring.min(axis=0).tolist(), ring.max(axis=0).tolist()
    outline = Polygon(ring)
    if east <= 180.0:
        return orient(outline), [west, south, east, north]
    # The part east of 180 is shifted back by 360 degrees: polygons that meet at +-180.
    west_part = outline & box(-180.0, -90.0, 180.0, 90.0)
    east_part = translate(outline & box(180.0, -90.0, 540.0, 90.0), xoff=-360.0)
    parts = [p for piece in (west_part, east_part) for p in getattr(piece, "geoms", [piece]) if not p.is_empty]
    return MultiPolygon([orient(p) for p in parts]), [west, south, east - 360.0, north]


def _hex(name: str) -> str:
    r, g, b, _ = class_color(name)
    return f"{r:02X}{g:02X}{b:02X}"


def _classes(classes: tuple[str, ...], nodata: int) -> list[Classification]:
    found = [
        Classification.create(value=value, name=name, description=f"{name} pixels", color_hint=_hex(name))
        for value, name in enumerate(classes)
    ]
    return [*found, Classification.create(value=nodata, name=_NODATA_NAME, description="outside the scene's data",
                                          nodata=True)]


def scene_item(
    scene_id: str,
    grid: GeoGrid,
    assets: ItemAssets,
    *,
    classes: tuple[str, ...],
    nodata: int,
    created_at: str,
    model: str,
    run_id: str,
    counts: dict[str, int] | None = None,
    acquisition: Acquisition | None = None,
    changes: dict | None = None,
) -> pystac.Item:
    """The STAC Item of a published scene; asset hrefs are absolute until :func:`write_item` relates them.

    ``acquisition`` (see :func:`acquisition_time`) is the item's ``datetime``; without one the datetime is
    null and the processing time ``created_at`` is its ``start_datetime`` and ``end_datetime``.
    ``changes`` (the building and road changes against overlapping scenes) become ``sceneseg:changes``.
    """
    footprint, bbox = _footprint_wgs84(grid)
    created = datetime.fromisoformat(created_at)
    properties = {"created": created_at, "sceneseg:model": model, "sceneseg:run_id": run_id,
                  "sceneseg:counts": dict(counts or {}),
                  "sceneseg:datetime_source": acquisition.source if acquisition else "processing time"}
    item = pystac.Item(
        id=scene_id, geometry=mapping(footprint), bbox=bbox,
        datetime=acquisition.time if acquisition else None, properties=properties,
        start_datetime=None if acquisition else created, end_datetime=None if acquisition else created,
    )
    if changes is not None:
        item.properties["sceneseg:changes"] = changes
    crs = CRS.from_user_input(grid.crs)
    epsg = crs.to_epsg()
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(
        code=f"EPSG:{epsg}" if epsg else None, wkt2=None if epsg else crs.to_wkt(),
        shape=[grid.shape.rows, grid.shape.cols], transform=list(grid.transform)[:6], bbox=list(grid.bounds),
    )
    mask = pystac.Asset(
        href=str(assets.mask.resolve()), media_type=pystac.MediaType.COG, roles=["data"],
        title="class mask", description="uint8 class ids; " + ", ".join(f"{i} {c}" for i, c in enumerate(classes)),
        extra_fields={"nodata": nodata, "data_type": "uint8"},
    )
    item.add_asset("mask", mask)
    ClassificationExtension.ext(mask, add_if_missing=True).apply(classes=_classes(classes, nodata))
    if assets.style is not None:
        item.add_asset("style", pystac.Asset(
            href=str(assets.style.resolve()), media_type=QML_MEDIA_TYPE, roles=["style"],
            title="QGIS style of the mask", description="the mask's classes, labelled, background transparent; "
            "QGIS loads it as the default style of the mask beside it"))
    item.add_asset("gpkg", pystac.Asset(
        href=str(assets.gpkg.resolve()), media_type=GPKG_MEDIA_TYPE, roles=["data"],
        title="building and road layers", description="GeoPackage shared by the scenes of this directory; "
        f"this scene's features have scene_id = '{scene_id}'"))
    item.add_asset("preview", pystac.Asset(
        href=str(assets.preview.resolve()), media_type=pystac.MediaType.PNG, roles=["overview"],
        title="quick-look: buildings and roads outlined over the scene"))
    item.add_asset("run", pystac.Asset(
        href=str(assets.run.resolve()), media_type=pystac.MediaType.JSON, roles=["metadata"],
        title="the run's settings and summary"))
    return item


class _AtomicStacIO(DefaultStacIO):
    """Writes each STAC file under a temporary name and renames it into place; leaves a file that already
    says the same untouched (a nightly run that publishes nothing changes nothing)."""

    def write_text_to_href(self, href: str, txt: str) -> None:
        path = Path(href)
        if path.is_file() and path.read_text(encoding="utf-8") == txt:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(txt, encoding="utf-8")
        os.replace(tmp, path)


def write_item(item: pystac.Item, path: str | Path) -> Path:
    """Save ``item`` at ``path`` with asset hrefs relative to it (the directory can move)."""
    path = Path(path).resolve()
    item.set_self_href(str(path))
    item.make_asset_hrefs_relative()
    item.save_object(include_self_link=False, stac_io=_AtomicStacIO())
    return path


def update_catalog(
    out_dir: str | Path, item_paths: Iterable[str | Path], *, title: str = "sceneseg outputs"
) -> Path:
    """Write ``out_dir/catalog.json`` linking the items at ``item_paths`` (items that do not exist are left out).

    The catalog is self-contained (relative links only); each item gets its root and parent links.
    """
    out_dir = Path(out_dir).resolve()
    catalog = pystac.Catalog(id="sceneseg", title=title,
                             description="Building and road maps segmented by sceneseg, one item per scene.")
    catalog.set_self_href(str(out_dir / CATALOG_NAME))
    for path in sorted({Path(p).resolve() for p in item_paths}):
        if path.exists():
            item = pystac.Item.from_file(str(path))
            catalog.add_item(item)
            item.set_self_href(str(path))  # add_item keeps it; make sure it stays beside the outputs
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=_AtomicStacIO())
    return out_dir / CATALOG_NAME


class _OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator restricted to the schemas pystac-core ships: never fetches one."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise GetSchemaError(schema_uri, STACError("not bundled with pystac-core; not fetched (offline)"))
        return self.schema_cache[schema_uri]

    def validate_extension(self, stac_dict, stac_object_type, stac_version, extension_id, href=None):
        if extension_id not in self.schema_cache:
            return None  # no bundled schema: checked through pystac's extension classes instead
        return super().validate_extension(stac_dict, stac_object_type, stac_version, extension_id, href)


def validate_offline(obj: pystac.STACObject) -> list[str]:
    """Validate a STAC object (and, for a catalog, every item under it) against the bundled core schemas.

    Returns the schema URIs validated against; raises ``pystac.errors.STACValidationError`` on the first
    invalid object.
    """
    validator = _OfflineValidator()
    used = [uri for uri in pystac.validation.validate(obj, validator=validator) if uri]
    if isinstance(obj, pystac.Catalog):
        for item in obj.get_items(recursive=True):
            used += [uri for uri in pystac.validation.validate(item, validator=validator) if uri]
    return used
