"""The ``segment-scene`` flow: one task per stage of ``pipeline.run``, a progress and a summary artifact."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.config import SegmentConfig
from pipeline.run import segment_scene as run_segment_scene

__all__ = ["segment_scene", "artifact_key", "prefect_stage"]

#: Stages that only read local files may be retried; the others are deterministic and fail for a reason.
_RETRIES = {"infer": 1, "publish-vectors": 2}


def artifact_key(*parts: str) -> str:
    """An artifact key from free text: Prefect allows lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")[:100]


def prefect_stage(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run one pipeline stage as a Prefect task. Inputs are files and arrays: never cached."""
    return task(fn, name=name, cache_policy=NO_CACHE, retries=_RETRIES.get(name, 0), retry_delay_seconds=10)(*args)


class _ProgressArtifact:
    """Publishes block progress to a Prefect progress artifact, at most every few seconds."""

    def __init__(self, scene_id: str, interval: float = 2.0):
        self.id = create_progress_artifact(0.0, key=artifact_key("progress", scene_id),
                                           description=f"Blocks of {scene_id} segmented")
        self.interval = interval
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last >= self.interval:
            update_progress_artifact(self.id, 100.0 * done / max(total, 1))
            self._last = now


@flow(name="segment-scene", log_prints=True)
def segment_scene(
    scene: str,
    out_dir: str,
    config: SegmentConfig | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Segment one GeoTIFF scene into a mask COG and GeoPackage layers in ``out_dir``."""
    config = config or SegmentConfig()
    result = run_segment_scene(
        scene, out_dir, config, progress=_ProgressArtifact(Path(scene).stem), run_id=run_id, stage=prefect_stage
    )
    summary = result.summary()
    create_table_artifact(
        [{"scene": summary["scene_id"], **summary["counts"], "blocks": summary["blocks"],
          "seconds": summary["seconds"]["total"], "mask": summary["mask"]}],
        key=artifact_key("segment", summary["scene_id"]),
        description=f"sceneseg run {result.scene_id}",
    )
    print(f"{result.scene_id}: {summary['counts']} in {summary['seconds']['total']:.1f} s")
    return summary
