"""How GIS software draws and names a class mask: its palette, QGIS's default style and a raster attribute table.

A GeoTIFF's colour map has no alpha and always 2^8 entries, and GeoTIFF has no tag for class names, so
the palette inside the mask alone makes QGIS show 256 classes "0".."255" with background opaque black.
What each program reads instead:

* QGIS (3.22 and later) loads ``<basename>.qml`` beside a raster as the layer's default style:
  :func:`mask_qml` is a paletted renderer with the mask's classes, labelled, and background
  transparent (nodata is the band's nodata value, which QGIS never draws). The document is the one
  QGIS 3.22 saves for such a renderer (``QgsMapLayer.saveNamedStyle``), with the palette filled in.
* GDAL's raster attribute table (RAT), with a class name and RGBA colour per class value, is what
  ArcGIS Pro and QGIS 3.30+ read as class names. GeoTIFF cannot hold one: GDAL (3.10 measured, COG and
  GTiff drivers) writes it to the ``<raster>.aux.xml`` sidecar (PAM). :func:`rat_xml` is the RAT as GDAL
  reads it in a VRT band; :func:`pipeline.raster.write.publish_raster` has GDAL write it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = ["CLASS_COLORS", "class_color", "mask_qml", "rat_xml", "style_path"]

#: Colour of each class (RGBA) in the mask's palette, its QGIS style and its RAT; background is transparent.
CLASS_COLORS: dict[str, tuple[int, int, int, int]] = {
    "background": (0, 0, 0, 0),
    "building": (220, 60, 40, 255),
    "road": (250, 200, 40, 255),
}
_OTHER = (128, 128, 128, 255)


def class_color(name: str) -> tuple[int, int, int, int]:
    """The RGBA colour of a class (grey for a class without one of its own)."""
    return CLASS_COLORS.get(name, _OTHER)


def style_path(raster: Path) -> Path:
    """The QGIS default-style file of a raster: ``<basename>.qml`` beside it, where QGIS looks."""
    return raster.with_suffix(".qml")


# As QGIS 3.22 saves the default style of a paletted single-band layer (nearest-neighbour resampling, so
# that zooming in keeps class edges sharp); {palette} holds the entries.
_QML = """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.16-Białowieża" hasScaleBasedVisibilityFlag="0" styleCategories="AllStyleCategories" minScale="1e+08" maxScale="0">
  <flags>
    <Identifiable>1</Identifiable>
    <Removable>1</Removable>
    <Searchable>1</Searchable>
    <Private>0</Private>
  </flags>
  <temporal fetchMode="0" enabled="0" mode="0">
    <fixedRange>
      <start></start>
      <end></end>
    </fixedRange>
  </temporal>
  <customproperties>
    <Option type="Map">
      <Option name="identify/format" type="QString" value="Value"/>
    </Option>
  </customproperties>
  <pipe-data-defined-properties>
    <Option type="Map">
      <Option name="name" type="QString" value=""/>
      <Option name="properties"/>
      <Option name="type" type="QString" value="collection"/>
    </Option>
  </pipe-data-defined-properties>
  <pipe>
    <provider>
      <resampling zoomedInResamplingMethod="nearestNeighbour" maxOversampling="2" enabled="false" zoomedOutResamplingMethod="nearestNeighbour"/>
    </provider>
    <rasterrenderer alphaBand="-1" band="1" opacity="1" type="paletted" nodataColor="">
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{palette}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation colorizeRed="255" colorizeBlue="128" colorizeStrength="100" colorizeOn="0" colorizeGreen="128" saturation="0" invertColors="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def mask_qml(classes: Sequence[str]) -> str:
    """The QGIS style of a mask whose value ``i`` is ``classes[i]``: one labelled palette entry per class."""
    entries = []
    for value, name in enumerate(classes):
        r, g, b, a = class_color(name)
        entries.append(f'        <paletteEntry label={quoteattr(name)} alpha="{a}" value="{value}" '
                       f'color="#{r:02x}{g:02x}{b:02x}"/>')
    return _QML.format(palette="\n".join(entries))


# GDAL's field types and usages (gdal.h: GFT_Integer, GFT_String; GFU_MinMax, GFU_Name, GFU_Red ... GFU_Alpha).
_INTEGER, _STRING = 0, 2
_FIELDS = (("Value", _INTEGER, 5), ("Class", _STRING, 2), ("Red", _INTEGER, 6), ("Green", _INTEGER, 7),
           ("Blue", _INTEGER, 8), ("Alpha", _INTEGER, 9))


def rat_xml(classes: Sequence[str]) -> str:
    """A thematic raster attribute table (value, class name, RGBA) as a GDAL VRT or PAM band holds it."""
    parts = ['<GDALRasterAttributeTable tableType="thematic">']
    parts += [f'<FieldDefn index="{i}"><Name>{name}</Name><Type>{kind}</Type><Usage>{usage}</Usage></FieldDefn>'
              for i, (name, kind, usage) in enumerate(_FIELDS)]
    for value, name in enumerate(classes):
        cells = [str(value), name, *map(str, class_color(name))]
        parts.append(f'<Row index="{value}">' + "".join(f"<F>{_text(c)}</F>" for c in cells) + "</Row>")
    parts.append("</GDALRasterAttributeTable>")
    return "".join(parts)


def _text(value: str) -> str:
    return quoteattr(value)[1:-1]
