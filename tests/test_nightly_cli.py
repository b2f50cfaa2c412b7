"""`sceneseg nightly`: one pass of the nightly flow from the command line, its exit status and its outputs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pystac
import pytest

from pipeline.outputs import validate_offline
from pipeline.vectors.gpkg import read_scenes
from pipeline.vectors.styles import STYLED_LAYERS
from tests.helpers import smooth_image, write_geotiff

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]  # a process and a Prefect server each

REPO = Path(__file__).resolve().parents[1]


def sceneseg(*args: str, home: Path, server: bool) -> subprocess.CompletedProcess:
    """The command line in a process of its own, as cron or a CI job runs it: against the test session's
    Prefect server (``server``) or with no PREFECT_API_URL, so that Prefect starts a temporary one."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(home), "OMP_NUM_THREADS": "2",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "COLUMNS": "200"}
    if server:
        env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=500, cwd=REPO)


def _preview_artifacts(scene_ids: list[str]) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [f"preview-{s}" for s in scene_ids]
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    return {a.key: a.data for a in found}


def test_nightly_command_publishes_records_failures_and_exits_by_them(tmp_path, tiny_checkpoint):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for i in range(2):
        write_geotiff(inbox / f"scene{i}.tif", smooth_image(96, 112, seed=i))
    (inbox / "broken.tif").write_bytes(b"II*\x00 truncated tiff")
    args = ["nightly", "--inbox", str(inbox), "--out", str(out), "--model", str(tiny_checkpoint), "--retry-delay", "0"]

    first = sceneseg(*args, home=tmp_path / "prefect", server=True)
    assert first.returncode == 2, first.stdout + first.stderr
    assert "1 of 3 scene(s) failed: broken" in first.stderr
    assert first.stdout.count("published") == 2 and "broken" in first.stdout
    scenes = read_scenes(out / "sceneseg.gpkg").set_index("scene_id")
    assert dict(scenes["status"]) == {"scene0": "ok", "scene1": "ok", "broken": "failed"}
    assert "broken.tif" in scenes.loc["broken", "error"]

    # Every output a GIS or a catalogue expects, for the published scenes only.
    con = sqlite3.connect(out / "sceneseg.gpkg")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 10300
    assert sorted(r[0] for r in con.execute("SELECT f_table_name FROM layer_styles")) == sorted(STYLED_LAYERS)
    con.close()
    for s in ("scene0", "scene1"):
        assert (out / f"{s}_preview.png").exists() and (out / f"{s}_item.json").exists()
    assert not (out / "broken_item.json").exists()
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert sorted(i.id for i in catalog.get_items(recursive=True)) == ["scene0", "scene1"]
    assert validate_offline(catalog)
    artifacts = _preview_artifacts(["scene0", "scene1"])
    assert sorted(artifacts) == ["preview-scene0", "preview-scene1"]
    assert all("](data:image/png;base64,iVBORw0KGgo" in md for md in artifacts.values())

    # The operator takes the broken file away: the next pass, with no Prefect server at all, publishes
    # nothing and succeeds.
    (inbox / "broken.tif").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    second = sceneseg(*args, home=tmp_path / "prefect-ephemeral", server=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("skipped") == 2 and "published" not in second.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("scene*")} == {
        k: v for k, v in mtimes.items() if k.startswith("scene")
    }


def test_nightly_command_names_a_bad_inbox(tmp_path, tiny_checkpoint):
    result = sceneseg("nightly", "--inbox", str(tmp_path / "nowhere.json"), "--out", str(tmp_path / "out"),
                      "--model", str(tiny_checkpoint), home=tmp_path / "prefect", server=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and "nowhere.json" in result.stderr


def _task_runs(flow_name: str = "segment-batch") -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="segment-scene")))


def test_nightly_records_scenes_that_can_never_succeed_once_and_never_takes_its_outputs_as_scenes(tmp_path,
                                                                                                 tiny_checkpoint):
    inbox = tmp_path / "inbox"  # the inbox is also the output directory
    inbox.mkdir()
    write_geotiff(inbox / "scene0.tif", smooth_image(96, 112, seed=0))
    (inbox / "notes.tif").write_text("not an image\n")
    (inbox / "loop.tif").symlink_to(inbox / "loop.tif")
    args = ["nightly", "--inbox", str(inbox), "--out", str(inbox), "--model", str(tiny_checkpoint)]

    first = sceneseg(*args, home=tmp_path / "prefect", server=True)  # the default 30 s retry delay
    assert first.returncode == 2, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    scenes = read_scenes(inbox / "sceneseg.gpkg").set_index("scene_id")
    assert dict(scenes["status"]) == {"scene0": "ok", "notes": "failed", "loop": "failed"}
    assert "loop.tif" in scenes.loc["loop", "error"] and "symbolic link" in scenes.loc["loop", "error"]
    attempts = [run.run_count for run in _task_runs() if run.flow_run_id is not None]
    assert attempts and max(attempts) == 1, attempts  # no scene was retried

    second = sceneseg(*args, home=tmp_path / "prefect", server=True)
    assert "scene0_mask" not in second.stdout
    assert sorted(read_scenes(inbox / "sceneseg.gpkg")["scene_id"]) == ["loop", "notes", "scene0"]


def test_a_remote_href_in_a_stac_inbox_fails_only_its_scene(tmp_path, tiny_checkpoint):
    import json

    local = write_geotiff(tmp_path / "local.tif", smooth_image(96, 112, seed=0))
    items = [{"type": "Feature", "stac_version": "1.1.0", "id": name, "geometry": None, "properties": {},
              "links": [], "assets": {"image": {"href": href, "type": "image/tiff; application=geotiff"}}}
             for name, href in (("remote", "https://example.com/scenes/remote.tif"), ("local", local.name))]
    inbox = tmp_path / "items.json"
    inbox.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    out = tmp_path / "out"
    result = sceneseg("nightly", "--inbox", str(inbox), "--out", str(out), "--model", str(tiny_checkpoint),
                      home=tmp_path / "prefect", server=True)
    assert result.returncode == 2, result.stdout + result.stderr
    scenes = read_scenes(out / "sceneseg.gpkg").set_index("scene_id")
    assert dict(scenes["status"]) == {"local": "ok", "remote": "failed"}
    assert "https://example.com/scenes/remote.tif" in scenes.loc["remote", "error"]
