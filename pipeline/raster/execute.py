"""Running blocks on Dask with backpressure: in-process threads by default, or an existing cluster.

Both use the same futures code: with no address an in-process ``LocalCluster`` (threads, no server, no
pickling) is started for the run; with an address the blocks go to that scheduler's workers, which load
the model themselves. At most ``max_in_flight`` blocks are submitted and not yet collected, so memory is
bounded by the blocks in flight whatever the scene size. Blocks are submitted in raster order with
decreasing priority, so seams complete (and leave memory) as early as possible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from distributed import Client, LocalCluster, as_completed

from pipeline.errors import ConfigError
from pipeline.raster.blocks import BlockJob, BlockOutput, process_block

__all__ = ["dask_client", "run_blocks", "gpu_resources", "local_gpu_count"]


def local_gpu_count(device: str) -> int:
    """CUDA devices an in-process run should use: all visible ones for ``auto``/``cuda``."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 0


@contextmanager
def dask_client(address: str | None, threads: int, gpus: int = 0) -> Iterator[Client]:
    """A client for ``address``, or for an in-process cluster when it is None.

    In-process: one worker of ``threads`` threads, or with several GPUs one worker per GPU (named 0..n-1,
    see ``blocks.worker_inference``), each offering ``GPU=1`` so a block holds exactly one device.
    """
    if address is None:
        pool = dict(n_workers=gpus, resources={"GPU": 1}) if gpus > 1 else dict(n_workers=1)
        with LocalCluster(
            threads_per_worker=threads, processes=False, dashboard_address=None,
            silence_logs=logging.WARNING, **pool,
        ) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"--dask-address {address}: no Dask scheduler answered ({exc}). Start one with `dask scheduler` "
            "and workers with `dask worker ADDRESS --resources GPU=1`, or leave the option out to run in-process."
        ) from exc
    with client:
        yield client


def gpu_resources(client: Client) -> dict[str, float] | None:
    """``{"GPU": 1}`` when the cluster's workers advertise GPUs, so each block holds one; else None.

    A task asking for a resource no worker has would wait forever, so it is only asked for when offered.
    """
    workers = client.scheduler_info().get("workers", {})
    if any("GPU" in (w.get("resources") or {}) for w in workers.values()):
        return {"GPU": 1}
    return None


def run_blocks(
    client: Client,
    job: BlockJob,
    indices: Iterable[tuple[int, int]],
    max_in_flight: int,
) -> Iterator[BlockOutput]:
    """Process blocks on the cluster, yielding each output as it completes, never more than ``max_in_flight`` out."""
    resources = gpu_resources(client)
    todo = iter(enumerate(indices))
    # Scatter the job once: every block task refers to it instead of carrying its own copy.
    [job_future] = client.scatter([job], broadcast=True, hash=False)
    pending = as_completed()
    outstanding = set()

    def submit_next() -> bool:
        nxt = next(todo, None)
        if nxt is None:
            return False
        order, index = nxt
        future = client.submit(
            process_block, job_future, index, key=f"block-{job.scene_path.name}-{index[0]}-{index[1]}-{order}",
            priority=-order, resources=resources, pure=False,
        )
        outstanding.add(future)
        pending.add(future)
        return True

    for _ in range(max_in_flight):
        if not submit_next():
            break
    try:
        for future in pending:
            outstanding.discard(future)
            output = future.result()
            future.release()
            submit_next()
            yield output
    finally:
        for future in outstanding:
            future.cancel()
