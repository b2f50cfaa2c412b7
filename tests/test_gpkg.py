"""GeoPackage publishing: per-scene replace, mixed CRSs, failed scenes, and atomic writes under SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from affine import Affine

from pipeline.errors import OutputError
from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.vectors import VectorSettings, vectorize_scene
from pipeline.vectors.gpkg import publish_scene, published_checksums, read_scenes
from tests.helpers import LAYERS, REPO, UTM, counts, record, scene_layers, smooth_image, write_geotiff


def read(path: Path, layer: str) -> gpd.GeoDataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return pyogrio.read_dataframe(path, layer=layer)


def test_republishing_replaces_a_scene_and_adding_one_keeps_the_others(tmp_path):
    gpkg = tmp_path / "out" / "sceneseg.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 5), record("a", 300000, 3000000))
    first = counts(gpkg)
    assert first == {"buildings": 5, "roads": 1, "road_centerlines": 1, "scenes": 1}
    publish_scene(gpkg, scene_layers(300000, 3000000, 5), record("a", 300000, 3000000))
    assert counts(gpkg) == first
    publish_scene(gpkg, scene_layers(310000, 3000000, 3), record("b", 310000, 3000000))
    assert counts(gpkg) == {"buildings": 8, "roads": 2, "road_centerlines": 2, "scenes": 2}
    # Re-running a with fewer buildings replaces only a's.
    publish_scene(gpkg, scene_layers(300000, 3000000, 2), record("a", 300000, 3000000))
    b = read(gpkg, "buildings")
    assert sorted(b["scene_id"].value_counts().items()) == [("a", 2), ("b", 3)]
    assert {"class", "score", "area_m2", "scene_id", "model", "run_id", "created_at"} <= set(b.columns)
    scenes = read_scenes(gpkg).set_index("scene_id")
    assert scenes.loc["a", "n_buildings"] == 2 and scenes.loc["b", "status"] == "ok"
    assert scenes.loc["a", "checksum"] == "sha256:a" and scenes.loc["a", "crs"] == UTM
    # The spatial index is there, in step with the table, and answers a bbox query.
    con = sqlite3.connect(gpkg)
    assert con.execute("SELECT count(*) FROM rtree_buildings_geom").fetchone()[0] == 5
    con.close()
    assert pyogrio.read_info(gpkg, layer="buildings")["capabilities"]["fast_spatial_filter"]
    near_b = pyogrio.read_dataframe(gpkg, layer="buildings", bbox=(309000, 2999000, 311000, 3001000))
    assert set(near_b["scene_id"]) == {"b"}
    assert not list(tmp_path.joinpath("out").glob(".*tmp*"))


def test_scenes_in_other_crs_are_reprojected_into_the_layer_crs(tmp_path):
    gpkg = tmp_path / "mixed.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 2), record("utm", 300000, 3000000))
    geo = gpd.GeoSeries([shapely.Point(300500, 3000500)], crs=UTM).to_crs("EPSG:4326").iloc[0]
    layers = scene_layers(geo.x, geo.y, 2, crs="EPSG:4326")
    publish_scene(gpkg, layers, record("geo", geo.x, geo.y, crs="EPSG:4326"))
    for name in LAYERS:
        assert pyogrio.read_info(gpkg, layer=name)["crs"] == UTM
    b = read(gpkg, "buildings")
    moved = b[b["scene_id"] == "geo"].geometry
    assert moved.distance(shapely.Point(300500, 3000500)).min() < 1.0
    scenes = read_scenes(gpkg).set_index("scene_id")
    assert scenes.loc["geo", "crs"] == "EPSG:4326"
    assert scenes.loc["geo"].geometry.intersects(shapely.Point(300500, 3000500))
    with pytest.raises(OutputError, match="another CRS"):
        publish_scene(gpkg, layers, record("geo", geo.x, geo.y, crs="EPSG:4326"), crs="EPSG:4326")


def test_output_crs_option_applies_to_a_new_geopackage(tmp_path):
    gpkg = tmp_path / "wgs.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 2), record("a", 300000, 3000000), crs="EPSG:4326")
    assert {pyogrio.read_info(gpkg, layer=n)["crs"] for n in LAYERS} == {"EPSG:4326"}
    b = read(gpkg, "buildings")
    assert b.total_bounds[0] == pytest.approx(85.0, abs=3)  # UTM 45N sits near 87 E


def test_a_failed_scene_is_recorded_without_features(tmp_path):
    gpkg = tmp_path / "f.gpkg"
    # A scene that failed before (never published ok): its new failure replaces its old row, without features.
    publish_scene(gpkg, None, record("a", 300000, 3000000, status="failed", error="SceneReadError: unreadable"))
    publish_scene(gpkg, scene_layers(310000, 3000000, 3), record("b", 310000, 3000000))
    failed = record("a", 300000, 3000000, status="failed", error="SceneReadError: truncated file")
    publish_scene(gpkg, None, failed)
    assert counts(gpkg) == {"buildings": 3, "roads": 1, "road_centerlines": 1, "scenes": 2}
    scenes = read_scenes(gpkg).set_index("scene_id")
    assert scenes.loc["a", "status"] == "failed" and "truncated" in scenes.loc["a", "error"]
    assert published_checksums(gpkg) == {"b": ("sha256:b", "unet@1234abcd")}
    with pytest.raises(ValueError, match="error"):
        record("c", 0, 0, status="failed")


def test_missing_geopackage_reads_as_empty(tmp_path):
    assert read_scenes(tmp_path / "none.gpkg").empty
    assert published_checksums(tmp_path / "none.gpkg") == {}


def test_vectorized_scene_round_trips(tmp_path):
    mask = np.zeros((120, 120), dtype=np.uint8)
    mask[10:40, 10:50] = 1
    mask[60:70, :] = 2
    conf = np.full_like(mask, 255)

    def read_chunk(region: Region):
        rows, cols = region.slices_in(Region(0, 0, 120, 120))
        return mask[rows, cols], conf[rows, cols]

    transform = Affine(0.5, 0, 300000.0, 0, -0.5, 3000000.0)
    layers = vectorize_scene(read_chunk, GeoGrid(Shape2d(120, 120), transform, UTM), settings=VectorSettings(chunk_size=64))
    layers = layers.with_attributes(scene_id="v", model="m", run_id="r", created_at="2026-05-01T02:00:00Z")
    gpkg = tmp_path / "v.gpkg"
    publish_scene(gpkg, layers, record("v", 300000, 3000000))
    b = read(gpkg, "buildings")
    assert len(b) == 1 and b.geometry.iloc[0].equals(shapely.box(300005, 2999980, 300025, 2999995))
    assert b["score"].iloc[0] == pytest.approx(1.0) and b["area_m2"].iloc[0] == pytest.approx(300.0)
    assert counts(gpkg)["road_centerlines"] == 1



def declared_types(path: Path, table: str) -> dict[str, str]:
    with sqlite3.connect(path) as con:
        return {row[1]: row[2] for row in con.execute(f'PRAGMA table_info("{table}")')}


def test_times_are_datetime_fields_that_read_back_as_utc_datetimes(tmp_path):
    gpkg = tmp_path / "sceneseg.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 2).with_attributes(
        scene_id="a", model="m", run_id="r", created_at="2026-05-01T02:00:00+00:00"), record("a", 300000, 3000000))
    for layer in ("buildings", "roads", "road_centerlines"):
        assert declared_types(gpkg, layer)["created_at"] == "DATETIME", layer
        times = read(gpkg, layer)["created_at"]
        assert str(times.dtype).startswith("datetime64") and str(times.dt.tz) == "UTC", layer
        assert (times == pd.Timestamp("2026-05-01T02:00:00Z")).all(), layer
    assert declared_types(gpkg, "scenes")["processed_at"] == "DATETIME"
    assert read(gpkg, "scenes")["processed_at"].tolist() == [pd.Timestamp("2026-05-01T02:00:00Z")]


def test_a_geopackage_with_text_times_from_earlier_versions_takes_new_scenes(tmp_path):
    """Files written before the DATETIME fields keep their TEXT columns, and appending to them works."""
    gpkg = tmp_path / "sceneseg.gpkg"
    old_schema = {
        "buildings": ["class", "score", "area_m2"], "roads": ["class", "score", "area_m2"],
        "road_centerlines": ["class", "score", "length_m"],
    }
    for layer, columns in old_schema.items():  # the schema as earlier versions created it: times as text
        data = {c: pd.Series(dtype=object if c == "class" else "float64") for c in columns}
        data |= {c: pd.Series(dtype=object) for c in ("scene_id", "model", "run_id", "created_at")}
        pyogrio.write_dataframe(gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=UTM), crs=UTM), gpkg,
                                layer=layer, driver="GPKG", geometry_type="LineString" if "length_m" in columns else "Polygon")
    scenes = {c: pd.Series(dtype=object) for c in (
        "scene_id", "path", "checksum", "crs", "processed_at", "model", "run_id", "status", "error")}
    scenes |= {c: pd.Series(dtype="int64") for c in ("n_buildings", "n_roads", "n_road_centerlines")}
    scenes["counts"] = pd.Series(dtype=object)
    pyogrio.write_dataframe(gpd.GeoDataFrame(scenes, geometry=gpd.GeoSeries([], crs=UTM), crs=UTM), gpkg,
                            layer="scenes", driver="GPKG", geometry_type="Polygon")
    assert declared_types(gpkg, "buildings")["created_at"] == "TEXT"

    for scene_id, x0 in (("a", 300000), ("b", 302000)):
        publish_scene(gpkg, scene_layers(x0, 3000000, 2), record(scene_id, x0, 3000000))
    assert declared_types(gpkg, "buildings")["created_at"] == "TEXT"
    assert counts(gpkg) == {"buildings": 4, "roads": 2, "road_centerlines": 2, "scenes": 2}
    buildings, scenes_read = read(gpkg, "buildings"), read(gpkg, "scenes")
    assert set(pd.to_datetime(buildings["created_at"], utc=True)) == {pd.Timestamp("2026-05-01T02:00:00Z")}
    assert set(pd.to_datetime(scenes_read["processed_at"], utc=True)) == {pd.Timestamp("2026-05-01T02:00:00Z")}


BIG_CHILD = textwrap.dedent(
    """
    import sys, numpy as np, geopandas as gpd, shapely
    sys.path.insert(0, sys.argv[2])
    from test_gpkg import record, scene_layers
    from pipeline.vectors.gpkg import publish_scene
    layers = scene_layers(300000, 3000000, 1)
    n = 150_000
    x = 300000 + np.arange(n) % 1000 * 3.0
    y = 3000000 + np.arange(n) // 1000 * 3.0
    big = gpd.GeoDataFrame({"class": ["building"] * n, "score": np.ones(n), "area_m2": np.ones(n)},
                           geometry=shapely.box(x, y, x + 1, y + 1), crs="EPSG:32645")
    layers = type(layers)(big, layers.roads, layers.road_centerlines)
    print("ready", flush=True)
    publish_scene(sys.argv[1], layers, record("a", 300000, 3000000))
    print("done", flush=True)
    """
)


def integrity(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def index_in_step(path: Path) -> None:
    """Every layer's R-tree holds exactly its non-empty geometries, and the counts GDAL reports are right."""
    con = sqlite3.connect(path)
    try:
        for name in LAYERS:
            rows = con.execute(f'SELECT count(*) FROM "{name}" WHERE geom IS NOT NULL').fetchone()[0]
            indexed = con.execute(f'SELECT count(*) FROM "rtree_{name}_geom"').fetchone()[0]
            assert indexed == rows, (name, indexed, rows)
            total = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            assert pyogrio.read_info(path, layer=name)["features"] == total
    finally:
        con.close()


def test_a_writer_killed_inside_its_transaction_rolls_back_and_the_scene_publishes_once(tmp_path):
    gpkg = tmp_path / "k.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 5), record("a", 300000, 3000000))
    publish_scene(gpkg, scene_layers(310000, 3000000, 3), record("b", 310000, 3000000))
    before = counts(gpkg)
    with subprocess.Popen(
        [sys.executable, "-c", BIG_CHILD, str(gpkg), str(Path(__file__).parent)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:  # fmt: skip
        try:
            assert child.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 120
            # The rollback journal exists while the transaction writes the GeoPackage itself.
            while not gpkg.with_name("k.gpkg-journal").exists():
                assert child.poll() is None, child.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.002)
            time.sleep(0.2)
            assert child.poll() is None, "the child finished before it could be killed: make it slower"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == -signal.SIGKILL
    assert gpkg.with_name("k.gpkg-journal").exists(), "a killed writer leaves a hot journal"
    publish_scene(gpkg, scene_layers(300000, 3000000, 2), record("a", 300000, 3000000))
    assert counts(gpkg) == before | {"buildings": 2 + 3}
    assert integrity(gpkg) == "ok"
    index_in_step(gpkg)
    assert [str(n) for n, geometry in pyogrio.list_layers(gpkg) if geometry] == list(LAYERS)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "k.gpkg"], "no staging files or journal left"


PUBLISHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from test_gpkg import record, scene_layers
    from pipeline.vectors.gpkg import publish_scene
    i = int(sys.argv[2])
    x0 = 300000 + 10000 * i
    layers = scene_layers(x0, 3000000, 200)
    print("ready", flush=True)
    for line in sys.stdin:  # one GeoPackage path per round, given to both publishers at once
        publish_scene(line.strip(), layers, record(f"s{i}", x0, 3000000))
        print("published", flush=True)
    """
)


@pytest.mark.slow
def test_two_processes_publishing_at_once_both_land_five_times(tmp_path):
    children = [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(Path(__file__).parent), str(i)],
                         cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        for trial in range(5):
            gpkg = tmp_path / f"out{trial}" / "sceneseg.gpkg"
            if trial % 2:  # half the rounds race on an existing file, half on creating it
                publish_scene(gpkg, scene_layers(290000, 3000000, 1), record("s9", 290000, 3000000))
            for child in children:  # both go at once
                child.stdin.write(f"{gpkg}\n")
                child.stdin.flush()
            for child in children:
                assert child.stdout.readline().strip() == "published", child.stderr.read()
            expected = {"s0", "s1"} | ({"s9"} if trial % 2 else set())
            assert set(read_scenes(gpkg)["scene_id"]) == expected, trial
            assert counts(gpkg)["buildings"] == 400 + (1 if trial % 2 else 0)
            assert integrity(gpkg) == "ok"
            index_in_step(gpkg)
    finally:
        for child in children:
            child.stdin.close()
            child.wait(timeout=60)
    assert [c.returncode for c in children] == [0, 0]


def test_publishing_keeps_the_file_mode_and_the_extent(tmp_path):
    gpkg = tmp_path / "m.gpkg"
    publish_scene(gpkg, scene_layers(300000, 3000000, 2), record("a", 300000, 3000000))
    gpkg.chmod(0o644)
    publish_scene(gpkg, scene_layers(320000, 3010000, 2), record("b", 320000, 3010000))
    assert gpkg.stat().st_mode & 0o777 == 0o644
    con = sqlite3.connect(gpkg)
    extent = con.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = 'buildings'").fetchone()
    con.close()
    assert extent[0] <= 300000 and extent[2] >= 320000 + 30 and extent[3] >= 3010010
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        near = pyogrio.read_dataframe(gpkg, layer="buildings", bbox=(319000, 3009000, 321000, 3011000))
    assert set(near["scene_id"]) == {"b"}


def test_a_staging_file_of_a_dead_process_is_removed_by_the_next_publish(tmp_path):
    gpkg = tmp_path / "o.gpkg"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".o.gpkg.{int(dead.stdout)}.0.stage.gpkg"
    orphan.write_bytes(b"left by a killed publish")
    old_copy = tmp_path / ".o.gpkg.x1y2z3.tmp.gpkg"  # what earlier versions left when killed
    old_copy.write_bytes(b"")
    publish_scene(gpkg, scene_layers(300000, 3000000, 1), record("a", 300000, 3000000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg"]


def test_a_failure_record_never_replaces_a_published_scene(tmp_path):
    gpkg = tmp_path / "out.gpkg"
    publish_scene(gpkg, scene_layers(0, 0, 3), record("a", 0, 0))
    before = counts(gpkg)
    failed = record("a", 0, 0, status="failed", error="a.tif: refused")
    publish_scene(gpkg, None, failed)
    assert counts(gpkg) == before
    assert list(read_scenes(gpkg)["status"]) == ["ok"]
    # A scene that failed before is replaced by its new failure, and then by its success.
    publish_scene(gpkg, None, record("b", 900, 0, status="failed", error="first"))
    publish_scene(gpkg, None, record("b", 900, 0, status="failed", error="second"))
    assert read_scenes(gpkg).set_index("scene_id").loc["b", "error"] == "second"
    publish_scene(gpkg, scene_layers(900, 0, 2), record("b", 900, 0))
    assert counts(gpkg)["buildings"] == 5


KILL_IN_TRANSACTION = textwrap.dedent("""
    import os, signal, sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("PRAGMA cache_size = 2")  # spill pages into the file before the commit, as a large publish does
    con.execute("BEGIN IMMEDIATE")
    con.execute("DELETE FROM scenes")
    con.execute("CREATE TABLE junk AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
                "SELECT randomblob(900) AS b FROM n")
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_hot_journal_of_a_killed_writer_is_rolled_back_by_the_next_run(tmp_path, tiny_checkpoint):
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "out"
    scenes = [write_geotiff(tmp_path / f"s{i}.tif", smooth_image(96, 96, seed=i)) for i in range(2)]
    runner = CliRunner()
    assert runner.invoke(app, ["segment", str(scenes[0]), "--out", str(out), "--model", str(tiny_checkpoint)]).exit_code == 0
    gpkg = out / "sceneseg.gpkg"
    before = {name: pyogrio.read_dataframe(gpkg, layer=name).drop(columns="geometry").to_dict("list") for name in LAYERS}
    assert subprocess.run([sys.executable, "-c", KILL_IN_TRANSACTION, str(gpkg)]).returncode == -signal.SIGKILL
    assert gpkg.with_name("sceneseg.gpkg-journal").exists()
    with pytest.raises(pyogrio.errors.DataSourceError, match="readonly"):  # what GDAL meets until recovery
        pyogrio.list_layers(gpkg)
    result = runner.invoke(app, ["segment", str(scenes[1]), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert not gpkg.with_name("sceneseg.gpkg-journal").exists()
    after = read_scenes(gpkg).set_index("scene_id")
    assert dict(after["status"]) == {"s0": "ok", "s1": "ok"}
    for name in LAYERS:  # the killed transaction left nothing behind: s0's rows are as they were
        rows = pyogrio.read_dataframe(gpkg, layer=name).drop(columns="geometry")
        s0 = rows[rows["scene_id"] == "s0"].to_dict("list")
        assert s0 == before[name], name


def _damaged(kind: str, path: Path, good: Path) -> None:
    if kind == "text":
        path.write_text("scene notes, not a GeoPackage\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:8192])
    elif kind == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE notes (x TEXT)")
        con.commit()
        con.close()
    elif kind == "foreign-gpkg":
        pyogrio.write_dataframe(gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=UTM), path,
                                layer="parcels", driver="GPKG")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "sqlite", "foreign-gpkg"])
def test_a_damaged_or_foreign_geopackage_is_named_and_left_untouched(kind, tmp_path, tiny_checkpoint):
    from typer.testing import CliRunner

    from flows.cli import app

    good = tmp_path / "good.gpkg"
    publish_scene(good, scene_layers(0, 0, 40), record("a", 0, 0))
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(96, 96))
    out = tmp_path / "out"
    out.mkdir()
    gpkg = out / "sceneseg.gpkg"
    _damaged(kind, gpkg, good)
    content = gpkg.read_bytes()
    runner = CliRunner()
    for args in (["segment", str(scene)], ["nightly", "--inbox", str(tmp_path)]):
        result = runner.invoke(app, [*args, "--out", str(out), "--model", str(tiny_checkpoint)])
        message = " ".join(result.output.split())
        assert result.exit_code == 2, (args[0], result.output, result.exception)
        assert str(gpkg) in message and ("Move it away" in message), message
        assert "Traceback" not in result.output
        assert gpkg.read_bytes() == content
    assert sorted(p.name for p in out.iterdir()) == ["sceneseg.gpkg"]
