"""Prefect flows under a real temporary Prefect server: same outputs as the CLI, nightly batches, STAC inboxes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyogrio
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.nightly import nightly
from flows.segment import segment_scene_flow
from pipeline.config import SegmentConfig
from pipeline.vectors.gpkg import read_scenes
from tests.helpers import read_features, read_mask, smooth_image, write_geotiff

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_segment_flow_writes_the_same_outputs_as_the_cli(smooth_scene, tmp_path, tiny_checkpoint):
    cli = CliRunner().invoke(app, ["segment", str(smooth_scene), "--out", str(tmp_path / "cli"), "--model",
                                   str(tiny_checkpoint), "--block-size", "96"])
    assert cli.exit_code == 0, cli.output
    summary = segment_scene_flow(str(smooth_scene), str(tmp_path / "flow"),
                                 SegmentConfig(model=str(tiny_checkpoint), block_size=96))
    np.testing.assert_array_equal(read_mask(summary["mask"]), read_mask(tmp_path / "cli" / "scene_mask.tif"))
    for layer in ("buildings", "roads", "road_centerlines"):
        assert read_features(summary["gpkg"], layer) == read_features(tmp_path / "cli" / "sceneseg.gpkg", layer)
    assert summary["counts"]["buildings"] > 0


def _statuses(rows):
    return {r["scene"]: r["status"] for r in rows}


@pytest.mark.slow
def test_nightly_publishes_new_scenes_skips_published_ones_and_records_failures(tmp_path, tiny_checkpoint):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for i in range(3):
        write_geotiff(inbox / f"scene{i}.tif", smooth_image(96, 112, seed=i))
    (inbox / "corrupt.tif").write_bytes(b"II*\x00 truncated tiff")
    run = dict(inbox=str(inbox), out_dir=str(out), model=str(tiny_checkpoint), retry_delay_seconds=0)

    rows = nightly(**run)
    first = _statuses(rows)
    assert first == {"scene0": "published", "scene1": "published", "scene2": "published", "corrupt": "failed"}
    # The scenes cover the same ground: each is compared with the others published, and the summary counts it.
    assert all(isinstance(r[k], int) for r in rows if r["status"] == "published" for k in ("new", "removed"))
    assert "building_changes" in {name for name, _ in pyogrio.list_layers(out / "sceneseg.gpkg")}
    scenes = read_scenes(out / "sceneseg.gpkg").set_index("scene_id")
    assert scenes.loc["corrupt", "status"] == "failed" and "corrupt.tif" in scenes.loc["corrupt", "error"]
    counts = {layer: len(read_features(out / "sceneseg.gpkg", layer)[0]) for layer in ("buildings", "roads")}

    second = _statuses(nightly(**run))
    assert {k: v for k, v in second.items() if k != "corrupt"} == dict.fromkeys(["scene0", "scene1", "scene2"], "skipped")
    assert {layer: len(read_features(out / "sceneseg.gpkg", layer)[0]) for layer in counts} == counts

    write_geotiff(inbox / "scene3.tif", smooth_image(96, 112, seed=3))
    third = _statuses(nightly(**run))
    assert third["scene3"] == "published"
    assert [k for k, v in third.items() if v == "published"] == ["scene3"]


@pytest.mark.slow
def test_stac_item_collection_inbox_is_processed_like_a_directory(tmp_path, tiny_checkpoint):
    assets = tmp_path / "assets"
    assets.mkdir()
    features = []
    for i in range(2):
        write_geotiff(assets / f"img{i}.tif", smooth_image(80, 96, seed=10 + i))
        features.append({"type": "Feature", "stac_version": "1.0.0", "id": f"item-{i}", "geometry": None,
                         "properties": {}, "links": [],
                         "assets": {"visual": {"href": f"assets/img{i}.tif",
                                               "type": "image/tiff; application=geotiff"}}})
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    rows = nightly(inbox=str(collection), out_dir=str(tmp_path / "out"), model=str(tiny_checkpoint))
    assert _statuses(rows) == {"item-0": "published", "item-1": "published"}
    assert sorted(read_scenes(tmp_path / "out" / "sceneseg.gpkg")["scene_id"]) == ["item-0", "item-1"]
    assert (tmp_path / "out" / "item-0_mask.tif").exists()
    shutil.rmtree(assets)


def test_nightly_deployment_is_scheduled_in_local_time_and_never_overlaps():
    from flows.nightly import schedule_options

    deployment = nightly.to_deployment(**schedule_options("/in", "/out", "0 2 * * *", "Europe/Berlin"))
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Berlin"
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert deployment.parameters["inbox"] == "/in"
