"""Scheduling a scene's vector chunks while its mask is still being written.

The inference loop reports each region of the mask that is final; :class:`ChunkStream` starts a chunk's
work (``SceneVectorizer.chunk``) in a background process as soon as every pixel of its window is final.
With a :class:`~pipeline.vectors.spool.BuildingSpool`, each chunk's finished buildings go to disk as soon as
the chunk is back, so the scene's memory does not grow with its buildings.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

from pipeline.grid import Region
from pipeline.vectors.assemble import ChunkVectors, ReadChunk, SceneVectorizer
from pipeline.vectors.spool import BuildingSpool

__all__ = ["ChunkStream"]


def _chunk_task(vectorizer: SceneVectorizer, core: Region, window: Region, read: ReadChunk) -> ChunkVectors:
    """One chunk, as it runs in the vectorizing process (a module-level function, so it pickles)."""
    return vectorizer.chunk(core, window, *read(window))


class ChunkStream:
    """Runs a scene's chunk vectorization in the background while the mask is still being written.

    The inference loop reports every region it writes (:meth:`final`); a chunk is handed to the
    background as soon as every pixel of its window (core plus halo) is final, so polygonizing overlaps
    inference and only the stitching and the last row of chunks are left for after it. Regions must
    not overlap (a scene's output units partition it); a region reported twice (a retried stage, a
    resumed run) counts once.

    The background is a pool of ``workers`` processes by default (``processes=True``, for scenes of more
    than one chunk; ``read`` must then pickle, as ``WorkingStore.reader()`` does): polygon clean-up is
    Python code that holds the GIL, and in a thread it slowed the forward passes beside it by 30 % more
    than its share of the CPU (1.44 against 1.10 s per batch on 2 cores). Not the Dask workers: they may be
    on other machines, and the chunks read the working store of this one. At most ``workers`` chunks run
    at once, the others wait in the order they became ready: 1 when the forwards run on this CPU and need
    its cores, more when a GPU runs them and the cores would idle. (More processes only once the forwards
    are over did not pay on 2 cores: no gain at 4096^2, and 5-7 s lost at 8192^2, where the pool started
    its second process while the forwards still ran.)
    """

    def __init__(
        self, vectorizer: SceneVectorizer, *, processes: bool = True, spool: BuildingSpool | None = None,
        workers: int = 1,
    ):
        if workers < 1:
            raise ValueError(f"chunk workers must be at least 1, got {workers}")
        self.vectorizer = vectorizer
        #: Where finished buildings are staged as chunks come back (None: they stay in the chunks).
        self.spool = spool
        self.chunks = vectorizer.windows()
        # A single chunk is only ready when the whole mask is: nothing to overlap, no process to start.
        self.processes = processes and len(self.chunks) > 1
        #: Chunks running at once.
        self.workers = min(workers, len(self.chunks)) if self.processes else 1
        self._remaining = [window.size for _, window in self.chunks]
        self._seen: set[Region] = set()
        self._futures: dict[int, Future[ChunkVectors]] = {}  # started, not yet collected
        self._collected: dict[int, ChunkVectors] = {}
        self._read: ReadChunk | None = None
        self._pool: Executor | None = None
        self._step = vectorizer.settings.chunk_size
        self._cols = -(-vectorizer.shape.cols // self._step)
        self._halo = vectorizer.halo_px
        self._unseen_px = vectorizer.shape.size
        self._started = 0
        #: Chunks started before the last region of the mask came in: the vector work that ran
        #: alongside inference.
        self.started_before_last_region = 0

    def start(self, read: ReadChunk) -> None:
        """Begin taking regions; chunks are read with ``read`` (the working store's reader)."""
        self._read = read
        if self._pool is None:
            if self.processes:
                # spawn, not fork: this process runs Dask's and torch's threads.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            else:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sceneseg-vectorize")

    def _run(self, i: int) -> ChunkVectors:
        core, window = self.chunks[i]
        return _chunk_task(self.vectorizer, core, window, self._read)

    def _collect(self, i: int, result: ChunkVectors) -> ChunkVectors:
        """Keep chunk ``i``'s result, its buildings staged in the spool when there is one."""
        if self.spool is not None:
            self.spool.put(i, result.buildings, result.building_scores, result.building_keys)
            result = result.without_buildings()
        self._collected[i] = result
        self._futures.pop(i, None)
        return result

    def _drain(self) -> None:
        """Collect the chunks that came back without error (errors are raised by :meth:`results`)."""
        for i, future in list(self._futures.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                self._collect(i, future.result())

    def final(self, region: Region) -> None:
        """``region`` of the mask is final: start every chunk whose window it completes."""
        if self._read is None:
            raise RuntimeError("ChunkStream.start() must come before final()")
        if region in self._seen or region.is_empty:
            return
        self._seen.add(region)
        self._unseen_px -= region.intersection(Region.of_shape(self.vectorizer.shape)).size
        if self._unseen_px == 0:
            self.started_before_last_region = self._started
        # The chunk rows and columns whose windows (core +- halo) can reach the region.
        step, h, n_rows = self._step, self._halo, len(self.chunks) // self._cols
        rows = range(max(0, (region.row - h) // step), min(n_rows, (region.row_stop + h - 1) // step + 1))
        cols = range(max(0, (region.col - h) // step), min(self._cols, (region.col_stop + h - 1) // step + 1))
        for r in rows:
            for c in cols:
                i = r * self._cols + c
                overlap = self.chunks[i][1].intersection(region)
                if overlap.is_empty:
                    continue
                self._remaining[i] -= overlap.size
                if self._remaining[i] == 0:
                    core, window = self.chunks[i]
                    self._futures[i] = self._pool.submit(_chunk_task, self.vectorizer, core, window, self._read)
                    self._started += 1
        if self.spool is not None:
            self._drain()

    @property
    def started_chunks(self) -> int:
        """Chunks handed to the background so far."""
        return self._started

    def results(self) -> list[ChunkVectors]:
        """Every chunk's contribution in raster order; chunks never completed are read and run now."""
        if self._read is None:
            raise RuntimeError("ChunkStream.start() must come before results()")
        try:
            out = []
            for i in range(len(self.chunks)):
                if i in self._collected:
                    out.append(self._collected[i])
                else:
                    out.append(self._collect(i, self._futures[i].result() if i in self._futures else self._run(i)))
            return out
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background worker; chunks not yet started are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
