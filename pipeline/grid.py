"""Grids and block plans: where a scene's pixels are, and how it is cut into tiles and blocks.

Pure values and pure functions, no I/O. :class:`GeoGrid` is a raster's georeferenced grid (shape,
transform, CRS) as one value; :class:`Region` a rectangle of its pixels; :class:`BlockPlan` the tiling.

The geometry, along each axis (rows and columns alike), with tile size ``T``, overlap ``O`` and stride
``S = T - O``:

* Tiles sit on one global lattice anchored at the scene origin: tile ``k`` covers ``[k*S - O, k*S + S)``.
  Tile 0 starts ``O`` pixels before the scene, in mirror-padded context; enough tiles are placed that
  every scene pixel is covered.
* Each tile's blend weight ramps up over its first ``O`` pixels and down over its last ``O`` (see
  ``blend.py``). Neighbouring ramps cover exactly the same pixels, so the weights of the tiles covering
  a pixel sum to one: pixels ``[k*S, k*S + S - O)`` come from tile ``k`` alone, pixels
  ``[k*S + S - O, k*S + S)`` from tiles ``k`` and ``k + 1``.
* A block is a rectangular group of ``m x m`` lattice tiles. Each tile belongs to exactly one block, so
  no tile is ever inferred twice. A block owns the scene pixels ``[t0*S, t1*S)`` (its *core*); the last
  ``O`` of them also receive the ramp of the next block's first tile.
* Output units partition the scene: a block's interior, which only its own tiles reach, and the seams,
  which two or four blocks reach. A unit is final once all of its contributor blocks have been blended.

Because the lattice does not depend on the block size, the blended result of every pixel, and so the
mask, is the same for every block size. Blocks are only a unit of scheduling and memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import rasterio.transform
from affine import Affine
from rasterio.crs import CRS

from pipeline.errors import ConfigError

__all__ = [
    "Shape2d",
    "Region",
    "GeoGrid",
    "AxisPlan",
    "Block",
    "OutputUnit",
    "BlockPlan",
    "reflect_indices",
]


@dataclass(frozen=True, slots=True)
class Shape2d:
    """A raster size as (rows, cols), never (width, height)."""

    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.rows < 0 or self.cols < 0:
            raise ValueError(f"Shape2d needs non-negative rows and cols, got {self.rows} x {self.cols}")

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of pixels in scene (row, col) coordinates. It may reach outside the scene."""

    row: int
    col: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.rows < 0 or self.cols < 0:
            raise ValueError(f"Region needs non-negative rows and cols, got {self.rows} x {self.cols}")

    @property
    def row_stop(self) -> int:
        return self.row + self.rows

    @property
    def col_stop(self) -> int:
        return self.col + self.cols

    @property
    def shape(self) -> Shape2d:
        return Shape2d(self.rows, self.cols)

    @property
    def size(self) -> int:
        return self.rows * self.cols

    @property
    def is_empty(self) -> bool:
        return self.rows == 0 or self.cols == 0

    @classmethod
    def from_bounds(cls, row: int, col: int, row_stop: int, col_stop: int) -> Region:
        return cls(row, col, max(0, row_stop - row), max(0, col_stop - col))

    @classmethod
    def of_shape(cls, shape: Shape2d) -> Region:
        return cls(0, 0, shape.rows, shape.cols)

    def intersection(self, other: Region) -> Region:
        """The common part of two regions (possibly empty)."""
        return Region.from_bounds(
            max(self.row, other.row),
            max(self.col, other.col),
            min(self.row_stop, other.row_stop),
            min(self.col_stop, other.col_stop),
        )

    def contains(self, other: Region) -> bool:
        return (
            self.row <= other.row
            and self.col <= other.col
            and other.row_stop <= self.row_stop
            and other.col_stop <= self.col_stop
        )

    def slices_in(self, outer: Region) -> tuple[slice, slice]:
        """Index this region inside an array that covers ``outer``."""
        if not outer.contains(self):
            raise ValueError(f"{self} does not lie inside {outer}")
        r, c = self.row - outer.row, self.col - outer.col
        return slice(r, r + self.rows), slice(c, c + self.cols)


@dataclass(frozen=True)
class GeoGrid:
    """A georeferenced raster grid: its size, the affine from pixel corners to CRS coordinates, and the CRS.

    One hashable value, so the three never travel apart; ``grid[region]`` is the grid of a sub-window
    (odc-geo's ``GeoBox`` is the model). ``crs`` takes anything ``rasterio.crs.CRS.from_user_input`` does.
    """

    shape: Shape2d
    transform: Affine
    crs: CRS

    def __post_init__(self) -> None:
        if not isinstance(self.crs, CRS):
            object.__setattr__(self, "crs", CRS.from_user_input(self.crs))

    @classmethod
    def of_dataset(cls, dataset) -> GeoGrid:
        """The grid of an open rasterio dataset."""
        return cls(Shape2d(dataset.height, dataset.width), dataset.transform, dataset.crs)

    def __getitem__(self, region: Region) -> GeoGrid:
        """The grid of ``region``'s pixels (it may reach outside this grid)."""
        return GeoGrid(region.shape, self.transform @ Affine.translation(region.col, region.row), self.crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return rasterio.transform.array_bounds(self.shape.rows, self.shape.cols, self.transform)


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Source indices of positions ``[start, stop)`` of an axis of length ``size`` mirror-padded.

    This is ``numpy.pad(mode="reflect")`` (the edge pixel is not repeated) expressed as an index map,
    so that a window of a scene can be padded exactly as the whole scene would be, including pads wider
    than the scene itself (numpy reflects repeatedly; the index map has period ``2 * (size - 1)``).
    """
    if size <= 0:
        raise ValueError(f"cannot mirror an empty axis (size {size})")
    positions = np.arange(start, stop, dtype=np.int64)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.mod(positions, period)
    return np.where(folded < size, folded, period - folded)


@dataclass(frozen=True, slots=True)
class AxisPlan:
    """The tile lattice and its grouping into blocks along one axis."""

    length: int
    tile_size: int
    overlap: int
    block_tiles: int

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def n_tiles(self) -> int:
        return max(1, math.ceil((self.length + self.overlap) / self.stride))

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_tiles / self.block_tiles)

    def tile_start(self, k: int) -> int:
        return k * self.stride - self.overlap

    def block_tiles_range(self, b: int) -> range:
        return range(b * self.block_tiles, min((b + 1) * self.block_tiles, self.n_tiles))

    def block_extent(self, b: int) -> tuple[int, int]:
        """[start, stop) of the union of block ``b``'s tiles."""
        tiles = self.block_tiles_range(b)
        return self.tile_start(tiles.start), self.tile_start(tiles.stop - 1) + self.tile_size

    def block_core(self, b: int) -> tuple[int, int]:
        """[start, stop) of the scene pixels block ``b`` owns (possibly empty at the scene's end)."""
        tiles = self.block_tiles_range(b)
        start = min(tiles.start * self.stride, self.length)
        return start, min(tiles.stop * self.stride, self.length)

    def units(self) -> list[tuple[int, int, tuple[int, ...]]]:
        """The axis cut into (start, stop, contributing blocks): each block's interior, then its seam."""
        out: list[tuple[int, int, tuple[int, ...]]] = []
        for b in range(self.n_blocks):
            core_start, core_stop = self.block_core(b)
            tiles = self.block_tiles_range(b)
            seam_start = max(core_start, min(tiles.stop * self.stride - self.overlap, self.length))
            if seam_start > core_start:
                out.append((core_start, seam_start, (b,)))
            if core_stop > seam_start:
                # A seam inside the scene always has a next block: the lattice covers every scene pixel.
                out.append((seam_start, core_stop, (b, b + 1)))
        return out


@dataclass(frozen=True, slots=True)
class Block:
    """A rectangular group of lattice tiles: the unit of work, memory and scheduling."""

    index: tuple[int, int]
    extent: Region
    core: Region
    tiles: tuple[Region, ...]

    @property
    def key(self) -> str:
        return f"{self.index[0]}-{self.index[1]}"


@dataclass(frozen=True, slots=True)
class OutputUnit:
    """A rectangle of the scene whose blended value needs exactly the listed blocks."""

    region: Region
    contributors: tuple[tuple[int, int], ...]

    @property
    def key(self) -> str:
        r = self.region
        return f"{r.row}-{r.col}-{r.rows}-{r.cols}"


@dataclass(frozen=True)
class BlockPlan:
    """A scene cut into blocks of tiles. A pure function of the scene shape and the tiling options."""

    scene: Shape2d
    tile_size: int
    overlap: int
    block_tiles: int

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ConfigError(f"tile_size must be at least 16 pixels, got {self.tile_size}")
        if self.overlap < 0 or 2 * self.overlap >= self.tile_size:
            raise ConfigError(
                f"overlap must be at least 0 and less than half of tile_size ({self.tile_size}), "
                f"got {self.overlap}: lower --overlap or raise --tile"
            )
        if self.block_tiles < 1:
            raise ConfigError(f"a block needs at least one tile, got block_tiles={self.block_tiles}")
        if self.scene.rows < 1 or self.scene.cols < 1:
            raise ConfigError(f"the scene is empty ({self.scene.rows} x {self.scene.cols} pixels)")

    @classmethod
    def for_scene(cls, scene: Shape2d, tile_size: int, overlap: int, block_size: int) -> BlockPlan:
        """Plan with blocks of about ``block_size`` pixels: a whole number of tile strides, at least one."""
        stride = tile_size - overlap
        if block_size < 1:
            raise ConfigError(f"block size must be positive, got {block_size}")
        return cls(scene, tile_size, overlap, max(1, round(block_size / stride)) if stride > 0 else 1)

    @property
    def stride(self) -> int:
        return self.tile_size - self.overlap

    @property
    def block_size(self) -> int:
        """The block core side in pixels (a multiple of the stride)."""
        return self.block_tiles * self.stride

    @cached_property
    def row_axis(self) -> AxisPlan:
        return AxisPlan(self.scene.rows, self.tile_size, self.overlap, self.block_tiles)

    @cached_property
    def col_axis(self) -> AxisPlan:
        return AxisPlan(self.scene.cols, self.tile_size, self.overlap, self.block_tiles)

    @property
    def n_blocks(self) -> Shape2d:
        return Shape2d(self.row_axis.n_blocks, self.col_axis.n_blocks)

    @property
    def n_tiles(self) -> Shape2d:
        return Shape2d(self.row_axis.n_tiles, self.col_axis.n_tiles)

    @property
    def tile_overhead(self) -> float:
        """Pixels inferred per scene pixel."""
        return self.n_tiles.size * self.tile_size**2 / self.scene.size

    def block(self, bi: int, bj: int) -> Block:
        ra, ca = self.row_axis, self.col_axis
        r0, r1 = ra.block_extent(bi)
        c0, c1 = ca.block_extent(bj)
        cr0, cr1 = ra.block_core(bi)
        cc0, cc1 = ca.block_core(bj)
        tiles = tuple(
            Region(ra.tile_start(ti), ca.tile_start(tj), self.tile_size, self.tile_size)
            for ti in ra.block_tiles_range(bi)
            for tj in ca.block_tiles_range(bj)
        )
        return Block((bi, bj), Region.from_bounds(r0, c0, r1, c1), Region.from_bounds(cr0, cc0, cr1, cc1), tiles)

    def blocks(self) -> Iterator[Block]:
        """All blocks in raster order (the order that finishes seams soonest)."""
        for bi in range(self.n_blocks.rows):
            for bj in range(self.n_blocks.cols):
                yield self.block(bi, bj)

    @cached_property
    def units(self) -> tuple[OutputUnit, ...]:
        """The output units, which partition the scene exactly."""
        out = []
        for r0, r1, rblocks in self.row_axis.units():
            for c0, c1, cblocks in self.col_axis.units():
                contributors = tuple((bi, bj) for bi in rblocks for bj in cblocks)
                out.append(OutputUnit(Region.from_bounds(r0, c0, r1, c1), contributors))
        return tuple(out)

    @cached_property
    def units_by_block(self) -> dict[tuple[int, int], tuple[OutputUnit, ...]]:
        """For each block, the units it contributes to."""
        table: dict[tuple[int, int], list[OutputUnit]] = {}
        for unit in self.units:
            for idx in unit.contributors:
                table.setdefault(idx, []).append(unit)
        return {k: tuple(v) for k, v in table.items()}
