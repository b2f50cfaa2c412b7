"""The stages of segmenting one scene, as plain functions with narrow inputs.

    prepare ─► infer_blocks ─► publish_masks ─► vectorize │ publish_vectors ─► detect_changes ─► catalog ─► finish
                  └── vector chunks (the scene's ChunkStream) ──┘

The order exists once, here: :func:`segment_until_publish` and :func:`publish_segmented` (the two halves a
batch runs apart: scenes infer concurrently, publish one at a time), and :func:`segment_scene`, both in a
row. The CLI calls them with plain calls; the flows (``flows/segment.py``, ``flows/nightly.py``) pass
:class:`StageHooks` that run each stage as a Prefect task and add a GPU slot and artifacts. Adding a stage
is one edit: a line in one of the two halves (and its task options in the flows, if it needs retries). While
``infer_blocks`` writes the mask, every vector chunk whose window is final is polygonized in a background
process (:func:`vector_stream`); ``vectorize`` then only waits for the last chunks and stitches.

``prepare`` validates everything (scene, checkpoint, options, output CRS, device, output directory, free
space, existing outputs) before any file is written, so bad input leaves nothing behind. Outputs appear
only by rename once complete; the hidden working directory holds the partial state a killed run resumes
from. Every stage after inference can be repeated: while the working directory of the same scene, model
and plan exists, the run is unfinished, so the same command finishes it (it does not refuse the mask it
published itself). ``finish`` removes the working directory last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely.geometry import box

from models.checkpoint import ModelCard, checkpoint_card
from models.device import choose_precision, resolve_device
from pipeline.config import SegmentConfig
from pipeline.errors import OutputError
from pipeline.files import atomic_path
from pipeline.grid import BlockPlan, GeoGrid
from pipeline.ground import GroundFrame
from pipeline.outputs import CatalogEntry, catalog_scene
from pipeline.preflight import (
    check_free_space,
    check_output_crs,
    check_output_dir,
    claim_scene_id,
    output_crs_for,
    output_scene_id,
    release_claim,
    source_path,
)
from pipeline.raster.blend import FIXED_POINT, NODATA_CLASS
from pipeline.raster.blocks import BlockJob
from pipeline.raster.execute import local_gpu_count
from pipeline.raster.infer import InferenceSettings, default_batch_size, usable_cores
from pipeline.raster.journal import BlockJournal
from pipeline.raster.read import model_grid, write_resampled_view
from pipeline.raster.run import BlockPolicy, Inferred, infer_scene
from pipeline.raster.scene import (
    SceneInfo,
    check_scene_fits,
    check_scene_readable,
    configure_gdal,
    file_checksum,
    input_normalization,
    open_scene,
)
from pipeline.raster.write import WorkingStore, publish_raster, remove_orphans
from pipeline.vectors.assemble import SceneVectorizer, VectorSettings
from pipeline.vectors.changes import change_report, update_changes
from pipeline.vectors.gpkg import (
    GPKG_NAME,
    SceneRecord,
    check_gpkg,
    publish_scene,
    published_checksums,
    published_status,
)
from pipeline.vectors.instances import fold_lut
from pipeline.vectors.layers import VectorLayers
from pipeline.vectors.spool import BuildingSpool
from pipeline.vectors.stream import ChunkStream

__all__ = [
    "GPKG_NAME",
    "SceneJob",
    "SegmentResult",
    "Progress",
    "prepare",
    "read_gsd_m",
    "infer_blocks",
    "publish_masks",
    "vectorize",
    "publish_vectors",
    "detect_changes",
    "finish",
    "MaskOutputs",
    "vector_stream",
    "scene_vectorizer",
    "StageTimer",
    "StageRunner",
    "StageHooks",
    "call_stage",
    "Segmented",
    "segment_until_publish",
    "publish_segmented",
    "segment_scene",
    "check_options",
    "record_failure",
    "check_output_gpkg",
    "published_scenes",
    "scene_checksum",
    "compare_scenes",
]


#: A scene whose ground sample distance is within this fraction of the model's is read as it is.
RESAMPLE_TOLERANCE = 0.1
RESAMPLED_VIEW = "resampled.vrt"

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
    #: The grid the model runs on: the scene's, or the scene resampled to the model's ground sample distance.
    grid: GeoGrid | None = None
    #: The card's tuned building separation and smallest building (instance models).
    separation: dict[str, float] | None = None

    @property
    def plan(self) -> BlockPlan:
        return self.block_job.plan

    @property
    def mask_classes(self) -> tuple[str, ...]:
        """The classes of the published mask: the model's, with an instance model's auxiliary ones folded in."""
        return fold_lut(self.classes)[0]

    @property
    def resampled(self) -> bool:
        """Whether the model reads the scene through a resampled view (``work_dir/resampled.vrt``)."""
        return self.grid is not None and self.grid != self.scene.grid

    @property
    def run_grid(self) -> GeoGrid:
        return self.grid or self.scene.grid

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
    #: torch threads and batch sizes of the blocks' forwards, as the workers ran them (one value each
    #: unless blocks ran on different kinds of worker; empty when every block was resumed).
    forward_threads: list[int] = field(default_factory=list)
    forward_batch_sizes: list[int] = field(default_factory=list)
    #: The building and road changes against the overlapping scenes (:func:`detect_changes`); None: not compared.
    changes: dict | None = None

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
            "forward_threads": self.forward_threads,
            "forward_batch_sizes": self.forward_batch_sizes,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "changes": self.changes,
        }


def read_gsd_m(card: ModelCard, scene_gsd_m: float) -> float | None:
    """The GSD the model reads a scene of ``scene_gsd_m`` at: the scene's own inside the card's GSD range,
    else the nearer end of the range; the card's training GSD for a model without a range (None: as it is)."""
    if card.gsd_range_m is not None:
        low, high = card.gsd_range_m
        return min(max(scene_gsd_m, low), high)
    return card.gsd_m


def prepare(
    scene_path: str | Path, out_dir: str | Path, config: SegmentConfig, run_id: str | None = None,
    scene_id: str | None = None,
) -> SceneJob:
    """Validate the scene, the model, the options and the output directory, claim the scene's id and plan the
    blocks. Writes nothing but the claim, which a failure here removes again.

    Everything that can fail before inference is checked here: the scene (readable to its last pixel, bands,
    value range), the model, the device, the output CRS (valid, and compatible with the GeoPackage), a
    writable ``out_dir`` and free space for the working arrays.

    ``scene_id`` names the outputs and the GeoPackage rows (default: the file name, or with a hash of its
    path where another file has that name in ``out_dir``: :func:`claim_scene_id`).
    """
    configure_gdal()
    out = Path(out_dir)
    check_output_dir(out)
    scene = open_scene(scene_path)
    check_scene_readable(scene)
    out_existed = out.exists()
    claimed, created = claim_scene_id(scene.path, out, scene_id)
    try:
        return _prepare(dataclasses.replace(scene, scene_id=claimed), out, config, run_id)
    except BaseException:
        if created:
            release_claim(out, claimed)
        if not out_existed:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: a refused scene leaves no --out it made
        raise


def _prepare(scene: SceneInfo, out: Path, config: SegmentConfig, run_id: str | None) -> SceneJob:
    loaded = checkpoint_card(config.model)
    checkpoint, card = loaded.path, loaded.card
    check_scene_fits(scene, list(card.bands), loaded.checkpoint_id)
    mean, std = input_normalization(scene, card, loaded.checkpoint_id, rescale=config.rescale)
    resolve_device(config.device)
    check_output_crs(config.output_crs, scene, out / GPKG_NAME)
    tile_size = config.tile_size or card.tile_size
    overlap = config.overlap if config.overlap is not None else 2 * card.context_margin
    grid, source = scene.grid, scene.path.resolve()
    scene_gsd_m = GroundFrame.for_grid(scene.grid).pixel_size_m
    model_gsd_m = read_gsd_m(card, scene_gsd_m)
    if config.resample and model_gsd_m and abs(scene_gsd_m / model_gsd_m - 1) > RESAMPLE_TOLERANCE:
        grid = model_grid(scene.grid, scene_gsd_m, model_gsd_m)
        source = (out / ".sceneseg-work" / scene.scene_id / RESAMPLED_VIEW).resolve()
    plan = BlockPlan.for_scene(grid.shape, tile_size, overlap, config.block_size)
    inference = InferenceSettings(
        device=config.device, precision=config.precision, batch_size=config.batch_size,
        compile=config.compile, torch_threads=config.torch_threads, tta=config.tta,
    )
    block_job = BlockJob(
        scene_path=source, checkpoint=checkpoint.resolve(), bands=tuple(card.bands),
        mean=mean, std=std, has_mask=scene.has_mask,
        num_classes=len(card.classes), plan=plan, inference=inference,
    )
    job = SceneJob(
        scene=scene, config=config, checkpoint=checkpoint, checkpoint_id=loaded.checkpoint_id,
        classes=tuple(card.classes), block_job=block_job, out_dir=out,
        run_id=run_id or uuid.uuid4().hex[:12], created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        grid=grid, separation=card.separation,
    )
    if not config.overwrite and not _unfinished_run(job):
        existing = [p for p in (job.mask_path, job.confidence_path) if p.exists()]
        if existing:
            raise OutputError(
                f"{existing[0]}: already exists and won't be overwritten without the --overwrite option."
            )
    check_free_space(out, _working_bytes(job))
    return job


def _working_bytes(job: SceneJob) -> int:
    """Bytes a run still has to write: the working arrays not yet on disk, seams, and the COGs (bounded by raw)."""
    pixels = job.plan.scene.size
    allocated = sum(p.stat().st_size for p in job.work_dir.glob("*.npy")) if _unfinished_run(job) else 0
    rasters = 1 + int(job.config.write_confidence)
    return max(2 * pixels - allocated, 0) + int(rasters * pixels * 4 / 3)


def check_options(config: SegmentConfig, out_dir: str | Path) -> None:
    """What is the same for every scene of a run, checked once: the model, the device, the output CRS, ``--out``.

    Raises:
        CheckpointError, ConfigError, OutputError: naming the option and the fix.
    """
    out = Path(out_dir)
    check_output_dir(out)
    checkpoint_card(config.model)
    resolve_device(config.device)
    output_crs_for(config.output_crs, out / GPKG_NAME)


def record_failure(
    scene_path: str | Path, out_dir: str | Path, config: SegmentConfig, message: str, *, scene_id: str | None = None,
    checksum: str = "", run_id: str | None = None,
) -> str | None:
    """Record a failed scene in the scenes layer (status failed, its message); return a note for the user when
    it is not recorded: the scene's published outputs of an earlier run are kept (a failure never replaces
    them), or the record itself failed. The CLI and the nightly flow both record failures here.

    ``scene_id`` (default: the scene's id in ``out_dir``), ``checksum`` and ``run_id`` as the run knows them.
    """
    out, path = Path(out_dir), Path(scene_path)
    gpkg = out / GPKG_NAME
    try:
        check_output_dir(out)
        scene_id = scene_id or output_scene_id(path, out)
        if published_status(gpkg, scene_id) == "ok":
            return f"{path}: the outputs an earlier run published as {scene_id!r} in {out} are kept unchanged."
        record = SceneRecord(
            scene_id=scene_id, path=str(source_path(path)), checksum=checksum, crs="", footprint=None,
            processed_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=checkpoint_card(config.model).checkpoint_id, run_id=run_id or uuid.uuid4().hex[:12],
            status="failed", error=message,
        )
        publish_scene(gpkg, None, record, crs=config.output_crs)
    except Exception as exc:  # the failure itself is the message that matters
        return f"{path}: the failure could not be recorded in {gpkg} ({exc})"
    return None


# The output directory as the flows and the CLI see it, so that they need no raster or vector internals.


def check_output_gpkg(out_dir: str | Path) -> None:
    """The output GeoPackage of ``out_dir`` recovered (a killed writer's journal) and checked to be sceneseg's.

    Raises:
        OutputError: a damaged or foreign file, named with what to do.
    """
    check_gpkg(Path(out_dir) / GPKG_NAME)


def published_scenes(out_dir: str | Path) -> dict[str, tuple[str, str]]:
    """Scene id -> (content checksum, model id) of the scenes published ``ok`` in ``out_dir``."""
    return published_checksums(Path(out_dir) / GPKG_NAME)


def scene_checksum(scene_path: str | Path) -> str:
    """The checksum the scenes layer records of a scene file (raises OSError when it cannot be read)."""
    return file_checksum(Path(scene_path))


def compare_scenes(out_dir: str | Path, scene_id: str, other: str) -> list[dict]:
    """Compare two published scenes of ``out_dir`` into its ``building_changes`` layer, on demand."""
    return update_changes(Path(out_dir) / GPKG_NAME, scene_id, other)


def _unfinished_run(job: SceneJob) -> bool:
    """Whether the working directory holds an unfinished run of this scene, model and plan (so resume it)."""
    try:
        return json.loads((job.work_dir / BlockJournal.STATE).read_text()) == _fingerprint(job)
    except (OSError, ValueError):
        return False


def _fingerprint(job: SceneJob) -> dict:
    stat = job.scene.path.stat()
    plan = job.plan
    return {
        "scene": str(job.scene.path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "checkpoint_id": job.checkpoint_id, "tile_size": plan.tile_size, "overlap": plan.overlap,
        "block_tiles": plan.block_tiles, "shape": [plan.scene.rows, plan.scene.cols],
        # Saved seam partials are fixed-point sums: a working directory of float sums is not resumed from.
        "accumulator": f"int32/{FIXED_POINT}",
    }


def infer_blocks(
    job: SceneJob, stream: ChunkStream | None = None, progress: Progress | None = None, journal_interval: float = 10.0
) -> Inferred:
    """Run every block not yet journaled into the scene's working store (``pipeline.raster.run``), with the
    run's policy: the cluster, and blocks in flight to keep every local device busy.

    ``stream`` (the scene's :func:`vector_stream`) is told of every region of the mask that is final,
    resumed ones included; without one, ``vectorize`` is not possible afterwards.
    """
    view = functools.partial(write_resampled_view, job.scene.path, job.run_grid, job.block_job.scene_path)
    gpus = local_gpu_count(job.config.device) if job.config.dask_address is None else 0
    # At least two blocks in flight per GPU: one inferring, one being read.
    policy = BlockPolicy(job.config.dask_address, in_flight=max(job.config.max_in_flight, 2 * gpus),
                         threads=job.config.max_in_flight, gpus=gpus)
    return infer_scene(job.block_job, job.work_dir, _fingerprint(job), policy, regions=stream, progress=progress,
                       journal_interval=journal_interval, write_source=view if job.resampled else None)


@dataclass(frozen=True)
class MaskOutputs:
    """The published rasters of a scene."""

    mask: Path
    confidence: Path | None


def publish_masks(job: SceneJob, store: WorkingStore) -> MaskOutputs:
    """Write the mask (and the confidence raster, if asked) as COGs with the scene's exact grid."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(job.out_dir)
    # No run id or time in the raster: the same scene and model give the same bytes (resume relies on it).
    classes, lut = job.mask_classes, fold_lut(job.classes)[1]
    tags = {"sceneseg_model": job.checkpoint_id, "sceneseg_classes": ",".join(classes)}
    mask = publish_raster(
        store.mask, job.mask_path, job.run_grid, nodata=NODATA_CLASS, classes=classes, description="class",
        tags=tags, lut=lut, target=job.scene.grid,
    )
    confidence = None
    if job.config.write_confidence:
        confidence = publish_raster(
            store.confidence, job.confidence_path, job.run_grid, nodata=None, target=job.scene.grid,
            description="confidence of the class in the mask, probability x 255", tags=tags,
        )
    return MaskOutputs(mask, confidence)


def scene_vectorizer(job: SceneJob) -> SceneVectorizer:
    """The vector stage's settings for a scene: its grid, the model's classes and the tuned thresholds of
    its card, each overridden by the run's options where given."""
    classes = {i: name for i, name in enumerate(job.classes) if i > 0}
    tuned = {**(job.separation or {}), **job.config.model_dump(
        include={"min_building_area_m2", "seed_confidence", "min_seed_m2"}, exclude_none=True
    )}
    known = {f.name for f in dataclasses.fields(VectorSettings)}
    settings = VectorSettings(
        chunk_size=job.config.vector_chunk_size, **{k: v for k, v in tuned.items() if k in known}
    )
    return SceneVectorizer(job.run_grid, classes=classes, settings=settings)


#: Vector chunk processes at most (each holds some 200-250 MiB at 2048^2 chunks).
MAX_VECTOR_PROCESSES = 8


def vector_processes(config: SegmentConfig) -> int:
    """Chunk processes that run at once: ``--vector-processes``, else by what runs the forwards.

    When this CPU runs them they take every core, and one chunk process beside them is what their
    throughput can spare; local GPUs leave the cores but one a device (its block's reading and blending)
    to the vector work, which is then what limits the scene. A remote cluster's machines are unknown: 1.
    """
    if config.vector_processes is not None:
        return config.vector_processes
    gpus = local_gpu_count(config.device) if config.dask_address is None else 0
    return max(1, min(usable_cores() - gpus, MAX_VECTOR_PROCESSES)) if gpus else 1


@contextmanager
def vector_stream(job: SceneJob) -> Iterator[ChunkStream]:
    """The scene's background vector chunk work, from before ``infer_blocks`` until after ``vectorize``."""
    # Finished buildings are staged in the working directory, not held until publishing.
    stream = ChunkStream(scene_vectorizer(job), spool=BuildingSpool(job.work_dir / "buildings.spool"),
                         workers=vector_processes(job.config))
    try:
        yield stream
    finally:
        stream.close()


def vectorize(job: SceneJob, stream: ChunkStream) -> VectorLayers:
    """Polygons and centerlines of the scene's mask, stitched across chunks, in the scene CRS.

    Only the chunks that ``stream`` (which ran beside ``infer_blocks``) has not finished are run now.
    """
    layers = stream.vectorizer.finish(stream.results(), spool=stream.spool)
    return layers.with_attributes(
        scene_id=job.scene.scene_id, model=job.checkpoint_id, run_id=job.run_id, created_at=job.created_at
    )


def scene_record(job: SceneJob, counts: dict[str, int], checksum: str | None = None) -> SceneRecord:
    """The scene's row of the ``scenes`` layer."""
    return SceneRecord(
        scene_id=job.scene.scene_id, path=str(job.scene.path.resolve()),
        checksum=checksum or file_checksum(job.scene.path),
        crs=job.scene.crs.to_string(), footprint=box(*job.scene.bounds), processed_at=job.created_at,
        model=job.checkpoint_id, run_id=job.run_id, counts=counts,
    )


def publish_vectors(job: SceneJob, layers: VectorLayers, checksum: str | None = None) -> dict[str, int]:
    """Replace the scene's features in the output GeoPackage (atomically); return the feature counts."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    return publish_scene(job.gpkg_path, layers, scene_record(job, layers.counts(), checksum), crs=job.config.output_crs)


def detect_changes(job: SceneJob) -> dict | None:
    """Recompute the building changes between the published scene and the overlapping scenes published just
    before and after it in time (``pipeline.vectors.changes``); None with ``--no-changes``.

    The scene is published whatever happens here: a comparison that fails says why in the report's ``error``
    and leaves the ``building_changes`` layer as it was.
    """
    return change_report(job.gpkg_path, job.scene.scene_id) if job.config.changes else None


def finish(
    job: SceneJob, inferred: Inferred, stream: ChunkStream, masks: MaskOutputs, counts: dict[str, int],
    seconds: dict[str, float], changes: dict | None = None,
) -> SegmentResult:
    """Save the run's settings and summary beside the outputs, remove the working directory, say what was done."""
    report = inferred.report
    result = SegmentResult(
        scene_id=job.scene.scene_id, mask_path=masks.mask, gpkg_path=job.gpkg_path, confidence_path=masks.confidence,
        counts=counts, blocks=job.plan.n_blocks.size, tiles=job.plan.n_tiles.size,
        tile_overhead=job.plan.tile_overhead, resumed_blocks=report.resumed_blocks,
        seconds=seconds | {"total": sum(seconds.values())}, vector_chunks=len(stream.chunks),
        vector_chunks_during_inference=stream.started_before_last_region,
        forward_threads=list(report.forward_threads), forward_batch_sizes=list(report.forward_batch_sizes),
        changes=changes,
    )
    # What the workers ran (a remote cluster's GPUs, say, not this machine's default); this machine's
    # resolution only when every block was resumed; a list when workers of different kinds ran them.
    device = resolve_device(job.config.device)
    local = choose_precision(device, job.config.precision)
    precisions = [{"autocast": autocast, "why": why} for autocast, why in report.precisions] or [
        {"autocast": str(local[0]).removeprefix("torch.") if local[0] else "fp32", "why": local[1]}]
    batch_sizes = result.forward_batch_sizes or [job.config.batch_size or default_batch_size(device)]
    record = {"scene": str(job.scene.path.resolve()), "config": job.config.model_dump(mode="json"),
              "checkpoint": str(job.checkpoint),
              "precision": precisions[0] if len(precisions) == 1 else precisions,
              "batch_size": batch_sizes[0] if len(batch_sizes) == 1 else batch_sizes,
              "model": job.checkpoint_id, "run_id": job.run_id, "created_at": job.created_at,
              "result": result.summary()}
    tmp = atomic_path(job.run_path)
    try:
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(job.run_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{job.run_path}: could not write the run record ({exc}). Check free space and "
                          "permissions, then run the same command again (it resumes).") from exc
    inferred.store.remove()
    release_claim(job.out_dir, job.scene.scene_id)
    return result


class StageTimer:
    """Wall-clock seconds per stage: ``with timer("infer"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


#: Runs one stage: ``run(name, stage, *args)`` returns ``stage(*args)``. The CLI calls it (:func:`call_stage`);
#: the flows run it as the Prefect task of that name (``flows/segment.py``).
StageRunner = Callable[..., Any]


def call_stage(name: str, stage: Callable[..., Any], *args: Any) -> Any:
    """Run a stage as a plain call."""
    return stage(*args)


def _no_progress(job: SceneJob) -> Progress | None:
    return None


def _not_told(job: SceneJob, entry: CatalogEntry, counts: dict[str, int]) -> None:
    return None


@dataclass(frozen=True)
class StageHooks:
    """How a caller runs the one stage sequence: the CLI with plain calls and a progress bar, the flows
    with a Prefect task per stage, a GPU slot and artifacts. The order of the stages is not a hook."""

    #: Runs each stage (see :data:`StageRunner`).
    run: StageRunner = call_stage
    #: The block progress callback of a prepared scene (None: none).
    progress: Callable[[SceneJob], Progress | None] = _no_progress
    #: Held while the scene's blocks infer (a flow's GPU concurrency slot).
    infer_slot: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    #: Told of the scene's quick-look and STAC item once written (a flow's preview artifact).
    catalogued: Callable[[SceneJob, CatalogEntry, dict[str, int]], None] = _not_told


@dataclass
class Segmented:
    """A scene through every stage up to the GeoPackage, ready to be published."""

    job: SceneJob
    inferred: Inferred
    stream: ChunkStream
    masks: MaskOutputs
    layers: VectorLayers
    timer: StageTimer = field(default_factory=StageTimer)


def segment_until_publish(
    scene_path: str | Path, out_dir: str | Path, config: SegmentConfig, *, hooks: StageHooks = StageHooks(),
    run_id: str | None = None, scene_id: str | None = None, journal_interval: float = 10.0,
) -> Segmented:
    """The stages up to the shared GeoPackage, in order: prepare, infer, publish-masks, vectorize.

    Many scenes can run this half at once; :func:`publish_segmented` is the half that writes the GeoPackage,
    which a batch runs one scene after another (SQLite has one writer).
    """
    timer, run = StageTimer(), hooks.run
    with timer("prepare"):
        job = run("prepare", prepare, scene_path, out_dir, config, run_id, scene_id)
    progress = hooks.progress(job)
    with vector_stream(job) as stream:
        with hooks.infer_slot(), timer("infer"):
            inferred = run("infer", infer_blocks, job, stream, progress, journal_interval)
        with timer("publish-masks"):
            masks = run("publish-masks", publish_masks, job, inferred.store)
        with timer("vectorize"):
            layers = run("vectorize", vectorize, job, stream)
    return Segmented(job, inferred, stream, masks, layers, timer)


def publish_segmented(done: Segmented, checksum: str | None = None, *, hooks: StageHooks = StageHooks()) -> SegmentResult:
    """The stages from the GeoPackage on, in order: publish-vectors, changes, catalog, finish."""
    job, timer, run = done.job, done.timer, hooks.run
    with timer("publish-vectors"):
        counts = run("publish-vectors", publish_vectors, job, done.layers, checksum)
    with timer("changes"):
        changes = run("changes", detect_changes, job)
    with timer("catalog"):
        entry = run("catalog", catalog_scene, job, counts, changes)
    hooks.catalogued(job, entry, counts)
    return run("finish", finish, job, done.inferred, done.stream, done.masks, counts, timer.seconds, changes)


def segment_scene(
    scene_path: str | Path,
    out_dir: str | Path,
    config: SegmentConfig | None = None,
    *,
    hooks: StageHooks = StageHooks(),
    progress: Progress | None = None,
    run_id: str | None = None,
    scene_id: str | None = None,
    journal_interval: float = 10.0,
) -> SegmentResult:
    """Segment one scene into a mask COG and GeoPackage layers in ``out_dir``: every stage, in order.

    ``progress`` is called after each block (a shorthand for ``hooks.progress``).
    """
    if progress is not None:
        hooks = dataclasses.replace(hooks, progress=lambda job: progress)
    done = segment_until_publish(scene_path, out_dir, config or SegmentConfig(), hooks=hooks, run_id=run_id,
                                 scene_id=scene_id, journal_interval=journal_interval)
    return publish_segmented(done, hooks=hooks)
