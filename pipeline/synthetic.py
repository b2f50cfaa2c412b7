"""Seeded synthetic scenes: GeoTIFFs that look like aerial imagery, with ground-truth vectors.

The scenes train the demo model and are the end-to-end acceptance test, so they must be learnable by a
small U-Net yet not separable by colour alone: roofs share greys and browns with roads and soil, trees
hide parts of buildings and roads, shadows darken the ground beside every building.

Everything is a pure function of the seed and of global pixel coordinates, so any window renders the
same pixels whatever the block size:

* Roads are one global layout of curved centerlines (main roads crossing the scene, branches forming
  T junctions), generated from the seed and held as shapely lines.
* Buildings and trees are generated per cell of a coarse grid with an RNG seeded by (seed, row, col).
  A building stays inside its own cell shrunk by half the minimum gap, so buildings of neighbouring
  cells can never touch, and cells never need to look at each other.
* Noise fields (ground texture, vegetation, roof texture, sensor noise) hash global pixel coordinates,
  so they are continuous across block boundaries.

A window is rendered with a small margin, blurred (the sensor's point spread), and cropped, so the blur
too is independent of where the blocks fall.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import affine
import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import rasterio.transform
import shapely
import shapely.affinity
from rasterio.crs import CRS
from rasterio.features import geometry_mask, rasterize
from rasterio.windows import Window
from scipy.ndimage import gaussian_filter

from pipeline.errors import ConfigError, OutputError
from pipeline.grid import Region, Shape2d

__all__ = [
    "SyntheticScene",
    "ChangedScene",
    "write_synthetic_scene",
    "write_changed_scene",
]

_CELL_M = 96.0  # coarse grid for buildings and trees
_MIN_GAP_M = 2.0  # between buildings, and between buildings and roads (truth promises >= 1.5 m)
_BLUR_SIGMA_PX = 0.6
_RENDER_MARGIN_PX = 4  # > 4 sigma of the blur, so cropped pixels never see the padded border
_TILE = 512

# Materials as (R, G, B, NIR) reflectance-like values in digital numbers.
_SOIL = np.array([152.0, 132.0, 102.0, 125.0], dtype=np.float32)
_GRASS = np.array([98.0, 122.0, 64.0, 190.0], dtype=np.float32)
_SHRUB = np.array([62.0, 88.0, 46.0, 205.0], dtype=np.float32)
_TREE = np.array([42.0, 70.0, 36.0, 215.0], dtype=np.float32)
_ASPHALT = np.array([118.0, 118.0, 120.0, 80.0], dtype=np.float32)
_DIRT = np.array([160.0, 140.0, 112.0, 115.0], dtype=np.float32)
_SHADOW = np.array([0.42, 0.45, 0.55, 0.40], dtype=np.float32)
# Roof palette: red tiles, grey concrete, white-ish, blue metal, brown, green metal.
_ROOFS = np.array(
    [
        [165.0, 72.0, 58.0, 95.0],
        [132.0, 132.0, 136.0, 110.0],
        [212.0, 212.0, 205.0, 160.0],
        [72.0, 102.0, 150.0, 85.0],
        [128.0, 92.0, 66.0, 90.0],
        [88.0, 120.0, 96.0, 100.0],
    ],
    dtype=np.float32,
)
_ROOF_WEIGHTS = np.array([0.28, 0.26, 0.14, 0.12, 0.14, 0.06])
_PITCHED = np.array([True, False, False, True, True, True])


@dataclass(frozen=True)
class SyntheticScene:
    """A synthetic scene on disk and how it was made."""

    path: Path
    truth_path: Path
    shape: Shape2d
    crs: str
    transform: affine.Affine
    seed: int


@dataclass(frozen=True)
class _Layout:
    """All vector objects of a scene, in scene CRS coordinates, with the values needed to draw them."""

    road_lines: np.ndarray  # unclipped centerlines (they run past the scene edge, as real roads do)
    road_widths: np.ndarray
    road_polys: np.ndarray
    road_colours: np.ndarray  # (n, 4)
    buildings: np.ndarray
    roof_colours: np.ndarray  # (n, 4)
    roof_shade: np.ndarray  # polygons darkened on each roof: rims and shaded roof halves
    roof_shade_factor: np.ndarray
    shadows: np.ndarray  # building and tree shadows
    trees: np.ndarray


# --------------------------------------------------------------------------------------------------
# Hash-based noise on global pixel coordinates


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M3 = np.uint64(0xBF58476D1CE4E5B9)
_M4 = np.uint64(0x94D049BB133111EB)


def _hash2(key: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A 64-bit hash of integer coordinate arrays (broadcast), keyed by ``key``.

    Written by hand (splitmix64's finaliser) because numpy's generators are sequential: a value must
    depend only on its own coordinates, never on which window asked for it.
    """
    h = (a.astype(np.int64).view(np.uint64) * _M1) ^ (b.astype(np.int64).view(np.uint64) * _M2)
    h ^= np.uint64(key & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> np.uint64(30)
    h *= _M3
    h ^= h >> np.uint64(27)
    h *= _M4
    h ^= h >> np.uint64(31)
    return h


def _unit(h: np.ndarray) -> np.ndarray:
    """Hash values to floats in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _noise_key(seed: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, *name.encode()]).generate_state(1, np.uint64)[0])


def _value_noise(key: int, rows: np.ndarray, cols: np.ndarray, scale_px: float) -> np.ndarray:
    """Smooth value noise in [0, 1] at global pixel ``rows`` x ``cols``, lattice spacing ``scale_px``."""
    v = rows.astype(np.float64) / scale_px
    u = cols.astype(np.float64) / scale_px
    i0 = np.floor(v).astype(np.int64)
    j0 = np.floor(u).astype(np.int64)
    fy = v - i0
    fx = u - j0
    wy = (fy * fy * (3.0 - 2.0 * fy)).astype(np.float32)
    wx = (fx * fx * (3.0 - 2.0 * fx)).astype(np.float32)
    li = np.arange(i0.min(), i0.max() + 2)
    lj = np.arange(j0.min(), j0.max() + 2)
    lattice = _unit(_hash2(key, li[:, None], lj[None, :])).astype(np.float32)
    jj = j0 - lj[0]
    across = lattice[:, jj] * (1.0 - wx) + lattice[:, jj + 1] * wx
    ii = i0 - li[0]
    return across[ii] * (1.0 - wy)[:, None] + across[ii + 1] * wy[:, None]


def _fbm(key: int, rows: np.ndarray, cols: np.ndarray, scales_px: list[float]) -> np.ndarray:
    """Octaves of value noise, weights halving with scale, normalised to [0, 1]."""
    total = np.zeros((rows.size, cols.size), dtype=np.float32)
    norm = 0.0
    for k, scale in enumerate(scales_px):
        weight = 0.5**k
        total += weight * _value_noise(key + k, rows, cols, scale)
        norm += weight
    return total / norm


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --------------------------------------------------------------------------------------------------
# Layout: roads, buildings, trees


def _curved_line(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> shapely.LineString:
    """A smooth curve from ``start`` to ``end``: the chord bent by a few sine harmonics."""
    chord = end - start
    length = float(np.hypot(*chord))
    normal = np.array([-chord[1], chord[0]]) / max(length, 1e-9)
    t = np.linspace(0.0, 1.0, max(8, int(length / 4.0)))
    offset = np.zeros_like(t)
    for k in range(1, 2 + int(length / 350.0)):
        amplitude = rng.uniform(-1.0, 1.0) * min(0.12 * length / k, 60.0 / math.sqrt(k))
        offset += amplitude * np.sin(math.pi * k * t)
    points = start + t[:, None] * chord + offset[:, None] * normal
    return shapely.LineString(points)


def _edge_point(rng: np.random.Generator, bounds: tuple[float, float, float, float], side: int) -> np.ndarray:
    """A point just outside side ``side`` (0 west, 1 east, 2 south, 3 north) of ``bounds``."""
    x0, y0, x1, y1 = bounds
    pad = 30.0
    if side < 2:
        return np.array([x0 - pad if side == 0 else x1 + pad, rng.uniform(y0, y1)])
    return np.array([rng.uniform(x0, x1), y0 - pad if side == 2 else y1 + pad])


def _roads(
    seed: int, bounds: tuple[float, float, float, float]
) -> tuple[list[shapely.LineString], list[float], list[bool]]:
    """Main roads crossing the scene and curved branches leaving them (T junctions)."""
    rng = np.random.default_rng([seed, 1])
    x0, y0, x1, y1 = bounds
    width_km, height_km = (x1 - x0) / 1000.0, (y1 - y0) / 1000.0
    n_main = 1 + rng.poisson(1.2 * (width_km + height_km))
    n_branch = rng.poisson(5.0 * width_km * height_km) + int(rng.random() < 0.7)
    lines: list[shapely.LineString] = []
    widths: list[float] = []
    paved: list[bool] = []
    for _ in range(n_main):
        a = rng.integers(4)
        b = (a + rng.integers(1, 4)) % 4
        lines.append(_curved_line(rng, _edge_point(rng, bounds, a), _edge_point(rng, bounds, b)))
        widths.append(float(rng.uniform(7.0, 14.0)))
        paved.append(bool(rng.random() < 0.85))
    for _ in range(n_branch):
        parent = lines[rng.integers(len(lines))]
        at = parent.interpolate(rng.uniform(0.15, 0.85), normalized=True)
        ahead = parent.interpolate(min(parent.project(at) + 2.0, parent.length))
        heading = math.atan2(ahead.y - at.y, ahead.x - at.x)
        heading += rng.choice([-1.0, 1.0]) * rng.uniform(math.radians(60), math.radians(120))
        length = rng.uniform(80.0, 450.0)
        start = np.array([at.x, at.y])
        end = start + length * np.array([math.cos(heading), math.sin(heading)])
        lines.append(_curved_line(rng, start, end))
        widths.append(float(rng.uniform(4.0, 8.0)))
        paved.append(bool(rng.random() < 0.5))
    return lines, widths, paved


def _rectangle(cx: float, cy: float, length: float, width: float, angle: float) -> shapely.Polygon:
    c, s = math.cos(angle), math.sin(angle)
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * [length, width]
    rot = corners @ np.array([[c, s], [-s, c]])
    return shapely.Polygon(rot + [cx, cy])


def _building(
    rng: np.random.Generator, cx: float, cy: float, angle: float
) -> tuple[shapely.Geometry, list[shapely.Polygon]]:
    """A rotated rectangle or L-shape (sides about 6-30 m) and the rectangles ("wings") that make it."""
    big = rng.random() < 0.15
    length = rng.uniform(14.0, 30.0) if big else rng.uniform(7.0, 16.0)
    width = rng.uniform(0.45, 0.85) * length if big else rng.uniform(6.0, min(length, 12.0))
    main = _rectangle(cx, cy, length, width, angle)
    if rng.random() > 0.3:
        return main, [main]
    # A wing on one end of the main block, sticking out on one side: an L.
    wing_len = rng.uniform(6.0, max(6.5, 0.8 * length))
    wing_w = rng.uniform(6.0, max(6.5, min(width, 10.0)))
    side = rng.choice([-1.0, 1.0])
    end = rng.choice([-1.0, 1.0])
    along = end * (length - wing_w) / 2.0
    across = side * (width / 2.0 + wing_len / 2.0 - 0.5)
    c, s = math.cos(angle), math.sin(angle)
    wx, wy = cx + along * c - across * s, cy + along * s + across * c
    wing = _rectangle(wx, wy, wing_w, wing_len, angle)
    return shapely.union(main, wing).normalize(), [main, wing]


def _ridge_shade(wing: shapely.Polygon) -> shapely.Polygon:
    """One half of a pitched roof along its long axis: the side turned away from the sun."""
    coords = np.asarray(wing.exterior.coords)[:4]
    e0 = np.linalg.norm(coords[1] - coords[0])
    e1 = np.linalg.norm(coords[2] - coords[1])
    # Ridge along the longer side: split through the midpoints of the two short sides.
    if e0 >= e1:
        return shapely.Polygon([coords[0], coords[1], (coords[1] + coords[2]) / 2, (coords[0] + coords[3]) / 2])
    return shapely.Polygon([coords[1], coords[2], (coords[2] + coords[3]) / 2, (coords[1] + coords[0]) / 2])


def _swept(geom: shapely.Geometry, parts: list[shapely.Polygon], dx: float, dy: float) -> shapely.Geometry:
    """The area a convex-part footprint sweeps when moved by (dx, dy): its cast shadow."""
    sweeps = [shapely.convex_hull(shapely.union(p, shapely.affinity.translate(p, dx, dy))) for p in parts]
    return shapely.union_all(sweeps)


def _tree(rng: np.random.Generator, cx: float, cy: float, radius: float) -> shapely.Polygon:
    """A crown: a circle with a wobbly edge."""
    n = 14
    theta = np.linspace(0.0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 1)
    r = radius * rng.uniform(0.75, 1.15, n)
    return shapely.Polygon(np.c_[cx + r * np.cos(theta), cy + r * np.sin(theta)]).buffer(0.3 * radius, quad_segs=2)


def _cell_objects(
    seed: int,
    i: int,
    j: int,
    cell: shapely.Polygon,
    road_tree: shapely.STRtree,
    road_lines: np.ndarray,
    road_widths: np.ndarray,
    road_clear: shapely.Geometry,
    density_key: int,
    pixel_size: float,
    sun: tuple[float, float],
) -> dict[str, list]:
    """Buildings, roofs, shadows and trees of one grid cell, from that cell's own RNG."""
    rng = np.random.default_rng([seed, 2, i, j])
    x0, y0, x1, y1 = cell.bounds
    inner = shapely.buffer(cell, -_MIN_GAP_M / 2.0, join_style="mitre")
    out: dict[str, list] = {k: [] for k in ("buildings", "roof", "shade", "shade_f", "shadows", "trees")}
    if inner.is_empty:
        return out
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # Settlement density: a smooth field over the scene, so there are towns, hamlets and open land.
    at_row, at_col = np.array([int(-cy / pixel_size)]), np.array([int(cx / pixel_size)])
    density = float(_value_noise(density_key, at_row, at_col, 450.0 / pixel_size)[0, 0])
    attempts = rng.poisson(36.0 * float(_smoothstep(np.float64(density), 0.3, 0.75)) * (cell.area / _CELL_M**2))
    placed: list[shapely.Geometry] = []
    for _ in range(attempts):
        bx, by = rng.uniform(x0, x1), rng.uniform(y0, y1)
        centre = shapely.Point(bx, by)
        nearest = road_tree.nearest(centre)
        line = road_lines[nearest]
        dist = line.distance(centre)
        if rng.random() > 0.2 + 0.8 * math.exp(-dist / 45.0):
            continue
        if dist < 60.0:
            # Face the nearest road, as houses do.
            pos = line.project(centre)
            a, b = line.interpolate(max(pos - 2.0, 0.0)), line.interpolate(min(pos + 2.0, line.length))
            angle = math.atan2(b.y - a.y, b.x - a.x) + rng.normal(0.0, 0.06)
        else:
            angle = rng.uniform(0.0, math.pi)
        geom, wings = _building(rng, bx, by, angle)
        if not inner.contains(geom) or geom.intersects(road_clear):
            continue
        if placed and min(shapely.distance(geom, placed)) < _MIN_GAP_M:
            continue
        placed.append(geom)
        roof = rng.choice(len(_ROOFS), p=_ROOF_WEIGHTS)
        out["buildings"].append(geom)
        out["roof"].append(_ROOFS[roof] + rng.normal(0.0, 10.0, 4).astype(np.float32))
        if _PITCHED[roof] and rng.random() < 0.8:
            for wing in wings:
                out["shade"].append(shapely.intersection(_ridge_shade(wing), geom))
                out["shade_f"].append(0.8)
        else:
            rim = shapely.difference(geom, shapely.buffer(geom, -0.6, join_style="mitre"))
            out["shade"].append(rim)
            out["shade_f"].append(0.85)
        height = rng.uniform(3.0, 9.0)
        out["shadows"].append(_swept(geom, wings, sun[0] * height, sun[1] * height))
    # Trees: scattered, and some beside buildings and roads so that they overhang them.
    n_trees = rng.poisson(6.0 * (cell.area / _CELL_M**2))
    anchors = [shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(n_trees)]
    for geom in placed:
        if rng.random() < 0.35:
            anchors.append(shapely.Point(np.asarray(geom.exterior.coords)[rng.integers(4)]))
    for _ in range(rng.poisson(2.0)):
        p = shapely.Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        nearest = road_tree.nearest(p)
        near = road_lines[nearest]
        dist = near.distance(p)
        if 0.0 < dist < 40.0:
            # Pull the point to the road's edge so that the crown overhangs the verge and the road.
            on = near.interpolate(near.project(p))
            edge = road_widths[nearest] / 2.0 + rng.uniform(0.0, 2.0)
            anchors.append(shapely.Point(on.x + (p.x - on.x) * edge / dist, on.y + (p.y - on.y) * edge / dist))
    for p in anchors:
        radius = rng.uniform(1.5, 4.5)
        crown = _tree(rng, p.x + rng.normal(0, 1.5), p.y + rng.normal(0, 1.5), radius)
        out["trees"].append(crown)
        out["shadows"].append(shapely.affinity.translate(crown, sun[0] * radius, sun[1] * radius))
    return out


def _layout(seed: int, transform: affine.Affine, shape: Shape2d) -> _Layout:
    """All objects of the scene. Buildings and trees come cell by cell, each cell from its own RNG."""
    px = transform.a
    x0, y1 = transform.c, transform.f
    x1, y0 = x0 + shape.cols * px, y1 - shape.rows * px
    scene = shapely.box(x0, y0, x1, y1)
    lines, widths, paved = _roads(seed, (x0, y0, x1, y1))
    rng = np.random.default_rng([seed, 3])
    road_lines = np.array(lines, dtype=object)
    road_widths = np.array(widths)
    road_polys = shapely.buffer(road_lines, road_widths / 2.0, quad_segs=6)
    colours = np.where(np.array(paved)[:, None], _ASPHALT, _DIRT)
    road_colours = (colours + rng.normal(0.0, 8.0, colours.shape)).astype(np.float32)
    road_tree = shapely.STRtree(road_lines)
    road_clear = shapely.union_all(shapely.buffer(road_lines, road_widths / 2.0 + _MIN_GAP_M, quad_segs=4))
    shapely.prepare(road_clear)
    azimuth = rng.uniform(0.0, 2 * math.pi)
    sun = (0.7 * math.cos(azimuth), 0.7 * math.sin(azimuth))
    density_key = _noise_key(seed, "density")

    acc: dict[str, list] = {k: [] for k in ("buildings", "roof", "shade", "shade_f", "shadows", "trees")}
    n_i = math.ceil((y1 - y0) / _CELL_M)
    n_j = math.ceil((x1 - x0) / _CELL_M)
    for i in range(n_i):
        for j in range(n_j):
            cell = shapely.intersection(
                shapely.box(x0 + j * _CELL_M, y1 - (i + 1) * _CELL_M, x0 + (j + 1) * _CELL_M, y1 - i * _CELL_M),
                scene,
            )
            objects = _cell_objects(
                seed, i, j, cell, road_tree, road_lines, road_widths, road_clear, density_key, px, sun
            )
            for k, v in objects.items():
                acc[k].extend(v)

    def arr(items: list) -> np.ndarray:
        return np.array(items, dtype=object) if items else np.empty(0, dtype=object)

    shade = arr(acc["shade"])
    shade_keep = ~shapely.is_empty(shade) if shade.size else np.zeros(0, dtype=bool)

    return _Layout(
        road_lines=road_lines,
        road_widths=road_widths,
        road_polys=road_polys,
        road_colours=road_colours,
        buildings=arr(acc["buildings"]),
        roof_colours=np.array(acc["roof"], dtype=np.float32).reshape(-1, 4),
        roof_shade=shade[shade_keep],
        roof_shade_factor=np.array(acc["shade_f"], dtype=np.float32)[shade_keep],
        shadows=arr(acc["shadows"]),
        trees=arr(acc["trees"]),
    )


# --------------------------------------------------------------------------------------------------
# Rendering


class _Renderer:
    """Draws any window of a scene from its layout; the result depends on the window only by cropping."""

    def __init__(self, layout: _Layout, seed: int, transform: affine.Affine, bands: int) -> None:
        self.layout = layout
        self.transform = transform
        self.bands = bands
        self.px = transform.a
        self.keys = {name: _noise_key(seed, name) for name in ("mix", "bright", "veg", "tex", "crown", "sensor")}
        rng = np.random.default_rng([seed, 4])
        # Per-scene palette drift, so that no fixed colour means "ground" across scenes.
        self.soil = (_SOIL * rng.uniform(0.9, 1.1, 4)).astype(np.float32)[:bands]
        self.grass = (_GRASS * rng.uniform(0.9, 1.1, 4)).astype(np.float32)[:bands]
        self.greenness = rng.uniform(0.3, 0.7)
        self.trees = {
            name: shapely.STRtree(getattr(layout, name))
            for name in ("road_polys", "buildings", "roof_shade", "shadows", "trees")
        }

    def _ids(
        self, name: str, window: Region, out_shape: tuple[int, int], values: np.ndarray | None = None
    ) -> np.ndarray:
        """Rasterize the objects of one layer over ``window``: 1-based object ids (or given values), 0 elsewhere."""
        geoms = getattr(self.layout, name)
        t = self.transform @ affine.Affine.translation(window.col, window.row)
        x0, y1 = t.c, t.f
        box = shapely.box(x0, y1 - window.rows * self.px, x0 + window.cols * self.px, y1)
        hits = np.sort(self.trees[name].query(box))
        dtype = np.float32 if values is not None else np.int32
        if hits.size == 0:
            return np.zeros(out_shape, dtype=dtype)
        vals = values[hits] if values is not None else hits + 1
        return rasterize(
            zip(geoms[hits], vals.tolist()), out_shape=out_shape, transform=t, fill=0, all_touched=False, dtype=dtype
        )

    def render(self, window: Region) -> np.ndarray:
        """The (bands, rows, cols) uint8 pixels of ``window``."""
        m = _RENDER_MARGIN_PX
        padded = Region(window.row - m, window.col - m, window.rows + 2 * m, window.cols + 2 * m)
        shape = (padded.rows, padded.cols)
        rows = np.arange(padded.row, padded.row_stop)
        cols = np.arange(padded.col, padded.col_stop)
        per_m = 1.0 / self.px
        k = self.keys

        # Ground: soil and grass mixed at field scale, brightness at several scales, vegetation patches.
        mix = _smoothstep(_value_noise(k["mix"], rows, cols, 140.0 * per_m), 0.5 - self.greenness, 1.3 - self.greenness)
        bright = 0.82 + 0.36 * _fbm(k["bright"], rows, cols, [40.0 * per_m, 9.0 * per_m, 2.0 * per_m])
        veg = _smoothstep(_fbm(k["veg"], rows, cols, [55.0 * per_m, 14.0 * per_m]), 0.58, 0.68)
        tex = _value_noise(k["tex"], rows, cols, 1.5 * per_m)
        img = (self.soil[:, None, None] * (1.0 - mix) + self.grass[:, None, None] * mix) * bright
        shrub = _SHRUB[: self.bands, None, None] * (0.75 + 0.5 * tex)
        img = img * (1.0 - veg) + shrub * veg

        lay = self.layout
        road = self._ids("road_polys", padded, shape)
        on_road = road > 0
        road_rgb = lay.road_colours[:, : self.bands].T[:, road - 1] * (0.94 + 0.12 * tex)
        img = np.where(on_road, road_rgb, img)

        shadow = self._ids("shadows", padded, shape) > 0
        img = np.where(shadow, img * _SHADOW[: self.bands, None, None], img)

        bld = self._ids("buildings", padded, shape)
        in_bld = bld > 0
        if lay.buildings.size:
            shade = self._ids("roof_shade", padded, shape, values=lay.roof_shade_factor)
            shade = np.where(shade > 0, shade, 1.0)
            roof = lay.roof_colours[:, : self.bands].T[:, bld - 1] * shade * (0.95 + 0.1 * tex)
            img = np.where(in_bld, roof, img)

        crown = self._ids("trees", padded, shape) > 0
        bumps = 0.55 + 0.7 * _fbm(k["crown"], rows, cols, [1.2 * per_m, 0.6 * per_m])
        img = np.where(crown, _TREE[: self.bands, None, None] * bumps, img)

        img = gaussian_filter(img.astype(np.float32), sigma=(0, _BLUR_SIGMA_PX, _BLUR_SIGMA_PX))
        img = img[:, m:-m, m:-m]
        r_in, c_in = rows[m:-m], cols[m:-m]
        for b in range(self.bands):
            h = _hash2(k["sensor"] + b, r_in[:, None], c_in[None, :])
            # Four 16-bit uniforms summed: close to Gaussian (Irwin-Hall), sd about 2.5 DN.
            s = sum(((h >> np.uint64(16 * q)) & np.uint64(0xFFFF)).astype(np.float32) for q in range(4))
            img[b] += (s / 65535.0 - 2.0) * 4.3
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Files


def _truth_frames(layout: _Layout, scene: shapely.Polygon, crs: str) -> dict[str, gpd.GeoDataFrame]:
    """The truth layers, clipped to the scene."""
    buildings = gpd.GeoDataFrame(
        {"class": ["building"] * len(layout.buildings)}, geometry=list(layout.buildings), crs=crs
    )
    roads = shapely.intersection(shapely.union_all(layout.road_polys), scene)
    road_parts = shapely.get_parts(roads)
    road_parts = road_parts[shapely.get_type_id(road_parts) == 3]
    roads_gdf = gpd.GeoDataFrame({"class": ["road"] * len(road_parts)}, geometry=list(road_parts), crs=crs)
    lines = shapely.intersection(layout.road_lines, scene)
    centre = gpd.GeoDataFrame({"width_m": layout.road_widths}, geometry=list(lines), crs=crs)
    centre = centre[~centre.geometry.is_empty].explode(index_parts=False)
    centre = centre[centre.geom_type == "LineString"].reset_index(drop=True)
    return {"buildings": buildings, "roads": roads_gdf, "road_centerlines": centre}


def _write_truth(frames: dict[str, gpd.GeoDataFrame], truth_path: Path) -> None:
    tmp = truth_path.with_name(f".{truth_path.name}.tmp.gpkg")
    tmp.unlink(missing_ok=True)
    geometry_types = {"buildings": "Polygon", "roads": "Polygon", "road_centerlines": "LineString"}
    try:
        for name, gdf in frames.items():
            pyogrio.write_dataframe(gdf, tmp, layer=name, driver="GPKG", geometry_type=geometry_types[name])
        os.replace(tmp, truth_path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise


def _default_origin(seed: int) -> tuple[float, float]:
    """Upper-left (easting, northing): whole kilometres apart for different seeds."""
    rng = np.random.default_rng([seed, 0])
    return 300_000.0 + 1000.0 * rng.integers(0, 200), 3_000_000.0 + 1000.0 * rng.integers(0, 200)


def write_synthetic_scene(
    path: str | Path,
    rows: int,
    cols: int,
    *,
    seed: int = 0,
    pixel_size: float = 0.5,
    crs: str = "EPSG:32645",
    bands: int = 3,
    block_size: int = 1024,
    truth_path: str | Path | None = None,
    origin: tuple[float, float] | None = None,
) -> SyntheticScene:
    """Write a synthetic scene GeoTIFF and its ground-truth GeoPackage.

    Args:
        path: Output GeoTIFF.
        rows: Scene height in pixels.
        cols: Scene width in pixels.
        seed: Everything (layout, colours, noise, location) follows from it.
        pixel_size: Metres per pixel.
        crs: A projected CRS.
        bands: 3 (RGB) or 4 (RGB + NIR).
        block_size: Side of the windows rendered and written at a time; the pixels do not depend on it.
        truth_path: Output GeoPackage; default ``path`` with suffix ``.gpkg``.
        origin: Upper-left (easting, northing); default derived from the seed.

    Returns:
        The scene's paths and georeferencing.
    """
    path = Path(path)
    truth = Path(truth_path) if truth_path is not None else path.with_suffix(".gpkg")
    if rows < 1 or cols < 1:
        raise ConfigError(f"synthetic scene size must be at least 1 x 1 pixels, got rows={rows}, cols={cols}")
    if bands not in (3, 4):
        raise ConfigError(f"bands must be 3 (RGB) or 4 (RGB + NIR), got {bands}")
    if not pixel_size > 0:
        raise ConfigError(f"pixel_size must be positive metres, got {pixel_size}")
    if block_size < 16:
        raise ConfigError(f"block_size must be at least 16 pixels, got {block_size}")
    crs_obj = CRS.from_user_input(crs)
    if not crs_obj.is_projected:
        raise ConfigError(f"crs must be a projected CRS in metres (e.g. EPSG:32645), got {crs}")
    if not path.parent.is_dir() or not truth.parent.is_dir():
        raise OutputError(f"output folder {path.parent} or {truth.parent} does not exist: create it first")

    east, north = origin if origin is not None else _default_origin(seed)
    transform = affine.Affine(pixel_size, 0.0, east, 0.0, -pixel_size, north)
    shape = Shape2d(rows, cols)
    layout = _layout(seed, transform, shape)
    renderer = _Renderer(layout, seed, transform, bands)

    big = rows * cols * bands > 3_500_000_000
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": bands,
        "dtype": "uint8",
        "crs": crs_obj,
        "transform": transform,
        "tiled": True,
        "blockxsize": _TILE,
        "blockysize": _TILE,
        "compress": "deflate",
        "predictor": 2,
        "interleave": "pixel",
        "BIGTIFF": "YES" if big else "NO",
    }
    if bands == 3:
        profile["photometric"] = "RGB"
    tmp = path.with_name(f".{path.name}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            for r0 in range(0, rows, block_size):
                for c0 in range(0, cols, block_size):
                    win = Region(r0, c0, min(block_size, rows - r0), min(block_size, cols - c0))
                    dst.write(renderer.render(win), window=Window(c0, r0, win.cols, win.rows))
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    scene_box = shapely.box(*rasterio.transform.array_bounds(rows, cols, transform))
    _write_truth(_truth_frames(layout, scene_box, crs_obj.to_string()), truth)
    return SyntheticScene(path, truth, shape, crs_obj.to_string(), transform, seed)


@dataclass(frozen=True)
class ChangedScene:
    """A later acquisition of a synthetic scene: its path, and the true footprints removed and added."""

    path: Path
    removed: list[shapely.Geometry]
    added: list[shapely.Geometry]


def write_changed_scene(
    scene: str | Path, path: str | Path, *, remove: int, add: int, truth_path: str | Path | None = None
) -> ChangedScene:
    """Write a copy of a synthetic scene in which ``remove`` buildings are gone and ``add`` are new.

    A removed building (and its shadow: the patch reaches 7 m round it) is painted over with the pixels of
    a free spot of the same scene; a new one is a building copied, shadow and all, onto a free spot. Only
    buildings with no other building within 7 m are used, and free spots keep 8 m from every building and
    3 m from every road, so that each edit is one building. The pixels are edited, not re-rendered: the
    change a model must see is the one a real later acquisition shows.

    Args:
        scene: A GeoTIFF written by :func:`write_synthetic_scene`.
        path: The changed copy to write (same grid and profile).
        remove: Buildings to paint over.
        add: Buildings to add.
        truth_path: The scene's ground truth (default: ``scene`` with suffix ``.gpkg``).

    Raises:
        ConfigError: the scene has too few isolated buildings or too little free ground for the edits.
    """
    scene, path = Path(scene), Path(path)
    truth_file = Path(truth_path) if truth_path is not None else scene.with_suffix(".gpkg")
    truth = np.asarray(pyogrio.read_dataframe(truth_file, layer="buildings").geometry.values, dtype=object)
    roads = shapely.union_all(pyogrio.read_dataframe(truth_file, layer="roads").geometry.values)
    with rasterio.open(scene) as ds:
        profile, img, transform = ds.profile, ds.read(), ds.transform
        inner = shapely.buffer(shapely.box(*ds.bounds), -10.0)
    patches = shapely.buffer(truth, 7.0)  # a shadow is at most 0.7 x 9 m long
    isolated = [i for i in range(truth.size) if shapely.within(patches[i], inner)
                and not shapely.intersects(patches[i], np.delete(truth, i)).any()]
    if len(isolated) < remove + add:
        raise ConfigError(f"{scene}: {len(isolated)} isolated buildings, {remove + add} edits asked for: "
                          "use a larger scene or another seed")
    taken = [shapely.union_all(shapely.buffer(truth, 8.0)), shapely.buffer(roads, 3.0)]

    def free_spot(patch: shapely.Geometry) -> tuple[float, float]:
        """The first offset (4 m steps, row by row) that puts ``patch`` on free ground; the spot is then taken."""
        cx, cy = patch.centroid.x, patch.centroid.y
        x0, y0, x1, y1 = inner.bounds
        for y in np.arange(y1, y0, -4.0):
            for x in np.arange(x0, x1, 4.0):
                moved = shapely.affinity.translate(patch, x - cx, y - cy)
                if moved.within(inner) and not any(moved.intersects(t) for t in taken):
                    taken.append(shapely.buffer(moved, 4.0))
                    return x - cx, y - cy
        raise ConfigError(f"{scene}: no free ground left for the edits: use a larger scene or fewer edits")

    def copy(source: shapely.Geometry, target: shapely.Geometry) -> None:
        """The pixels under ``source`` onto ``target`` (the same shape, moved by whole pixels)."""
        rows, cols = np.nonzero(geometry_mask([target], img.shape[1:], transform, invert=True))
        dx, dy = target.centroid.x - source.centroid.x, target.centroid.y - source.centroid.y
        img[:, rows, cols] = img[:, rows + round(dy / transform.a), cols - round(dx / transform.a)]

    removed, added = [truth[i] for i in isolated[:remove]], []
    for i in isolated[:remove]:
        dx, dy = free_spot(patches[i])
        copy(shapely.affinity.translate(patches[i], dx, dy), patches[i])  # ground over the building
    for i in isolated[remove:remove + add]:
        dx, dy = free_spot(patches[i])
        copy(patches[i], shapely.affinity.translate(patches[i], dx, dy))
        added.append(shapely.affinity.translate(truth[i], dx, dy))
    tmp = path.with_name(f".{path.name}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(img)
        os.replace(tmp, path)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    return ChangedScene(path, removed, added)
