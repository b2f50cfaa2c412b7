"""The ``nightly`` flow: find new scenes, segment them concurrently, publish them through one writer.

* Discovery: a directory glob or a STAC ItemCollection/Catalog (``pipeline.inbox``).
* Skip: a scene whose content checksum and model are already published as ``ok`` in the GeoPackage's
  ``scenes`` layer is not processed again; failed scenes are retried on the next night.
* Each scene is one task (retried for transient I/O errors, never for invalid input), at most
  ``max_concurrent_scenes`` at once; the GPU stage holds a slot of the Prefect global concurrency limit
  ``gpu_limit`` (create it with ``prefect gcl create sceneseg-gpu --limit N`` for N GPUs).
* Publishing to the GeoPackage happens in the flow itself, one scene after another: SQLite has one writer.
* A scene interrupted by a crash resumes from its block journal on the next run (``pipeline.journal``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed

from flows.segment import artifact_key
from pipeline.config import DEFAULT_MODEL, SegmentConfig
from pipeline.errors import CheckpointError, ConfigError, SceneValidationError
from pipeline.gpkg import SceneRecord, publish_scene, published_checksums
from pipeline.inbox import InboxScene, discover_scenes
from pipeline.run import GPKG_NAME, SegmentedScene, infer_blocks, publish_segmented, segment_to_layers
from pipeline.scene import file_checksum

__all__ = ["nightly", "schedule_options"]

#: Errors that say the input itself is wrong: retrying cannot help.
_PERMANENT = (SceneValidationError, ConfigError, CheckpointError)


def _retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except _PERMANENT:
        return False
    except Exception:
        return True
    return False


@task(name="scene-checksum", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def scene_checksum(scene: InboxScene) -> str:
    return file_checksum(scene.path)


@task(name="segment-scene", cache_policy=NO_CACHE, retries=2, retry_condition_fn=_retry_transient)
def segment_for_publishing(
    scene: InboxScene, out_dir: str, config: SegmentConfig, run_id: str, gpu_limit: str | None
) -> SegmentedScene:
    """Every stage of one scene up to the GeoPackage; the GPU stage holds a slot of ``gpu_limit``."""

    def stage(name: str, fn, *args):
        if fn is infer_blocks and gpu_limit:
            with concurrency(gpu_limit, occupy=1, strict=False):
                return fn(*args)
        return fn(*args)

    return segment_to_layers(scene.path, out_dir, config, run_id=run_id, stage=stage, scene_id=scene.scene_id)


def _failed_record(scene: InboxScene, checksum: str, model: str, run_id: str, error: BaseException) -> SceneRecord:
    return SceneRecord(
        scene_id=scene.scene_id, path=str(scene.path), checksum=checksum, crs="", footprint=None,
        processed_at=datetime.now(UTC).isoformat(timespec="seconds"), model=model, run_id=run_id,
        status="failed", error=f"{type(error).__name__}: {error}",
    )


@flow(name="nightly", log_prints=True)
def nightly(
    inbox: str,
    out_dir: str,
    model: str = DEFAULT_MODEL,
    dask_address: str | None = None,
    max_concurrent_scenes: int = 2,
    pattern: str = "*.tif",
    gpu_limit: str | None = "sceneseg-gpu",
    output_crs: str | None = None,
    retry_delay_seconds: float = 30.0,
) -> list[dict[str, Any]]:
    """Segment the inbox's new scenes and publish them to ``out_dir/sceneseg.gpkg``."""
    from models.checkpoint import find_checkpoint, load_checkpoint

    run_id = uuid.uuid4().hex[:12]
    config = SegmentConfig(model=model, dask_address=dask_address, output_crs=output_crs, overwrite=True)
    model_id = load_checkpoint(find_checkpoint(model)).checkpoint_id
    gpkg = Path(out_dir) / GPKG_NAME
    scenes = discover_scenes(inbox, pattern)
    published = published_checksums(gpkg)
    checksums: dict[InboxScene, str] = {}
    for scene, future in zip(scenes, scene_checksum.map(scenes), strict=True):
        try:
            checksums[scene] = future.result()
        except OSError:  # unreadable now: segmenting it will fail and record why
            checksums[scene] = ""
    rows: list[dict[str, Any]] = []
    todo = []
    for scene in scenes:
        if published.get(scene.scene_id) == (checksums[scene], model_id):
            rows.append({"scene": scene.scene_id, "status": "skipped", "buildings": None, "roads": None,
                         "seconds": 0.0, "error": None})
        else:
            todo.append(scene)
    print(f"{len(scenes)} scene(s) in {inbox}: {len(todo)} to process, {len(scenes) - len(todo)} already published")

    progress = create_progress_artifact(0.0, key=artifact_key("nightly-progress"), description=f"Scenes of {inbox}")
    segment = segment_for_publishing.with_options(retry_delay_seconds=retry_delay_seconds)
    queue = iter(todo)
    running: dict[Any, tuple[InboxScene, float]] = {}

    def submit_next() -> None:
        scene = next(queue, None)
        if scene is not None:
            running[segment.submit(scene, out_dir, config, run_id, gpu_limit)] = (scene, time.perf_counter())

    for _ in range(max(1, max_concurrent_scenes)):
        submit_next()
    done = 0
    failures: list[SceneRecord] = []
    while running:
        future = next(as_completed(list(running)))
        scene, started = running.pop(future)
        submit_next()
        row = {"scene": scene.scene_id, "buildings": None, "roads": None, "error": None}
        try:
            result = publish_segmented(future.result(), checksum=checksums[scene])
            row |= {"status": "published", "buildings": result.counts["buildings"], "roads": result.counts["roads"]}
        except Exception as exc:  # one bad scene never stops the others: record it and go on
            failures.append(_failed_record(scene, checksums[scene], model_id, run_id, exc))
            row |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            print(f"{scene.scene_id} failed: {exc}")
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        done += 1
        update_progress_artifact(progress, 100.0 * done / max(len(todo), 1))
    # Failures last, so the GeoPackage's layers take the CRS of a real scene when there is one.
    for record in failures:
        publish_scene(gpkg, None, record, crs=output_crs)
    update_progress_artifact(progress, 100.0)
    create_table_artifact(rows, key=artifact_key("nightly-summary"), description=f"nightly run {run_id} of {inbox}")
    return rows


def schedule_options(
    inbox: str, out_dir: str, cron: str, timezone: str | None, model: str = DEFAULT_MODEL,
    dask_address: str | None = None, max_concurrent_scenes: int = 2,
) -> dict[str, Any]:
    """Keyword arguments for ``nightly.to_deployment``: the schedule, the parameters,
    and a deployment concurrency limit of one run with CANCEL_NEW, so nightly runs never overlap."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    return {
        "name": "sceneseg-nightly",
        "schedules": [Cron(cron, timezone=timezone)],
        "parameters": {"inbox": inbox, "out_dir": out_dir, "model": model, "dask_address": dask_address,
                       "max_concurrent_scenes": max_concurrent_scenes},
        "concurrency_limit": ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        "tags": ["sceneseg"],
    }
