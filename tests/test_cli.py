"""The command line on bad input: one clear message naming the file or option, a non-zero exit, no traceback,
the failure recorded in the scenes layer, the other scenes published, and no outputs for the bad ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
import rasterio
from typer.testing import CliRunner

from flows.cli import app
from pipeline.vectors.gpkg import read_scenes
from tests.helpers import smooth_image, tmpfs, write_geotiff

runner = CliRunner()


def _files(path):
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def _bad_scene(kind: str, tmp_path):
    if kind == "missing":
        return tmp_path / "nope.tif", "no such file"
    if kind == "not-a-raster":
        path = tmp_path / "notes.tif"
        path.write_text("this is not an image\n")
        return path, "not a raster"
    if kind == "no-crs":
        return write_geotiff(tmp_path / "nocrs.tif", smooth_image(64, 64), crs=None), "no CRS"
    if kind == "band-count":
        return write_geotiff(tmp_path / "gray.tif", smooth_image(64, 64, bands=1)), "has 1 band(s)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "not-a-raster", "no-crs", "band-count"])
def test_bad_scene_exits_nonzero_names_the_file_and_is_recorded_as_failed(kind, tmp_path, tiny_checkpoint):
    scene, expected = _bad_scene(kind, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert scene.name in message and expected in message, message
    assert "Traceback" not in result.output
    assert _files(out) == [out / "sceneseg.gpkg"], "no outputs for the scene, only its failure recorded"
    scenes = read_scenes(out / "sceneseg.gpkg")
    assert list(scenes["status"]) == ["failed"] and expected in scenes["error"].iloc[0]


def test_bad_option_is_named(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    result = runner.invoke(app, ["segment", str(scene), "--out", str(tmp_path / "o"), "--model",
                                 str(tiny_checkpoint), "--overlap", "40", "--tile", "64"])
    assert result.exit_code != 0
    assert "overlap" in result.output


def test_unknown_model_lists_the_packaged_ones(tmp_path):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    result = runner.invoke(app, ["segment", str(scene), "--out", str(tmp_path / "o"), "--model", "no-such-model"])
    assert result.exit_code != 0
    assert "no-such-model" in result.output and "packaged" in result.output
    assert not (tmp_path / "o").exists()


def _segment(*args: str) -> subprocess.CompletedProcess:
    """The real command in a child process: its own stderr, its own exit code, nothing of pytest's."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "flows.cli", "segment", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_a_batch_with_a_truncated_scene_publishes_the_good_ones_and_names_the_bad_one(tmp_path, tiny_checkpoint):
    good = write_geotiff(tmp_path / "good.tif", smooth_image(64, 64, seed=1))
    odd_dir = tmp_path / "flight [2026]"
    odd_dir.mkdir()
    odd = write_geotiff(odd_dir / "strip[3].tif", smooth_image(64, 64, seed=2))
    whole = write_geotiff(tmp_path / "cut.tif", smooth_image(256, 256, seed=3))
    truncated = tmp_path / "cut-short.tif"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    result = _segment(str(truncated), str(odd), str(good), "--out", str(out), "--model", str(tiny_checkpoint))
    assert result.returncode != 0
    text = _one_line(result.stderr + result.stdout)
    assert "Traceback" not in text, text
    assert "cut-short.tif" in text and "truncated" in text, text
    assert str(odd_dir) in text or "strip[3]" in text, "the bracketed path is printed literally"
    scenes = read_scenes(out / "sceneseg.gpkg").set_index("scene_id")
    assert scenes.loc["cut-short", "status"] == "failed"
    assert scenes.loc["strip[3]", "status"] == "ok" and scenes.loc["good", "status"] == "ok"
    assert (out / "strip[3]_mask.tif").exists() and (out / "good_mask.tif").exists()
    assert not (out / "cut-short_mask.tif").exists()


def test_a_text_file_as_model_is_a_message(tmp_path):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    model = tmp_path / "model.pt"
    model.write_text("not a model\n")
    result = _segment(str(scene), "--out", str(tmp_path / "o"), "--model", str(model))
    assert result.returncode != 0
    text = _one_line(result.stderr)
    assert "Traceback" not in text and "model.pt" in text and "not a torch checkpoint" in text, text
    assert not (tmp_path / "o").exists()


def test_option_errors_name_the_cli_option(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    result = runner.invoke(app, ["segment", str(scene), "--out", str(tmp_path / "o"), "--model", str(tiny_checkpoint),
                                 "--tile", "8"])
    assert result.exit_code != 0
    assert "--tile" in result.output and "tile_size" not in result.output, result.output


def test_a_bad_output_crs_fails_before_any_output_exists(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    out = tmp_path / "o"
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint),
                                 "--output-crs", "EPSG:999999"])
    assert result.exit_code != 0
    assert "--output-crs" in result.output and "EPSG:999999" in result.output
    assert not out.exists()


def test_out_naming_a_file_is_a_message(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    out = tmp_path / "o.txt"
    out.write_text("mine")
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code != 0
    assert "is a file" in " ".join(result.output.split()) and out.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories; run as a user to test this")
def test_a_read_only_out_is_a_message(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    out.chmod(0o755)
    assert result.exit_code != 0 and "not writable" in " ".join(result.output.split())


def test_too_little_free_space_fails_before_inference(tmp_path, tiny_checkpoint, monkeypatch):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    out = tmp_path / "o"
    monkeypatch.setenv("SCENESEG_FREE_SPACE_MARGIN", "1e15")  # asks for more than any disk has
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code != 0
    assert "MiB free" in " ".join(result.output.split())
    assert not (out / ".sceneseg-work").exists() and not (out / "s_mask.tif").exists()


def test_a_gdal_virtual_path_is_refused_with_a_message(tmp_path, tiny_checkpoint):
    result = runner.invoke(app, ["segment", "/vsizip/scenes.zip/a.tif", "--out", str(tmp_path / "o"), "--model",
                                 str(tiny_checkpoint)])
    assert result.exit_code != 0 and "virtual paths" in " ".join(result.output.split())


def test_same_named_scenes_from_two_folders_both_survive(tmp_path, tiny_checkpoint):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_geotiff(a / "ortho.tif", smooth_image(64, 64, seed=1))
    write_geotiff(b / "ortho.tif", smooth_image(64, 64, seed=2), transform=rasterio.transform.from_origin(
        301000.0, 3000000.0, 0.5, 0.5))
    out = tmp_path / "out"
    args = ["segment", str(a / "ortho.tif"), str(b / "ortho.tif"), "--out", str(out), "--model", str(tiny_checkpoint)]
    assert runner.invoke(app, args).exit_code == 0
    scenes = read_scenes(out / "sceneseg.gpkg")
    assert len(scenes) == 2 and set(scenes["path"]) == {str((a / "ortho.tif").resolve()), str((b / "ortho.tif").resolve())}
    assert "ortho" in set(scenes["scene_id"])
    other = (set(scenes["scene_id"]) - {"ortho"}).pop()
    assert other.startswith("ortho-") and (out / f"{other}_mask.tif").exists()
    # Running both again finds each its own outputs: nothing is refused, nothing duplicated.
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert sorted(read_scenes(out / "sceneseg.gpkg")["scene_id"]) == sorted(scenes["scene_id"])


def test_after_a_successful_run_the_output_holds_only_the_documented_files(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(64, 64))
    out = tmp_path / "out"
    out.mkdir()
    # Temporaries a killed earlier run left: a COG copy and GDAL's overview file of it (pid of a dead process).
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (out / f".s_mask.tif.{dead}.tmp").write_bytes(b"partial")
    (out / f".s_mask.tif.{dead}.tmp.ovr.tmp").write_bytes(b"partial")
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "s_item.json", "s_mask.qml", "s_mask.tif", "s_mask.tif.aux.xml", "s_preview.png", "s_run.json",
        "sceneseg.gpkg"]
    assert oct((out / "sceneseg.gpkg").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with rasterio.open(out / "s_mask.tif") as ds:
        assert ds.tags(1)["CLASS_NAMES"] == "0:background,1:building,2:road"
        assert ds.tags(1)["CLASS_1"] == "building"
    assert [str(n) for n, _ in pyogrio.list_layers(out / "sceneseg.gpkg")] == [
        "buildings", "roads", "road_centerlines", "scenes", "layer_styles"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_disk_that_fills_during_the_run_is_a_message_not_a_signal(tmp_path, tiny_checkpoint):
    disk = tmp_path / "small"
    with tmpfs(disk, "300k") as mounted:
        if not mounted:
            pytest.skip("needs a small real filesystem: `mount -t tmpfs` is not permitted here (run as root to test)")
        scene = write_geotiff(tmp_path / "s.tif", smooth_image(512, 512))
        # The free-space check is turned off (margin 0): the working arrays of 512 KiB do not fit in 300 KiB.
        env = dict(os.environ, SCENESEG_FREE_SPACE_MARGIN="0")
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
        result = subprocess.run([sys.executable, "-m", "flows.cli", "segment", str(scene), "--out", str(disk / "out"),
                                 "--model", str(tiny_checkpoint)], capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
        text = _one_line(result.stderr)
        assert "Traceback" not in text and "s.tif" in text and "No space left" in text, text
        assert not list((disk / "out").glob("*.tmp*"))


def _published(gpkg: Path) -> dict[str, list]:
    """Every row of every layer, attributes and geometry bytes, as pyogrio reads them back."""
    out = {}
    for name, _ in pyogrio.list_layers(gpkg):
        if name == "layer_styles":
            continue
        frame = pyogrio.read_dataframe(gpkg, layer=name)
        out[name] = [tuple(str(v) for v in row) for row in frame.drop(columns="geometry").itertuples(index=False)]
        out[name + ".geometry"] = [None if g is None else g.wkb for g in frame.geometry]
    return out


def test_a_refused_rerun_leaves_what_was_published_as_it_was(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(160, 160, seed=4))
    out = tmp_path / "out"
    args = ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)]
    assert runner.invoke(app, args).exit_code == 0
    before = _published(out / "sceneseg.gpkg")
    assert before["buildings"] and before["roads"], "the tiny model should publish some features"
    refused = runner.invoke(app, args)
    message = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "--overwrite" in message and "kept unchanged" in message, message
    assert _published(out / "sceneseg.gpkg") == before
    assert list(read_scenes(out / "sceneseg.gpkg")["status"]) == ["ok"]


def test_the_same_path_twice_is_one_scene(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(160, 160, seed=4))
    out = tmp_path / "out"
    other_name = tmp_path / "link.tif"
    other_name.symlink_to(scene)
    result = runner.invoke(app, ["segment", str(scene), str(other_name), "./" + os.path.relpath(scene),
                                 "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    scenes = read_scenes(out / "sceneseg.gpkg")
    assert list(scenes["scene_id"]) == ["s"] and list(scenes["status"]) == ["ok"]
    assert _published(out / "sceneseg.gpkg")["buildings"]


def test_a_symlink_loop_is_named_and_its_failure_recorded(tmp_path, tiny_checkpoint):
    loop = tmp_path / "loop.tif"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(loop), "--out", str(out), "--model", str(tiny_checkpoint)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "loop.tif" in message and "symbolic link" in message, message
    assert "could not be recorded" not in message
    scenes = read_scenes(out / "sceneseg.gpkg")
    assert list(scenes["status"]) == ["failed"] and "symbolic link" in scenes["error"].iloc[0]


CONCURRENT = """
import sys
from flows.cli import app
sys.argv = ["sceneseg", "segment", sys.argv[1], "--out", sys.argv[2], "--model", sys.argv[3]]
app()
"""


@pytest.mark.slow
def test_two_commands_on_same_named_scenes_into_one_out_both_publish_every_time(tmp_path, tiny_checkpoint):
    folders = [tmp_path / "a", tmp_path / "b"]
    for i, folder in enumerate(folders):
        folder.mkdir()
        write_geotiff(folder / "ortho.tif", smooth_image(96, 96, seed=i),
                      transform=rasterio.transform.from_origin(300000.0 + 1000 * i, 3000000.0, 0.5, 0.5))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(f / "ortho.tif"), str(out), str(tiny_checkpoint)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in folders]
        done = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
        for run in runs:
            run.stdout.close()
            run.stderr.close()
        assert [code for code, _ in done] == [0, 0], done
        scenes = read_scenes(out / "sceneseg.gpkg")
        assert sorted(scenes["status"]) == ["ok", "ok"]
        assert set(scenes["path"]) == {str((f / "ortho.tif").resolve()) for f in folders}
        ids = set(scenes["scene_id"])
        assert "ortho" in ids and len(ids) == 2
        assert all((out / f"{i}_mask.tif").exists() for i in ids)
        assert not (out / ".sceneseg-work").exists()


HOLDER = """
import sys
from pathlib import Path
from pipeline.preflight import claim_scene_id
claim_scene_id(Path(sys.argv[1]), Path(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_process_on_the_same_scene_and_out_is_refused_while_the_first_runs(tmp_path, tiny_checkpoint):
    scene = write_geotiff(tmp_path / "s.tif", smooth_image(96, 96))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    args = ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)]
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(scene), str(out)], env=env, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline().strip() == "held"
        refused = runner.invoke(app, args)
        message = " ".join(refused.output.split())
        assert refused.exit_code == 2 and "another process is segmenting this scene" in message, message
        assert not (out / "s_mask.tif").exists()
        holder.stdin.close()
        holder.wait(timeout=60)
    # The first run is gone (its lock with it): the same command runs.
    assert runner.invoke(app, args).exit_code == 0
    assert list(read_scenes(out / "sceneseg.gpkg")["status"]) == ["ok"]
