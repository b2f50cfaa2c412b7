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
from pipeline.raster.blend import BlockAccumulator, UnitPartial, UnitResult, fixed_window, split_block
from pipeline.raster.infer import InferenceSettings, Normalization, get_predictor
from pipeline.raster.read import SceneReader
from pipeline.raster.scene import configure_gdal

__all__ = ["BlockJob", "BlockOutput", "process_block", "tile_views"]


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
    #: torch threads its forwards ran on (the worker thread's share of the cores on a CPU), and tiles a forward.
    threads: int
    batch_size: int
    #: The autocast its forwards ran in (``bfloat16``, ``fp32``, ...) and why, decided on the worker.
    precision: tuple[str, str]


def tile_views(image: np.ndarray, block: Block) -> list[np.ndarray]:
    """The block's tiles ``(..., T, T)`` as views of an extent array ``(..., rows, cols)`` (no copy).

    The extent's image ``(bands, rows, cols)`` gives the tiles' images, its validity ``(rows, cols)`` theirs.
    """
    return [image[..., rows, cols] for rows, cols in (t.slices_in(block.extent) for t in block.tiles)]


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


_arrays = threading.local()


def _accumulator_arrays(classes: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's int32 sums and weights for a block extent of this shape, reused from block to block.

    Safe because nothing outlives ``process_block`` that views them: final units are finalized into new
    arrays and seam partials are copies (``split_block``). The thread keeps the largest extent it met and
    hands out views of it (the scene's last row and column of blocks are smaller).
    """
    held = getattr(_arrays, "held", None)
    if held is None or held[0].shape[0] != classes or held[1].shape[0] < rows or held[1].shape[1] < cols:
        big = (classes, max(rows, held[1].shape[0] if held else 0), max(cols, held[1].shape[1] if held else 0))
        held = _arrays.held = (np.empty(big, dtype=np.int32), np.empty(big[1:], dtype=np.int32))
    return held[0][:, :rows, :cols], held[1][:rows, :cols]


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
    # Raw values (a quarter of the float32 image for uint8 scenes); each batch is normalized as it is packed,
    # and its invalid pixels filled.
    image = reader.read_raw(block.extent)
    predictor = get_predictor(job.checkpoint, worker_inference(job.inference))
    # The worker thread's arrays, reused: a fresh accumulator of a block is page-faulted in on first touch,
    # which cost more than the blending itself (bench/RESULTS.md).
    acc = BlockAccumulator(block.extent, job.num_classes,
                           *_accumulator_arrays(job.num_classes, block.extent.rows, block.extent.cols))
    window = fixed_window(plan.tile_size, plan.overlap)
    # Each batch is blended as soon as it is out: the block's probabilities are never held all at once.
    tiles = iter(block.tiles)
    normalization = Normalization(reader.mean, reader.std)
    tiles_valid = None if image.valid is None else tile_views(image.valid, block)
    for probabilities in predictor.predict_batches(tile_views(image.data, block), normalization, tiles_valid):
        for tile_probs in probabilities:
            acc.add(next(tiles), tile_probs, window)
    valid = None
    if image.valid is not None and not block.core.is_empty:
        core = image.valid[block.core.slices_in(block.extent)]
        valid = None if core.all() else core.copy()  # a copy: seam partials keep it, not the whole extent's
    del image
    finals, partials = split_block(plan, block, acc, valid)
    return BlockOutput(index, finals, partials, len(block.tiles), torch.get_num_threads(), predictor.batch_size,
                       predictor.precision)
