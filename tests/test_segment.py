"""The raster half of the spine end to end: scene -> blocks -> blended mask COG, on real files."""

from __future__ import annotations

import numpy as np
import rasterio
import torch

from models.checkpoint import load_checkpoint
from pipeline.config import SegmentConfig
from pipeline.raster.write import WorkingStore
from pipeline.stages import infer_blocks, prepare, publish_masks


def _mask(scene, out, checkpoint, **options):
    config = SegmentConfig(model=str(checkpoint), overwrite=True, **options)
    job = prepare(scene, out, config)
    store = infer_blocks(job, journal_interval=0).store
    mask_path = publish_masks(job, store).mask
    with rasterio.open(mask_path) as ds:
        return ds.read(1), store, job


def test_mask_has_the_scenes_exact_grid(smooth_scene, tmp_path, tiny_checkpoint):
    mask, _, job = _mask(smooth_scene, tmp_path / "out", tiny_checkpoint, block_size=96)
    with rasterio.open(smooth_scene) as src, rasterio.open(job.mask_path) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.nodata == 255 and dst.dtypes[0] == "uint8"
        assert dst.colormap(1)[1][:3] == (220, 60, 40)
        assert dst.tags()["sceneseg_model"] == job.checkpoint_id
    assert set(np.unique(mask)) <= {0, 1, 2} and len(np.unique(mask)) > 1


def test_mask_is_identical_for_any_block_size(smooth_scene, tmp_path, tiny_checkpoint):
    masks = [_mask(smooth_scene, tmp_path / f"b{bs}", tiny_checkpoint, block_size=bs)[0] for bs in (48, 96, 144, 4096)]
    for m in masks[1:]:
        np.testing.assert_array_equal(m, masks[0])


def test_every_pixel_is_written_exactly_once(smooth_scene, tmp_path, tiny_checkpoint, monkeypatch):
    written = []
    write = WorkingStore.write

    def counting_write(store, unit):
        written.append(unit.region)
        write(store, unit)

    monkeypatch.setattr(WorkingStore, "write", counting_write)
    _, _, job = _mask(smooth_scene, tmp_path / "out", tiny_checkpoint, block_size=48, max_in_flight=2)
    assert job.plan.n_blocks.size > 2 * 2
    assert len(written) == len(set(written))
    cover = np.zeros((job.plan.scene.rows, job.plan.scene.cols), dtype=np.int32)
    for region in written:
        cover[region.row : region.row_stop, region.col : region.col_stop] += 1
    assert (cover == 1).all()


def test_streamed_mask_agrees_with_one_forward_over_the_mirror_padded_image(smooth_scene, tmp_path, tiny_checkpoint):
    # Tiles of 256 with 64 of overlap give this depth-2 net its context; blocks of one tile make 4 blocks.
    mask, _, job = _mask(smooth_scene, tmp_path / "out", tiny_checkpoint, block_size=192, tile_size=256, overlap=64)
    assert job.plan.n_blocks.size == 4
    with rasterio.open(smooth_scene) as ds:
        image = ds.read().astype(np.float32)
    card = load_checkpoint(tiny_checkpoint).card
    x = (image - np.array(card.mean, np.float32)[:, None, None]) / np.array(card.std, np.float32)[:, None, None]
    pad = 32
    rows, cols = x.shape[1:]
    # Pad to the context margin, then up to a multiple of the model's 2**depth.
    extra_r, extra_c = (-(rows + 2 * pad)) % 4, (-(cols + 2 * pad)) % 4
    padded = np.pad(x, ((0, 0), (pad, pad + extra_r), (pad, pad + extra_c)), mode="reflect")
    with torch.inference_mode():
        logits = load_checkpoint(tiny_checkpoint).model(torch.from_numpy(padded)[None])[0].numpy()
    probs = torch.softmax(torch.from_numpy(logits), 0).numpy()[:, pad : pad + rows, pad : pad + cols]
    whole = np.argmax(probs, axis=0)
    top2 = np.sort(probs, axis=0)[-2:]
    # An untrained model has many near-ties; compare where the whole-image decision is not a coin toss.
    decided = (top2[1] - top2[0]) > 0.1
    assert decided.mean() > 0.5
    agreement = (whole == mask)[decided].mean()
    assert agreement >= 0.999, agreement
    assert (whole == mask).mean() >= 0.995


def test_the_stages_run_once_in_one_order_whoever_runs_them(smooth_scene, tmp_path, tiny_checkpoint):
    """The CLI and the flows run the one sequence of pipeline.stages; a caller only says how a stage runs."""
    from pipeline.stages import StageHooks, segment_scene

    ran: list[str] = []

    def run(name, stage, *args):
        ran.append(name)
        return stage(*args)

    result = segment_scene(smooth_scene, tmp_path / "out", SegmentConfig(model=str(tiny_checkpoint)),
                           hooks=StageHooks(run=run))
    assert ran == ["prepare", "infer", "publish-masks", "vectorize", "publish-vectors", "changes", "catalog", "finish"]
    assert list(result.seconds) == [*ran[:-1], "total"]
