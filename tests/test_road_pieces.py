"""Roads come out in pieces split at a fixed grid of road cells: bounded by a cell, the same for every block
and chunk size, stitched exactly within a cell."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine

from pipeline.config import DEMO_MODEL, SegmentConfig
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.stages import infer_blocks, prepare
from pipeline.synthetic import write_synthetic_scene
from pipeline.vectors import ChunkStream, SceneVectorizer, VectorSettings, vectorize_scene
from pipeline.vectors.polygonize import CellGrid
from tests.helpers import TRANSFORM, UTM, ArrayReader


def road_grid(size: int = 1000, spacing: int = 90, width: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """One connected road network over the whole scene: a grid of streets, a diagonal avenue, some houses."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for start in range(20, size, spacing):
        mask[start : start + width, :] = 2
        mask[:, start : start + width] = 2
    r = np.arange(size)
    for d in range(-7, 8):
        mask[r, np.clip(r + d, 0, size - 1)] = 2
    rng = np.random.default_rng(3)
    for _ in range(150):
        row, col = rng.integers(0, size - 30, 2)
        block = mask[row : row + 20, col : col + 25]
        block[block == 0] = 1
    mask[500:503, 700:703] = 2  # a road speck (9 px, under the 80 px of 20 m^2): dropped
    confidence = rng.integers(80, 256, mask.shape).astype(np.uint8)
    return mask, confidence


def pixel_bounds(frame, transform: Affine = TRANSFORM) -> np.ndarray:
    """(min col, min row, max col, max row) of each feature, in scene pixels (north-up ``transform``)."""
    minx, miny, maxx, maxy = frame.geometry.bounds.to_numpy().T
    inv = ~transform
    c0, r1 = inv @ (minx, miny)
    c1, r0 = inv @ (maxx, maxy)
    return np.column_stack([c0, r0, c1, r1])


def assert_within_cells(frame, cells: CellGrid, slack_px: float = 0.0, transform: Affine = TRANSFORM) -> None:
    for (c0, r0, c1, r1), cell in zip(pixel_bounds(frame, transform), frame["cell"], strict=True):
        region = cells.region(cell)
        assert region.col - slack_px <= c0 and c1 <= region.col_stop + slack_px, (cell, c0, c1)
        assert region.row - slack_px <= r0 and r1 <= region.row_stop + slack_px, (cell, r0, r1)


@pytest.fixture(scope="module")
def grid_scene():
    return road_grid()


@pytest.fixture(scope="module")
def grid_layers(grid_scene):
    mask, confidence = grid_scene
    grid = GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM)
    return {
        chunk: vectorize_scene(ArrayReader(mask, confidence), grid, settings=VectorSettings(chunk_size=chunk, road_cell_px=256))
        for chunk in (256, 192, 2048)  # the cells' own grid, chunks that cut cells, one chunk for all
    }


def test_a_road_network_over_every_chunk_comes_out_in_pieces_no_larger_than_a_cell(grid_scene, grid_layers):
    mask, _ = grid_scene
    cells = CellGrid(Shape2d(*mask.shape), 256)
    n_cells = 16
    for chunk, layers in grid_layers.items():
        roads, lines = layers.roads, layers.road_centerlines
        assert set(roads["cell"]) == set(range(n_cells)), chunk  # the network reaches every cell...
        assert set(lines["cell"]) == set(range(n_cells)), chunk
        # ... and no piece leaves its cell (simplification moves a vertex by at most its tolerance, 1 px).
        assert_within_cells(roads, cells, slack_px=1.0)
        assert_within_cells(lines, cells, slack_px=1.0)
        assert (shapely.get_type_id(roads.geometry.values) == 3).all()  # Polygons, not one MultiPolygon
        extent = pixel_bounds(roads)
        assert (extent[:, 2] - extent[:, 0]).max() <= 256 + 2 and (extent[:, 3] - extent[:, 1]).max() <= 256 + 2


def test_road_pieces_are_the_same_for_every_chunk_size(grid_layers):
    base = grid_layers[2048]
    assert len(base.roads) > 16 and len(base.road_centerlines) > 16
    for chunk in (256, 192):
        for name in ("roads", "road_centerlines"):
            got, ref = getattr(grid_layers[chunk], name), getattr(base, name)
            assert np.array_equal(shapely.to_wkb(got.geometry.values), shapely.to_wkb(ref.geometry.values)), (chunk, name)
            np.testing.assert_array_equal(got["cell"], ref["cell"])
            np.testing.assert_allclose(got["score"], ref["score"], rtol=1e-12)


def test_within_a_cell_the_pieces_are_the_roads_stitched_exactly(grid_scene):
    mask, confidence = grid_scene
    grid = GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM)
    settings = VectorSettings(chunk_size=192, road_cell_px=256, simplify_tolerance_px=0)
    roads = vectorize_scene(ArrayReader(mask, confidence), grid, settings=settings).roads
    road = mask == 2
    road[500:503, 700:703] = False  # the speck
    # Unsimplified, the pieces tile the road pixels: areas are pixel counts, no gap or overlap at any seam.
    assert roads["area_m2"].sum() == pytest.approx(road.sum() * 0.25)
    assert shapely.union_all(roads.geometry.values).area == pytest.approx(road.sum() * 0.25)
    cells = CellGrid(Shape2d(*mask.shape), 256)
    for cell in range(16):
        rows, cols = cells.region(cell).slices_in(Region.of_shape(Shape2d(*mask.shape)))
        assert roads[roads["cell"] == cell]["area_m2"].sum() == pytest.approx(road[rows, cols].sum() * 0.25)
    # A piece's score is the mean confidence over its own pixels.
    from rasterio.features import geometry_mask

    largest = roads.iloc[int(np.argmax(roads["area_m2"]))]
    inside = geometry_mask([largest.geometry], mask.shape, TRANSFORM, invert=True)
    assert largest["score"] == pytest.approx(confidence[inside].mean() / 255)


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    """A synthetic town with its truth encoded for the free forward (realistic roads: junctions, curves)."""
    from bench.free_forward import encode_truth

    folder = tmp_path_factory.mktemp("town")
    scene = write_synthetic_scene(folder / "town.tif", 640, 640, seed=3)
    return encode_truth(scene.path, scene.truth_path, folder / "town-encoded.tif")


def test_road_pieces_are_the_same_for_two_block_sizes_and_two_chunk_sizes(tmp_path, town):
    """The real stages (blocks inferred by Dask, chunks vectorized in processes as the mask is written)."""
    from bench.free_forward import free_forward

    runs = {}
    with free_forward():
        for block, chunk in ((256, 96), (1024, 128)):
            job = prepare(town, tmp_path / f"b{block}c{chunk}", SegmentConfig(model=DEMO_MODEL, block_size=block))
            classes = {i: name for i, name in enumerate(job.classes) if i > 0}
            vectorizer = SceneVectorizer(job.run_grid, classes=classes,
                                         settings=VectorSettings(chunk_size=chunk, road_cell_px=128))
            stream = ChunkStream(vectorizer, processes=block == 256)  # one run in chunk processes
            infer_blocks(job, stream)
            runs[block, chunk] = job.plan.n_blocks.size, vectorizer.finish(stream.results())
    transform = job.run_grid.transform
    (blocks_a, a), (blocks_b, b) = runs.values()
    assert blocks_a > blocks_b
    cells = CellGrid(Shape2d(640, 640), 128)
    assert a.roads["cell"].nunique() >= 8 and len(a.road_centerlines) >= 8
    for name in ("roads", "road_centerlines"):
        got, ref = getattr(a, name), getattr(b, name)
        assert np.array_equal(shapely.to_wkb(got.geometry.values), shapely.to_wkb(ref.geometry.values)), name
        np.testing.assert_array_equal(got["cell"], ref["cell"])
        np.testing.assert_allclose(got["score"], ref["score"], rtol=1e-12)
        assert_within_cells(got, cells, slack_px=1.0, transform=transform)


def test_road_cells_are_validated():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="road_cell_px"):
        VectorSettings(road_cell_px=8)
