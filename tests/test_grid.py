from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.grid import BlockPlan, Region, Shape2d, reflect_indices
from pipeline.raster.blend import BlockAccumulator, UnitAssembler, blend_window, fixed_window, split_block


@given(
    rows=st.integers(1, 300), cols=st.integers(1, 300), tile=st.integers(16, 96),
    overlap_frac=st.floats(0, 0.49), block_tiles=st.integers(1, 4),
)
@settings(max_examples=150, deadline=None)
def test_units_partition_the_scene_and_lie_in_their_blocks(rows, cols, tile, overlap_frac, block_tiles):
    overlap = min(int(tile * overlap_frac), (tile - 1) // 2)
    plan = BlockPlan(Shape2d(rows, cols), tile, overlap, block_tiles)
    cover = np.zeros((rows, cols), dtype=np.int32)
    for unit in plan.units:
        cover[unit.region.slices_in(Region.of_shape(plan.scene))] += 1
        for idx in unit.contributors:
            assert plan.block(*idx).extent.contains(unit.region)
    assert (cover == 1).all()
    # Every pixel of every contributor's tiles that falls in a unit is really reached by that block.
    for unit in plan.units:
        reached = np.zeros((unit.region.rows, unit.region.cols), dtype=np.int32)
        for idx in unit.contributors:
            for t in plan.block(*idx).tiles:
                inter = t.intersection(unit.region)
                if not inter.is_empty:
                    reached[inter.slices_in(unit.region)] += 1
        assert (reached >= 1).all()


@given(rows=st.integers(1, 200), cols=st.integers(1, 200), tile=st.integers(16, 64), overlap=st.integers(0, 7))
@settings(max_examples=60, deadline=None)
def test_blend_weights_are_a_partition_of_unity_on_the_scene(rows, cols, tile, overlap):
    plan = BlockPlan(Shape2d(rows, cols), tile, overlap, 2)
    pad = tile
    total = np.zeros((rows + 2 * pad, cols + 2 * pad))
    window = blend_window(tile, overlap)
    for block in plan.blocks():
        for t in block.tiles:
            total[t.row + pad : t.row_stop + pad, t.col + pad : t.col_stop + pad] += window
    np.testing.assert_allclose(total[pad : pad + rows, pad : pad + cols], 1.0, atol=1e-12)


def _blend_scene(plan: BlockPlan, classes: int, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Mask and confidence of a scene through the blocks, seams and units of ``plan``."""
    scene = Region.of_shape(plan.scene)
    mask = np.zeros((plan.scene.rows, plan.scene.cols), np.uint8)
    confidence = np.zeros_like(mask)
    assembler = UnitAssembler()
    window = fixed_window(plan.tile_size, plan.overlap)
    for block in plan.blocks():
        acc = BlockAccumulator(block.extent, classes)
        for t in block.tiles:
            acc.add(t, probabilities(t), window)
        finals, partials = split_block(plan, block, acc, None)
        for unit in [*finals, *assembler.add(partials)]:
            mask[unit.region.slices_in(scene)] = unit.mask
            confidence[unit.region.slices_in(scene)] = unit.confidence
    assert assembler.pending_units == 0
    return mask, confidence


@given(rows=st.integers(20, 160), cols=st.integers(20, 160), tile=st.integers(16, 48), overlap=st.integers(1, 7),
       classes=st.integers(2, 4), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_blending_is_exactly_the_same_for_every_block_size(rows, cols, tile, overlap, classes, seed):
    """Fixed-point sums: a seam pixel summed in another grouping of blocks gives the very same bits, even
    for probabilities that are near-ties everywhere; and the result is the float64 blend's."""

    def probabilities(t: Region) -> np.ndarray:  # a tile's output depends on the tile alone
        rng = np.random.default_rng([seed, t.row + 1000, t.col + 1000])
        p = 0.5 + 1e-6 * rng.standard_normal((classes, t.rows, t.cols)).astype(np.float32)
        return (p / p.sum(axis=0)).astype(np.float32)

    results = [_blend_scene(BlockPlan.for_scene(Shape2d(rows, cols), tile, overlap, size), classes, probabilities)
               for size in (tile, 2 * tile, 1000)]
    for mask, confidence in results[1:]:
        np.testing.assert_array_equal(mask, results[0][0])
        np.testing.assert_array_equal(confidence, results[0][1])
    # The float64 blend of the whole scene: the same confidence (within one step of 255) and the same class
    # wherever the runner-up is more than the fixed point's resolution behind.
    plan = BlockPlan.for_scene(Shape2d(rows, cols), tile, overlap, 1000)
    pad, window = tile, blend_window(tile, overlap)
    sums = np.zeros((classes, rows + 2 * pad, cols + 2 * pad))
    for block in plan.blocks():
        for t in block.tiles:
            sums[:, t.row + pad : t.row_stop + pad, t.col + pad : t.col_stop + pad] += probabilities(t) * window
    sums = sums[:, pad : pad + rows, pad : pad + cols]  # weights sum to 1 here (partition of unity)
    top2 = np.sort(sums, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-6
    np.testing.assert_array_equal(results[0][0][clear], np.argmax(sums, axis=0)[clear])
    assert np.abs(results[0][1].astype(int) - np.rint(255 * sums.max(axis=0))).max() <= 1


def test_each_tile_belongs_to_one_block():
    plan = BlockPlan.for_scene(Shape2d(1000, 700), 128, 16, 300)
    tiles = [t for b in plan.blocks() for t in b.tiles]
    assert len(tiles) == len(set(tiles)) == plan.n_tiles.size


def test_lattice_is_independent_of_block_size():
    tiles = []
    for block_size in (112, 224, 448, 5000):
        plan = BlockPlan.for_scene(Shape2d(500, 333), 128, 16, block_size)
        tiles.append(sorted((t.row, t.col) for b in plan.blocks() for t in b.tiles))
    assert all(t == tiles[0] for t in tiles)


@given(start=st.integers(-500, 500), length=st.integers(0, 300), size=st.integers(1, 60))
def test_reflect_indices_match_numpy_pad(start, length, size):
    pad = 1000
    padded = np.pad(np.arange(size), pad, mode="reflect")
    expected = padded[start + pad : start + pad + length]
    np.testing.assert_array_equal(reflect_indices(start, start + length, size), expected)


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [(64, 32, "overlap"), (64, -1, "overlap"), (8, 0, "tile_size")],
)
def test_bad_tiling_options_name_the_option(tile, overlap, message):
    with pytest.raises(ConfigError, match=message):
        BlockPlan(Shape2d(100, 100), tile, overlap, 1)

