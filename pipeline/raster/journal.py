"""The block journal: what a scene's working directory already holds, so a killed run resumes.

Durability order, so the journal never claims more than the disk holds:

1. a block's final units are written into the memory-mapped store, and its seam partials are saved;
2. at a checkpoint (every ``interval`` seconds and at the end) the store is flushed to disk, and only
   then are the block and seam records appended to ``journal.jsonl`` and fsynced.

A run killed at any moment resumes from the last checkpoint: recorded blocks are not read again,
recorded seams are not written again, and seam partials saved by recorded blocks are loaded back.
Redoing an unrecorded block writes the same bytes again, so the resumed mask equals an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.grid import BlockPlan
from pipeline.raster.blend import UnitPartial

__all__ = ["BlockJournal"]


class BlockJournal:
    """Records finished blocks and seams of one scene in its working directory."""

    STATE = "state.json"
    LOG = "journal.jsonl"
    PARTIALS = "partials"

    def __init__(self, directory: Path, fingerprint: dict, plan: BlockPlan, interval: float = 10.0):
        self.directory = Path(directory)
        self.plan = plan
        self.interval = interval
        self.done_blocks: set[tuple[int, int]] = set()
        self.written_units: set[str] = set()
        self._queued: list[dict] = []
        self._last_checkpoint = time.monotonic()
        state_path = self.directory / self.STATE
        if state_path.exists() and json.loads(state_path.read_text()) == fingerprint:
            self._load()
        else:
            # Different scene, model or plan: the old working state is useless.
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            state_path.write_text(json.dumps(fingerprint, sort_keys=True))
        (self.directory / self.PARTIALS).mkdir(exist_ok=True)

    def _load(self) -> None:
        log = self.directory / self.LOG
        if not log.exists():
            return
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a kill mid-append
            if "block" in record:
                self.done_blocks.add(tuple(record["block"]))
            elif "unit" in record:
                self.written_units.add(record["unit"])

    def _partial_path(self, unit_key: str, block: tuple[int, int]) -> Path:
        return self.directory / self.PARTIALS / f"{unit_key}__{block[0]}-{block[1]}.npz"

    def saved_partials(self) -> list[UnitPartial]:
        """Seam partials of recorded blocks for seams not yet recorded as written."""
        out = []
        for unit in self.plan.units:
            if unit.key in self.written_units:
                continue
            for block in unit.contributors:
                path = self._partial_path(unit.key, block)
                if block in self.done_blocks and path.exists():
                    with np.load(path) as data:
                        valid = data["valid"] if "valid" in data.files else None
                        out.append(UnitPartial(unit, block, data["sums"], data["weights"], valid))
        return out

    def block_done(self, index: tuple[int, int], partials: list[UnitPartial]) -> None:
        """Save a block's seam partials and queue its record for the next checkpoint."""
        for p in partials:
            path = self._partial_path(p.unit.key, p.block)
            tmp = path.with_suffix(".tmp.npz")
            arrays = {"sums": p.sums, "weights": p.weights}
            if p.valid is not None:
                arrays["valid"] = p.valid
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        self._queued.append({"block": list(index)})

    def unit_written(self, unit_key: str) -> None:
        self._queued.append({"unit": unit_key})

    def maybe_checkpoint(self, flush: Callable[[], None]) -> None:
        if time.monotonic() - self._last_checkpoint >= self.interval:
            self.checkpoint(flush)

    def checkpoint(self, flush: Callable[[], None]) -> None:
        """Flush the store, then append the queued records durably; drop partials of written seams."""
        if not self._queued:
            return
        flush()
        with open(self.directory / self.LOG, "a") as log:
            log.write("".join(json.dumps(r) + "\n" for r in self._queued))
            log.flush()
            os.fsync(log.fileno())
        for record in self._queued:
            if "block" in record:
                self.done_blocks.add(tuple(record["block"]))
            else:
                self.written_units.add(record["unit"])
                for path in (self.directory / self.PARTIALS).glob(f"{record['unit']}__*.npz"):
                    path.unlink(missing_ok=True)
        self._queued.clear()
        self._last_checkpoint = time.monotonic()
