"""Running blocks on Dask with backpressure: in-process threads by default, or an existing cluster.

Both use the same futures code: with no address an in-process ``LocalCluster`` (threads, no pickling) is
started for the run; with an address the blocks go to that scheduler's workers, which load the model
themselves. At most ``max_in_flight`` blocks are submitted and not yet collected, so memory is bounded by
the blocks in flight whatever the scene size. Blocks are submitted in raster order with decreasing
priority, so seams complete (and leave memory) as early as possible.

The in-process cluster opens no port to the network: its scheduler and workers talk ``inproc://``, and
the HTTP server each of them starts anyway (Dask's health and metrics routes, the dashboard when there is
one) listens on 127.0.0.1, where Dask's default is every interface. The dashboard is off unless
:data:`DASHBOARD_ENV` asks for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from distributed import Client, LocalCluster, as_completed

from pipeline.errors import ConfigError
from pipeline.raster.blocks import BlockJob, BlockOutput, process_block

__all__ = [
    "DASHBOARD_ENV", "dashboard_address", "dask_client", "run_blocks", "gpu_resources", "local_gpu_count",
]  # fmt: skip


def local_gpu_count(device: str) -> int:
    """CUDA devices an in-process run should use: all visible ones for ``auto``/``cuda``."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 0


#: The environment variable that turns on the in-process cluster's dashboard: ``PORT`` or ``HOST:PORT``
#: (a bare port listens on 127.0.0.1; name another host, e.g. ``0.0.0.0:8787``, to open it to the network).
DASHBOARD_ENV = "SCENESEG_DASK_DASHBOARD"
#: Where the in-process scheduler and workers serve HTTP without a dashboard: loopback, any free port.
_LOOPBACK_ANY_PORT = "127.0.0.1:0"


def dashboard_address() -> str | None:
    """The in-process cluster's dashboard address from :data:`DASHBOARD_ENV` as ``HOST:PORT``; None when unset.

    Raises:
        ConfigError: the value is not a port or ``HOST:PORT``.
    """
    value = os.environ.get(DASHBOARD_ENV, "").strip()
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{DASHBOARD_ENV}={value!r}: not a port or HOST:PORT. Give e.g. {DASHBOARD_ENV}=127.0.0.1:8787 "
            "(the dashboard on this machine only), or unset it for no dashboard."
        )
    return f"{host or '127.0.0.1'}:{port}"


@contextmanager
def dask_client(address: str | None, threads: int, gpus: int = 0) -> Iterator[Client]:
    """A client for ``address``, or for an in-process cluster when it is None.

    In-process: one worker of ``threads`` threads, or with several GPUs one worker per GPU (named 0..n-1,
    see ``blocks.worker_inference``), each offering ``GPU=1`` so a block holds exactly one device. Nothing
    of it listens beyond 127.0.0.1 unless :data:`DASHBOARD_ENV` names another host for the dashboard.

    Raises:
        ConfigError: no scheduler answers at ``address``, or :data:`DASHBOARD_ENV` is malformed.
    """
    if address is None:
        pool = dict(n_workers=gpus, resources={"GPU": 1}) if gpus > 1 else dict(n_workers=1)
        dashboard = dashboard_address()
        with LocalCluster(
            threads_per_worker=threads, processes=False, silence_logs=logging.WARNING,
            # A None address turns the scheduler's dashboard off but not its HTTP server, which Dask then
            # binds to every interface (port 8787), as it does each worker's (any port): name loopback.
            # The worker's dashboard flag this sets serves nothing without bokeh, and loopback only with it.
            dashboard_address=dashboard, scheduler_kwargs={"dashboard_address": dashboard or _LOOPBACK_ANY_PORT},
            worker_dashboard_address=_LOOPBACK_ANY_PORT, **pool,
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
