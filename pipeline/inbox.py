"""Finding scenes to process: a directory glob, or a STAC ItemCollection / Catalog JSON listing asset hrefs.

STAC is read as plain JSON here rather than through pystac: the nightly flow only needs the local
hrefs of each item's image asset, resolved relative to the JSON file, and must never touch the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline.errors import ConfigError, SceneReadError
from pipeline.raster.scene import scene_id_for

__all__ = ["InboxScene", "discover_scenes"]

_IMAGE_KEYS = ("image", "visual", "data", "analytic")
_RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class InboxScene:
    """One scene found in the inbox."""

    scene_id: str
    path: Path


def discover_scenes(inbox: str | Path, pattern: str = "*.tif") -> list[InboxScene]:
    """Scenes in a directory (``pattern``, sorted) or listed by a STAC ItemCollection or Catalog JSON file."""
    inbox = Path(inbox)
    if inbox.is_dir():
        paths = sorted(p for p in inbox.glob(pattern) if p.is_file() and not p.name.startswith("."))
        return [InboxScene(scene_id_for(p), p) for p in paths]
    if inbox.is_file() and inbox.suffix.lower() == ".json":
        return _from_stac(inbox, set())
    raise ConfigError(
        f"inbox {inbox}: not a directory nor a STAC JSON file. Give a folder of GeoTIFFs or an ItemCollection/"
        "catalog .json."
    )


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SceneReadError(f"STAC file {path}: cannot be read as JSON ({exc}).") from exc


def _resolve(href: str, base: Path) -> Path:
    parsed = urlparse(href)
    if parsed.scheme in ("", "file"):
        target = Path(unquote(parsed.path))
        return target if target.is_absolute() else (base.parent / target).resolve()
    raise ConfigError(f"STAC href {href!r} in {base}: only local files are supported; download the asset first.")


def _image_asset(item: dict, source: Path) -> str:
    assets = item.get("assets") or {}
    for key in _IMAGE_KEYS:
        if key in assets:
            return assets[key]["href"]
    for asset in assets.values():
        media = asset.get("type", "")
        if "geotiff" in media or asset.get("href", "").lower().endswith(_RASTER_SUFFIXES):
            return asset["href"]
    raise SceneReadError(
        f"STAC item {item.get('id')!r} in {source} has no GeoTIFF asset (assets: {sorted(assets)}). "
        f"Name the image asset one of {list(_IMAGE_KEYS)} or give it type image/tiff; application=geotiff."
    )


def _from_stac(path: Path, seen: set[Path]) -> list[InboxScene]:
    if path in seen:
        return []
    seen.add(path)
    doc = _load(path)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        items = [(f, path) for f in doc.get("features", [])]
    elif kind == "Feature":
        items = [(doc, path)]
    elif kind in ("Catalog", "Collection"):
        scenes: list[InboxScene] = []
        for link in doc.get("links", []):
            if link.get("rel") in ("item", "child"):
                scenes += _from_stac(_resolve(link["href"], path), seen)
        return scenes
    else:
        raise SceneReadError(f"STAC file {path}: type {kind!r} is not an ItemCollection, Item, Catalog or Collection.")
    return [InboxScene(str(item.get("id") or scene_id_for(Path(_image_asset(item, src)))),
                       _resolve(_image_asset(item, src), src)) for item, src in items]
