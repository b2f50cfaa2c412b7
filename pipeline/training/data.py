"""Training data: tiles of GeoTIFF scenes with masks rasterized on the fly from vector labels.

A :class:`TrainingSource` is one scene, its label file and the part of the scene (a :class:`Region`) that
may be sampled; a train/validation split is two sets of sources whose regions never overlap
(:func:`split_by_area`: by rows of tiles, or by bands of rows within each scene). Labels are read once
per scene, reprojected to the scene CRS, and burned into each tile's mask with the tile's own window
transform, so a mask is exactly the scene's grid whatever the tile. Small scenes are held in memory;
large ones are read window by window. Tiles that reach past the scene edge are mirror-padded, as
inference pads them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import rasterio.transform
import rasterio.warp
import rasterio.windows
import shapely
import torch
from rasterio.enums import Resampling
from rasterio.features import rasterize
from torch.utils.data import Dataset

from models.augment import Augment, augment
from pipeline.errors import ConfigError, SceneReadError, SceneValidationError
from pipeline.grid import Region, Shape2d, reflect_indices
from pipeline.ground import apply_affine
from pipeline.raster.read import mirror_read, normalize
from pipeline.raster.scene import open_scene
from pipeline.synthetic import write_synthetic_scene
from pipeline.training.targets import BOUNDARY, CONTACT, InstanceTargets, burn_instance_targets, pixel_size_m
from pipeline.vectors.labels import ROAD_WIDTH_M, buffer_lines

__all__ = [
    "LabelSpec",
    "TrainingSource",
    "SceneData",
    "read_labels",
    "split_rows",
    "split_scene_rows",
    "split_by_bounds",
    "split_by_area",
    "synthetic_scenes",
    "band_stats",
    "TrainTiles",
    "ValidationTiles",
    "grid_windows",
    "iter_batches",
]

#: Scenes of at most this many pixels are read into memory once; larger ones window by window.
IN_MEMORY_PIXELS = 16_000_000


@dataclass(frozen=True)
class LabelSpec:
    """How a label file names classes: a column of class names, or one layer per class.

    Args:
        class_column: Column whose values are class names; every layer that has it is read. ``None``:
            each layer is one class, named by the layer (or by ``layer_classes``).
        layer_classes: Layer name to class name, for one-layer-per-class files whose layer names are
            not class names (e.g. ``{"buildings": "building"}``); other layers are ignored.
        line_widths_m: Class name to the width in metres that its line labels (e.g. OpenStreetMap road
            centerlines) are buffered to; lines of other classes are ignored.
    """

    class_column: str | None = "class"
    layer_classes: Mapping[str, str] | None = None
    line_widths_m: Mapping[str, float] = field(default_factory=lambda: {"road": ROAD_WIDTH_M})


@dataclass(frozen=True)
class TrainingSource:
    """One scene, its labels, and the region of the scene tiles may be drawn from (``None``: all of it)."""

    image: Path
    labels: Path
    spec: LabelSpec = field(default_factory=LabelSpec)
    region: Region | None = None


def _label_layers(path: Path) -> list[str]:
    if not path.is_file():
        raise SceneReadError(f"label file {path} does not exist: give a GeoPackage or GeoJSON of polygons")
    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except pyogrio.errors.DataSourceError as exc:
        raise SceneReadError(f"label file {path} is not a readable vector file ({exc})") from exc


def read_labels(
    path: str | Path, classes: Sequence[str], spec: LabelSpec, crs: rasterio.crs.CRS | str
) -> gpd.GeoDataFrame:
    """Polygons of the foreground ``classes`` in ``path``, in ``crs``, with a ``class_id`` column.

    Features of other classes, and layers without the class column, are left out.

    Raises:
        SceneReadError: the file is missing or unreadable.
        ConfigError: no feature of any of the classes was found (the message lists what was found).
    """
    path = Path(path)
    ids = {name: i for i, name in enumerate(classes) if i > 0}
    frames: list[gpd.GeoDataFrame] = []
    found: list[str] = []
    for layer in _label_layers(path):
        if spec.class_column is None:
            name = (spec.layer_classes or {}).get(layer, layer if spec.layer_classes is None else None)
            found.append(f"layer {layer!r}")
            if name not in ids:
                continue
            gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
            gdf["class_id"] = ids[name]
        else:
            columns = list(pyogrio.read_info(path, layer=layer)["fields"])
            if spec.class_column not in columns:
                found.append(f"layer {layer!r} (columns {columns})")
                continue
            gdf = gpd.read_file(path, layer=layer, columns=[spec.class_column], engine="pyogrio")
            values = gdf[spec.class_column].astype(str)
            found.append(f"layer {layer!r} ({spec.class_column}: {sorted(values.unique())[:8]})")
            keep = values.isin(ids)
            gdf = gdf[keep].assign(class_id=values[keep].map(ids))
        if gdf.crs is None:
            raise SceneValidationError(
                f"label layer {layer!r} of {path} has no CRS: set one (e.g. with ogr2ogr -a_srs)"
            )
        geoms = gdf.geometry.values
        gdf = gdf[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
        parts = [gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])]]
        for name, width in spec.line_widths_m.items():
            if name in ids:
                parts.append(buffer_lines(gdf[gdf["class_id"] == ids[name]], width))
        gdf = pd.concat(parts)
        frames.append(gdf[["class_id", "geometry"]].to_crs(crs))
    frames = [f for f in frames if len(f)]
    if not frames:
        how = f"column {spec.class_column!r}" if spec.class_column else "layer names"
        raise ConfigError(
            f"label file {path} has no polygons of classes {list(ids)} by {how}; "
            f"found {', '.join(found) or 'no layers'}; "
            "set the class column, or map layers to classes (LabelSpec.layer_classes)"
        )
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs)


class SceneData:
    """A scene opened for training: its header, its labels in the scene CRS, and its pixels if small.

    Where labels of different classes overlap, the class listed later in ``classes`` wins.

    With ``targets``, building footprints also get boundary and contact pixels
    (:mod:`pipeline.training.targets`): ``classes`` must then hold 'building', 'building_boundary' and
    'building_contact', and the widths in metres are converted with the scene's pixel size.
    """

    def __init__(
        self,
        source: TrainingSource,
        classes: Sequence[str],
        bands: Sequence[int],
        in_memory_pixels: int = IN_MEMORY_PIXELS,
        targets: InstanceTargets | None = None,
    ) -> None:
        info = open_scene(source.image)
        if max(bands) > info.band_count:
            raise SceneValidationError(
                f"{source.image} has {info.band_count} band(s) but training reads bands {list(bands)}: "
                "choose bands the scene has"
            )
        self.source = source
        self.path = info.path
        self.shape = info.shape
        self.transform: affine.Affine = info.transform
        self.crs = info.crs
        #: Metres per pixel on the ground (geographic CRSs: at the scene centre).
        self.gsd_m = pixel_size_m(info.transform, info.crs, info.shape)
        self.bands = list(bands)
        whole = Region.of_shape(info.shape)
        region = source.region or whole
        if not whole.contains(region) or region.is_empty:
            raise ConfigError(
                f"training region {region} of {source.image} is empty or leaves the scene {info.shape}"
            )
        self.region = region
        self._targets: tuple[int, int, int, float, float] | None = None
        if targets is not None:
            missing = [c for c in ("building", BOUNDARY, CONTACT) if c not in classes]
            if missing:
                raise ConfigError(f"instance targets need classes {missing} in {list(classes)}")
            px = targets.in_pixels(self.gsd_m)
            ids = [list(classes).index(c) for c in ("building", BOUNDARY, CONTACT)]
            self._targets = (*ids, *px)
        labels = read_labels(source.labels, classes, source.spec, info.crs)
        self._labels = labels.sort_values("class_id", kind="stable")
        self._image: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        if info.shape.size <= in_memory_pixels:
            with rasterio.open(self.path) as ds:
                self._image = ds.read(self.bands)
            self._mask = self._rasterize(whole)

    def _rasterize(self, region: Region) -> np.ndarray:
        """Class ids over ``region`` (inside the scene), on the scene's grid."""
        transform = self.transform @ affine.Affine.translation(region.col, region.row)
        return self._rasterize_on(transform, region.shape, 1.0)

    def _rasterize_on(self, transform: affine.Affine, shape: Shape2d, scale: float) -> np.ndarray:
        """Class ids on a grid of pixels ``scale`` times the scene's side (1: the scene's own grid).

        On a resampled grid the instance widths are converted to its pixels, and kept at least one pixel
        wide so boundary and contact classes exist at every GSD.
        """
        out = np.zeros((shape.rows, shape.cols), dtype=np.uint8)
        bounds = rasterio.transform.array_bounds(shape.rows, shape.cols, transform)
        query = shapely.box(*bounds)
        widths = None
        if self._targets is not None:
            widths = tuple(self._targets[3:]) if scale == 1.0 else tuple(max(1.0, w / scale) for w in self._targets[3:])
            # Buildings just outside the grid still make contact pixels inside it.
            query = shapely.buffer(query, (widths[1] + 2) * max(abs(transform.a), abs(transform.e)))
        hits = self._labels.iloc[np.sort(self._labels.sindex.query(query))]
        if len(hits):
            rasterize(
                zip(hits.geometry.values, hits["class_id"].tolist(), strict=True),
                out=out,
                transform=transform,
            )
        if self._targets is not None and widths is not None and len(hits):
            building, boundary, contact = self._targets[:3]
            boundary_px, contact_px = widths
            geoms = hits.geometry.values[(hits["class_id"] == building).to_numpy()]
            out = burn_instance_targets(
                out, apply_affine(np.asarray(geoms, dtype=object), ~transform), building_id=building,
                boundary_id=boundary, contact_id=contact, boundary_px=boundary_px, contact_px=contact_px,
            )
        return out

    def read_resampled(self, window: Region, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of ``window`` (inside the scene) resampled to ``size`` x ``size``, and class ids made there.

        A coarser grid averages the pixels each output pixel covers (GDAL ``average``: area-weighted, so no
        aliasing), a finer one interpolates bilinearly. The targets are rasterized from the polygons on the
        new grid, not resampled from the scene's mask, so a building keeps its area at any GSD.

        Returns:
            float32 raw pixels (bands, size, size) and int64 class ids (size, size).
        """
        if not Region.of_shape(self.shape).contains(window):
            raise ValueError(f"window {window} leaves the scene {self.shape}")
        if self._image is not None:
            raw = self._image[:, window.row : window.row_stop, window.col : window.col_stop]
        else:
            with rasterio.open(self.path) as ds:
                raw = ds.read(self.bands, window=rasterio.windows.Window(window.col, window.row, window.cols, window.rows))
        src_transform = self.transform @ affine.Affine.translation(window.col, window.row)
        scale = window.rows / size
        dst_transform = src_transform @ affine.Affine.scale(window.cols / size, scale)
        image = np.zeros((len(self.bands), size, size), dtype=np.float32)
        rasterio.warp.reproject(
            raw.astype(np.float32), image, src_transform=src_transform, src_crs=self.crs,
            dst_transform=dst_transform, dst_crs=self.crs,
            resampling=Resampling.average if scale > 1 else Resampling.bilinear,
        )
        return image, self._rasterize_on(dst_transform, Shape2d(size, size), scale).astype(np.int64)

    def read(self, window: Region) -> tuple[np.ndarray, np.ndarray]:
        """Raw pixels (bands, rows, cols) and class ids (rows, cols) of ``window``, mirror-padded outside."""
        rows = reflect_indices(window.row, window.row_stop, self.shape.rows)
        cols = reflect_indices(window.col, window.col_stop, self.shape.cols)
        if self._image is not None and self._mask is not None:
            index = (rows[:, None], cols[None, :])
            return self._image[(slice(None), *index)], self._mask[index].astype(np.int64)
        source = Region.from_bounds(
            int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1
        )
        with rasterio.open(self.path) as ds:
            image = mirror_read(ds, window, self.bands)
        mask = self._rasterize(source)[(rows - source.row)[:, None], (cols - source.col)[None, :]]
        return image, mask.astype(np.int64)


def split_scene_rows(
    source: TrainingSource, shape: Shape2d, val_fraction: float, gap: int = 0
) -> tuple[TrainingSource, TrainingSource]:
    """Cut one scene into a training band (top) and a validation band (bottom), ``gap`` rows apart."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    val_rows = max(1, round(shape.rows * val_fraction))
    train_rows = shape.rows - val_rows - gap
    if train_rows < 1:
        raise ConfigError(
            f"{source.image} ({shape.rows} rows) is too small for a validation band of {val_rows} "
            f"rows and a gap of {gap}: lower val_fraction or the gap"
        )
    train = replace(source, region=Region(0, 0, train_rows, shape.cols))
    val = replace(source, region=Region(shape.rows - val_rows, 0, val_rows, shape.cols))
    return train, val


def split_rows(
    sources: Sequence[TrainingSource], val_fraction: float = 0.2, gap: int = 0
) -> tuple[list[TrainingSource], list[TrainingSource]]:
    """Split every scene into a training band and a validation band of rows (see :func:`split_scene_rows`)."""
    train, val = [], []
    for source in sources:
        t, v = split_scene_rows(source, open_scene(source.image).shape, val_fraction, gap)
        train.append(t)
        val.append(v)
    return train, val


def _tile_rows(sources: Sequence[TrainingSource]) -> list[int]:
    """A row key per scene, larger further north.

    Scenes whose top edges (in the first scene's CRS) lie within half a scene height of each other share
    a key: the tiles of a web-map row share their top edge.
    """
    infos = [open_scene(s.image) for s in sources]
    crs = infos[0].crs
    tops = [
        (rasterio.warp.transform_bounds(i.crs, crs, *i.bounds) if i.crs != crs else i.bounds)[3]
        for i in infos
    ]
    size = min(abs(i.transform.e) * i.shape.rows for i in infos)
    return [round(t / (size / 2)) for t in tops]


def split_by_bounds(sources: Sequence[TrainingSource]) -> tuple[list[TrainingSource], list[TrainingSource]]:
    """Split scenes laid out as a grid of tiles by rows of tiles: the southernmost row validates.

    With four or more rows the row just north of the validation row is left out, so no training tile
    even touches a validation tile.

    Raises:
        ConfigError: fewer than two rows of scenes (split each scene with :func:`split_rows` instead).
    """
    keys = _tile_rows(sources)
    rows = sorted(set(keys), reverse=True)
    if len(rows) < 2:
        raise ConfigError(
            "the scenes form a single row, so they cannot be split by rows of scenes: "
            "split each scene into bands of rows (split_rows)"
        )
    val_key = rows[-1]
    gap_key = rows[-2] if len(rows) >= 4 else None
    train = [s for s, k in zip(sources, keys, strict=True) if k not in (val_key, gap_key)]
    val = [s for s, k in zip(sources, keys, strict=True) if k == val_key]
    return train, val


def split_by_area(
    sources: Sequence[TrainingSource], val_fraction: float = 0.2, gap: int = 0
) -> tuple[list[TrainingSource], list[TrainingSource]]:
    """Split scenes into training and validation sources that never share a pixel.

    Scenes in two or more rows of tiles are split by rows (:func:`split_by_bounds`); otherwise each scene
    is cut into a training band and a validation band ``gap`` rows apart (:func:`split_rows`).
    """
    if len(set(_tile_rows(sources))) >= 2:
        return split_by_bounds(sources)
    return split_rows(sources, val_fraction, gap)


def synthetic_scenes(
    directory: str | Path,
    n: int | None = None,
    size: int = 1024,
    seeds: Sequence[int] | None = None,
    bands: int = 3,
) -> list[TrainingSource]:
    """Write seeded synthetic scenes with their truth into ``directory`` and return them as sources.

    A scene already on disk with its truth is reused (the generator is deterministic in the seed).
    Labels are the truth GeoPackage's ``buildings`` and ``roads`` layers, by their ``class`` column.
    """
    if seeds is None:
        if n is None:
            raise ConfigError("give the number of synthetic scenes (n) or their seeds")
        seeds = range(n)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sources = []
    for seed in seeds:
        image = directory / f"synthetic-{seed}-{size}{'-nir' if bands == 4 else ''}.tif"
        truth = image.with_suffix(".gpkg")
        if not (image.is_file() and truth.is_file()):
            write_synthetic_scene(image, size, size, seed=seed, bands=bands, truth_path=truth)
        sources.append(TrainingSource(image, truth, LabelSpec(class_column="class")))
    return sources


def _train_window(rng: np.random.Generator, region: Region, scene: Shape2d, tile: int) -> Region:
    """A random tile window inside ``region``.

    It may leave the region only where the region meets the scene edge (by up to a quarter tile, mirror
    padded, as inference pads), so windows of disjoint regions never overlap.
    """
    pad = tile // 4

    def axis(start: int, stop: int, length: int) -> int:
        lo = start - (pad if start == 0 else 0)
        hi = stop - tile + (pad if stop == length else 0)
        if hi < lo:
            raise ConfigError(
                f"training region {region} is smaller than a {tile}-pixel tile: lower tile_size"
            )
        return int(rng.integers(lo, hi + 1))

    return Region(
        axis(region.row, region.row_stop, scene.rows),
        axis(region.col, region.col_stop, scene.cols),
        tile,
        tile,
    )


def grid_windows(region: Region, scene: Shape2d, tile: int) -> list[Region]:
    """Tile windows covering ``region`` without leaving it (the last window of an axis shifted back).

    A region narrower than a tile is covered by a tile that leaves it only past the scene edge.
    """

    def starts(start: int, stop: int, length: int) -> list[int]:
        if stop - start >= tile:
            out = list(range(start, stop - tile + 1, tile))
            return out + ([stop - tile] if out[-1] + tile < stop else [])
        # The overhang is mirrored back into the region only if it is shorter than the region.
        if start == 0 and 2 * (stop - start) > tile:
            return [stop - tile]
        if stop == length and 2 * (stop - start) > tile:
            return [start]
        raise ConfigError(
            f"region {region} is too narrow for {tile}-pixel validation tiles: "
            "use smaller tiles or a larger validation region"
        )

    return [
        Region(r, c, tile, tile)
        for r in starts(region.row, region.row_stop, scene.rows)
        for c in starts(region.col, region.col_stop, scene.cols)
    ]


def band_stats(
    scenes: Sequence[SceneData], tile: int, n_tiles: int = 64, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of the raw pixels of ``n_tiles`` random training windows."""
    rng = np.random.default_rng([seed, 7])
    total = np.zeros(len(scenes[0].bands))
    total_sq = np.zeros_like(total)
    count = 0
    for _ in range(n_tiles):
        scene = scenes[int(rng.integers(len(scenes)))]
        image, _ = scene.read(_train_window(rng, scene.region, scene.shape, tile))
        pixels = image.reshape(image.shape[0], -1).astype(np.float64)
        total += pixels.sum(axis=1)
        total_sq += (pixels**2).sum(axis=1)
        count += pixels.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def _gsd_window(rng: np.random.Generator, scene: SceneData, tile: int, gsd_range_m: tuple[float, float]) -> Region:
    """A window inside ``scene.region`` that covers a ``tile``-pixel crop at a GSD drawn log-uniform from the range.

    The coarsest GSD is capped where the window would no longer fit the region.
    """
    region = scene.region
    low, high = gsd_range_m
    high = min(high, min(region.rows, region.cols) / tile * scene.gsd_m)
    if high < low:
        raise ConfigError(
            f"training region {region} of {scene.path} is too small for {tile}-pixel tiles at "
            f"{low} m (the scene is {scene.gsd_m:.3f} m): lower tile_size or the GSD range"
        )
    gsd = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    side = min(max(1, round(tile * gsd / scene.gsd_m)), region.rows, region.cols)
    row = int(rng.integers(region.row, region.row_stop - side + 1))
    col = int(rng.integers(region.col, region.col_stop - side + 1))
    return Region(row, col, side, side)


class TrainTiles(Dataset):
    """Random training tiles: item ``i`` of epoch ``e`` is a pure function of (seed, e, i).

    Scenes are drawn in proportion to the area of their region, then a window inside the region, then
    the augmentation. Items are (image float32 (C, T, T) normalized, mask int64 (T, T)).

    With ``gsd_range_m``, a share ``gsd_p`` of the tiles is seen at another ground sample distance drawn
    log-uniform from the range: a window of the scene covering the same ground is resampled to the tile
    (averaged down, bilinear up) and its targets are rasterized on that grid
    (:meth:`SceneData.read_resampled`), so one model learns drone and satellite resolutions.
    """

    def __init__(
        self,
        scenes: Sequence[SceneData],
        tile: int,
        length: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment_cfg: Augment | None = None,
        seed: int = 0,
        gsd_range_m: tuple[float, float] | None = None,
        gsd_p: float = 1.0,
    ) -> None:
        self.scenes = list(scenes)
        self.tile = tile
        self.length = length
        self.mean = np.asarray(mean)
        self.std = np.asarray(std)
        self.augment_cfg = augment_cfg
        self.seed = seed
        self.epoch = 0
        self.gsd_range_m = gsd_range_m
        self.gsd_p = gsd_p
        areas = np.array([s.region.shape.size for s in self.scenes], dtype=np.float64)
        self._p = areas / areas.sum()

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def window(self, index: int) -> tuple[int, Region]:
        """The scene index and window of item ``index`` in the current epoch (larger or smaller than the
        tile when the item is resampled to another GSD)."""
        rng = self._rng(index)
        k = int(rng.choice(len(self.scenes), p=self._p))
        scene = self.scenes[k]
        # Drawn only with a GSD range, so runs without one repeat the windows they always had.
        if self.gsd_range_m is not None and rng.random() < self.gsd_p:
            return k, _gsd_window(rng, scene, self.tile, self.gsd_range_m)
        return k, _train_window(rng, scene.region, scene.shape, self.tile)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, window = self.window(index)
        if window.shape == Shape2d(self.tile, self.tile):
            raw, mask = self.scenes[k].read(window)
        else:
            raw, mask = self.scenes[k].read_resampled(window, self.tile)
        image = normalize(raw, self.mean, self.std)
        if self.augment_cfg is not None:
            # A generator of its own, so the window drawn above does not shift with the augmentation.
            image, mask = augment(
                image, mask, np.random.default_rng([self.seed, self.epoch, index, 1]), self.augment_cfg
            )
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), torch.from_numpy(
            mask.astype(np.int64)
        )


class ValidationTiles(Dataset):
    """Fixed validation tiles: a grid over each scene's region, at most ``max_tiles`` spread evenly."""

    def __init__(
        self,
        scenes: Sequence[SceneData],
        tile: int,
        mean: Sequence[float],
        std: Sequence[float],
        max_tiles: int | None = None,
    ) -> None:
        self.scenes = list(scenes)
        self.mean = np.asarray(mean)
        self.std = np.asarray(std)
        windows = [(k, w) for k, s in enumerate(self.scenes) for w in grid_windows(s.region, s.shape, tile)]
        if max_tiles is not None and len(windows) > max_tiles:
            picks = np.linspace(0, len(windows) - 1, max_tiles).round().astype(int)
            windows = [windows[i] for i in picks]
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, window = self.windows[index]
        raw, mask = self.scenes[k].read(window)
        return torch.from_numpy(normalize(raw, self.mean, self.std)), torch.from_numpy(mask)


def iter_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive batches of ``dataset`` in index order (in-process: the scenes are already in memory)."""
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
