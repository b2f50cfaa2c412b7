"""Blending overlapping tile predictions into seamless class probabilities. Pure array code.

Each tile's probabilities are multiplied by a smooth window and added into an accumulator, together
with the window itself; the blended probability is the weighted sum divided by the summed weights.
The window ramps as ``sin^2`` over the first ``overlap`` pixels and ``cos^2`` over the last, so on the
tile lattice of ``grid.py`` the weights of neighbouring tiles sum to one (a partition of unity): the
result is a convex combination of tile predictions with no visible seam, and each tile's ramp starts
where the context that tile saw was thinnest.

Accumulators are integers (fixed point, :data:`FIXED_POINT` units per 1): a pixel in a seam is summed in a
different grouping depending on which blocks its tiles fall into, and integer addition does not care, so
the mask and the confidence are exactly the same for every block size. Each tile's contribution is its
probability times the window in fixed point, truncated: a function of the tile and the pixel alone. (The
float64 sums before made the grouping merely unlikely to show after rounding, at twice the memory: the
int32 sums and weights of a 4-class block extent, 1904^2 at the defaults, are 73 MB against 145; and
adding a tile is a float32 product and an integer add: 2.4-2.9 against 4.2-6.3 ms a 4-class 512^2 tile
with float64, warm arrays, 1 core.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pipeline.classes import NODATA
from pipeline.grid import Block, BlockPlan, OutputUnit, Region

__all__ = [
    "NODATA_CLASS",
    "FIXED_POINT",
    "ramp_1d",
    "blend_window",
    "FixedWindow",
    "fixed_window",
    "BlockAccumulator",
    "UnitResult",
    "UnitPartial",
    "UnitAssembler",
    "finalize",
]

#: Mask value written where the scene itself has no data (``pipeline.classes.NODATA``).
NODATA_CLASS = NODATA
#: Fixed-point units per 1 of the accumulators: float32's resolution of a probability, and room for 128
#: tiles on one pixel in int32 (a pixel has at most 4 on the lattice).
FIXED_POINT = 2**24


def ramp_1d(tile_size: int, overlap: int) -> np.ndarray:
    """The 1-D blend window: ``sin^2`` up over ``overlap`` pixels, flat, ``cos^2`` down (sums to 1 on the lattice)."""
    w = np.ones(tile_size, dtype=np.float64)
    if overlap > 0:
        up = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = up
        w[tile_size - overlap :] = up[::-1]
    return w


@lru_cache(maxsize=8)
def blend_window(tile_size: int, overlap: int) -> np.ndarray:
    """The 2-D blend window (outer product of the 1-D ramps); read-only, cached."""
    w = np.outer(ramp_1d(tile_size, overlap), ramp_1d(tile_size, overlap))
    w.flags.writeable = False
    return w


@dataclass(frozen=True)
class FixedWindow:
    """The blend window in fixed point: float32 factors for the probabilities, int32 weights."""

    factor: np.ndarray  # float32 (T, T): window * FIXED_POINT
    weights: np.ndarray  # int32 (T, T): floor(window * FIXED_POINT)


@lru_cache(maxsize=8)
def fixed_window(tile_size: int, overlap: int) -> FixedWindow:
    """:func:`blend_window` scaled to :data:`FIXED_POINT` units; read-only, cached."""
    scaled = blend_window(tile_size, overlap) * FIXED_POINT
    window = FixedWindow(scaled.astype(np.float32), np.floor(scaled).astype(np.int32))
    window.factor.flags.writeable = False
    window.weights.flags.writeable = False
    return window


@dataclass
class BlockAccumulator:
    """Weighted sums of tile probabilities over one block's extent, in fixed point.

    ``sums`` ``(classes, rows, cols)`` and ``weights`` ``(rows, cols)`` are int32 arrays of the extent's
    shape; given ones (a worker's, reused from block to block, see ``pipeline.raster.blocks``) are zeroed
    here, else fresh ones are made.
    """

    extent: Region
    num_classes: int
    sums: np.ndarray | None = field(default=None, repr=False)
    weights: np.ndarray | None = field(default=None, repr=False)
    # A tile's product and its integer part, reused for every tile of the block.
    _product: np.ndarray | None = field(default=None, init=False, repr=False)
    _fixed: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        shape = (self.extent.rows, self.extent.cols)
        if self.sums is None or self.weights is None:
            self.sums = np.zeros((self.num_classes, *shape), dtype=np.int32)
            self.weights = np.zeros(shape, dtype=np.int32)
            return
        if self.sums.shape != (self.num_classes, *shape) or self.weights.shape != shape:
            raise ValueError(f"arrays {self.sums.shape} / {self.weights.shape} do not fit the extent {self.extent}")
        if self.sums.dtype != np.int32 or self.weights.dtype != np.int32:
            raise ValueError(f"accumulator arrays must be int32, got {self.sums.dtype} / {self.weights.dtype}")
        self.sums.fill(0)
        self.weights.fill(0)

    def add(self, tile: Region, probabilities: np.ndarray, window: FixedWindow) -> None:
        """Add one tile's probabilities ``(classes, T, T)`` (0..1) weighted by ``window``."""
        rows, cols = tile.slices_in(self.extent)
        if self._product is None or self._product.shape != probabilities.shape:
            self._product = np.empty(probabilities.shape, dtype=np.float32)
            self._fixed = np.empty(probabilities.shape, dtype=np.int32)
        np.multiply(probabilities, window.factor, out=self._product)
        np.copyto(self._fixed, self._product, casting="unsafe")  # truncates: >= 0, below 2^24 + 1
        self.sums[:, rows, cols] += self._fixed
        self.weights[rows, cols] += window.weights

    def part(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        """Views of the sums and weights over ``region`` (which must lie inside the extent)."""
        rows, cols = region.slices_in(self.extent)
        return self.sums[:, rows, cols], self.weights[rows, cols]


@dataclass(frozen=True)
class UnitResult:
    """A final output unit: class mask and confidence (probability of the chosen class, 0..255)."""

    region: Region
    mask: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class UnitPartial:
    """One block's contribution to a unit that other blocks also reach."""

    unit: OutputUnit
    block: tuple[int, int]
    sums: np.ndarray
    weights: np.ndarray
    valid: np.ndarray | None


def finalize(sums: np.ndarray, weights: np.ndarray, valid: np.ndarray | None, region: Region) -> UnitResult:
    """Take the most probable class and its probability (its weighted sum over the summed weights).

    The class is the argmax of the sums themselves: dividing every class by the same positive weight
    changes no order, so only the winner is divided. The argmax is a running comparison over the few
    classes, the first maximum winning as in ``np.argmax``, which is 2-3x slower along a leading axis
    (0.24 s against 0.09 s for 3 x 2048^2 float64). Sums and weights are the fixed-point integers of
    :class:`BlockAccumulator` (any integer dtype).
    """
    best = sums[0].copy()
    mask = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, sums.shape[0]):
        np.copyto(mask, np.uint8(k), where=sums[k] > best)
        np.maximum(best, sums[k], out=best)
    probability = np.divide(best, weights, dtype=np.float64)
    probability *= 255.0
    confidence = np.rint(probability, out=probability).astype(np.uint8)
    if valid is not None:
        mask[~valid] = NODATA_CLASS
        confidence[~valid] = 0
    return UnitResult(region, mask, confidence)


def split_block(
    plan: BlockPlan, block: Block, acc: BlockAccumulator, valid: np.ndarray | None
) -> tuple[list[UnitResult], list[UnitPartial]]:
    """Cut a blended block into final units (its interior) and partials for the seams it shares.

    ``valid`` covers the block's core (None where the scene has no nodata).
    """
    finals: list[UnitResult] = []
    partials: list[UnitPartial] = []
    for unit in plan.units_by_block[block.index]:
        sums, weights = acc.part(unit.region)
        unit_valid = None
        if valid is not None and block.core.contains(unit.region):
            unit_valid = valid[unit.region.slices_in(block.core)]
        if len(unit.contributors) == 1:
            finals.append(finalize(sums, weights, unit_valid, unit.region))
        else:
            # Copies: a seam's partial outlives the block's accumulator until its other blocks are done.
            partials.append(UnitPartial(unit, block.index, sums.copy(), weights.copy(), unit_valid))
    return finals, partials


class UnitAssembler:
    """Collects seam partials from blocks finished in any order and finalizes each seam once complete.

    Memory is bounded by the seams whose blocks are not all done: thin strips (``overlap`` pixels wide)
    along the edges of the blocks in flight and of the last finished row of blocks.
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[UnitPartial]] = {}

    @property
    def pending_units(self) -> int:
        return len(self._pending)

    def add(self, partials: Iterable[UnitPartial]) -> list[UnitResult]:
        """Add a block's partials; return the units they complete."""
        done: list[UnitResult] = []
        for partial in partials:
            group = self._pending.setdefault(partial.unit.key, [])
            group.append(partial)
            if len(group) == len(partial.unit.contributors):
                del self._pending[partial.unit.key]
                done.append(_combine(group))
        return done


def _combine(group: list[UnitPartial]) -> UnitResult:
    # Integer sums: exact in any order. Sorted by block all the same, so the valid mask taken is always the same.
    group = sorted(group, key=lambda p: p.block)
    sums = np.sum([p.sums for p in group], axis=0, dtype=np.int64)
    weights = np.sum([p.weights for p in group], axis=0, dtype=np.int64)
    valid = next((p.valid for p in group if p.valid is not None), None)
    return finalize(sums, weights, valid, group[0].unit.region)
