"""The building_changes layer: two acquisitions of the same area compared over the pixels both hold.

The core comparison runs on hand-made footprints; the end-to-end tests segment small synthetic towns
with the packaged ``synthetic-demo`` model (a model that finds buildings: a tiny random one finds none)
and edit their pixels: a resampled 1.5 px shift, buildings painted over with ground, buildings added.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import Resampling, reproject
from typer.testing import CliRunner

from pipeline.config import SegmentConfig
from pipeline.errors import OutputError
from pipeline.metadata import acquisition_time
from pipeline.stages import segment_scene
from pipeline.synthetic import write_changed_scene, write_synthetic_scene
from pipeline.vectors.changes import (
    CHANGE_COLUMNS,
    CHANGES_LAYER,
    ChangeSettings,
    compare_buildings,
    update_changes,
)
from pipeline.vectors.gpkg import publish_scene
from pipeline.vectors.layers import VectorLayers
from pipeline.vectors.styles import default_style
from tests.helpers import REPO, UTM, has_pyqgis, record, write_geotiff

# --------------------------------------------------------------------------------------------------
# The comparison on hand-made footprints


def _town(n: int = 30, seed: int = 0, x0: float = 300000.0, y0: float = 3000000.0) -> gpd.GeoDataFrame:
    """``n`` rectangular buildings of 40-200 m^2 on a 25 m grid, each with an area and a score."""
    rng = np.random.default_rng(seed)
    cols = 6
    i, j = np.divmod(np.arange(n), cols)
    w, h = rng.uniform(6, 14, n), rng.uniform(6, 14, n)
    geoms = shapely.box(x0 + 25 * j, y0 + 25 * i, x0 + 25 * j + w, y0 + 25 * i + h)
    return _frame(geoms)


def _frame(geoms) -> gpd.GeoDataFrame:
    geoms = np.asarray(list(geoms), dtype=object)
    return gpd.GeoDataFrame({"score": np.full(len(geoms), 0.9), "area_m2": shapely.area(geoms)},
                            geometry=list(geoms), crs=UTM)


def _moved(frame: gpd.GeoDataFrame, dx: float, dy: float) -> gpd.GeoDataFrame:
    return _frame(shapely.transform(np.asarray(frame.geometry.values), lambda xy: xy + [dx, dy]))


def _kinds(found: gpd.GeoDataFrame) -> dict[str, int]:
    return {k: int((found["change"] == k).sum()) for k in ("new", "removed", "changed")}


def test_the_same_town_misregistered_by_a_few_pixels_has_no_change():
    town = _town()
    for dx, dy in [(0.75, -0.75), (1.5, 1.0), (-3.0, 2.0)]:  # 1.5 to 7 pixels of 0.5 m
        found, shift = compare_buildings(town, _moved(town, dx, dy))
        assert _kinds(found) == {"new": 0, "removed": 0, "changed": 0}, (dx, dy)
        assert shift == pytest.approx((dx, dy), abs=1e-6)
    # Without the alignment, the small buildings moved by 3.6 m no longer match.
    found, _ = compare_buildings(town, _moved(town, -3.0, 2.0), settings=ChangeSettings(max_shift_m=0))
    assert _kinds(found)["new"] > 0 and _kinds(found)["new"] == _kinds(found)["removed"]


def test_removed_new_and_changed_buildings_are_told_apart():
    town = _town()
    geoms = list(town.geometry.values)
    later = geoms[5:]  # 0-4 removed
    later += [shapely.box(300200 + 20 * k, 2999900, 300210 + 20 * k, 2999910) for k in range(3)]  # 3 new
    grown = shapely.box(*geoms[10].bounds[:2], geoms[10].bounds[2] + 8, geoms[10].bounds[3])
    later[10 - 5] = grown  # one building extended by 8 m on one side
    found, _ = compare_buildings(town, _moved(_frame(later), 1.0, -1.0))
    assert _kinds(found) == {"new": 3, "removed": 5, "changed": 1}
    removed = found[found["change"] == "removed"]
    assert sorted(removed["earlier_area_m2"]) == pytest.approx(sorted(town["area_m2"][:5]))
    assert removed["area_m2"].isna().all() and (removed["area_change_m2"] < 0).all()
    changed = found[found["change"] == "changed"].iloc[0]
    assert changed["area_m2"] - changed["earlier_area_m2"] == pytest.approx(changed["area_change_m2"])
    assert changed["area_change_m2"] == pytest.approx(8 * (geoms[10].bounds[3] - geoms[10].bounds[1]))
    assert 0.3 <= changed["iou"] < 1


def test_small_area_differences_and_split_segmentations_are_not_changes():
    town = _town(12)
    geoms = list(town.geometry.values)
    later = [shapely.buffer(g, 0.3, join_style="mitre") for g in geoms]  # every building a little larger
    x0, y0, x1, y1 = geoms[3].bounds  # one building segmented as two halves
    later[3:4] = [shapely.box(x0, y0, (x0 + x1) / 2 - 0.25, y1), shapely.box((x0 + x1) / 2 + 0.25, y0, x1, y1)]
    found, _ = compare_buildings(town, _frame(later))
    assert _kinds(found) == {"new": 0, "removed": 0, "changed": 0}


def test_only_buildings_inside_the_valid_area_and_their_chunk_are_reported():
    town = _town(30)
    later = _frame(list(town.geometry.values)[:0])  # everything gone
    x0, y0, x1, y1 = town.total_bounds
    valid = shapely.box(x0 - 5, y0 - 5, (x0 + x1) / 2, y1 + 5)  # the left half holds valid pixels in both
    found, _ = compare_buildings(town, later, valid=valid)
    inside = shapely.within(town.geometry.values, shapely.buffer(valid, -ChangeSettings().edge_margin_m))
    assert 0 < inside.sum() < len(town) and _kinds(found)["removed"] == inside.sum()
    # Chunks split the work: each building is reported by the chunk holding its representative point.
    chunks = [(x0 - 5, y0 - 5, x0 + 40, y1 + 5), (x0 + 40, y0 - 5, x1 + 5, y1 + 5)]
    parts = [compare_buildings(town, later, valid=valid, owner=c)[0] for c in chunks]
    assert sum(len(p) for p in parts) == len(found) and all(len(p) for p in parts)


# --------------------------------------------------------------------------------------------------
# Published scenes (hand-made layers, the GeoPackage writer)


def _publish(gpkg: Path, scene_id: str, buildings: gpd.GeoDataFrame, footprint, processed_at: str,
             crs: str | None = None) -> None:
    """Publish hand-made buildings as a scene whose file is gone (so its time is its processing time)."""
    empty_lines = gpd.GeoDataFrame({"class": [], "score": [], "length_m": []}, geometry=[], crs=UTM)
    empty_roads = gpd.GeoDataFrame({"class": [], "score": [], "area_m2": []}, geometry=[], crs=UTM)
    layers = VectorLayers(buildings.assign(**{"class": "building"}), empty_roads, empty_lines)
    rec = replace(record(scene_id, 0, 0), footprint=footprint, processed_at=processed_at)
    publish_scene(gpkg, layers, rec, crs=crs)


def test_layers_in_a_geographic_crs_are_compared_in_metres(tmp_path):
    """--output-crs EPSG:4326: the comparison runs in the masks' UTM and writes its rows in degrees."""
    gpkg = tmp_path / "sceneseg.gpkg"
    town, footprint = _town(12), shapely.box(299990, 2999990, 300200, 3000100)
    for scene_id in ("a", "b"):  # valid everywhere
        write_geotiff(tmp_path / f"{scene_id}_mask.tif", np.zeros((1, 220, 420), dtype=np.uint8),
                      transform=Affine(0.5, 0, 299990, 0, -0.5, 3000100), nodata=255)
    _publish(gpkg, "a", town, footprint, "2026-05-01T02:00:00+00:00", crs="EPSG:4326")
    moved = _moved(town.iloc[2:], 1.0, -1.0)  # two removed, the rest misregistered by 2 px
    _publish(gpkg, "b", moved, footprint, "2026-06-01T02:00:00+00:00", crs="EPSG:4326")
    [pair] = update_changes(gpkg, "b")
    assert (pair["removed"], pair["new"], pair["changed"]) == (2, 0, 0)
    assert pair["shift_m"] == pytest.approx([1.0, -1.0], abs=0.05)
    rows = pyogrio.read_dataframe(gpkg, layer=CHANGES_LAYER)
    assert rows.crs.to_epsg() == 4326
    assert sorted(rows.to_crs(UTM).area.round(1)) == sorted(town["area_m2"][:2].round(1))


def test_half_overlapping_scenes_compare_only_where_both_have_valid_pixels(tmp_path):
    """Scene b covers the right half of a; a's right quarter is nodata in its mask. Everything a holds is
    gone in b: only the buildings in the quarter where both have valid pixels are removed."""
    gpkg = tmp_path / "sceneseg.gpkg"
    x0, y0 = 300000.0, 3000000.0
    town = _town(60, x0=x0 + 2, y0=y0 + 2)  # 6 columns x 10 rows of buildings, 150 x 250 m
    size = 320  # pixels of 0.5 m: 160 m a side
    a_box = shapely.box(x0, y0, x0 + 160, y0 + 250)
    b_box = shapely.box(x0 + 80, y0, x0 + 240, y0 + 250)
    _publish(gpkg, "a", town, a_box, "2026-05-01T02:00:00+00:00")
    # The masks beside the GeoPackage say which pixels are valid (255: nodata).
    mask_a = np.zeros((1, 500, size), dtype=np.uint8)
    mask_a[:, :, 240:] = 255  # a's right quarter is nodata
    write_geotiff(tmp_path / "a_mask.tif", mask_a, transform=Affine(0.5, 0, x0, 0, -0.5, y0 + 250), nodata=255)
    write_geotiff(tmp_path / "b_mask.tif", np.zeros((1, 500, size), dtype=np.uint8),
                  transform=Affine(0.5, 0, x0 + 80, 0, -0.5, y0 + 250), nodata=255)
    _publish(gpkg, "b", _frame([]).iloc[:0], b_box, "2026-06-01T02:00:00+00:00")
    [pair] = update_changes(gpkg, "b")
    assert (pair["earlier"], pair["later"], pair["valid_area"]) == ("a", "b", "masks")
    both = shapely.buffer(shapely.box(x0 + 80, y0, x0 + 120, y0 + 250), -ChangeSettings().edge_margin_m)
    expected = shapely.within(town.geometry.values, both)
    assert expected.sum() == 10 and pair["removed"] == expected.sum() and pair["new"] == pair["changed"] == 0
    rows = pyogrio.read_dataframe(gpkg, layer=CHANGES_LAYER)
    assert list(rows.columns) == [*CHANGE_COLUMNS, "geometry"]
    assert set(rows["earlier_scene_id"]) == {"a"} and set(rows["scene_id"]) == {"b"}
    assert shapely.within(rows.geometry.values, both).all()
    assert set(rows["time_source"]) == {"processing"}  # the scene files hold no acquisition time
    # The mask gone: the footprints' intersection stands in, and the nodata quarter counts again.
    (tmp_path / "a_mask.tif").unlink()
    [pair] = update_changes(gpkg, "a", "b")
    assert pair["valid_area"] == "footprints" and pair["removed"] > expected.sum()
    assert len(pyogrio.read_dataframe(gpkg, layer=CHANGES_LAYER)) == pair["removed"]  # the pair's rows replaced


def test_a_scene_is_compared_with_its_neighbours_in_time(tmp_path):
    """a (May) and c (July) are compared; b (June) published later sits between them: a-b and b-c replace a-c."""
    gpkg = tmp_path / "sceneseg.gpkg"
    town, footprint = _town(12), shapely.box(299990, 2999990, 300200, 3000100)
    _publish(gpkg, "a", town, footprint, "2026-05-01T02:00:00+00:00")
    _publish(gpkg, "c", town.iloc[4:], footprint, "2026-07-01T02:00:00+00:00")
    [pair] = update_changes(gpkg, "c")
    assert (pair["earlier"], pair["later"], pair["removed"]) == ("a", "c", 4)
    _publish(gpkg, "b", town.iloc[1:], footprint, "2026-06-01T02:00:00+00:00")
    pairs = update_changes(gpkg, "b")
    assert [(p["earlier"], p["later"], p["removed"]) for p in pairs] == [("a", "b", 1), ("b", "c", 3)]
    rows = pyogrio.read_dataframe(gpkg, layer=CHANGES_LAYER)
    assert sorted(zip(rows["earlier_scene_id"], rows["scene_id"])) == [("a", "b")] + [("b", "c")] * 3


def test_changes_of_unknown_scenes_are_refused(tmp_path):
    gpkg = tmp_path / "sceneseg.gpkg"
    with pytest.raises(OutputError, match="no GeoPackage"):
        update_changes(gpkg, "a")
    _publish(gpkg, "a", _town(3), shapely.box(300000, 3000000, 300100, 3000100), "2026-05-01T02:00:00+00:00")
    with pytest.raises(OutputError, match=r"no successfully published scene 'zz' \(published: a\)"):
        update_changes(gpkg, "a", "zz")
    assert update_changes(gpkg, "a") == []  # no other scene: nothing to compare, no layer
    assert CHANGES_LAYER not in {n for n, _ in pyogrio.list_layers(gpkg)}


def test_acquisition_time_comes_from_the_scene_metadata(tmp_path):
    path = write_geotiff(tmp_path / "s.tif", np.zeros((1, 16, 16), dtype=np.uint8))
    assert acquisition_time(path) is None
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2024:03:05 10:20:30")
    assert acquisition_time(path).time.isoformat() == "2024-03-05T10:20:30+00:00"
    assert acquisition_time(tmp_path / "missing.tif") is None


# --------------------------------------------------------------------------------------------------
# End to end: synthetic towns segmented by the demo model

SEED = 5  # a 512 x 512 town of 37 buildings
CONFIG = SegmentConfig(model="synthetic-demo", precision="fp32", overwrite=True)


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Path:
    return write_synthetic_scene(tmp_path_factory.mktemp("town") / "town.tif", 512, 512, seed=SEED).path


def _shifted(src: Path, dst: Path, pixels: float) -> Path:
    """The scene resampled (bilinear) with its content moved by ``pixels`` along both axes, on the same grid:
    a misregistered second acquisition. The pixels with no source are nodata."""
    with rasterio.open(src) as ds:
        profile, data = ds.profile | {"nodata": 0}, ds.read()
        out = np.zeros_like(data)
        reproject(data, out, src_transform=ds.transform, src_crs=ds.crs, dst_crs=ds.crs,
                  dst_transform=ds.transform @ Affine.translation(pixels, pixels),
                  resampling=Resampling.bilinear, dst_nodata=0)
    with rasterio.open(dst, "w", **profile) as ds:
        ds.write(out)
    return dst


def _rows(gpkg: Path) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(gpkg, layer=CHANGES_LAYER)


@pytest.mark.slow
def test_a_misregistered_acquisition_of_an_unchanged_town_has_no_change(town, tmp_path):
    first = segment_scene(town, tmp_path, CONFIG)
    assert first.changes["pairs"] == []  # the first scene of the GeoPackage: nothing to compare
    later = segment_scene(_shifted(town, tmp_path / "later.tif", 1.5), tmp_path, CONFIG)
    assert first.counts["buildings"] >= 30 and later.counts["buildings"] >= 30
    [pair] = later.changes["pairs"]
    assert (pair["earlier"], pair["later"]) == ("town", "later")  # by the files' times: no acquisition tags
    assert pair["time_source"] == {"town": "file", "later": "file"}
    assert (pair["new"], pair["removed"], pair["changed"]) == (0, 0, 0)
    assert pair["shift_m"] == pytest.approx([-0.75, 0.75], abs=0.25)  # 1.5 px of 0.5 m, found
    assert len(_rows(tmp_path / "sceneseg.gpkg")) == 0


@pytest.mark.slow
def test_buildings_painted_over_and_added_are_removed_and_new(town, tmp_path):
    changed = write_changed_scene(town, tmp_path / "after.tif", remove=5, add=3)
    edited, removed, added = changed.path, changed.removed, changed.added
    gpkg = tmp_path / "sceneseg.gpkg"
    segment_scene(town, tmp_path, CONFIG)
    result = segment_scene(edited, tmp_path, CONFIG)
    assert {k: result.changes[k] for k in ("new", "removed", "changed")} == {"new": 3, "removed": 5, "changed": 0}
    rows = _rows(gpkg)
    for kind, truth in (("removed", removed), ("new", added)):
        found = np.asarray(rows[rows["change"] == kind].geometry.values, dtype=object)
        # Each reported building lies on a different one of the edited buildings (as the model outlines it).
        shared = shapely.area(shapely.intersection(found[:, None], np.asarray(truth, dtype=object)[None, :]))
        assert sorted(shared.argmax(axis=1)) == list(range(len(truth)))
        assert (shared.max(axis=1) > 0.5 * shapely.area(found)).all(), kind
    # The run records them: the run JSON, the STAC item.
    record = json.loads((tmp_path / "after_run.json").read_text())
    assert record["result"]["changes"]["removed"] == 5 and record["result"]["changes"]["pairs"][0]["earlier"] == "town"
    item = json.loads((tmp_path / "after_item.json").read_text())
    assert item["properties"]["sceneseg:changes"]["new"] == 3
    # Re-running either scene recomputes the pair's rows: the same changes, not twice as many.
    before = sorted(shapely.to_wkb(shapely.normalize(rows.geometry.values)))
    segment_scene(town, tmp_path, CONFIG)
    again = _rows(gpkg)
    assert sorted(shapely.to_wkb(shapely.normalize(again.geometry.values))) == before
    assert sorted(again["change"]) == sorted(rows["change"])
    # --no-changes leaves the layer alone.
    off = segment_scene(edited, tmp_path, CONFIG.model_copy(update={"changes": False}))
    assert off.changes is None and len(_rows(gpkg)) == len(rows)
    # The layer carries its QGIS default style.
    con = sqlite3.connect(gpkg)
    qml = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = ?", (CHANGES_LAYER,)).fetchone()[0]
    con.close()
    assert qml == default_style(CHANGES_LAYER)[0]


def test_the_changes_command_compares_two_published_scenes(tmp_path):
    from flows.cli import app

    gpkg = tmp_path / "sceneseg.gpkg"
    town = _town(12)
    _publish(gpkg, "a", town, shapely.box(299990, 2999990, 300200, 3000100), "2026-05-01T02:00:00+00:00")
    _publish(gpkg, "b", town.iloc[2:], shapely.box(299990, 2999990, 300200, 3000100), "2026-06-01T02:00:00+00:00")
    run = CliRunner().invoke(app, ["changes", "b", "a", "--out", str(tmp_path)])
    assert run.exit_code == 0, run.output
    [pair] = json.loads(run.stdout)  # JSON on stdout, for scripts
    assert (pair["earlier"], pair["later"], pair["removed"], pair["new"]) == ("a", "b", 2, 0)
    run = CliRunner().invoke(app, ["changes", "a", "nope", "--out", str(tmp_path)])
    assert run.exit_code == 2 and "no successfully published scene 'nope'" in " ".join(run.stderr.split())


@pytest.mark.skipif(not has_pyqgis(), reason="no PyQGIS (apt-get install python3-qgis qgis-providers)")
def test_qgis_loads_the_change_layers_default_style(tmp_path):
    gpkg = tmp_path / "sceneseg.gpkg"
    town = _town(12)
    _publish(gpkg, "a", town, shapely.box(299990, 2999990, 300200, 3000100), "2026-05-01T02:00:00+00:00")
    _publish(gpkg, "b", town.iloc[2:], shapely.box(299990, 2999990, 300200, 3000100), "2026-06-01T02:00:00+00:00")
    update_changes(gpkg, "b")
    run = subprocess.run(
        [shutil.which("python3", path="/usr/bin"), str(REPO / "pipeline" / "vectors" / "qgis" / "qgis_styles.py"),
         "check", str(gpkg)],
        capture_output=True, text=True, timeout=300,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)[CHANGES_LAYER]
    assert report["default_style_found"] and report["renderer"] == "categorizedSymbol"
    assert report["attribute"] == "change" and sorted(report["categories"]) == ["changed", "new", "removed"]
