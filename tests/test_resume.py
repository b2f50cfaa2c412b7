"""A run killed with SIGKILL part-way resumes from its block journal and ends identical to an uninterrupted one;
killed during the GeoPackage publish, the same command finishes the scene, published once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from pipeline.config import SegmentConfig
from pipeline.errors import OutputError
from pipeline.stages import segment_scene
from tests.helpers import read_features, read_mask, smooth_image, write_geotiff

CHILD = """
import sys
from pipeline.config import SegmentConfig
from pipeline.stages import segment_scene
segment_scene(sys.argv[1], sys.argv[2], SegmentConfig(model=sys.argv[3], block_size=48, max_in_flight=1),
              journal_interval=0)
"""

pytestmark = pytest.mark.slow



def _journal_blocks(journal: Path) -> set[tuple[int, int]]:
    if not journal.exists():
        return set()
    blocks = set()
    for line in journal.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "block" in record:
            blocks.add(tuple(record["block"]))
    return blocks


def test_killed_run_resumes_without_rereading_finished_blocks(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "big.tif", smooth_image(480, 480, seed=3))
    reference = segment_scene(scene, tmp_path / "ref", SegmentConfig(model=str(tiny_checkpoint), block_size=48))

    out = tmp_path / "killed"
    journal = out / ".sceneseg-work" / "big" / "journal.jsonl"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(scene), str(out), str(tiny_checkpoint)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_journal_blocks(journal)) < 8 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = _journal_blocks(journal)
    assert 8 <= len(done_before) < reference.blocks, "the child must be killed part-way"
    assert not (out / "big_mask.tif").exists()

    resumed = segment_scene(scene, out, SegmentConfig(model=str(tiny_checkpoint), block_size=48), journal_interval=0)
    assert resumed.resumed_blocks == len(done_before)
    assert (out / "big_mask.tif").read_bytes() == reference.mask_path.read_bytes()
    np.testing.assert_array_equal(read_mask(out / "big_mask.tif"), read_mask(reference.mask_path))
    for layer in ("buildings", "roads", "road_centerlines"):
        assert read_features(resumed.gpkg_path, layer) == read_features(reference.gpkg_path, layer)
    assert not (out / ".sceneseg-work" / "big").exists(), "the working directory is removed after success"


KILLED_AT_PUBLISH = """
import os, signal, sys
from pipeline.vectors import gpkg
from pipeline.config import SegmentConfig
from pipeline.stages import segment_scene

move = gpkg._move_layer


def move_then_die(con, table, scene_id):  # SIGKILL inside the GeoPackage transaction, after real writes
    move(con, table, scene_id)
    if table == "roads":
        os.kill(os.getpid(), signal.SIGKILL)


gpkg._move_layer = move_then_die
segment_scene(sys.argv[1], sys.argv[2], SegmentConfig(model=sys.argv[3], block_size=48, max_in_flight=1))
"""


def test_killed_during_the_geopackage_publish_the_same_command_finishes_the_scene(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(96, 96, seed=5))
    config = SegmentConfig(model=str(tiny_checkpoint), block_size=48, max_in_flight=1)
    reference = segment_scene(scene, tmp_path / "ref", config)
    out = tmp_path / "out"
    segment_scene(write_geotiff(tmp_path / "other.tif", smooth_image(64, 64, seed=6)), out, config)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    child = subprocess.run([sys.executable, "-c", KILLED_AT_PUBLISH, str(scene), str(out), str(tiny_checkpoint)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert (out / "s_mask.tif").exists(), "killed after the mask was published"
    assert (out / "sceneseg.gpkg-journal").exists(), "killed inside the transaction"

    resumed = segment_scene(scene, out, config)  # the same command: no --overwrite, no refusal
    assert resumed.resumed_blocks == resumed.blocks
    con = sqlite3.connect(out / "sceneseg.gpkg")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM scenes WHERE scene_id = 's'").fetchone()[0] == 1
    finally:
        con.close()
    for layer in ("buildings", "roads", "road_centerlines"):
        frame = pyogrio.read_dataframe(resumed.gpkg_path, layer=layer, where="scene_id = 's'")
        assert len(frame) == reference.counts[layer]
    assert sorted(p.name for p in out.iterdir()) == [
        "other_item.json", "other_mask.qml", "other_mask.tif", "other_mask.tif.aux.xml", "other_preview.png",
        "other_run.json", "s_item.json", "s_mask.qml", "s_mask.tif", "s_mask.tif.aux.xml", "s_preview.png",
        "s_run.json", "sceneseg.gpkg"]
    # Once finished, the same command refuses to overwrite without --overwrite, as before.
    with pytest.raises(OutputError, match="--overwrite"):
        segment_scene(scene, out, config)
