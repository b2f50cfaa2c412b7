"""Running the model on batches of tiles: device choice, precision, fixed-shape batches, a per-process cache.

Batches always have the configured size (the last one is padded with zeros): fixed shapes keep
``cudnn.benchmark`` and ``torch.compile`` from re-tuning, and make a tile's result independent of how
many other tiles happened to share its batch. The size defaults by device (:func:`default_batch_size`):
one tile a forward on the CPU, where a larger batch only grows the working set of every layer and no
launch overhead is there to amortize, so that nothing is ever padded; four on CUDA.

Threads: a GPU runs one forward at a time (a lock per model; concurrent forwards only contend for the
device, while the other blocks in flight are read and blended). On the CPU the blocks in flight run their
forwards side by side, each on ``cores / concurrent forwards`` torch threads: several narrow forwards use
the cores better than one wide one (measured on 2 cores: two 1-thread forwards 0.67-0.74 s per batch
against 0.76-1.04 s for one 2-thread forward, see bench/RESULTS.md), and nothing waits on an OpenMP barrier
held up by a core that another thread took.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint
from models.device import Precision, choose_precision, resolve_device
from models.fuse import fold_batchnorm
from pipeline.errors import ConfigError
from pipeline.raster.read import fill_invalid

__all__ = [
    "InferenceSettings",
    "Normalization",
    "CPU_BATCH_SIZE",
    "GPU_BATCH_SIZE",
    "default_batch_size",
    "usable_cores",
    "cpu_threads_per_forward",
    "Predictor",
    "get_predictor",
]



@dataclass(frozen=True)
class Normalization:
    """Per-band ``(x - mean) / std`` of raw tiles (see ``Predictor.predict_batches``)."""

    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class InferenceSettings:
    """How tiles run through the model. Hashable: it keys the per-process predictor cache."""

    device: str = "auto"
    precision: Precision = "auto"
    #: Tiles per forward; None: :func:`default_batch_size` of the device the predictor runs on.
    batch_size: int | None = None
    channels_last: bool = True
    compile: bool = False
    torch_threads: int | None = None
    #: Test-time augmentation: the mean of the probabilities of the eight flips and 90-degree rotations.
    tta: bool = False


#: Tiles per CPU forward by default: one tile a forward was the fastest per tile on a CPU, whose cache a
#: batch's activations overflow (measurements in bench/RESULTS.md, "Measurements behind code choices").
#: One batch shape for a whole run: outputs of different batch shapes can differ in the last bits.
CPU_BATCH_SIZE = 1
#: Tiles per CUDA forward by default (not tuned on a device yet: bench/gpu.py measures 8/16/32).
GPU_BATCH_SIZE = 4


def default_batch_size(device: torch.device) -> int:
    """Tiles per forward when ``--batch-size`` is not given: :data:`CPU_BATCH_SIZE` or :data:`GPU_BATCH_SIZE`."""
    return GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity: a container's or a SLURM job's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _concurrent_forwards() -> int:
    """How many blocks this process runs at once: its Dask worker's threads, or 1 outside a worker."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def cpu_threads_per_forward(settings: InferenceSettings, concurrent: int | None = None) -> int | None:
    """torch threads for each CPU forward: the setting, else the cores shared among concurrent forwards.

    None leaves torch's own choice, which ``OMP_NUM_THREADS`` sets when the environment gives it.
    """
    if settings.torch_threads:
        return settings.torch_threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    concurrent = concurrent if concurrent is not None else _concurrent_forwards()
    return max(1, usable_cores() // concurrent)


class Predictor:
    """A model on one device that turns normalized tiles into class probabilities.

    It takes the model over for inference: its BatchNorms are folded into the convolutions in place, so
    pass a model loaded for it (``get_predictor`` does), never one that is still being trained.
    """

    def __init__(self, model: torch.nn.Module, activation: str, settings: InferenceSettings):
        if settings.batch_size is not None and settings.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {settings.batch_size}")
        self.settings = settings
        self.device = resolve_device(settings.device)
        #: Tiles per forward: the setting, else the device's default.
        self.batch_size = settings.batch_size or default_batch_size(self.device)
        self.activation = activation
        self.autocast_dtype, why = choose_precision(self.device, settings.precision)
        #: The precision its forwards run in and why, as the run record states it (this machine's answer).
        self.precision = (str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32", why)
        # channels_last on the CPU too: oneDNN's convolutions run NHWC natively (faster: bench/RESULTS.md).
        self.memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
        fold_batchnorm(model)  # inference only: BatchNorm folded into the convolutions (models.fuse)
        model = model.eval().to(self.device, memory_format=self.memory_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.model = torch.compile(model) if settings.compile else model
        # One forward at a time on a GPU: concurrent forwards on one device only contend for it. CPU
        # forwards run side by side, each on its own threads (see the module docstring).
        self._lock = threading.Lock() if self.device.type == "cuda" else contextlib.nullcontext()
        self._staging: torch.Tensor | None = None

    def predict(
        self,
        tiles: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization | None = None,
        valid: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Probabilities ``(n, classes, T, T)`` float32 for tiles ``(n, bands, T, T)`` (see :meth:`predict_batches`)."""
        outputs = list(self.predict_batches(tiles, normalization, valid))
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float32)

    @torch.inference_mode()
    def predict_batches(
        self,
        tiles: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization | None = None,
        valid: Sequence[np.ndarray | None] | None = None,
    ) -> Iterator[np.ndarray]:
        """Probabilities of ``tiles`` (each ``(bands, T, T)``, views are fine) one batch at a time, in order.

        Each batch is packed straight into the layout the model runs in (for channels_last, NHWC, which
        the tensor then views as NCHW without a copy), padded with zero tiles to the batch size so every
        forward has one shape. A block's tiles are never stacked whole, nor its probabilities. Tiles are
        normalized already, or raw scene values with ``normalization`` (per-band mean and std), which is
        applied as each batch is packed: the same float32 steps as ``read.normalize``, so the same bits.
        ``valid`` holds each tile's ``(T, T)`` validity (None: all valid); the invalid pixels are then
        filled after normalization, by ``read.fill_invalid``.
        """
        size = self.batch_size
        for start in range(0, len(tiles), size):
            chunk = tiles[start : start + size]
            chunk_valid = valid[start : start + size] if valid is not None else None
            yield self._forward(self._pack(chunk, normalization, chunk_valid))[: len(chunk)]

    def _pack(
        self,
        chunk: np.ndarray | Sequence[np.ndarray],
        normalization: Normalization | None,
        valid: Sequence[np.ndarray | None] | None,
    ) -> torch.Tensor:
        bands, rows, cols = chunk[0].shape
        size, n = self.batch_size, len(chunk)
        nhwc = self.memory_format is torch.channels_last
        packed = np.zeros((size, rows, cols, bands) if nhwc else (size, bands, rows, cols), dtype=np.float32)
        for i, tile in enumerate(chunk):
            packed[i] = tile.transpose(1, 2, 0) if nhwc else tile  # cast to float32, as normalize's astype
        if normalization is not None:
            shape = (bands,) if nhwc else (bands, 1, 1)
            packed[:n] -= normalization.mean.astype(np.float32).reshape(shape)
            packed[:n] /= normalization.std.astype(np.float32).reshape(shape)
        for i, tile_valid in enumerate(() if valid is None else valid):
            fill_invalid(packed[i], tile_valid, channels_last=nhwc)
        tensor = torch.from_numpy(packed)
        return tensor.permute(0, 3, 1, 2) if nhwc else tensor

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return x
        # A pinned staging buffer, reused (batches have one fixed shape), makes the copy asynchronous;
        # it is safe to refill because each forward ends with a synchronizing copy back to the host.
        if self._staging is None or self._staging.shape != x.shape:
            self._staging = torch.empty_like(x, pin_memory=True)  # keeps the channels_last strides
        self._staging.copy_(x)
        return self._staging.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _forward(self, batch: torch.Tensor) -> np.ndarray:
        with self._lock:
            x = self._to_device(batch)
            if not self.settings.tta:
                return self._probabilities(x).cpu().numpy()
            # The eight symmetries of the square tile: each view is inferred, turned back, and averaged
            # before blending, so the result stays independent of the block size.
            total = None
            for k in range(4):
                for flip in (False, True):
                    view = torch.rot90(x, k, dims=(2, 3))
                    view = torch.flip(view, dims=(3,)) if flip else view
                    probs = self._probabilities(view)
                    probs = torch.flip(probs, dims=(3,)) if flip else probs
                    probs = torch.rot90(probs, -k, dims=(2, 3))
                    total = probs if total is None else total + probs
            return (total / 8).cpu().numpy()

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                logits = self.model(x)
        else:
            logits = self.model(x)
        logits = logits.float()
        return torch.softmax(logits, dim=1) if self.activation == "softmax" else torch.sigmoid(logits)


#: Predictors kept per process. A long-running ``serve`` meets a new checkpoint id (or settings) now and
#: then; the oldest is dropped so the device memory held stays that of a few models.
MAX_CACHED_PREDICTORS = 2

_cache: OrderedDict[tuple[str, float, InferenceSettings], Predictor] = OrderedDict()
_cache_lock = threading.Lock()


def get_predictor(checkpoint: str | Path, settings: InferenceSettings) -> Predictor:
    """The predictor for a checkpoint in this process, loaded once and shared by all threads.

    Workers call this themselves (on a Dask worker, or in-process), so the model is never pickled with a task.
    """
    path = Path(checkpoint).resolve()
    key = (str(path), path.stat().st_mtime, settings)
    threads = cpu_threads_per_forward(settings)
    if threads and threads != torch.get_num_threads():
        torch.set_num_threads(threads)  # process-wide; the forwards of every thread use it
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
        else:
            loaded = load_checkpoint(path)
            _cache[key] = Predictor(loaded.model, loaded.card.activation, settings)
            while len(_cache) > MAX_CACHED_PREDICTORS:
                _cache.popitem(last=False)
        return _cache[key]
