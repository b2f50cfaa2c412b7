"""What the command line prints and records: every default in --help, which model ran and why, whole
names and paths (or JSON) without a terminal, and no library INFO lines or telemetry errors by default."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rasterio.transform import from_origin

from pipeline.config import DEFAULT_MODEL, DEFAULT_MODEL_REASON
from pipeline.vectors.gpkg import read_scenes
from tests.helpers import smooth_image, write_geotiff

REPO = Path(__file__).resolve().parents[1]
#: A library's INFO line as Prefect's console handler prints it: "12:00:00.000 | INFO    | prefect - ...".
LIBRARY_INFO = re.compile(r"\|\s*INFO\s*\|\s*(prefect|distributed|Flow run|Task run)", re.MULTILINE)


def sceneseg(*args: str, env: dict[str, str] | None = None, columns: str | None = None) -> subprocess.CompletedProcess:
    """The command in a child process whose stdout and stderr are pipes (no terminal), as under cron or CI.

    ``columns`` sets COLUMNS; by default it is unset, so Rich assumes the 80 columns of a log file.
    """
    # Not what an earlier in-process command of this test session set (the CLI sets them with setdefault).
    base = {k: v for k, v in os.environ.items() if k not in {
        "COLUMNS", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DASK_LOGGING__DISTRIBUTED"}}
    base |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    if columns:
        base["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True,
                          env=base | (env or {}), timeout=500, cwd=REPO)


# ------------------------------------------------------------------------------------------------ --help


def _help_rows(command: str) -> dict[str, str]:
    """Each option's row of ``sceneseg COMMAND --help``: its help text and default, on one line."""
    text = sceneseg(command, "--help", columns="300").stdout
    rows = {}
    for line in text.splitlines():
        match = re.match(r"[│|]\s*\*?\s*(--[a-z0-9-]+)(.*?)[│|]?\s*$", line)
        if match:
            rows[match.group(1)] = " ".join(match.group(2).split())
    return rows


@pytest.mark.parametrize(("command", "expected"), [
    ("segment", {
        "--model": DEFAULT_MODEL, "--tile": "the model's", "--overlap": "twice the model's context margin",
        "--batch-size": "1 on the CPU, 4 on CUDA", "--torch-threads": "cores / blocks in flight",
        "--output-crs": "the scene's", "--min-building-area-m2": "the model card's, else 4",
        "--seed-confidence": "the model card's", "--min-seed-m2": "the model card's",
        "--vector-processes": "1 when the CPU runs the model", "--block-size": "2048", "--max-in-flight": "2",
    }),
    ("nightly", {"--model": DEFAULT_MODEL, "--output-crs": "the scene's", "--max-concurrent-scenes": "2",
                 "--retry-delay": "30.0"}),
    ("demo", {"--model": "synthetic-demo", "--size": "1536"}),
    ("train", {"--epochs": "20", "--tile-size": "256", "--init": "none: a new model of --arch"}),
])
def test_help_shows_every_default(command, expected):
    rows = _help_rows(command)
    for option, default in expected.items():
        assert option in rows, f"sceneseg {command} --help has no row for {option}: {sorted(rows)}"
        assert f"[default: {default}" in rows[option] or f"[default: ({default}" in rows[option], (option, rows[option])
    # Rich reads "[default: ...]" inside the help text as markup and drops it, leaving " ." behind.
    assert not [option for option, row in rows.items() if " ." in row], rows


# --------------------------------------------------------------------------------- which model and why


@pytest.mark.slow
def test_segment_runs_the_real_building_model_by_default_and_says_why(tmp_path):
    # An RGB scene at the building model's ground sample distance (0.132 m): read as it is, one tile.
    scene = write_geotiff(tmp_path / "ortho.tif", smooth_image(200, 200),
                          transform=from_origin(300000.0, 3000000.0, 0.132, 0.132))
    done = sceneseg("segment", str(scene), "--out", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model {DEFAULT_MODEL} ({DEFAULT_MODEL_REASON})" in done.stdout, done.stdout
    record = json.loads((tmp_path / "o" / "ortho_run.json").read_text())
    assert record["config"]["model"] == DEFAULT_MODEL
    assert record["config"]["model_reason"] == DEFAULT_MODEL_REASON
    assert Path(record["checkpoint"]).name == f"{DEFAULT_MODEL}.pt"
    assert read_scenes(tmp_path / "o" / "sceneseg.gpkg")["model"].iloc[0] == record["model"]


# ------------------------------------------------------------------------- no terminal: plain lines, JSON


@pytest.mark.slow
def test_without_a_terminal_the_summary_keeps_whole_scene_names_and_paths(tmp_path, tiny_checkpoint):
    deep = tmp_path / "survey-2026" / "kathmandu-valley" / "flight-0042"
    deep.mkdir(parents=True)
    name = "OAM-38669-5a3b7e2c9f1d-orthophoto-kathmandu-valley-north"
    scene = write_geotiff(deep / f"{name}.tif", smooth_image(96, 96))
    out = deep / "sceneseg-output-of-the-night"
    done = sceneseg("segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint))
    assert done.returncode == 0, done.stderr[-3000:]
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(f"{name}:")), None)
    assert line is not None, done.stdout
    assert str(out / f"{name}_mask.tif") in line, line
    assert "buildings" in line and "roads" in line
    assert not re.search("[━┃│┏┡└]", done.stdout), "a table's box characters in a log"


@pytest.mark.slow
def test_segment_json_prints_the_summary_alone_on_stdout(tmp_path, tiny_checkpoint):
    good = write_geotiff(tmp_path / "good.tif", smooth_image(96, 96))
    (tmp_path / "bad.tif").write_text("not a raster\n")
    done = sceneseg("segment", str(good), str(tmp_path / "bad.tif"), "--out", str(tmp_path / "o"),
                    "--model", str(tiny_checkpoint), "--json")
    assert done.returncode == 2, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["model"], summary["model_reason"]) == (str(tiny_checkpoint), "--model given")
    assert [s["scene_id"] for s in summary["scenes"]] == ["good"]
    assert summary["scenes"][0]["mask"] == str(tmp_path / "o" / "good_mask.tif")
    assert [f["scene"] for f in summary["failed"]] == [str(tmp_path / "bad.tif")]
    assert json.loads((tmp_path / "o" / "good_run.json").read_text())["config"]["model_reason"] == "--model given"
    assert "not a raster" in summary["failed"][0]["error"] and "bad.tif" in done.stderr


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_nightly_json_and_plain_lines(tmp_path, tiny_checkpoint):
    from prefect.settings import PREFECT_API_URL

    inbox = tmp_path / "inbox-of-a-long-named-survey-flight"
    inbox.mkdir()
    name = "OAM-38669-5a3b7e2c9f1d-orthophoto-kathmandu-valley-north"
    write_geotiff(inbox / f"{name}.tif", smooth_image(96, 96))
    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    args = ["nightly", "--inbox", str(inbox), "--out", str(tmp_path / "out"), "--model", str(tiny_checkpoint)]
    first = sceneseg(*args, "--json", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert (summary["model"], summary["model_reason"]) == (str(tiny_checkpoint), "--model given")
    assert [(r["scene"], r["status"]) for r in summary["scenes"]] == [(name, "published")]
    assert not LIBRARY_INFO.search(first.stderr), first.stderr
    # Again, with the libraries' INFO logs: the scene is skipped, said in a plain line on stdout.
    second = sceneseg(*args, "--verbose", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{name}: skipped" in second.stdout.splitlines(), second.stdout
    assert f"model {tiny_checkpoint} (--model given)" in second.stdout
    assert LIBRARY_INFO.search(second.stderr), second.stderr


# ------------------------------------------------------------------------------------------ quiet output


@pytest.mark.slow
def test_demo_prints_no_library_info_telemetry_error_or_oversized_event(tmp_path):
    """The demo as a new user runs it: a temporary Prefect server, no internet, nothing set in the environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "DASK_")) and k not in {"DO_NOT_TRACK", "COLUMNS"}}
    env |= {"PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect"), "OMP_NUM_THREADS": "2",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "demo", "--size", "512", "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, env=env, timeout=500, cwd=REPO)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not LIBRARY_INFO.search(output), output
    assert "telemetry" not in output.lower(), output
    assert "Refusing to publish" not in output, output
    assert "model synthetic-demo (the demo's model" in done.stdout, done.stdout
    assert "building_f1" in done.stdout
