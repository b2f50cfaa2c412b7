"""Scheduling a scene's vector chunks while its mask is still being written.

The inference loop reports each region of the mask that is final; :class:`ChunkStream` starts a chunk's
work (``SceneVectorizer.chunk``) in a background process as soon as every pixel of its window is final.
With a :class:`~pipeline.vectors.spool.BuildingSpool`, each chunk's finished buildings go to disk as soon as
the chunk is back, so the scene's memory does not grow with its buildings.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait

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

    The background work runs in processes by default (``processes=True``, for scenes of more than one chunk;
    ``read`` must then pickle, as ``WorkingStore.reader()`` does): polygon clean-up is Python code that holds the GIL, and in a thread
    it slowed the forward passes beside it by 30 % more than its share of the CPU (1.44 against 1.10 s
    per batch on 2 cores). Not the Dask workers: they may be on other machines, and the chunks read the
    working store of this one.

    At most ``workers`` chunks run at once (1 when the forwards run on this CPU and need its cores; more
    when a GPU runs them and the cores would idle); the others wait in the order they became ready, and
    the next one starts as soon as one is back. (Raising the count once the forwards are over did not
    pay on 2 cores: the processes a pool starts for it cost more than the 3 chunks left at 4096^2, and
    the pool, which decides to start a process before it counts the one that just finished as idle,
    started them while the forwards still ran, 5-7 s slower at 8192^2.)
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
        # Chunks whose windows are final, in the order they became so, not yet handed to the pool; and
        # those handed to it, not yet collected. Done-callbacks run on the pool's thread: both under the lock.
        self._ready: deque[int] = deque()
        self._futures: dict[int, Future[ChunkVectors]] = {}
        self._running = 0
        self._lock = threading.RLock()
        self._collected: dict[int, ChunkVectors] = {}
        self._read: ReadChunk | None = None
        self._pool: Executor | None = None
        self._step = vectorizer.settings.chunk_size
        self._cols = -(-vectorizer.shape.cols // self._step)
        self._halo = vectorizer.halo_px
        self._unseen_px = vectorizer.shape.size
        self._started = 0
        self._submitted = 0
        #: Chunks handed to the background before the last region of the mask came in: the vector work
        #: that ran alongside inference.
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

    def _submit(self) -> None:
        """Hand waiting chunks to the pool while fewer than the limit are running."""
        with self._lock:
            while self._ready and self._running < self.workers and self._pool is not None:
                i = self._ready.popleft()
                core, window = self.chunks[i]
                self._running += 1
                self._submitted += 1
                # Also called from a done-callback, on the pool's own thread: one task per finished one,
                # far from the tens of thousands of queued wake-ups that could fill the pool's wake-up
                # pipe and deadlock older Pythons (gh-105829).
                future = self._pool.submit(_chunk_task, self.vectorizer, core, window, self._read)
                self._futures[i] = future
                future.add_done_callback(self._finished)

    def _finished(self, future: Future[ChunkVectors]) -> None:
        """A chunk is back (or failed, or was cancelled): its slot goes to the next waiting chunk."""
        with self._lock:
            self._running -= 1
            if not future.cancelled() and future.exception() is None:
                self._submit()

    def _collect(self, i: int, result: ChunkVectors) -> ChunkVectors:
        """Keep chunk ``i``'s result, its buildings staged in the spool when there is one."""
        if self.spool is not None:
            self.spool.put(i, result.buildings, result.building_scores, result.building_keys)
            result = result.without_buildings()
        self._collected[i] = result
        with self._lock:
            self._futures.pop(i, None)
        return result

    def _drain(self) -> None:
        """Collect the chunks that came back without error (errors are raised by :meth:`results`)."""
        with self._lock:
            done = [(i, f) for i, f in self._futures.items() if f.done() and not f.cancelled() and f.exception() is None]
        for i, future in done:
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
            with self._lock:
                self.started_before_last_region = self._submitted
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
                    with self._lock:
                        self._ready.append(i)
                    self._started += 1
        self._submit()
        self._drain()

    @property
    def started_chunks(self) -> int:
        """Chunks whose windows are final so far: running in the background, done, or waiting their turn."""
        return self._started

    def results(self) -> list[ChunkVectors]:
        """Every chunk's contribution in raster order; chunks never completed are read and run now.

        The first error is raised.
        """
        if self._read is None:
            raise RuntimeError("ChunkStream.start() must come before results()")
        try:
            self._submit()
            while True:
                with self._lock:
                    pending = list(self._futures.items())
                if not pending:
                    break
                wait([f for _, f in pending], return_when=FIRST_COMPLETED)
                for i, future in pending:
                    if future.done():
                        self._collect(i, future.result())  # raises the chunk's error
            return [self._collected[i] if i in self._collected else self._collect(i, self._run(i))
                    for i in range(len(self.chunks))]
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background workers; chunks not yet started are dropped."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._ready.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
