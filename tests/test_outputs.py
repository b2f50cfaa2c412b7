"""Quick-looks and STAC records of published scenes, on real synthetic scenes segmented end to end."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from shapely.geometry import box, shape

from pipeline.config import SegmentConfig
from pipeline.grid import GeoGrid, Shape2d
from pipeline.metadata import acquisition_time
from pipeline.outputs import update_catalog, validate_offline
from pipeline.outputs.preview import MAX_SIDE, OUTLINE_COLORS, preview_shape
from pipeline.outputs.stac import ItemAssets, scene_item
from pipeline.stages import segment_scene
from pipeline.synthetic import write_synthetic_scene
from tests.helpers import smooth_image, write_geotiff


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A 1300 x 2100 synthetic scene segmented by the demo model: its mask COG has overviews."""
    root = tmp_path_factory.mktemp("outputs")
    scene = write_synthetic_scene(root / "synth.tif", 1300, 2100, seed=4242)
    out = root / "out"
    segment_scene(scene.path, out, SegmentConfig(model="synthetic-demo", block_size=1024))
    return scene, out


def _read_png(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map
        with rasterio.open(path) as src:
            return np.moveaxis(src.read(), 0, -1)


def test_preview_shape_keeps_the_aspect_and_never_enlarges():
    assert preview_shape(Shape2d(1300, 2100)) == Shape2d(634, 1024)
    assert preview_shape(Shape2d(40000, 10000)) == Shape2d(1024, 256)
    assert preview_shape(Shape2d(300, 200)) == Shape2d(300, 200)


@pytest.mark.parametrize("rows, cols, max_side", [(1503, 3001, 512), (2999, 777, 400), (300, 200, 1024)])
def test_preview_reads_the_scene_in_strips_sampling_the_pixels_of_one_whole_read(tmp_path, rows, cols, max_side):
    from rasterio.transform import from_origin

    from pipeline.outputs.preview import _scene_rgb

    data = np.random.default_rng(rows).integers(1, 255, (3, rows, cols), dtype=np.uint8)
    data[:, rows // 3 : rows // 2, : cols // 4] = 0  # a nodata corner, so the validity varies too
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=3, dtype="uint8", nodata=0,
                       tiled=True, blockxsize=128, blockysize=128, compress="deflate", crs="EPSG:32645",
                       transform=from_origin(300000, 3000000, 0.5, 0.5)) as dst:
        dst.write(data)
    shape = preview_shape(Shape2d(rows, cols), max_side)
    bands, valid = _scene_rgb(path, shape)
    with rasterio.open(path) as src:
        whole = src.read([1, 2, 3], out_shape=(3, shape.rows, shape.cols), resampling=Resampling.nearest)
        whole_valid = src.read_masks(1, out_shape=(shape.rows, shape.cols), resampling=Resampling.nearest) > 0
    np.testing.assert_array_equal(bands, whole)
    np.testing.assert_array_equal(valid, whole_valid)
    assert 0 < valid.mean() < 1


def test_preview_is_small_and_its_building_outlines_lie_on_building_pixels(published):
    scene, out = published
    png = out / "synth_preview.png"
    rgb = _read_png(png)
    assert max(rgb.shape[:2]) <= MAX_SIDE and rgb.shape[2] == 3
    assert rgb.shape[:2] == (634, 1024)
    with rasterio.open(out / "synth_mask.tif") as src:
        assert src.overviews(1), "the mask COG has overviews to read the preview from"
        mask = src.read(1, out_shape=rgb.shape[:2], resampling=Resampling.nearest)
    building = np.all(rgb == OUTLINE_COLORS["building"], axis=-1)
    road = np.all(rgb == OUTLINE_COLORS["road"], axis=-1)
    assert building.sum() > 500 and road.sum() > 500
    assert np.all(mask[building] == 1)
    assert np.all(mask[road] == 2)
    # Outlines, not fills: the inside of the buildings shows the scene.
    assert building.sum() < 0.8 * (mask == 1).sum()


def test_stac_item_round_trips_with_projection_and_classification(published):
    scene, out = published
    item = pystac.Item.from_file(str(out / "synth_item.json"))
    assert item.id == "synth"
    with rasterio.open(scene.path) as src:
        crs, transform, bounds, rows, cols = src.crs, src.transform, src.bounds, src.height, src.width
    # geometry and bbox in EPSG:4326, around the scene's centre
    footprint = shape(item.geometry)
    assert footprint.is_valid and item.bbox == pytest.approx(list(footprint.bounds))
    assert 80 < item.bbox[0] < 95 and 20 < item.bbox[1] < 35  # UTM 45N
    proj = ProjectionExtension.ext(item)
    assert proj.code == crs.to_string() == "EPSG:32645"
    assert proj.shape == [rows, cols]
    assert proj.transform == pytest.approx(list(transform)[:6])
    assert proj.bbox == pytest.approx(list(bounds))
    assert set(item.assets) == {"mask", "style", "gpkg", "preview", "run"}
    for key, name in {"mask": "synth_mask.tif", "style": "synth_mask.qml", "gpkg": "sceneseg.gpkg",
                      "preview": "synth_preview.png", "run": "synth_run.json"}.items():
        href = item.assets[key].get_absolute_href()
        assert Path(href) == (out / name).resolve() and Path(href).exists()
    assert item.assets["gpkg"].media_type == "application/geopackage+sqlite3"
    mask = item.assets["mask"]
    assert mask.media_type == pystac.MediaType.COG and mask.extra_fields["nodata"] == 255
    classes = {c.value: (c.name, c.nodata) for c in ClassificationExtension.ext(mask).classes}
    assert classes == {0: ("background", None), 1: ("building", None), 2: ("road", None), 255: ("nodata", True)}
    assert item.properties["sceneseg:counts"]["buildings"] > 0
    run = json.loads((out / "synth_run.json").read_text())
    assert item.properties["sceneseg:run_id"] == run["run_id"]
    # The synthetic scene says nothing of its acquisition: no datetime, the processing time as the range.
    assert item.datetime is None and item.properties["sceneseg:datetime_source"] == "processing time"
    assert item.properties["start_datetime"] == item.properties["end_datetime"]
    assert datetime.fromisoformat(item.properties["start_datetime"]) == datetime.fromisoformat(run["created_at"])
    # the reprojected footprint covers the scene
    assert footprint.area == pytest.approx(box(*item.bbox).area, rel=0.05)
    assert validate_offline(item)


def test_catalog_of_the_items_round_trips_and_validates_offline(published, monkeypatch):
    _, out = published
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = update_catalog(out, [out / "synth_item.json", out / "missing_item.json"])
    catalog = pystac.Catalog.from_file(str(path))
    items = list(catalog.get_items(recursive=True))
    assert [i.id for i in items] == ["synth"]
    assert Path(items[0].get_self_href()) == (out / "synth_item.json").resolve()
    assert ProjectionExtension.ext(items[0]).code == "EPSG:32645"
    for root, _, walked in catalog.walk():
        assert root.id == "sceneseg" and [i.id for i in walked] == ["synth"]
    schemas = validate_offline(catalog)
    assert any("catalog.json" in s for s in schemas) and any("item.json" in s for s in schemas)
    # the item, rewritten with its catalog links, still reads back on its own
    again = pystac.Item.from_file(str(out / "synth_item.json"))
    assert again.get_root_link() is not None and Path(again.assets["mask"].get_absolute_href()).exists()


@pytest.mark.parametrize("domain, key, value, expected", [
    ("", "TIFFTAG_DATETIME", "2024:03:01 10:22:33", datetime(2024, 3, 1, 10, 22, 33, tzinfo=UTC)),
    ("IMAGERY", "ACQUISITIONDATETIME", "2023-11-05 04:30:00.5", datetime(2023, 11, 5, 4, 30, 0, 500000, tzinfo=UTC)),
    ("", "acquisition_date", "2022-06-30", datetime(2022, 6, 30, tzinfo=UTC)),
    ("", "DATETIME", "2021-01-02T03:04:05+05:45", datetime(2021, 1, 1, 21, 19, 5, tzinfo=UTC)),
])
def test_the_acquisition_time_is_read_from_the_scenes_metadata(tmp_path, domain, key, value, expected):
    path = write_geotiff(tmp_path / "scene.tif", smooth_image(32, 32))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(ns=domain or None, **{key: value})
    acquired = acquisition_time(path)
    assert acquired.time == expected and acquired.source == (f"{domain}:{key}" if domain else key)


def test_a_scene_without_a_time_or_with_a_bad_one_has_no_acquisition_time(tmp_path):
    path = write_geotiff(tmp_path / "scene.tif", smooth_image(32, 32))
    assert acquisition_time(path) is None
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="0000:00:00 00:00:00")
    assert acquisition_time(path) is None


def _x_of_the_antimeridian(crs: str) -> float:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(180.0, 0.0)[0]


def _assert_cut_at_the_antimeridian(item: pystac.Item) -> None:
    footprint = shape(item.geometry)
    assert item.geometry["type"] == "MultiPolygon" and len(footprint.geoms) == 2
    west, east = sorted(footprint.geoms, key=lambda p: -p.bounds[0])
    assert west.bounds[2] == pytest.approx(180.0, abs=1e-9) and 179.99 < west.bounds[0] < 180.0
    assert east.bounds[0] == pytest.approx(-180.0, abs=1e-9) and -180.0 < east.bounds[2] < -179.99
    assert all(p.exterior.is_ccw for p in footprint.geoms)  # RFC 7946: exteriors counterclockwise
    # bbox: west > east across the antimeridian (RFC 7946 5.2), latitudes of the whole footprint
    assert item.bbox == pytest.approx([west.bounds[0], footprint.bounds[1], east.bounds[2], footprint.bounds[3]])
    assert item.bbox[0] > item.bbox[2]
    assert footprint.area < 1e-4  # two slivers, not a band around the globe
    assert validate_offline(item)


def test_a_scene_across_the_antimeridian_gets_a_footprint_cut_in_two_and_a_valid_item(tmp_path, tiny_checkpoint):
    """A real GeoTIFF in UTM zone 60N straddling 180 degrees, segmented end to end; its TIFF time is the item's."""
    x180 = _x_of_the_antimeridian("EPSG:32660")
    path = write_geotiff(tmp_path / "dateline.tif", smooth_image(240, 240), crs="EPSG:32660",
                         transform=from_origin(x180 - 70.0, 60.0, 0.5, 0.5))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(TIFFTAG_DATETIME="2025:07:14 22:10:00")
    segment_scene(path, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint)))
    item = pystac.Item.from_file(str(tmp_path / "out" / "dateline_item.json"))
    _assert_cut_at_the_antimeridian(item)
    assert item.datetime == datetime(2025, 7, 14, 22, 10, tzinfo=UTC)
    assert item.properties["sceneseg:datetime_source"] == "TIFFTAG_DATETIME"
    assert "start_datetime" not in item.properties


@pytest.mark.parametrize("crs", ["EPSG:32601", "EPSG:3832", "EPSG:3857"])
def test_footprints_across_the_antimeridian_are_cut_in_any_crs(tmp_path, crs):
    """UTM zone 1 (the scene's west edge beyond its zone), and Mercators with 180 inside or at their edge."""
    x180 = _x_of_the_antimeridian(crs)
    # 3857 ends at 180: a scene there runs past the projection's edge, where PROJ wraps longitudes too.
    grid = GeoGrid(Shape2d(200, 300), from_origin(x180 - 100.0, 50.0, 1.0, 1.0), crs)
    paths = ItemAssets(*(tmp_path / name for name in ("m.tif", "s.gpkg", "p.png", "r.json")))
    item = scene_item("s", grid, paths, classes=("background", "building"), nodata=255,
                      created_at="2026-01-01T00:00:00+00:00", model="m", run_id="r")
    _assert_cut_at_the_antimeridian(item)


def test_a_footprint_east_of_the_antimeridian_only_stays_one_polygon(tmp_path):
    x180 = _x_of_the_antimeridian("EPSG:32660")
    grid = GeoGrid(Shape2d(100, 100), from_origin(x180 + 10.0, 50.0, 1.0, 1.0), "EPSG:32660")
    paths = ItemAssets(*(tmp_path / name for name in ("m.tif", "s.gpkg", "p.png", "r.json")))
    item = scene_item("s", grid, paths, classes=("background", "building"), nodata=255,
                      created_at="2026-01-01T00:00:00+00:00", model="m", run_id="r")
    assert item.geometry["type"] == "Polygon" and -180 < item.bbox[0] < item.bbox[2] < -179.99
    assert validate_offline(item)


def test_preview_of_a_scene_with_nan_warns_nothing_and_shows_the_nan_as_nodata(tmp_path, tiny_checkpoint):
    from pipeline.outputs.preview import render_preview
    from tests.helpers import smooth_image, write_geotiff

    image = smooth_image(200, 260, seed=3).astype(np.float32)
    image[:, 50:90, 60:140] = np.nan  # no nodata value declared: NaN alone says it
    image[1, 150:160, 10:30] = np.nan  # one band is enough
    scene = write_geotiff(tmp_path / "nan.tif", image)
    result = segment_scene(scene, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint), precision="fp32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preview = render_preview(scene, result.mask_path, ("background", "building", "road"))
    assert preview.rgb.shape == (200, 260, 3)
    assert (preview.rgb[50:90, 60:140] == 0).all() and (preview.rgb[150:160, 10:30] == 0).all()
    assert preview.rgb[:40].max() > 100, "the valid pixels are stretched from their own percentiles"
