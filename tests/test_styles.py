"""GeoPackages every QGIS opens cleanly: version 1.3, and a default QGIS style per layer in layer_styles."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pyogrio
import pytest

from pipeline.vectors import gpkg as gpkg_module
from pipeline.vectors.gpkg import publish_scene
from pipeline.vectors.styles import LAYER_STYLES_COLUMNS, STYLED_LAYERS, default_style, write_default_styles
from tests.helpers import LAYERS, REPO, counts, has_pyqgis, record, scene_layers

SLD = "{http://www.opengis.net/sld}"
SE = "{http://www.opengis.net/se}"


def _styles(path: Path) -> dict[str, dict]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return {r["f_table_name"]: dict(r) for r in con.execute("SELECT * FROM layer_styles")}
    finally:
        con.close()


def _user_version(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def published(tmp_path) -> Path:
    path = tmp_path / "out.gpkg"
    publish_scene(path, scene_layers(300000, 3000000, 3), record("a", 300000, 3000000))
    publish_scene(path, scene_layers(301000, 3000000, 2), record("b", 301000, 3000000))
    return path


def test_new_geopackages_are_version_1_3(published):
    assert _user_version(published) == 10300
    con = sqlite3.connect(published)
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
    con.close()


def test_layer_styles_has_qgis_columns_and_one_default_row_per_layer(published):
    con = sqlite3.connect(published)
    columns = [row[1] for row in con.execute("PRAGMA table_info(layer_styles)")]
    contents = con.execute("SELECT data_type, identifier FROM gpkg_contents WHERE table_name = 'layer_styles'").fetchone()
    ogr_count = con.execute("SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = 'layer_styles'").fetchone()
    con.close()
    assert tuple(columns) == LAYER_STYLES_COLUMNS
    assert contents == ("attributes", "layer_styles")  # QGIS finds the table through gpkg_contents
    assert ogr_count == (len(LAYERS),)  # kept by the triggers, as OGR keeps it
    styles = _styles(published)
    assert sorted(styles) == sorted(LAYERS)  # once per layer, although two scenes were published
    for layer, row in styles.items():
        assert (row["f_table_catalog"], row["f_table_schema"], row["f_geometry_column"]) == ("", "", "geom")
        assert row["useAsDefault"] == 1 and row["styleName"] == layer
        assert row["update_time"].endswith("Z") and "T" in row["update_time"]
        assert (row["styleQML"], row["styleSLD"]) == default_style(layer)
    assert counts(published)["buildings"] == 5  # and GDAL opens every layer without a warning


def test_qml_and_sld_are_the_documents_qgis_reads():
    for layer in STYLED_LAYERS:
        qml, sld = default_style(layer)
        root = ET.fromstring(qml.split("\n", 1)[1])  # after the DOCTYPE line QGIS writes
        assert root.tag == "qgis" and root.get("version", "").startswith("3.")
        renderer = root.find("renderer-v2")
        sld_root = ET.fromstring(sld.encode())
        assert sld_root.tag == f"{SLD}StyledLayerDescriptor" and sld_root.get("version") == "1.1.0"
        assert sld_root.find(f"{SLD}NamedLayer/{SE}Name").text == layer
        rules = sld_root.findall(f".//{SE}Rule")
        if layer == "building_changes":
            assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "change"
            categories = {c.get("value"): int(c.get("symbol")) for c in renderer.findall("categories/category")}
            assert sorted(categories) == ["changed", "new", "removed"]
            colours = {s.get("name"): s.find("layer/Option/Option[@name='color']").get("value")
                       for s in renderer.findall("symbols/symbol")}
            assert {v: colours[str(i)] for v, i in categories.items()} == {
                "new": "51,160,44,120", "removed": "227,26,28,120", "changed": "255,176,0,120"}
            assert len(rules) == 3 and {e.text for e in sld_root.iter("{http://www.opengis.net/ogc}Literal")} == {
                "new", "removed", "changed"}
        elif layer == "buildings":
            assert renderer.get("type") == "graduatedSymbol" and renderer.get("attr") == "score"
            ranges = renderer.findall("ranges/range")
            assert len(ranges) == 5 and float(ranges[0].get("lower")) == 0 and float(ranges[-1].get("upper")) == 1
            fills = {s.find("layer").get("class") for s in renderer.findall("symbols/symbol")}
            assert fills == {"SimpleFill"}
            assert len(rules) == 5 and all(r.find(f".//{SE}Fill") is not None and r.find(f".//{SE}Stroke") is not None
                                           for r in rules)
            assert {e.text for e in sld_root.iter("{http://www.opengis.net/ogc}PropertyName")} == {"score"}
        else:
            assert renderer.get("type") == "singleSymbol"
            [symbol] = renderer.findall("symbols/symbol")
            assert symbol.get("type") == ("line" if layer == "road_centerlines" else "fill")
            assert len(rules) == 1
            kind = "LineSymbolizer" if layer == "road_centerlines" else "PolygonSymbolizer"
            assert rules[0].find(f"{SE}{kind}") is not None


def test_a_users_own_style_is_never_replaced(published):
    con = sqlite3.connect(published)
    with con:
        con.execute("UPDATE layer_styles SET styleQML = '<qgis/>', useAsDefault = 1 WHERE f_table_name = 'roads'")
    con.close()
    assert write_default_styles(published) == []
    publish_scene(published, scene_layers(302000, 3000000, 1), record("c", 302000, 3000000))
    assert _styles(published)["roads"]["styleQML"] == "<qgis/>"
    assert len(_styles(published)) == len(LAYERS)


def test_geopackages_of_earlier_versions_keep_working(tmp_path, monkeypatch):
    """A 1.4 file without layer_styles, as sceneseg wrote before: published to, it keeps its version."""
    old = tmp_path / "old.gpkg"
    monkeypatch.setattr(gpkg_module, "GPKG_VERSION", "1.4")
    publish_scene(old, scene_layers(300000, 3000000, 3), record("a", 300000, 3000000))
    con = sqlite3.connect(old)
    with con:
        con.execute("DROP TABLE layer_styles")
        con.execute("DELETE FROM gpkg_contents WHERE table_name = 'layer_styles'")
        con.execute("DELETE FROM gpkg_ogr_contents WHERE table_name = 'layer_styles'")
    con.close()
    monkeypatch.undo()
    assert _user_version(old) == 10400
    publish_scene(old, scene_layers(301000, 3000000, 2), record("b", 301000, 3000000))
    assert _user_version(old) == 10400
    assert sorted(pyogrio.read_dataframe(old, layer="buildings")["scene_id"]) == ["a"] * 3 + ["b"] * 2
    assert sorted(_styles(old)) == sorted(LAYERS)  # styled on the first publish that finds none


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="no system GDAL (ogrinfo) to open the file with")
def test_system_gdal_opens_the_geopackage_without_a_warning(published):
    """Where a system GDAL is installed (Debian 12: 3.6.2, the GDAL of QGIS 3.22-3.28), its ogrinfo is quiet."""
    run = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(published)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "partially supported" not in run.stdout + run.stderr
    assert "Layer name: layer_styles" in run.stdout


def _qgis_check(published: Path) -> dict:
    """What QGIS (the system Python's PyQGIS) reports of each layer of ``published``."""
    run = subprocess.run(
        ["/usr/bin/python3", str(REPO / "pipeline" / "vectors" / "qgis" / "qgis_styles.py"), "check", str(published)],
        capture_output=True, text=True, timeout=300, env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                                                          "HOME": str(published.parent)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(not has_pyqgis(), reason="no PyQGIS (apt-get install python3-qgis qgis-providers)")
def test_qgis_loads_each_layers_default_style(published):
    report = _qgis_check(published)
    # building_changes appears with the first pair of overlapping scenes (tests/test_changes.py)
    assert {layer: r["default_style_found"] for layer, r in report.items()} == dict.fromkeys(LAYERS, True)
    assert report["buildings"]["renderer"] == "graduatedSymbol" and report["buildings"]["attribute"] == "score"
    assert report["buildings"]["classes"] == 5
    assert report["road_centerlines"]["renderer"] == "singleSymbol"


@pytest.mark.skipif(not has_pyqgis(), reason="no PyQGIS (apt-get install python3-qgis qgis-providers)")
def test_qgis_reads_the_times_as_date_times(published):
    report = _qgis_check(published)
    assert {layer: r["datetime_fields"] for layer, r in report.items()} == {
        "buildings": ["created_at"], "roads": ["created_at"], "road_centerlines": ["created_at"],
        "scenes": ["processed_at"]}
