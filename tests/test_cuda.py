"""CUDA paths: run on a machine with a GPU (skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import DEMO_MODEL, SegmentConfig
from pipeline.stages import infer_blocks, prepare, publish_masks
from tests.helpers import read_mask

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_gpu_bf16_agrees_with_cpu_fp32(tmp_path):
    from pipeline.synthetic import write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "scene.tif", 1024, 1024, seed=4242)
    masks = {}
    for device, precision in (("cuda", "bf16"), ("cpu", "fp32")):
        config = SegmentConfig(model=DEMO_MODEL, device=device, precision=precision, block_size=1024,
                               overwrite=True)
        job = prepare(scene.path, tmp_path / device, config)
        mask_path = publish_masks(job, infer_blocks(job, journal_interval=0).store).mask
        masks[device] = read_mask(mask_path)
    agreement = (masks["cuda"] == masks["cpu"]).mean()
    assert agreement >= 0.995, agreement
    assert np.unique(masks["cuda"]).size > 1
