"""The class mask as GIS software reads it: QGIS's default style beside it, GDAL's raster attribute table,
written and replaced with the mask; and, where PyQGIS is installed, what QGIS 3.22 itself shows and draws."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from pipeline.grid import GeoGrid, Region, Shape2d
from pipeline.raster.write import RawBand, publish_raster
from tests.helpers import REPO, has_pyqgis

QGIS_MASK = REPO / "pipeline" / "vectors" / "qgis" / "qgis_mask.py"
GRID = GeoGrid(Shape2d(40, 60), Affine(0.5, 0, 300000, 0, -0.5, 3000000), "EPSG:32645")
CLASSES = ("background", "building", "road")


def mask_values() -> np.ndarray:
    """Background, a building, a road, and a nodata band along the bottom."""
    values = np.zeros((GRID.shape.rows, GRID.shape.cols), dtype=np.uint8)
    values[5:15, 5:25] = 1
    values[20:26, :] = 2
    values[34:, :] = 255
    return values


def publish(tmp_path: Path, classes=CLASSES, values: np.ndarray | None = None) -> Path:
    band = RawBand.open(tmp_path / "mask.npy", GRID.shape)
    band.write(Region.of_shape(GRID.shape), mask_values() if values is None else values)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return publish_raster(band, out / "s_mask.tif", GRID, nodata=255, classes=classes, description="class")


def palette(qml: Path) -> list[tuple[int, str, str, int]]:
    root = ET.parse(qml).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    return [(int(e.get("value")), e.get("label"), e.get("color"), int(e.get("alpha")))
            for e in renderer.iter("paletteEntry")]


def attribute_table(aux: Path) -> list[list[str]]:
    table = ET.parse(aux).getroot().find("PAMRasterBand/GDALRasterAttributeTable")
    header = [f.findtext("Name") for f in table.iter("FieldDefn")]
    return [header, *([f.text for f in row.iter("F")] for row in table.iter("Row"))]


def test_the_mask_has_a_qgis_default_style_with_its_classes_and_background_transparent(tmp_path):
    mask = publish(tmp_path)
    qml = mask.with_suffix(".qml")  # s_mask.qml: the <basename>.qml QGIS loads with s_mask.tif
    assert qml.name == "s_mask.qml"
    assert palette(qml) == [(0, "background", "#000000", 0), (1, "building", "#dc3c28", 255),
                            (2, "road", "#fac828", 255)]
    with rasterio.open(mask) as ds:  # the COG itself is unchanged: palette, names in the band metadata
        assert ds.nodata == 255 and ds.tags(1)["CLASS_NAMES"] == "0:background,1:building,2:road"
        np.testing.assert_array_equal(ds.read(1), mask_values())


def test_the_masks_raster_attribute_table_names_each_class_in_a_pam_sidecar(tmp_path):
    mask = publish(tmp_path)
    # GeoTIFF has no tag for a RAT: GDAL keeps it in <raster>.aux.xml, where ArcGIS and QGIS 3.30+ read it.
    assert attribute_table(mask.with_name("s_mask.tif.aux.xml")) == [
        ["Value", "Class", "Red", "Green", "Blue", "Alpha"],
        ["0", "background", "0", "0", "0", "0"], ["1", "building", "220", "60", "40", "255"],
        ["2", "road", "250", "200", "40", "255"],
    ]
    assert sorted(p.name for p in mask.parent.iterdir()) == ["s_mask.qml", "s_mask.tif", "s_mask.tif.aux.xml"]


def test_republishing_replaces_the_sidecars_with_the_masks(tmp_path):
    publish(tmp_path)
    values = np.minimum(mask_values(), 1) | (mask_values() == 255) * 255
    mask = publish(tmp_path, classes=("background", "building"), values=values.astype(np.uint8))
    assert [label for _, label, _, _ in palette(mask.with_suffix(".qml"))] == ["background", "building"]
    assert [row[1] for row in attribute_table(mask.with_name("s_mask.tif.aux.xml"))[1:]] == ["background", "building"]
    assert sorted(p.name for p in mask.parent.iterdir()) == ["s_mask.qml", "s_mask.tif", "s_mask.tif.aux.xml"]


def _qgis(*args: str, home: Path) -> dict:
    run = subprocess.run(
        ["/usr/bin/python3", str(QGIS_MASK), *args], capture_output=True, text=True, timeout=300,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(home),
             "XDG_RUNTIME_DIR": str(home)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(not has_pyqgis(), reason="no PyQGIS (apt-get install python3-qgis qgis-providers)")
def test_qgis_opens_the_mask_paletted_with_class_labels_and_draws_background_and_nodata_transparent(tmp_path):
    mask = publish(tmp_path)
    os.chmod(tmp_path, 0o700)  # QGIS wants its runtime directory private
    report = _qgis("check", str(mask), home=tmp_path)
    assert report["renderer"] == "paletted" and report["nodata"] == 255
    assert [(c["value"], c["label"], c["alpha"]) for c in report["classes"]] == [
        (0, "background", 0), (1, "building", 255), (2, "road", 255)]
    # QGIS's own renderer, one output pixel per mask pixel, on a transparent canvas.
    png = tmp_path / "drawn.png"
    drawn = _qgis("render", str(png), str(GRID.shape.cols), str(mask), home=tmp_path)
    assert (drawn["width"], drawn["height"], drawn["errors"]) == (GRID.shape.cols, GRID.shape.rows, [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(png) as src:
            rgba = np.moveaxis(src.read(), 0, -1)
    values = mask_values()
    assert np.all(rgba[(values == 0) | (values == 255)][:, 3] == 0), "background and nodata let the scene show"
    assert np.all(rgba[values == 1] == (220, 60, 40, 255))
    assert np.all(rgba[values == 2] == (250, 200, 40, 255))
