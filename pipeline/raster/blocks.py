"""One block's work, as it runs on a worker: read with mirror padding, cut tiles, infer, blend, split.

A ``BlockJob`` is a small picklable description (paths and numbers). The worker process builds the heavy
objects from it once and keeps them (the model in ``infer.get_predictor``, the scene handles here), so a
Dask task never carries a model or a dataset.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.grid import Block, BlockPlan
from pipeline.raster.blend import BlockAccumulator, UnitPartial, UnitResult, blend_window, split_block
from pipeline.raster.infer import InferenceSettings, get_predictor
from pipeline.raster.read import SceneReader
from pipeline.raster.scene import configure_gdal

__all__ = ["BlockJob", "BlockOutput", "process_block", "cut_tiles"]


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to process any block of one scene."""

    scene_path: Path
    checkpoint: Path
    bands: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    has_mask: bool
    num_classes: int
    plan: BlockPlan
    inference: InferenceSettings


@dataclass(frozen=True)
class BlockOutput:
    """A processed block: the units only it reaches (final) and its share of the seams."""

    index: tuple[int, int]
    finals: list[UnitResult]
    partials: list[UnitPartial]
    tiles: int


def cut_tiles(image: np.ndarray, block: Block) -> np.ndarray:
    """Stack the block's tiles ``(n, bands, T, T)`` out of its extent image ``(bands, rows, cols)``."""
    return np.stack([image[:, rows, cols] for rows, cols in (t.slices_in(block.extent) for t in block.tiles)])


_readers: dict[tuple, SceneReader] = {}
_readers_lock = threading.Lock()


def _reader(job: BlockJob) -> SceneReader:
    key = (str(job.scene_path), job.bands, job.mean, job.std)
    with _readers_lock:
        if key not in _readers:
            configure_gdal()  # a Dask worker in another process starts its part of the run here
            # Keep the handles of the last few scenes only: a nightly batch opens many.
            while len(_readers) >= 4:
                _readers.pop(next(iter(_readers))).close()
            _readers[key] = SceneReader(job.scene_path, list(job.bands), list(job.mean), list(job.std), job.has_mask)
        return _readers[key]


def worker_inference(settings: InferenceSettings) -> InferenceSettings:
    """Pin ``auto``/``cuda`` to this worker's own GPU when one process sees several.

    The in-process pool names its workers 0..n-1, one per visible CUDA device. Workers that each see one
    GPU (dask-cuda, or ``CUDA_VISIBLE_DEVICES`` per worker) keep their settings.
    """
    if settings.device not in ("auto", "cuda") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return settings
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:  # not running on a Dask worker
        return settings
    if isinstance(name, int):
        return replace(settings, device=f"cuda:{name % torch.cuda.device_count()}")
    return settings


def process_block(job: BlockJob, index: tuple[int, int]) -> BlockOutput:
    """Read, tile, infer and blend block ``index`` of ``job.plan``."""
    plan = job.plan
    block = plan.block(*index)
    reader = _reader(job)
    image = reader.read(block.extent)
    predictor = get_predictor(job.checkpoint, worker_inference(job.inference))
    probabilities = predictor.predict(cut_tiles(image, block))
    del image
    acc = BlockAccumulator(block.extent, job.num_classes)
    window = blend_window(plan.tile_size, plan.overlap)
    for tile, tile_probs in zip(block.tiles, probabilities, strict=True):
        acc.add(tile, tile_probs, window)
    valid = reader.valid(block.core) if not block.core.is_empty else None
    finals, partials = split_block(plan, block, acc, valid)
    return BlockOutput(index, finals, partials, len(block.tiles))
