"""The ``segment-scene`` flow: each stage of ``pipeline.stages`` as a task, in order; progress and summary artifacts.

The flow body is the same sequence as ``pipeline.stages.segment_scene``, which the CLI runs; the tests
hold the two to the same outputs. :func:`segment_until_publish` and :func:`publish_segmented` are the two
halves the nightly flow runs apart: scenes are segmented concurrently and published one after another.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from pipeline import outputs, stages
from pipeline.config import SegmentConfig
from pipeline.outputs.preview import Preview, render_preview
from pipeline.raster.write import WorkingStore
from pipeline.vectors.layers import VectorLayers
from pipeline.vectors.stream import ChunkStream

__all__ = [
    "segment_scene", "segment_until_publish", "publish_segmented", "Segmented", "artifact_key", "preview_artifact",
    "reporting_progress", "THUMBNAIL_MAX_BYTES",
]


def _stage(fn, name: str, retries: int = 0):
    """A pipeline stage as a Prefect task. Inputs are files and arrays: never cached.

    Only stages that read local files are retried; the others are deterministic and fail for a reason.
    """
    return task(fn, name=name, cache_policy=NO_CACHE, retries=retries, retry_delay_seconds=10)


prepare = _stage(stages.prepare, "prepare")
infer_blocks = _stage(stages.infer_blocks, "infer", retries=1)
publish_masks = _stage(stages.publish_masks, "publish-masks")
vectorize = _stage(stages.vectorize, "vectorize")
publish_vectors = _stage(stages.publish_vectors, "publish-vectors", retries=2)
detect_changes = _stage(stages.detect_changes, "changes")
catalog = _stage(outputs.catalog_scene, "catalog")
finish = _stage(stages.finish, "finish")


def artifact_key(*parts: str) -> str:
    """An artifact key from free text: Prefect allows lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


#: Who else hears of block progress in this context besides the progress artifact: the command line's
#: progress bar (``sceneseg demo``). Flow parameters are sent to the Prefect API, so a callback is not one.
_progress_listener: ContextVar[Callable[[int, int], None] | None] = ContextVar("sceneseg_progress", default=None)


@contextmanager
def reporting_progress(listener: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``listener(done, total)`` after each block of the scenes this context's flows segment."""
    token = _progress_listener.set(listener)
    try:
        yield
    finally:
        _progress_listener.reset(token)


class _ProgressArtifact:
    """Publishes block progress to a Prefect progress artifact, at most every few seconds, and to the
    listener of :func:`reporting_progress`, after every block."""

    def __init__(self, scene_id: str, interval: float = 2.0):
        self.id = create_progress_artifact(0.0, key=artifact_key("progress", scene_id),
                                           description=f"Blocks of {scene_id} segmented")
        self.interval = interval
        self.listener = _progress_listener.get()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.listener:
            self.listener(done, total)
        now = time.monotonic()
        if done == total or now - self._last >= self.interval:
            update_progress_artifact(self.id, 100.0 * done / max(total, 1))
            self._last = now


#: The thumbnail embedded in a preview artifact stays below this size: the artifact is stored in the Prefect
#: database and sent as an event, and the server refuses events over 1.5 MB (a 1024-pixel quick-look is 2.4).
THUMBNAIL_MAX_BYTES = 48 * 1024
#: The thumbnail's long side at most; halved until its PNG fits THUMBNAIL_MAX_BYTES.
_THUMBNAIL_SIDES = (256, 128, 64)


def _thumbnail(job: stages.SceneJob) -> Preview:
    """The quick-look rendered again, small: outlines drawn at the thumbnail's own scale stay visible."""
    for side in _THUMBNAIL_SIDES:
        thumbnail = render_preview(job.scene.path, job.mask_path, job.mask_classes, max_side=side)
        if len(thumbnail.png) <= THUMBNAIL_MAX_BYTES:
            break
    return thumbnail  # 64 x 64 x 3 bytes is 12 KiB even uncompressed


def preview_artifact(
    scene_id: str, entry: outputs.CatalogEntry, counts: dict[str, int], thumbnail: Preview
) -> None:
    """The scene's quick-look in the run's artifacts: a markdown artifact with a small thumbnail embedded as
    a data URI (the UI shows it inline; no file server needed) and the path of the full-size PNG."""
    png = base64.b64encode(thumbnail.png).decode("ascii")
    rows, cols = entry.preview.shape.rows, entry.preview.shape.cols
    markdown = (
        f"### {scene_id}\n\n"
        f"![quick-look of {scene_id}: buildings outlined in red, roads in yellow](data:image/png;base64,{png})\n\n"
        f"{counts.get('buildings', 0)} buildings, {counts.get('roads', 0)} roads. The {cols} x {rows} px "
        f"quick-look is `{entry.preview_path}`; STAC item `{entry.item_path}`.\n"
    )
    create_markdown_artifact(markdown=markdown, key=artifact_key("preview", scene_id),
                             description=f"Quick-look of {scene_id}")


@dataclass
class Segmented:
    """A scene through every stage up to the GeoPackage, ready to be published."""

    job: stages.SceneJob
    store: WorkingStore
    stream: ChunkStream
    masks: stages.MaskOutputs
    layers: VectorLayers
    timer: stages.StageTimer = field(default_factory=stages.StageTimer)


def segment_until_publish(
    scene: str | Path, out_dir: str | Path, config: SegmentConfig, *, run_id: str | None = None,
    scene_id: str | None = None, gpu_limit: str | None = None,
) -> Segmented:
    """prepare, infer, publish-masks and vectorize as tasks; the GPU stage holds a slot of ``gpu_limit``.

    ``gpu_limit`` names a Prefect global concurrency limit (``prefect gcl create sceneseg-gpu --limit N``);
    where it does not exist the stage runs without waiting.
    """
    timer = stages.StageTimer()
    with timer("prepare"):
        job = prepare(scene, out_dir, config, run_id, scene_id)
    progress = _ProgressArtifact(job.scene.scene_id)
    with stages.vector_stream(job) as stream:
        slot = concurrency(gpu_limit, occupy=1, strict=False) if gpu_limit else nullcontext()
        with slot, timer("infer"):
            store = infer_blocks(job, stream, progress)
        with timer("publish-masks"):
            masks = publish_masks(job, store)
        with timer("vectorize"):
            layers = vectorize(job, store, stream)
    return Segmented(job, store, stream, masks, layers, timer)


def publish_segmented(done: Segmented, checksum: str | None = None) -> stages.SegmentResult:
    """publish-vectors, changes, catalog (quick-look and STAC item) and finish as tasks (one writer of the
    GeoPackage at a time); the quick-look also becomes a markdown artifact of the run."""
    with done.timer("publish-vectors"):
        counts = publish_vectors(done.job, done.layers, checksum)
    with done.timer("changes"):
        changes = detect_changes(done.job)
    with done.timer("catalog"):
        entry = catalog(done.job, counts, changes)
    preview_artifact(done.job.scene.scene_id, entry, counts, _thumbnail(done.job))
    return finish(done.job, done.store, done.stream, done.masks, counts, done.timer.seconds, changes)


@flow(name="segment-scene", log_prints=True)
def segment_scene(
    scene: str,
    out_dir: str,
    config: SegmentConfig | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Segment one GeoTIFF scene into a mask COG and GeoPackage layers in ``out_dir``."""
    result = publish_segmented(segment_until_publish(scene, out_dir, config or SegmentConfig(), run_id=run_id))
    summary = result.summary()
    create_table_artifact(
        [{"scene": summary["scene_id"], **summary["counts"], "blocks": summary["blocks"],
          "seconds": summary["seconds"]["total"], "mask": summary["mask"]}],
        key=artifact_key("segment", summary["scene_id"]),
        description=f"sceneseg run {result.scene_id}",
    )
    print(f"{result.scene_id}: {summary['counts']} in {summary['seconds']['total']:.1f} s")
    return summary
