"""The command line on bad input: a clear message naming the file, a non-zero exit, and no outputs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import smooth_image, write_geotiff

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
def test_bad_scene_exits_nonzero_names_the_file_and_leaves_nothing(kind, tmp_path, tiny_checkpoint):
    scene, expected = _bad_scene(kind, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(scene), "--out", str(out), "--model", str(tiny_checkpoint)])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert scene.name in message and expected in message, message
    assert _files(out) == []


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
