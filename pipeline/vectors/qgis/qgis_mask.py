"""How QGIS itself opens and draws a sceneseg mask (PyQGIS), for the tests and the README's picture.

Run with the Python that has PyQGIS (Debian/Ubuntu: ``apt-get install python3-qgis qgis-providers``),
not the project's virtual environment:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 pipeline/vectors/qgis/qgis_mask.py check MASK.tif
        Opens the mask as a QGIS user would (the default style ``<basename>.qml`` loads on opening) and
        prints, as JSON, the renderer, its classes (value, label, colour, alpha) and the nodata value.

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 pipeline/vectors/qgis/qgis_mask.py render OUT.png WIDTH [--extent=X0,Y0,X1,Y1] RASTER...
        Draws the rasters (the first on top, each with the style it opens with) over the extent of the
        first (or the given one, in its CRS), WIDTH pixels wide, on a transparent background, into
        OUT.png: QGIS's own map renderer. The README's picture of the demo mask over its scene:
        ``render bench/mask-in-qgis.png 480 --extent=394000,3155232,394384,3155488 \
        demo-output/demo-scene_mask.tif demo-output/demo-scene.tif``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer, QgsRectangle
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def _open(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem)
    if not layer.isValid():
        raise SystemExit(f"QGIS cannot open {path}")
    return layer


def check(mask: Path) -> None:
    layer = _open(mask)
    renderer = layer.renderer()
    classes = [
        {"value": int(c.value), "label": c.label, "color": c.color.name(), "alpha": c.color.alpha()}
        for c in getattr(renderer, "classes", list)()
    ]
    provider = layer.dataProvider()
    nodata = provider.sourceNoDataValue(1) if provider.sourceHasNoDataValue(1) else None
    print(json.dumps({"renderer": renderer.type(), "classes": classes, "nodata": nodata}, indent=2))


def render(out: Path, width: int, rasters: list[Path], extent: QgsRectangle | None = None) -> None:
    layers = [_open(path) for path in rasters]
    extent = extent or layers[0].extent()
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(layers[0].crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, round(width * extent.height() / extent.width())))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    if not job.renderedImage().save(str(out), "PNG"):
        raise SystemExit(f"QGIS could not save {out}")
    print(json.dumps({"out": str(out), "width": settings.outputSize().width(),
                      "height": settings.outputSize().height(), "errors": [e.message for e in job.errors()]}))


if __name__ == "__main__":
    app = QgsApplication([], False)
    app.initQgis()
    try:
        if sys.argv[1] == "check":
            check(Path(sys.argv[2]).resolve())
        elif sys.argv[1] == "render":
            args = sys.argv[4:]
            box = QgsRectangle(*map(float, args.pop(0).removeprefix("--extent=").split(","))) \
                if args[0].startswith("--extent=") else None
            render(Path(sys.argv[2]).resolve(), int(sys.argv[3]), [Path(p).resolve() for p in args], box)
        else:
            raise SystemExit(f"unknown command {sys.argv[1]!r}: check or render")
    finally:
        app.exitQgis()
