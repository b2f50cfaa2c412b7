"""Segmenting one scene, stage by stage. The CLI calls ``segment_scene``; the Prefect flow calls the stages.

    prepare ─► infer_blocks ─► publish_masks ─► vectorize ─► publish_vectors ─► finish
                  └── chunk vectorization (a ChunkStream process) ──┘

While ``infer_blocks`` writes the mask, every vector chunk whose window is final is polygonized in a
background process; ``vectorize`` then only waits for the last chunks and stitches.

``prepare`` validates everything (scene, checkpoint, options, existing outputs) before any file is
written, so bad input leaves nothing behind. Outputs appear only by rename once complete; the hidden
working directory holds the partial state a killed run resumes from.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely.geometry import box

from pipeline.blend import NODATA_CLASS, UnitAssembler, UnitResult
from pipeline.blocks import BlockJob
from pipeline.config import SegmentConfig
from pipeline.errors import OutputError
from pipeline.execute import dask_client, local_gpu_count, run_blocks
from pipeline.grid import BlockPlan
from pipeline.infer import InferenceSettings
from pipeline.journal import BlockJournal
from pipeline.scene import SceneInfo, check_scene_fits, file_checksum, open_scene
from pipeline.vectorize import ChunkStream, SceneVectorizer, VectorSettings
from pipeline.write import WorkingStore, atomic_path, publish_raster

__all__ = [
    "GPKG_NAME",
    "SceneJob",
    "SegmentResult",
    "Progress",
    "prepare",
    "infer_blocks",
    "publish_masks",
    "vectorize",
    "publish_vectors",
    "finish",
    "SegmentedScene",
    "segment_to_layers",
    "publish_segmented",
    "segment_scene",
]

#: The GeoPackage every scene of an output directory is published to.
GPKG_NAME = "sceneseg.gpkg"

#: Called as ``progress(done, total)`` after each block.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SceneJob:
    """One scene's run: validated inputs, the block plan and every output path."""

    scene: SceneInfo
    config: SegmentConfig
    checkpoint: Path
    checkpoint_id: str
    classes: tuple[str, ...]
    block_job: BlockJob
    out_dir: Path
    run_id: str
    created_at: str

    @property
    def plan(self) -> BlockPlan:
        return self.block_job.plan

    @property
    def mask_path(self) -> Path:
        return self.out_dir / f"{self.scene.scene_id}_mask.tif"

    @property
    def confidence_path(self) -> Path:
        return self.out_dir / f"{self.scene.scene_id}_confidence.tif"

    @property
    def gpkg_path(self) -> Path:
        return self.out_dir / GPKG_NAME

    @property
    def run_path(self) -> Path:
        return self.out_dir / f"{self.scene.scene_id}_run.json"

    @property
    def work_dir(self) -> Path:
        return self.out_dir / ".sceneseg-work" / self.scene.scene_id


@dataclass
class SegmentResult:
    """What a run produced and what it cost."""

    scene_id: str
    mask_path: Path
    gpkg_path: Path
    confidence_path: Path | None
    counts: dict[str, int]
    blocks: int
    tiles: int
    tile_overhead: float
    resumed_blocks: int
    seconds: dict[str, float] = field(default_factory=dict)
    #: Vector chunks in all, and those started before the last block was in (overlapping inference).
    vector_chunks: int = 0
    vector_chunks_during_inference: int = 0

    def summary(self) -> dict:
        return {
            "scene_id": self.scene_id,
            "mask": str(self.mask_path),
            "gpkg": str(self.gpkg_path),
            "confidence": str(self.confidence_path) if self.confidence_path else None,
            "counts": self.counts,
            "blocks": self.blocks,
            "tiles": self.tiles,
            "tile_overhead": round(self.tile_overhead, 3),
            "resumed_blocks": self.resumed_blocks,
            "vector_chunks": self.vector_chunks,
            "vector_chunks_during_inference": self.vector_chunks_during_inference,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def prepare(
    scene_path: str | Path, out_dir: str | Path, config: SegmentConfig, run_id: str | None = None,
    scene_id: str | None = None,
) -> SceneJob:
    """Validate the scene, the model and the options, and plan the blocks. Writes nothing.

    ``scene_id`` names the outputs and the GeoPackage rows (default: the file name without extension).
    """
    from models.checkpoint import find_checkpoint, load_checkpoint

    scene = open_scene(scene_path)
    if scene_id is not None:
        scene = dataclasses.replace(scene, scene_id=scene_id)
    checkpoint = find_checkpoint(config.model)
    loaded = load_checkpoint(checkpoint)
    card = loaded.card
    check_scene_fits(scene, list(card.bands), loaded.checkpoint_id)
    tile_size = config.tile_size or card.tile_size
    overlap = config.overlap if config.overlap is not None else 2 * card.context_margin
    plan = BlockPlan.for_scene(scene.shape, tile_size, overlap, config.block_size)
    inference = InferenceSettings(
        device=config.device, precision=config.precision, batch_size=config.batch_size,
        compile=config.compile, torch_threads=config.torch_threads,
    )
    block_job = BlockJob(
        scene_path=scene.path.resolve(), checkpoint=checkpoint.resolve(), bands=tuple(card.bands),
        mean=tuple(card.mean), std=tuple(card.std), has_mask=scene.has_mask,
        num_classes=len(card.classes), plan=plan, inference=inference,
    )
    job = SceneJob(
        scene=scene, config=config, checkpoint=checkpoint, checkpoint_id=loaded.checkpoint_id,
        classes=tuple(card.classes), block_job=block_job, out_dir=Path(out_dir),
        run_id=run_id or uuid.uuid4().hex[:12], created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if not config.overwrite:
        existing = [p for p in (job.mask_path, job.confidence_path) if p.exists()]
        if existing:
            raise OutputError(
                f"{existing[0]}: already exists and won't be overwritten without the --overwrite option."
            )
    return job


def _fingerprint(job: SceneJob) -> dict:
    stat = job.scene.path.stat()
    plan = job.plan
    return {
        "scene": str(job.scene.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "checkpoint_id": job.checkpoint_id, "tile_size": plan.tile_size, "overlap": plan.overlap,
        "block_tiles": plan.block_tiles, "shape": [plan.scene.rows, plan.scene.cols],
    }


def infer_blocks(
    job: SceneJob, progress: Progress | None = None, journal_interval: float = 10.0, stream: ChunkStream | None = None
) -> WorkingStore:
    """Run every block not yet journaled, write each unit into the working store once, and checkpoint.

    ``stream`` (optional) is told of every region of the mask that is final, resumed ones included.
    """
    plan = job.plan
    # The journal first: it clears a working directory left by a different scene, model or plan.
    journal = BlockJournal(job.work_dir, _fingerprint(job), plan, interval=journal_interval)
    store = WorkingStore(job.work_dir, plan.scene)
    if stream is not None:
        stream.start(store.reader())
        for unit in plan.units:
            resumed = unit.key in journal.written_units
            resumed |= len(unit.contributors) == 1 and unit.contributors[0] in journal.done_blocks
            if resumed:
                stream.final(unit.region)
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
            if stream is not None:
                stream.final(result.region)

    write(assembler.add(journal.saved_partials()))
    gpus = local_gpu_count(job.config.device) if job.config.dask_address is None else 0
    # Keep every device busy: at least two blocks in flight per GPU (one inferring, one being read).
    in_flight = max(job.config.max_in_flight, 2 * gpus)
    with dask_client(job.config.dask_address, job.config.max_in_flight, gpus) as client:
        for output in run_blocks(client, job.block_job, indices, in_flight):
            if stream is not None:
                stream.started_before_last_block = stream.started_chunks
            write(output.finals)
            journal.block_done(output.index, output.partials)
            write(assembler.add(output.partials))
            journal.maybe_checkpoint(store.flush)
            done += 1
            if progress:
                progress(done, total)
    journal.checkpoint(store.flush)
    store.resumed_blocks = total - len(indices)
    if assembler.pending_units:
        raise RuntimeError(f"{assembler.pending_units} seams never completed: the block plan is inconsistent")
    return store


def publish_masks(job: SceneJob, store: WorkingStore) -> tuple[Path, Path | None]:
    """Write the mask (and the confidence raster, if asked) as COGs with the scene's exact grid."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    # No run id or time in the raster: the same scene and model give the same bytes (resume relies on it).
    tags = {"sceneseg_model": job.checkpoint_id, "sceneseg_classes": ",".join(job.classes)}
    mask = publish_raster(
        store.mask, job.mask_path, job.scene.transform, job.scene.crs, nodata=NODATA_CLASS,
        classes=job.classes, description="class", tags=tags,
    )
    confidence = None
    if job.config.write_confidence:
        confidence = publish_raster(
            store.confidence, job.confidence_path, job.scene.transform, job.scene.crs, nodata=None,
            description="confidence of the class in the mask, probability x 255", tags=tags,
        )
    return mask, confidence


def scene_vectorizer(job: SceneJob) -> SceneVectorizer:
    """The vector stage's settings for a scene: its grid, CRS and the model's classes."""
    classes = {i: name for i, name in enumerate(job.classes) if i > 0}
    settings = VectorSettings(
        min_building_area_m2=job.config.min_building_area_m2, chunk_size=job.config.vector_chunk_size
    )
    return SceneVectorizer(job.plan.scene, job.scene.transform, job.scene.crs, classes=classes, settings=settings)


def vectorize(job: SceneJob, store: WorkingStore, stream: ChunkStream | None = None):
    """Polygons and centerlines of the scene's mask, stitched across chunks, in the scene CRS.

    With the ``stream`` that ran beside ``infer_blocks``, only the chunks it has not finished are run.
    """
    if stream is None:
        stream = ChunkStream(scene_vectorizer(job), processes=False)  # all chunks run here, now
        stream.start(store.reader())
    layers = stream.vectorizer.finish(stream.results())
    return layers.with_attributes(
        scene_id=job.scene.scene_id, model=job.checkpoint_id, run_id=job.run_id, created_at=job.created_at
    )


def scene_record(job: SceneJob, counts: dict[str, int], checksum: str | None = None):
    """The scene's row of the ``scenes`` layer."""
    from pipeline.gpkg import SceneRecord

    return SceneRecord(
        scene_id=job.scene.scene_id, path=str(job.scene.path.resolve()),
        checksum=checksum or file_checksum(job.scene.path),
        crs=job.scene.crs.to_string(), footprint=box(*job.scene.bounds), processed_at=job.created_at,
        model=job.checkpoint_id, run_id=job.run_id, counts=counts,
    )


def publish_vectors(job: SceneJob, layers, checksum: str | None = None) -> dict[str, int]:
    """Replace the scene's features in the output GeoPackage (atomically); return the feature counts."""
    from pipeline.gpkg import publish_scene

    job.out_dir.mkdir(parents=True, exist_ok=True)
    return publish_scene(job.gpkg_path, layers, scene_record(job, layers.counts(), checksum), crs=job.config.output_crs)


def finish(job: SceneJob, store: WorkingStore, result: SegmentResult) -> SegmentResult:
    """Save the run's settings and summary beside the outputs and remove the working directory."""
    record = {"config": job.config.model_dump(mode="json"), "checkpoint": str(job.checkpoint),
              "model": job.checkpoint_id, "run_id": job.run_id, "created_at": job.created_at,
              "result": result.summary()}
    tmp = atomic_path(job.run_path)
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(job.run_path)
    store.remove()
    return result


StageRunner = Callable[..., Any]


def _call(name: str, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@dataclass
class SegmentedScene:
    """A scene segmented and vectorized but not yet published to the GeoPackage."""

    job: SceneJob
    store: WorkingStore
    layers: Any
    mask_path: Path
    confidence_path: Path | None
    seconds: dict[str, float]
    vector_chunks: int = 0
    vector_chunks_during_inference: int = 0


def segment_to_layers(
    scene_path: str | Path,
    out_dir: str | Path,
    config: SegmentConfig,
    *,
    progress: Progress | None = None,
    run_id: str | None = None,
    journal_interval: float = 10.0,
    stage: StageRunner = _call,
    scene_id: str | None = None,
) -> SegmentedScene:
    """Every stage up to the GeoPackage: validate, infer, publish the mask, vectorize.

    ``stage(name, fn, *args)`` runs each stage; the Prefect flows pass one that makes each a task, so
    the CLI and the flows run exactly the same code.
    """
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        out = stage(name, fn, *args)
        seconds[name] = time.perf_counter() - t
        return out

    job = timed("prepare", prepare, scene_path, out_dir, config, run_id, scene_id)
    stream = ChunkStream(scene_vectorizer(job))
    try:
        store = timed("infer", infer_blocks, job, progress, journal_interval, stream)
        mask_path, confidence_path = timed("publish-masks", publish_masks, job, store)
        layers = timed("vectorize", vectorize, job, store, stream)
    finally:
        stream.close()
    return SegmentedScene(
        job, store, layers, mask_path, confidence_path, seconds, len(stream.chunks), stream.started_before_last_block
    )


def publish_segmented(
    done: SegmentedScene, checksum: str | None = None, stage: StageRunner = _call
) -> SegmentResult:
    """Publish a segmented scene's features to the GeoPackage and finish its run (one writer at a time)."""
    job = done.job
    t = time.perf_counter()
    counts = stage("publish-vectors", publish_vectors, job, done.layers, checksum)
    seconds = done.seconds | {"publish-vectors": time.perf_counter() - t}
    seconds["total"] = sum(seconds.values())
    result = SegmentResult(
        scene_id=job.scene.scene_id, mask_path=done.mask_path, gpkg_path=job.gpkg_path,
        confidence_path=done.confidence_path, counts=counts, blocks=job.plan.n_blocks.size,
        tiles=job.plan.n_tiles.size, tile_overhead=job.plan.tile_overhead,
        resumed_blocks=done.store.resumed_blocks, seconds=seconds, vector_chunks=done.vector_chunks,
        vector_chunks_during_inference=done.vector_chunks_during_inference,
    )
    return stage("finish", finish, job, done.store, result)


def segment_scene(
    scene_path: str | Path,
    out_dir: str | Path,
    config: SegmentConfig | None = None,
    *,
    progress: Progress | None = None,
    run_id: str | None = None,
    journal_interval: float = 10.0,
    stage: StageRunner = _call,
    scene_id: str | None = None,
) -> SegmentResult:
    """Segment one scene into a mask COG and GeoPackage layers in ``out_dir``."""
    done = segment_to_layers(
        scene_path, out_dir, config or SegmentConfig(), progress=progress, run_id=run_id,
        journal_interval=journal_interval, stage=stage, scene_id=scene_id,
    )
    return publish_segmented(done, stage=stage)
