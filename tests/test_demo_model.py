"""Acceptance of the spine with the packaged demo model on a synthetic scene that training never saw."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
import torch

from flows.cli import DEMO_SEED
from models.checkpoint import load_checkpoint
from pipeline.config import DEMO_MODEL, SegmentConfig
from pipeline.evaluate import evaluate_outputs
from pipeline.stages import segment_scene
from pipeline.synthetic import write_synthetic_scene
from tests.helpers import read_features, read_mask

SIZE = 1536
BLOCK_SIZES = (512, 1024, 1536)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    return write_synthetic_scene(tmp_path_factory.mktemp("demo") / "demo-scene.tif", SIZE, SIZE, seed=DEMO_SEED)


@pytest.fixture(scope="module")
def runs(demo_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return {bs: segment_scene(demo_scene.path, out / str(bs), SegmentConfig(model=DEMO_MODEL, block_size=bs))
            for bs in BLOCK_SIZES}


def test_streamed_result_is_identical_for_block_sizes_512_1024_1536(runs):
    assert runs[512].blocks > runs[1024].blocks > 1, "several blocks of several tiles"
    reference = read_mask(runs[1536].mask_path)
    for bs in (512, 1024):
        np.testing.assert_array_equal(read_mask(runs[bs].mask_path), reference)
        for layer in ("buildings", "roads", "road_centerlines"):
            assert read_features(runs[bs].gpkg_path, layer) == read_features(runs[1536].gpkg_path, layer)


def test_streamed_result_agrees_with_one_forward_pass_over_the_mirror_padded_scene(demo_scene, runs):
    loaded = load_checkpoint("synthetic-demo")
    card = loaded.card
    with rasterio.open(demo_scene.path) as ds:
        image = ds.read(card.bands).astype(np.float32)
    x = (image - np.array(card.mean, np.float32)[:, None, None]) / np.array(card.std, np.float32)[:, None, None]
    pad = 2 * card.context_margin
    multiple = 2 ** card.arch_kwargs["depth"]
    extra = (-(SIZE + 2 * pad)) % multiple
    padded = np.pad(x, ((0, 0), (pad, pad + extra), (pad, pad + extra)), mode="reflect")
    with torch.inference_mode():
        logits = loaded.model(torch.from_numpy(padded)[None])[0]
    whole = logits.argmax(0).numpy()[pad : pad + SIZE, pad : pad + SIZE]
    agreement = (whole == read_mask(runs[1024].mask_path)).mean()
    assert agreement >= 0.999, agreement


def test_demo_model_finds_buildings_and_roads_on_an_unseen_scene(demo_scene, runs):
    result = runs[1024]
    scores = evaluate_outputs(result.mask_path, result.gpkg_path, demo_scene.truth_path, scene_id=result.scene_id)
    assert scores["building_f1"] >= 0.85, scores
    assert scores["road_pixel_iou"] >= 0.75, scores


def test_outputs_carry_the_scene_grid_and_crs_and_lie_inside_the_scene(demo_scene, runs):
    result = runs[1024]
    with rasterio.open(demo_scene.path) as src, rasterio.open(result.mask_path) as mask:
        assert (mask.crs, mask.transform, mask.width, mask.height) == (src.crs, src.transform, src.width, src.height)
        bounds = shapely.box(*src.bounds)
        crs = src.crs
    for layer in ("buildings", "roads", "road_centerlines"):
        info = pyogrio.read_info(result.gpkg_path, layer=layer)
        assert rasterio.crs.CRS.from_user_input(info["crs"]) == crs
        frame = pyogrio.read_dataframe(result.gpkg_path, layer=layer)
        assert len(frame) > 0
        assert shapely.covers(bounds.buffer(1e-6), frame.geometry.values).all()


def test_bf16_agrees_with_fp32_on_a_real_like_scene(tmp_path):
    import json

    scene = write_synthetic_scene(tmp_path / "scene.tif", 256, 256, seed=DEMO_SEED + 1)
    masks = {}
    for precision in ("fp32", "bf16"):
        result = segment_scene(scene.path, tmp_path / precision, SegmentConfig(model=DEMO_MODEL, precision=precision))
        masks[precision] = read_mask(result.mask_path)
        record = json.loads((tmp_path / precision / f"{result.scene_id}_run.json").read_text())
        assert record["precision"]["autocast"] == ("fp32" if precision == "fp32" else "bfloat16")
    agreement = float((masks["fp32"] == masks["bf16"]).mean())
    assert agreement >= 0.995, agreement
