"""The default QGIS styles of sceneseg's GeoPackage layers, made and checked by QGIS itself (PyQGIS).

Run with the Python that has PyQGIS (Debian/Ubuntu: ``apt-get install python3-qgis qgis-providers``),
not the project's virtual environment:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 pipeline/vectors/qgis/qgis_styles.py generate OUT.gpkg
        Styles the layers of OUT.gpkg (a GeoPackage sceneseg wrote, *without* a layer_styles table),
        has QGIS save each as the layer's default style in the GeoPackage, and copies the QML and SLD
        QGIS wrote into pipeline/vectors/qgis/<layer>.qml|.sld, which sceneseg then writes into every
        GeoPackage it creates (pipeline.vectors.styles).

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 pipeline/vectors/qgis/qgis_styles.py check OUT.gpkg
        Opens each layer as a QGIS user would and prints, as JSON, whether QGIS found a default style
        in the GeoPackage, which renderer it loaded, and which fields QGIS reads as date-times.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsLineSymbol,
    QgsRendererCategory,
    QgsRendererRange,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

STYLES = Path(__file__).resolve().parent  # the QML and SLD files sit beside this script
LAYERS = ("buildings", "roads", "road_centerlines", "scenes", "building_changes")

#: Buildings: filled by score (the mean blended probability inside the polygon), one outline colour.
SCORE_RANGES = [
    (0.0, 0.6, "255,255,178,170", "below 0.60 (doubtful)"),
    (0.6, 0.7, "254,204,92,170", "0.60 - 0.70"),
    (0.7, 0.8, "253,141,60,170", "0.70 - 0.80"),
    (0.8, 0.9, "240,59,32,170", "0.80 - 0.90"),
    (0.9, 1.0, "189,0,38,170", "0.90 - 1.00 (confident)"),
]
#: Building changes: filled and outlined by kind.
CHANGE_COLORS = [("new", "51,160,44", "new building"), ("removed", "227,26,28", "removed building"),
                 ("changed", "255,176,0", "changed footprint")]
BUILDING_OUTLINE = {"outline_color": "122,1,28,255", "outline_width": "0.4", "outline_width_unit": "MM"}


def _renderer(layer: str):
    if layer == "buildings":
        ranges = [
            QgsRendererRange(lo, hi, QgsFillSymbol.createSimple({"color": color, **BUILDING_OUTLINE}), label)
            for lo, hi, color, label in SCORE_RANGES
        ]
        renderer = QgsGraduatedSymbolRenderer("score", ranges)
        renderer.setSourceSymbol(QgsFillSymbol.createSimple({"color": SCORE_RANGES[-1][2], **BUILDING_OUTLINE}))
        return renderer
    if layer == "building_changes":
        categories = [
            QgsRendererCategory(value, QgsFillSymbol.createSimple(
                {"color": f"{rgb},120", "outline_color": f"{rgb},255", "outline_width": "0.6"}), label)
            for value, rgb, label in CHANGE_COLORS
        ]
        return QgsCategorizedSymbolRenderer("change", categories)
    if layer == "roads":
        return QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {"color": "255,215,0,110", "outline_color": "178,140,0,255", "outline_width": "0.26"}))
    if layer == "road_centerlines":
        return QgsSingleSymbolRenderer(QgsLineSymbol.createSimple(
            {"line_color": "230,85,13,255", "line_width": "0.6", "capstyle": "round", "joinstyle": "round"}))
    return QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(  # scenes: footprints, outline only
        {"style": "no", "color": "0,0,0,0", "outline_color": "31,120,180,255", "outline_width": "0.6",
         "outline_style": "dash"}))


def _open(gpkg: Path, layer: str) -> QgsVectorLayer:
    vl = QgsVectorLayer(f"{gpkg}|layername={layer}", layer, "ogr")
    if not vl.isValid():
        raise SystemExit(f"QGIS cannot open layer {layer} of {gpkg}")
    return vl


def _present(gpkg: Path) -> list[str]:
    """The styled layers the GeoPackage holds (building_changes appears with the first pair of scenes)."""
    con = sqlite3.connect(gpkg)
    try:
        tables = {row[0] for row in con.execute("SELECT table_name FROM gpkg_contents")}
    finally:
        con.close()
    return [layer for layer in LAYERS if layer in tables]


def generate(gpkg: Path) -> None:
    for layer in _present(gpkg):
        vl = _open(gpkg, layer)
        vl.setRenderer(_renderer(layer))
        error = vl.saveStyleToDatabase(layer, f"sceneseg default style of {layer}", True, "")
        if error:
            raise SystemExit(f"QGIS could not save the style of {layer}: {error}")
    con = sqlite3.connect(gpkg)
    print(con.execute("SELECT sql FROM sqlite_master WHERE name = 'layer_styles'").fetchone()[0])
    print(con.execute("SELECT * FROM gpkg_contents WHERE table_name = 'layer_styles'").fetchall())
    for name, qml, sld in con.execute("SELECT f_table_name, styleQML, styleSLD FROM layer_styles"):
        (STYLES / f"{name}.qml").write_text(qml, encoding="utf-8")
        (STYLES / f"{name}.sld").write_text(sld, encoding="utf-8")
        print(f"wrote {STYLES / name}.qml and .sld")


def check(gpkg: Path) -> None:
    report = {}
    for layer in _present(gpkg):
        vl = _open(gpkg, layer)
        message, found = vl.loadDefaultStyle()
        renderer = vl.renderer()
        report[layer] = {"default_style_found": bool(found), "message": message, "renderer": renderer.type(),
                         "attribute": getattr(renderer, "classAttribute", lambda: None)(),
                         "classes": len(renderer.ranges()) if hasattr(renderer, "ranges") else None,
                         "datetime_fields": [f.name() for f in vl.fields() if f.type() == QVariant.DateTime],
                         "categories": [c.value() for c in renderer.categories()] if hasattr(renderer, "categories")
                         else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    command, path = sys.argv[1], Path(sys.argv[2]).resolve()
    app = QgsApplication([], False)
    app.initQgis()
    try:
        {"generate": generate, "check": check}[command](path)
    finally:
        app.exitQgis()
