"""Buildings staged on disk (pipeline.vectors.spool) are the buildings held in memory, in the same order."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyogrio
import pytest
import shapely

from pipeline.errors import OutputError
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.vectors import ChunkStream, SceneVectorizer, VectorSettings, vectorize_scene
from pipeline.vectors.gpkg import SceneRecord, publish_scene
from pipeline.vectors.layers import LayerBatches
from pipeline.vectors.spool import BuildingSpool
from tests.helpers import TRANSFORM, UTM, ArrayReader, tmpfs

SHAPE = (520, 610)
GRID = GeoGrid(Shape2d(*SHAPE), TRANSFORM, UTM)


@pytest.fixture(scope="module")
def town() -> tuple[np.ndarray, np.ndarray]:
    """Rows of small houses (hundreds, many across chunk lines) beside a road, with varied confidence."""
    rng = np.random.default_rng(11)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for r in range(6, 500, 19):
        for c in range(4, 590, 17):
            h, w = rng.integers(8, 15), rng.integers(7, 14)
            mask[r : r + h, c : c + w] = 1
    mask[250:262, :] = 2
    confidence = rng.integers(120, 255, SHAPE, dtype=np.uint8)
    return mask, confidence


def _streamed(mask, confidence, chunk_size, spool):
    """The layers through a ChunkStream fed in output-unit order, as the pipeline feeds it."""
    vectorizer = SceneVectorizer(GRID, settings=VectorSettings(chunk_size=chunk_size))
    stream = ChunkStream(vectorizer, processes=False, spool=spool)
    stream.start(ArrayReader(mask, confidence))
    for row in range(0, GRID.shape.rows, 100):
        stream.final(Region(row, 0, min(100, GRID.shape.rows - row), GRID.shape.cols))
    return vectorizer.finish(stream.results(), spool=spool)


def _wkb(frame):
    return list(shapely.to_wkb(frame.geometry.values))


@pytest.mark.parametrize("chunk_size", [48, 131, 1000])
def test_staged_buildings_equal_those_held_in_memory_for_any_chunk_size(town, tmp_path, chunk_size):
    mask, confidence = town
    reference = vectorize_scene(ArrayReader(mask, confidence), GRID, settings=VectorSettings(chunk_size=1000))
    (tmp_path / "buildings.spool").write_bytes(b"left by a killed run" * 100)
    spool = BuildingSpool(tmp_path / "buildings.spool")
    staged = _streamed(mask, confidence, chunk_size, spool)
    assert isinstance(staged.buildings, LayerBatches) and len(staged.buildings) == len(reference.buildings) > 400
    assert (tmp_path / "buildings.spool").stat().st_size >= 93 * len(reference.buildings)  # a rectangle: 93 bytes of WKB
    # Read back in batches of 37 (many batches): same features, same order, same scores and areas.
    frame = replace(staged.buildings, batch_size=37).to_frame()
    assert _wkb(frame) == _wkb(reference.buildings)
    np.testing.assert_array_equal(frame["score"], reference.buildings["score"])
    np.testing.assert_array_equal(frame["area_m2"], reference.buildings["area_m2"])
    assert list(frame.columns) == list(reference.buildings.columns) and frame.crs == reference.buildings.crs
    assert _wkb(staged.roads) == _wkb(reference.roads)


def test_a_retried_finish_stages_every_building_once(town, tmp_path):
    mask, confidence = town
    spool = BuildingSpool(tmp_path / "b.spool")
    vectorizer = SceneVectorizer(GRID, settings=VectorSettings(chunk_size=131))
    stream = ChunkStream(vectorizer, processes=False, spool=spool)
    stream.start(ArrayReader(mask, confidence))
    stream.final(Region.of_shape(GRID.shape))
    chunks = stream.results()
    first = vectorizer.finish(chunks, spool=spool)
    again = vectorizer.finish(stream.results(), spool=spool)  # a retried vectorize stage
    assert len(again.buildings) == len(first.buildings) == len(spool)
    assert _wkb(again.buildings.to_frame()) == _wkb(first.buildings.to_frame())


def test_publishing_staged_layers_writes_what_in_memory_layers_write(town, tmp_path):
    mask, confidence = town
    in_memory = vectorize_scene(ArrayReader(mask, confidence), GRID, settings=VectorSettings(chunk_size=131))
    staged = _streamed(mask, confidence, 131, BuildingSpool(tmp_path / "b.spool"))
    staged = replace(staged, buildings=replace(staged.buildings, batch_size=50))  # several appends
    record = SceneRecord(scene_id="town", path="town.tif", checksum="0", crs=UTM, footprint=shapely.box(0, 0, 1, 1),
                         processed_at="2026-12-01T00:00:00Z", model="m", run_id="r", counts={})
    attrs = dict(scene_id="town", model="m", run_id="r", created_at="2026-12-01T00:00:00Z")
    publish_scene(tmp_path / "memory.gpkg", in_memory.with_attributes(**attrs), record)
    publish_scene(tmp_path / "staged.gpkg", staged.with_attributes(**attrs), record)
    for layer in ("buildings", "roads", "road_centerlines"):
        a = pyogrio.read_dataframe(tmp_path / "memory.gpkg", layer=layer, fid_as_index=True)
        b = pyogrio.read_dataframe(tmp_path / "staged.gpkg", layer=layer, fid_as_index=True)
        assert len(a) == len(b) and list(a.index) == list(b.index), layer
        assert _wkb(a) == _wkb(b), layer
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), layer
    assert len(pyogrio.read_dataframe(tmp_path / "staged.gpkg", layer="buildings")) > 400


def test_an_empty_spool_is_an_empty_typed_layer(tmp_path):
    mask = np.zeros(SHAPE, dtype=np.uint8)
    staged = _streamed(mask, mask, 200, BuildingSpool(tmp_path / "b.spool"))
    frame = staged.buildings.to_frame()
    assert len(frame) == 0 and list(frame.columns) == ["class", "score", "area_m2", "geometry"]
    assert not (tmp_path / "b.spool").exists()


def test_a_full_disk_while_staging_names_the_file_and_the_fix(town, tmp_path):
    disk = tmp_path / "small"
    with tmpfs(disk, "64k") as mounted:
        if not mounted:
            pytest.skip("needs a small real filesystem: `mount -t tmpfs` is not permitted here (run as root to test)")
        mask, confidence = town
        with pytest.raises(OutputError, match=r"b\.spool: could not stage .* free space and run the same command"):
            _streamed(mask, confidence, 131, BuildingSpool(disk / "b.spool"))
