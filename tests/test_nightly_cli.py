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
from tests.conftest import smooth_image, write_geotiff

pytestmark = pytest.mark.usefixtures("prefect_harness")

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
