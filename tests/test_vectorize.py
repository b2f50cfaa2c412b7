"""Polygonize per chunk and stitch exactly: the result must not depend on the chunk size."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from shapely.geometry import shape as to_shape
from skimage.draw import disk, line

from pipeline.errors import ConfigError, SceneReadError
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.vectors import (
    ChunkStream,
    SceneVectorizer,
    VectorSettings,
    chunk_regions,
    polygonize_chunk,
    stitch,
    vectorize_scene,
)
from tests.helpers import TRANSFORM, UTM, ArrayReader


def reader(mask: np.ndarray, confidence: np.ndarray) -> ArrayReader:
    return ArrayReader(mask, confidence)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 700 x 700 mask whose shapes cross the chunk lines of 256 and 512 (and meet them diagonally)."""
    rng = np.random.default_rng(7)
    m = np.zeros((700, 700), dtype=np.uint8)
    for _ in range(150):
        r, c = rng.integers(0, 680, 2)
        h, w = rng.integers(3, 30, 2)
        m[r : r + h, c : c + w] = 1
    m[230:290, 220:300] = 0
    m[240:280, 230:290] = 1  # across the 256 corner, with a hole that reaches into four chunks
    m[250:265, 250:262] = 0
    m[100:110, 500:530] = 1  # across the 512 column
    m[300:500, 300:320] = 1  # a tall building through the 256 and 512 rows... with a notch
    m[400:410, 310:320] = 0
    m[255, 100], m[256, 101] = 1, 1  # pixels meeting only at a corner that lies on a chunk corner line
    m[255, 255 + 60], m[256, 254 + 60] = 1, 1
    m[511, 511], m[512, 512], m[511, 513] = 1, 1, 1  # diagonal contacts at the 512 (and 256) corner
    m[600:620, 0:700] = 2  # a road through every chunk column, with a junction
    m[0:700, 640:652] = 2
    rr, cc = line(0, 420, 699, 699)
    for d in range(-5, 6):
        m[rr, np.clip(cc + d, 0, 699)] = 2
    m[30:40, 30:40] = 255  # nodata is no class
    confidence = rng.integers(60, 256, m.shape).astype(np.uint8)
    return m, confidence


def whole_image_polygons(mask: np.ndarray, class_id: int) -> np.ndarray:
    """The reference: rasterio on the whole image at once, no chunks."""
    geoms = [
        to_shape(g)
        for g, _ in rasterio.features.shapes(mask, mask=mask == class_id, connectivity=4, transform=Affine.identity())
    ]
    return shapely.normalize(shapely.simplify(np.array(geoms, dtype=object), 0.0))


def as_set(geoms: np.ndarray) -> set[bytes]:
    return set(shapely.to_wkb(shapely.normalize(geoms)))


def stitched(mask: np.ndarray, confidence: np.ndarray, chunk: int):
    read = reader(mask, confidence)
    return stitch(polygonize_chunk(*read(r), r, (1, 2)) for r in chunk_regions(Shape2d(*mask.shape), chunk))


def test_chunk_sizes_give_the_same_polygons_as_the_whole_image(scene):
    mask, confidence = scene
    results = {chunk: stitched(mask, confidence, chunk) for chunk in (256, 512, 2048)}
    for class_id in (1, 2):
        reference = as_set(whole_image_polygons(mask, class_id))
        n_components = ndimage.label(mask == class_id)[1]
        assert len(reference) == n_components
        for chunk, result in results.items():
            got = result.of_class(class_id)
            assert as_set(got.geometries) == reference, f"chunk {chunk}, class {class_id}"
            assert shapely.is_valid(got.geometries).all()
    base = results[2048]
    for chunk in (256, 512):
        assert np.array_equal(shapely.to_wkb(results[chunk].geometries), shapely.to_wkb(base.geometries))
        np.testing.assert_allclose(results[chunk].scores, base.scores, rtol=1e-12)


def test_stitched_polygons_cover_the_pixels_exactly(scene):
    mask, confidence = scene
    result = stitched(mask, confidence, 256)
    for class_id in (1, 2):
        got = result.of_class(class_id)
        # Areas in pixel space are pixel counts: no slivers, gaps or overlaps at the seams.
        np.testing.assert_array_equal(shapely.area(got.geometries), got.pixel_counts)
        assert got.pixel_counts.sum() == (mask == class_id).sum()
        assert shapely.area(shapely.union_all(got.geometries)) == (mask == class_id).sum()
    ring = [g for g in result.of_class(1).geometries if g.covers(shapely.box(230, 240, 290, 280).exterior)]
    assert len(ring) == 1 and len(ring[0].interiors) == 1
    assert shapely.Polygon(ring[0].interiors[0]).equals(shapely.box(250, 250, 262, 265))


def test_score_is_mean_confidence_over_the_stitched_pixels():
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:20, 20:44] = 1  # crosses the chunk line at column 32
    confidence = np.zeros_like(mask)
    confidence[:, :32] = 100
    confidence[:, 32:] = 250
    result = stitched(mask, confidence, 32)
    assert len(result.geometries) == 1
    expected = (12 * 100 + 12 * 250) / 24 / 255
    assert result.scores[0] == pytest.approx(expected)


def test_vectorize_scene_is_chunk_size_independent(scene):
    mask, confidence = scene
    layers = {
        chunk: vectorize_scene(reader(mask, confidence), GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=VectorSettings(chunk_size=chunk))
        for chunk in (256, 512, 2048)
    }
    base = layers[2048]
    assert len(base.buildings) > 50 and len(base.roads) == 1 and len(base.road_centerlines) >= 3
    for chunk in (256, 512):
        for name, frame in layers[chunk].items():
            ref = getattr(base, name)
            assert np.array_equal(shapely.to_wkb(frame.geometry.values), shapely.to_wkb(ref.geometry.values)), name
            np.testing.assert_allclose(frame["score"], ref["score"])


def test_layers_have_the_documented_columns_and_units(scene):
    mask, confidence = scene
    layers = vectorize_scene(reader(mask, confidence), GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=VectorSettings(chunk_size=512))
    for name, frame in layers.items():
        measure = "length_m" if name == "road_centerlines" else "area_m2"
        cell = [] if name == "buildings" else ["cell"]  # road pieces name their road cell
        assert list(frame.columns) == ["class", "score", measure, *cell, "geometry"], name
        assert frame.crs.to_epsg() == 32645
        assert frame["score"].between(60 / 255, 1.0).all()
        assert (frame[measure] > 0).all()
    b = layers.buildings
    assert set(b["class"]) == {"building"} and set(layers.roads["class"]) == {"road"}
    assert set(shapely.get_type_id(b.geometry.values)) == {3}  # Polygons only
    np.testing.assert_allclose(b["area_m2"], b.geometry.area)
    assert b["area_m2"].min() >= 4.0  # the default speck threshold
    # Buildings lie where the mask says: every footprint's centre is over building or nodata-free pixels.
    inv = ~TRANSFORM
    cols, rows = inv @ (b.geometry.representative_point().x.values, b.geometry.representative_point().y.values)
    assert (mask[rows.astype(int), cols.astype(int)] == 1).mean() > 0.95
    attributed = layers.with_attributes(scene_id="s1", model="m@abc", run_id="r1", created_at="2026-01-01T00:00:00Z")
    assert set(attributed.buildings["scene_id"]) == {"s1"} and "run_id" in attributed.road_centerlines


def test_geographic_scene_areas_match_utm_within_one_percent():
    # The same ground footprints gridded in EPSG:4326 near Banepa (27.6 N): pixels ~0.5 m but not square.
    rng = np.random.default_rng(3)
    mask = np.zeros((400, 400), dtype=np.uint8)
    for _ in range(25):
        r, c = rng.integers(0, 370, 2)
        h, w = rng.integers(8, 30, 2)
        mask[r : r + h, c : c + w] = 1
    rr, cc = disk((200, 200), 12)
    mask[rr, cc] = 1
    mask[5, 5] = 1  # a speck of ~0.25 m^2
    transform = Affine(5e-6, 0.0, 85.52, 0.0, -4.5e-6, 27.63)
    layers = vectorize_scene(reader(mask, np.full_like(mask, 200)), GeoGrid(Shape2d(400, 400), transform, "EPSG:4326"))
    b = layers.buildings
    assert len(b) > 5
    utm_area = b.to_crs(UTM).area.values
    np.testing.assert_allclose(b["area_m2"].values, utm_area, rtol=0.01)
    assert b["area_m2"].min() >= 4.0


def test_read_chunk_must_return_the_requested_window():
    mask = np.zeros((40, 40), dtype=np.uint8)

    def bad(region: Region):
        return mask, mask

    with pytest.raises(SceneReadError, match="expected"):
        vectorize_scene(bad, GeoGrid(Shape2d(40, 40), TRANSFORM, UTM), settings=VectorSettings(chunk_size=16, halo_px=4))


def test_empty_mask_gives_empty_layers():
    mask = np.zeros((50, 50), dtype=np.uint8)
    layers = vectorize_scene(reader(mask, mask), GeoGrid(Shape2d(50, 50), TRANSFORM, UTM), settings=VectorSettings(chunk_size=16))
    assert layers.counts() == {"buildings": 0, "roads": 0, "road_centerlines": 0}
    assert list(layers.road_centerlines.columns) == ["class", "score", "length_m", "cell", "geometry"]
    assert layers.roads["cell"].dtype == np.int64


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="chunk_size"):
        VectorSettings(chunk_size=8)
    with pytest.raises(ConfigError, match="min_building_area_m2"):
        VectorSettings(min_building_area_m2=-1)
    with pytest.raises(ConfigError, match="building"):
        vectorize_scene(reader(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)), GeoGrid(Shape2d(4, 4), TRANSFORM, UTM), classes={1: "house"})


def test_a_building_only_model_gets_empty_road_layers():
    from affine import Affine

    from pipeline.grid import Region, Shape2d
    from pipeline.vectors import VectorSettings, vectorize_scene

    mask = np.zeros((120, 140), dtype=np.uint8)
    mask[10:40, 20:60] = 1
    mask[70:110, 80:130] = 1
    confidence = np.full(mask.shape, 200, dtype=np.uint8)

    def read(region: Region):
        rows, cols = region.slices_in(Region.of_shape(Shape2d(*mask.shape)))
        return mask[rows, cols], confidence[rows, cols]

    layers = vectorize_scene(read, GeoGrid(Shape2d(*mask.shape), Affine(0.5, 0, 300000, 0, -0.5, 3000000), "EPSG:32645"),
                             classes={1: "building"}, settings=VectorSettings(chunk_size=64))
    assert len(layers.buildings) == 2
    assert len(layers.roads) == 0 and len(layers.road_centerlines) == 0


def _partition(shape: tuple[int, int], rows: int, cols: int) -> list[Region]:
    """Rectangles of about rows x cols that tile the scene, like the pipeline's output units."""
    return [
        Region.from_bounds(r, c, min(r + rows, shape[0]), min(c + cols, shape[1]))
        for r in range(0, shape[0], rows)
        for c in range(0, shape[1], cols)
    ]


def _assert_same_layers(got, expected) -> None:
    for name, frame in got.items():
        ref = getattr(expected, name)
        assert np.array_equal(shapely.to_wkb(frame.geometry.values), shapely.to_wkb(ref.geometry.values)), name
        np.testing.assert_allclose(frame["score"], ref["score"])


@pytest.mark.parametrize("processes", [True, False], ids=["process", "thread"])
def test_chunk_stream_starts_chunks_as_regions_finish_and_equals_vectorize_scene(scene, processes):
    mask, confidence = scene
    settings = VectorSettings(chunk_size=128, halo_px=16)
    expected = vectorize_scene(reader(mask, confidence), GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=settings)
    stream = ChunkStream(SceneVectorizer(GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=settings), processes=processes)
    stream.start(reader(mask, confidence))
    regions = _partition(mask.shape, 70, 90)
    half = len(regions) // 2
    for region in regions[:half]:  # the top half in raster order, as blocks mostly finish
        stream.final(region)
    first_half = stream.started_chunks
    for i in np.random.default_rng(3).permutation(np.arange(half, len(regions))):  # the rest in any order
        stream.final(regions[i])
        stream.final(regions[i])  # reported twice (a retried stage): counted once
    assert 0 < first_half < len(stream.chunks)
    assert stream.started_chunks == len(stream.chunks) == 36
    _assert_same_layers(stream.vectorizer.finish(stream.results()), expected)


class WatchedReader(ArrayReader):
    """An ArrayReader that leaves a trace of concurrency in ``trace`` (its processes share no memory).

    Chunks left of ``barrier_col`` check that no other chunk is running (an exclusive lock file) and
    sleep, so that a second one running beside them would be caught (``overlap-COL``; ``read-COL`` when
    not); chunks from ``barrier_col`` on wait until two of them have started (up to 60 s) and record
    whether they did (``met-COL``).
    """

    def __init__(self, mask, confidence, trace, barrier_col: int):
        super().__init__(mask, confidence)
        self.trace, self.barrier_col = trace, barrier_col

    def __call__(self, region: Region):
        import os

        if region.col < self.barrier_col:
            try:
                fd = os.open(self.trace / "running", os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                (self.trace / f"overlap-{region.col}").touch()
            else:
                time.sleep(0.3)
                os.close(fd)
                os.unlink(self.trace / "running")
                (self.trace / f"read-{region.col}").touch()
        else:
            (self.trace / f"started-{region.col}").touch()
            deadline = time.monotonic() + 60
            while len(list(self.trace.glob("started-*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            if len(list(self.trace.glob("started-*"))) >= 2:
                (self.trace / f"met-{region.col}").touch()
        return super().__call__(region)


@pytest.mark.parametrize("workers", [1, 2])
def test_chunk_stream_runs_as_many_chunks_at_once_as_it_has_workers(scene, tmp_path, workers):
    mask, confidence = scene
    mask, confidence = mask[:128, :512], confidence[:128, :512]
    settings = VectorSettings(chunk_size=128, halo_px=8)
    grid = GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM)
    expected = vectorize_scene(reader(mask, confidence), grid, settings=settings)
    stream = ChunkStream(SceneVectorizer(grid, settings=settings), processes=True, workers=workers)
    # The first two chunks must not run at once (one worker), the last two must (two workers).
    barrier_col = 2 * 128 - 8 if workers == 2 else 512
    stream.start(WatchedReader(mask, confidence, tmp_path, barrier_col=barrier_col))
    for col in (0, 64, 128, 192, 256):  # completes the windows (halo 8) of the first two chunks of four
        stream.final(Region(0, col, 128, 64))
    assert stream.started_chunks == 2
    if workers == 1:  # the second starts when the first is back, with no further region reported
        deadline = time.monotonic() + 60
        while not (tmp_path / "read-120").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "read-0").exists() and (tmp_path / "read-120").exists()
    stream.final(Region(0, 320, 128, 192))
    layers = stream.results()
    if workers == 1:
        assert not list(tmp_path.glob("overlap-*")), "two chunks ran at once with one worker"
        assert len(list(tmp_path.glob("read-*"))) == 4
    else:
        assert sorted(p.name for p in tmp_path.glob("met-*")) == ["met-248", "met-376"]
    _assert_same_layers(stream.vectorizer.finish(layers), expected)


class ModulesReader(ArrayReader):
    """An ArrayReader that writes which heavy libraries the process reading it has imported."""

    HEAVY = ("geopandas", "pandas", "pyogrio", "torch", "dask", "prefect")

    def __init__(self, mask, confidence, trace):
        super().__init__(mask, confidence)
        self.trace = trace

    def __call__(self, region: Region):
        import os
        import sys

        loaded = [m for m in self.HEAVY if m in sys.modules]
        (self.trace / f"{os.getpid()}-{region.col}").write_text(",".join(loaded))
        return super().__call__(region)


def test_chunk_processes_import_no_frame_or_model_libraries(scene, tmp_path):
    """A chunk process imports what polygonizing needs, not geopandas/pandas (45 MB a process) or torch."""
    import os

    mask, confidence = scene
    mask, confidence = mask[:128, :256], confidence[:128, :256]
    settings = VectorSettings(chunk_size=128, halo_px=8)
    grid = GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM)
    stream = ChunkStream(SceneVectorizer(grid, settings=settings), processes=True)
    stream.start(ModulesReader(mask, confidence, tmp_path))
    stream.final(Region(0, 0, 128, 256))
    layers = stream.vectorizer.finish(stream.results())
    traces = list(tmp_path.iterdir())
    assert len(traces) == 2 and all(int(t.name.split("-")[0]) != os.getpid() for t in traces)
    assert {t.read_text() for t in traces} == {""}, [t.read_text() for t in traces]
    assert len(layers.buildings) > 0


def test_vector_processes_follow_the_device_and_the_option():
    from pipeline.config import SegmentConfig
    from pipeline.stages import vector_processes

    assert vector_processes(SegmentConfig(device="cpu")) == 1  # the forwards need the cores
    assert vector_processes(SegmentConfig(device="cpu", vector_processes=3)) == 3
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        SegmentConfig(vector_processes=0)


@pytest.mark.parametrize("cores, expected", [(16, 8), (6, 4), (2, 1)])
def test_local_gpus_leave_their_cores_to_the_vector_processes(monkeypatch, cores, expected):
    """The GPU branch on a machine without GPUs: this machine's GPU count and cores stand in (sceneseg's own
    helpers; torch is not touched)."""
    from pipeline import stages
    from pipeline.config import SegmentConfig

    monkeypatch.setattr(stages, "local_gpu_count", lambda device: 2)
    monkeypatch.setattr(stages, "usable_cores", lambda: cores)
    assert stages.vector_processes(SegmentConfig()) == expected  # cores - GPUs, at most 8, at least 1
    # Blocks on a remote cluster: this machine's cores may be anyone's.
    assert stages.vector_processes(SegmentConfig(dask_address="tcp://127.0.0.1:8786")) == 1


def test_chunk_stream_runs_the_chunks_never_completed_at_the_end(scene):
    mask, confidence = scene
    settings = VectorSettings(chunk_size=256)
    expected = vectorize_scene(reader(mask, confidence), GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=settings)
    stream = ChunkStream(SceneVectorizer(GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM), settings=settings), processes=False)
    stream.start(reader(mask, confidence))
    stream.final(Region(0, 0, 400, 700))  # completes no window of the second or third chunk row
    assert stream.started_chunks == 3
    _assert_same_layers(stream.vectorizer.finish(stream.results()), expected)


class WrongWindowReader:
    def __call__(self, region: Region) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8)


def test_chunk_stream_reports_a_failing_chunk_from_its_process():
    settings = VectorSettings(chunk_size=16, halo_px=4)
    stream = ChunkStream(SceneVectorizer(GeoGrid(Shape2d(40, 40), TRANSFORM, UTM), settings=settings), processes=True)
    stream.start(WrongWindowReader())
    stream.final(Region(0, 0, 40, 40))
    with pytest.raises(SceneReadError, match="exactly the requested window"):
        stream.results()


def test_centerlines_take_the_score_of_the_road_they_run_in(scene):
    mask, confidence = scene
    layers = vectorize_scene(reader(mask, confidence), GeoGrid(Shape2d(*mask.shape), TRANSFORM, UTM))
    assert len(layers.roads) == 1 and len(layers.road_centerlines) >= 3
    np.testing.assert_allclose(layers.road_centerlines["score"], layers.roads["score"].iloc[0])
