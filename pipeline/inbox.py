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
    """One scene found in the inbox; ``error`` says why it cannot be processed (it fails alone)."""

    scene_id: str
    path: Path
    error: str | None = None


#: Files sceneseg writes into an output directory that are rasters too: never scenes of an inbox.
_OUTPUT_SUFFIXES = ("_mask.tif", "_confidence.tif")


def discover_scenes(inbox: str | Path, pattern: str = "*.tif", out_dir: str | Path | None = None) -> list[InboxScene]:
    """Scenes in a directory (``pattern``, sorted) or listed by a STAC ItemCollection or Catalog JSON file.

    A file listed twice is one scene. A symbolic link that leads nowhere (a loop, a missing target) is kept
    as a scene, so that its failure is recorded with a message instead of the file vanishing from the night.
    ``out_dir``: sceneseg's own outputs there (masks, confidence rasters, the working directory) are never
    taken as scenes, for an inbox that is also the output directory or holds it.
    """
    inbox = Path(inbox)
    if inbox.is_dir():
        paths = sorted(p for p in inbox.glob(pattern) if (p.is_file() or p.is_symlink()) and not p.name.startswith("."))
        scenes = [InboxScene(scene_id_for(p), p) for p in paths]
    elif inbox.is_file() and inbox.suffix.lower() == ".json":
        scenes = _from_stac(inbox, set())
    else:
        raise ConfigError(
            f"inbox {inbox}: not a directory nor a STAC JSON file. Give a folder of GeoTIFFs or an ItemCollection/"
            "catalog .json."
        )
    return _distinct([s for s in scenes if out_dir is None or not _is_output(s.path, Path(out_dir))])


def _key(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


def _distinct(scenes: list[InboxScene]) -> list[InboxScene]:
    seen: set[Path] = set()
    out = []
    for scene in scenes:
        key = _key(scene.path) if scene.error is None else Path(str(scene.path))
        if key not in seen:
            seen.add(key)
            out.append(scene)
    return out


def _is_output(path: Path, out_dir: Path) -> bool:
    """Whether ``path`` is one of sceneseg's own outputs in ``out_dir`` (or inside its working directory)."""
    parent = _key(path.parent)
    out = _key(out_dir)
    if parent == out:
        return path.name.endswith(_OUTPUT_SUFFIXES)
    return out / ".sceneseg-work" in (parent, *parent.parents)


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
    return [_item_scene(item, src) for item, src in items]


def _item_scene(item: dict, source: Path) -> InboxScene:
    """An item's scene; an item whose image cannot be processed here (a remote href, no GeoTIFF asset)
    becomes a scene with its error, so that it fails alone and the rest of the inbox runs."""
    try:
        href = _image_asset(item, source)
    except SceneReadError as exc:
        return InboxScene(str(item.get("id") or "unnamed-item"), source, error=str(exc))
    scene_id = str(item.get("id") or scene_id_for(Path(urlparse(href).path)))
    try:
        return InboxScene(scene_id, _resolve(href, source))
    except ConfigError as exc:
        return InboxScene(scene_id, Path(href), error=str(exc))
