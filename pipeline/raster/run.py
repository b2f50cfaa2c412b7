"""A scene's block loop: every block not yet journaled through the model, each unit of the mask written once.

The loop owns the working directory of one scene: the journal (what a killed run already did), the working
store (the mask and confidence arrays, memory-mapped), the assembler (seams summed from the blocks on either
side) and the cluster the blocks run on. It reports what the workers ran (:class:`InferenceReport`); how many
blocks are in flight, on how many threads and which cluster, is the caller's policy (``pipeline.stages``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.grid import Region
from pipeline.raster.blend import UnitAssembler, UnitResult
from pipeline.raster.blocks import BlockJob
from pipeline.raster.execute import dask_client, run_blocks
from pipeline.raster.journal import BlockJournal
from pipeline.raster.write import StoreReader, WorkingStore

__all__ = ["FinalRegions", "InferenceReport", "Inferred", "BlockPolicy", "infer_scene"]

#: Called as ``progress(done, total)`` after each block.
Progress = Callable[[int, int], None]


class FinalRegions(Protocol):
    """Who is told of each region of the mask that is final (the scene's vector chunk stream)."""

    def start(self, reader: StoreReader) -> None: ...

    def final(self, region: Region) -> None: ...


@dataclass(frozen=True)
class BlockPolicy:
    """How the blocks run, decided by the caller: the cluster, blocks in flight, local worker threads and GPUs."""

    dask_address: str | None
    in_flight: int
    #: Local worker threads at most: fewer when fewer blocks remain to run, so that each CPU forward gets the
    #: cores an idle thread would hold (torch threads are the cores divided among the worker threads).
    threads: int
    gpus: int


@dataclass(frozen=True)
class InferenceReport:
    """What inference did, as the workers ran it (one value each unless blocks ran on different kinds of
    worker; empty when every block was resumed)."""

    blocks: int
    resumed_blocks: int
    forward_threads: tuple[int, ...]
    forward_batch_sizes: tuple[int, ...]
    #: (autocast, why) of the forwards, decided where they ran: a remote GPU's bf16, not this machine's.
    precisions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Inferred:
    """The scene's working store, complete, and the report of how it was made."""

    store: WorkingStore
    report: InferenceReport


def infer_scene(
    job: BlockJob, work_dir: Path, fingerprint: dict, policy: BlockPolicy, *, regions: FinalRegions | None = None,
    progress: Progress | None = None, journal_interval: float = 10.0, write_source: Callable[[], None] | None = None,
) -> Inferred:
    """Run every block of ``job`` not yet journaled in ``work_dir``, write each unit into the store once, and
    checkpoint; ``regions`` is told of every final region of the mask, resumed ones included.

    ``write_source`` writes what the blocks read when it lives in the working directory (a resampled view of
    the scene), once the journal has cleared a stale directory.
    """
    plan = job.plan
    # The journal first: it clears a working directory left by a different scene, model or plan.
    journal = BlockJournal(work_dir, fingerprint, plan, interval=journal_interval)
    if write_source is not None:
        write_source()
    store = WorkingStore(work_dir, plan.scene)
    if regions is not None:
        regions.start(store.reader())
        for unit in plan.units:
            resumed = unit.key in journal.written_units
            resumed |= len(unit.contributors) == 1 and unit.contributors[0] in journal.done_blocks
            if resumed:
                regions.final(unit.region)
    assembler = UnitAssembler()
    indices = [b.index for b in plan.blocks() if b.index not in journal.done_blocks]
    total = plan.n_blocks.size
    done = total - len(indices)
    if progress:
        progress(done, total)
    units = {u.region: u for u in plan.units}

    def write(results: list[UnitResult]) -> None:
        for result in results:
            store.write(result)
            unit = units[result.region]
            if len(unit.contributors) > 1:
                journal.unit_written(unit.key)
            if regions is not None:
                regions.final(result.region)

    write(assembler.add(journal.saved_partials()))
    threads, batch_sizes, precisions = set(), set(), set()
    with dask_client(policy.dask_address, min(policy.threads, max(1, len(indices))), policy.gpus) as client:
        for output in run_blocks(client, job, indices, policy.in_flight):
            threads.add(output.threads)
            batch_sizes.add(output.batch_size)
            precisions.add(output.precision)
            write(output.finals)
            journal.block_done(output.index, output.partials)
            write(assembler.add(output.partials))
            journal.maybe_checkpoint(store.flush)
            done += 1
            if progress:
                progress(done, total)
    journal.checkpoint(store.flush)
    if assembler.pending_units:
        raise RuntimeError(f"{assembler.pending_units} seams never completed: the block plan is inconsistent")
    report = InferenceReport(total, total - len(indices), tuple(sorted(threads)), tuple(sorted(batch_sizes)),
                             tuple(sorted(precisions)))
    return Inferred(store, report)
