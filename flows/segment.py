"""The ``segment-scene`` flow: the stage sequence of ``pipeline.stages``, each stage a Prefect task; progress,
preview and summary artifacts.

The order of the stages is ``pipeline.stages``'s alone: this module only says how a stage runs here
(:func:`flow_hooks`: a task with its retries, a GPU concurrency slot, artifacts).
:func:`segment_until_publish` and :func:`publish_segmented` are the two halves the nightly flow runs apart:
scenes are segmented concurrently and published one after another.
"""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
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

__all__ = [
    "segment_scene_flow", "segment_until_publish", "publish_segmented", "flow_hooks", "run_as_task", "artifact_key",
    "preview_artifact",
    "reporting_progress", "THUMBNAIL_MAX_BYTES",
]


#: Retries of the stages that read local files (a network filesystem's hiccup); the others are deterministic
#: and fail for a reason.
STAGE_RETRIES = {"infer": 1, "publish-vectors": 2}


@functools.cache
def _stage_task(name: str, stage: Callable[..., Any]):
    """A pipeline stage as a Prefect task. Inputs are files and arrays: never cached."""
    return task(stage, name=name, cache_policy=NO_CACHE, retries=STAGE_RETRIES.get(name, 0), retry_delay_seconds=10)


def run_as_task(name: str, stage: Callable[..., Any], *args: Any) -> Any:
    """A :data:`pipeline.stages.StageRunner`: the stage runs as the Prefect task of its name."""
    return _stage_task(name, stage)(*args)


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


def flow_hooks(gpu_limit: str | None = None) -> stages.StageHooks:
    """How the flows run the stages: each as a task, inference holding a slot of ``gpu_limit``, block progress
    and the quick-look as artifacts.

    ``gpu_limit`` names a Prefect global concurrency limit (``prefect gcl create sceneseg-gpu --limit N``);
    where it does not exist the stage runs without waiting.
    """
    slot = (lambda: concurrency(gpu_limit, occupy=1, strict=False)) if gpu_limit else nullcontext
    return stages.StageHooks(
        run=run_as_task, progress=lambda job: _ProgressArtifact(job.scene.scene_id), infer_slot=slot,
        catalogued=lambda job, entry, counts: preview_artifact(job.scene.scene_id, entry, counts, _thumbnail(job)),
    )


def segment_until_publish(
    scene: str | Path, out_dir: str | Path, config: SegmentConfig, *, run_id: str | None = None,
    scene_id: str | None = None, gpu_limit: str | None = None,
) -> stages.Segmented:
    """The stages up to the GeoPackage (``pipeline.stages.segment_until_publish``) as tasks."""
    return stages.segment_until_publish(scene, out_dir, config, hooks=flow_hooks(gpu_limit), run_id=run_id,
                                        scene_id=scene_id)


def publish_segmented(done: stages.Segmented, checksum: str | None = None) -> stages.SegmentResult:
    """The stages from the GeoPackage on (``pipeline.stages.publish_segmented``) as tasks; the quick-look
    also becomes a markdown artifact of the run."""
    return stages.publish_segmented(done, checksum, hooks=flow_hooks())


@flow(name="segment-scene", log_prints=True)
def segment_scene_flow(
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
