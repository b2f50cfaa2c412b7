"""What a published scene gets besides its mask and layers: a quick-look PNG and a STAC item.

:func:`catalog_scene` is the stage, run after the scene's vectors are published:
``<scene>_preview.png`` (``preview``) and ``<scene>_item.json`` (``stac``) beside the other outputs.
:func:`update_output_catalog` links an output directory's items into ``catalog.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.grid import GeoGrid
from pipeline.metadata import acquisition_time
from pipeline.outputs.preview import Preview, render_preview, write_preview
from pipeline.outputs.stac import (
    ItemAssets,
    scene_item,
    update_catalog,
    validate_offline,
    write_item,
)
from pipeline.raster.blend import NODATA_CLASS
from pipeline.raster.style import style_path

__all__ = [
    "CatalogEntry",
    "PublishedScene",
    "catalog_scene",
    "item_path",
    "preview_path",
    "update_catalog",
    "update_output_catalog",
    "validate_offline",
]

class _Scene(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def scene_id(self) -> str: ...
    @property
    def grid(self) -> GeoGrid: ...


class PublishedScene(Protocol):
    """What the stage needs of a scene's job (``pipeline.stages.SceneJob`` has it all)."""

    @property
    def scene(self) -> _Scene: ...
    @property
    def mask_classes(self) -> tuple[str, ...]: ...
    @property
    def checkpoint_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def created_at(self) -> str: ...
    @property
    def out_dir(self) -> Path: ...
    @property
    def mask_path(self) -> Path: ...
    @property
    def gpkg_path(self) -> Path: ...
    @property
    def run_path(self) -> Path: ...


@dataclass(frozen=True)
class CatalogEntry:
    """The quick-look and the STAC item written for a scene."""

    preview: Preview
    preview_path: Path
    item_path: Path


def preview_path(out_dir: str | Path, scene_id: str) -> Path:
    return Path(out_dir) / f"{scene_id}_preview.png"


def item_path(out_dir: str | Path, scene_id: str) -> Path:
    return Path(out_dir) / f"{scene_id}_item.json"


def catalog_scene(job: PublishedScene, counts: dict[str, int], changes: dict | None = None) -> CatalogEntry:
    """Write the scene's quick-look and its STAC item (the run JSON it lists is written by ``finish``);
    ``changes`` (``pipeline.stages.detect_changes``) become the item's ``sceneseg:changes``."""
    scene_id = job.scene.scene_id
    preview = render_preview(job.scene.path, job.mask_path, job.mask_classes)
    png = write_preview(preview, preview_path(job.out_dir, scene_id))
    style = style_path(job.mask_path)
    assets = ItemAssets(mask=job.mask_path, gpkg=job.gpkg_path, preview=png, run=job.run_path,
                        style=style if style.exists() else None)
    item = scene_item(
        scene_id, job.scene.grid, assets, classes=job.mask_classes, nodata=NODATA_CLASS, created_at=job.created_at,
        model=job.checkpoint_id, run_id=job.run_id, counts=counts, acquisition=acquisition_time(job.scene.path),
        changes=changes,
    )
    return CatalogEntry(preview, png, write_item(item, item_path(job.out_dir, scene_id)))


def update_output_catalog(out_dir: str | Path, scene_ids: list[str]) -> Path:
    """Write ``out_dir/catalog.json`` linking the items of ``scene_ids`` (those that have an item file)."""
    return update_catalog(out_dir, [item_path(out_dir, scene_id) for scene_id in scene_ids])
