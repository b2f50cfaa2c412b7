"""The ``nightly`` flow: find new scenes, segment them concurrently, publish them through one writer.

* Discovery: a directory glob or a STAC ItemCollection/Catalog (``pipeline.inbox``).
* Skip: a scene whose content checksum and model are already published as ``ok`` in the GeoPackage's
  ``scenes`` layer is not processed again; failed scenes are retried on the next night.
* Each scene is one task (retried for transient I/O errors, never for invalid input) whose stages are
  the tasks of ``flows.segment``; the ``segment-batch`` subflow's task runner runs at most
  ``max_concurrent_scenes`` of them at once, and the GPU stage holds a slot of the Prefect global
  concurrency limit ``gpu_limit`` (create it with ``prefect gcl create sceneseg-gpu --limit N`` for N GPUs).
* Publishing to the GeoPackage happens in the subflow's own thread, one scene after another as they
  finish: SQLite has one writer.
* A scene interrupted by a crash resumes from its block journal on the next run (``pipeline.raster.journal``).
* Each published scene gets a quick-look and a STAC item (``pipeline.outputs``); at the end of the run
  ``catalog.json`` in ``out_dir`` links the items of every scene published there.
* ``sceneseg nightly`` runs one pass from the command line (a temporary Prefect server, or the one at
  ``PREFECT_API_URL``); ``sceneseg serve`` and the deployments run it on a schedule.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.segment import artifact_key, publish_segmented, segment_until_publish
from models.checkpoint import checkpoint_card
from pipeline.config import DEFAULT_MODEL, MAX_CONCURRENT_SCENES, SegmentConfig
from pipeline.errors import SceneSegError
from pipeline.inbox import InboxScene, discover_scenes
from pipeline.outputs import update_output_catalog
from pipeline.stages import (
    GPKG_NAME,
    Segmented,
    check_output_gpkg,
    published_scenes,
    record_failure,
    scene_checksum,
)

__all__ = ["nightly", "schedule_options"]

def _retry_transient(task, task_run, state) -> bool:
    """Retry a scene only for a library's I/O error (a network filesystem's hiccup, say): a SceneSegError
    says the input or the output is wrong (not a raster, truncated, a full disk), and retrying cannot help."""
    try:
        state.result()
    except SceneSegError:
        return False
    except Exception:
        return True
    return False


@task(name="scene-checksum", cache_policy=NO_CACHE)
def checksum_of(scene: InboxScene) -> str:
    """The scene file's checksum; empty when it cannot be read now (segmenting it fails and records why)."""
    try:
        return scene_checksum(scene.path)
    except OSError:
        return ""


@task(name="segment-scene", cache_policy=NO_CACHE, retries=2, retry_condition_fn=_retry_transient)
def segment_for_publishing(
    scene: InboxScene, out_dir: str, config: SegmentConfig, run_id: str, gpu_limit: str | None
) -> Segmented:
    """Every stage of one scene up to the GeoPackage."""
    return segment_until_publish(
        scene.path, out_dir, config, run_id=run_id, scene_id=scene.scene_id, gpu_limit=gpu_limit
    )


@task(name="catalog-outputs", cache_policy=NO_CACHE)
def catalog_outputs(out_dir: str, gpkg: Path) -> Path:
    """``catalog.json`` of the scenes published successfully to ``out_dir``."""
    return update_output_catalog(out_dir, sorted(published_scenes(out_dir)))


@dataclass(frozen=True)
class _Failure:
    """A scene that failed this night, to be recorded in the scenes layer after the others."""

    scene: InboxScene
    checksum: str
    message: str


def _row(scene: InboxScene, status: str, **values: Any) -> dict[str, Any]:
    return {"scene": scene.scene_id, "status": status, "buildings": None, "roads": None, "new": None,
            "removed": None, "changed": None, "seconds": 0.0, "error": None} | values


def _change_counts(changes: dict | None) -> dict[str, Any]:
    """The summary's building changes of a published scene (None: not compared, or the comparison failed)."""
    if changes is None or changes["error"]:
        return {}
    return {k: changes[k] for k in ("new", "removed", "changed")}


@flow(name="segment-batch", log_prints=True)
def segment_batch(
    todo: list[InboxScene], checksums: dict[str, str], out_dir: str, config: SegmentConfig, run_id: str,
    gpu_limit: str | None, retry_delay_seconds: float, progress_id: Any,
) -> tuple[list[dict[str, Any]], list[_Failure]]:
    """Segment ``todo`` concurrently (as many at once as this flow's task runner has workers) and publish
    each as it finishes; return the rows of the summary and the records of the scenes that failed."""
    segment = segment_for_publishing.with_options(retry_delay_seconds=retry_delay_seconds)
    futures = {segment.submit(scene, out_dir, config, run_id, gpu_limit): scene for scene in todo}
    rows: list[dict[str, Any]] = []
    failures: list[_Failure] = []
    for done, future in enumerate(as_completed(list(futures)), start=1):
        scene = futures[future]
        try:
            result = publish_segmented(future.result(), checksum=checksums[scene.scene_id])
            rows.append(_row(scene, "published", buildings=result.counts["buildings"], roads=result.counts["roads"],
                             seconds=round(result.seconds["total"], 2), **_change_counts(result.changes)))
        except Exception as exc:  # one bad scene never stops the others: record it and go on
            message = f"{type(exc).__name__}: {exc}"
            failures.append(_Failure(scene, checksums[scene.scene_id], message))
            rows.append(_row(scene, "failed", error=message))
            print(f"{scene.scene_id} failed: {exc}")
        update_progress_artifact(progress_id, 100.0 * done / max(len(todo), 1))
    return rows, failures


@flow(name="nightly", log_prints=True)
def nightly(
    inbox: str,
    out_dir: str,
    model: str | None = None,
    dask_address: str | None = None,
    max_concurrent_scenes: int = MAX_CONCURRENT_SCENES,
    pattern: str = "*.tif",
    gpu_limit: str | None = "sceneseg-gpu",
    output_crs: str | None = None,
    retry_delay_seconds: float = 30.0,
    changes: bool = True,
) -> list[dict[str, Any]]:
    """Segment the inbox's new scenes and publish them to ``out_dir/sceneseg.gpkg``; with ``changes``, each
    published scene's building changes against the overlapping scenes are in the summary's new, removed and
    changed columns.

    ``model`` is a checkpoint path or packaged model name; None runs ``pipeline.config.DEFAULT_MODEL``.
    """
    run_id = uuid.uuid4().hex[:12]
    config = SegmentConfig(model=model, dask_address=dask_address, output_crs=output_crs, overwrite=True,
                           changes=changes)
    model_id = checkpoint_card(config.model).checkpoint_id
    gpkg = Path(out_dir) / GPKG_NAME
    check_output_gpkg(out_dir)  # a damaged or foreign GeoPackage stops the night before any scene runs
    found = discover_scenes(inbox, pattern, out_dir=out_dir)
    # Scenes that cannot be processed here (a remote href) fail alone, without a task.
    failures = [_Failure(s, "", f"SceneReadError: {s.error}") for s in found if s.error]
    rows: list[dict[str, Any]] = [_row(s, "failed", error=s.error) for s in found if s.error]
    scenes = [s for s in found if not s.error]
    published = published_scenes(out_dir)
    checksums: dict[str, str] = {}
    for scene, future in zip(scenes, checksum_of.map(scenes), strict=True):
        checksums[scene.scene_id] = future.result()
    todo = []
    for scene in scenes:
        if published.get(scene.scene_id) == (checksums[scene.scene_id], model_id):
            rows.append(_row(scene, "skipped"))
        else:
            todo.append(scene)
    print(f"{len(found)} scene(s) in {inbox}: {len(todo)} to process, {len(scenes) - len(todo)} already published"
          + (f", {len(failures)} that cannot be processed" if failures else ""))

    progress = create_progress_artifact(0.0, key=artifact_key("nightly-progress"), description=f"Scenes of {inbox}")
    if todo:
        batch = segment_batch.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max(1, max_concurrent_scenes)))
        batch_rows, batch_failures = batch(
            todo, checksums, out_dir, config, run_id, gpu_limit, retry_delay_seconds, progress
        )
        rows += batch_rows
        failures += batch_failures
    # Failures last, so the GeoPackage's layers take the CRS of a real scene when there is one.
    for failure in failures:
        note = record_failure(failure.scene.path, out_dir, config, failure.message, scene_id=failure.scene.scene_id,
                              checksum=failure.checksum, run_id=run_id)
        if note:
            print(note)
    if gpkg.exists():
        catalog_outputs(out_dir, gpkg)
    update_progress_artifact(progress, 100.0)
    create_table_artifact(rows, key=artifact_key("nightly-summary"), description=f"nightly run {run_id} of {inbox}")
    return rows


def schedule_options(
    inbox: str, out_dir: str, cron: str, timezone: str | None, model: str = DEFAULT_MODEL,
    dask_address: str | None = None, max_concurrent_scenes: int = MAX_CONCURRENT_SCENES,
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
