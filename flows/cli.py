"""The ``sceneseg`` command line: parses options and calls the same functions the flows call.

Every command exits non-zero on failure with a message that names the file or option, what was wrong
and what to do; ``segment`` goes on with the other scenes when one fails.

On a terminal the summary is a table; piped or redirected (cron, CI) it is one plain line per scene with
whole names and paths, or JSON with ``--json``. Library INFO logs (Prefect, Dask) are shown with ``--verbose``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from pipeline.config import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_REASON,
    DEFAULTS,
    DEMO_MODEL,
    MAX_CONCURRENT_SCENES,
    SegmentConfig,
)
from pipeline.errors import CheckpointError, ConfigError, SceneSegError, scene_failure_message
from pipeline.training.defaults import TRAIN_DEFAULTS

# Commands import the engine and the flows when they run, not at the top: torch, Dask and Prefect take
# seconds to import, and `sceneseg --help` or a mistyped option should answer at once.

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Segment GeoTIFF scenes into building and road maps.")
err = Console(stderr=True)
console = Console()

#: Seed of the demo scene: the demo model never saw it in training (its training seeds are below 1000).
DEMO_SEED = 4242
#: Why a run uses the model it uses, as the summary and the run JSON say.
MODEL_GIVEN = "--model given"
DEMO_MODEL_REASON = "the demo's model, trained on synthetic scenes like the demo's"


@app.callback()
def _no_telemetry() -> None:
    """No usage reports from this process or the temporary Prefect server it starts: set before Prefect is
    imported (commands import it when they run), so its settings and the server's process see them. Offline
    the server's report only fails with "ERROR ... Failed to send telemetry". A value already set is kept."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def _library_logs(verbose: bool) -> None:
    """Without --verbose, Prefect's and Dask's INFO lines stay off the terminal (Dask logs each worker's start
    and stop, Prefect each task). Set before either is imported, as both configure logging on import.
    Prefect's console handler is raised, not its loggers: the run's logs still reach the Prefect API."""
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        # The local cluster's dashboard moves to a free port when another holds 8787: nothing to act on.
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)


#: The CLI option of each setting whose name differs from the option's.
_OPTIONS = {"tile_size": "--tile"}


def _option(field: str) -> str:
    return _OPTIONS.get(field, "--" + field.replace("_", "-"))


def _error(message: str) -> None:
    """Print one error line; the message is printed literally (a path may hold ``[`` and ``]``)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def _fail(exc: BaseException, code: int = 2, debug: bool = False) -> typer.Exit:
    if debug:
        err.print(escape("".join(traceback.format_exception(exc))), highlight=False)
    _error(str(exc))
    return typer.Exit(code)


def _quiet_libraries(debug: bool) -> None:
    """Without --debug, a failing Dask task is one message of ours, not a worker's logged traceback."""
    if not debug:
        for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.client"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


class _NoTracebackFor(logging.Filter):
    """Drops the traceback from a log record about a sceneseg error: its message names the file and the
    fix, which the command prints; the traceback is for ``--debug``. Prefect logs a failed task or flow
    run with its traceback at ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SceneSegError):
            record.exc_info, record.exc_text = None, None
        return True


def _plain_failures(debug: bool) -> None:
    """Without --debug, a scene that fails for a reason sceneseg explains logs no traceback through Prefect."""
    if not debug:
        for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
            logging.getLogger(name).addFilter(_NoTracebackFor())


def _progress_bar() -> Progress:
    """Blocks done per scene, on a terminal only: redirected, a bar is a line of box characters in a log."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False, disable=not err.is_terminal,
    )


def _config(**options) -> SegmentConfig:
    from pydantic import ValidationError

    try:
        return SegmentConfig(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:  # name the CLI option, not the settings field
        lines = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            message = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"{_option(field)} {e.get('input')!r}: {message}" if field else message)
        _error("; ".join(lines))
        raise typer.Exit(2) from exc


# An option whose default is decided at run time says so with show_default: typer prints it as
# "[default: ...]", which in the help text itself Rich would read as markup and drop.
_MODEL_HELP = "Checkpoint path or packaged model name (buildings-banepa, synthetic-demo)."
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help=_MODEL_HELP, show_default=DEFAULT_MODEL)]
TileOpt = Annotated[Optional[int], typer.Option("--tile", help="Tile side in pixels.", show_default="the model's")]
OverlapOpt = Annotated[Optional[int], typer.Option(
    "--overlap", help="Tile overlap in pixels.", show_default="twice the model's context margin")]
BlockOpt = Annotated[int, typer.Option("--block-size", help="Block side in pixels (memory and scheduling unit).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
ChangesOpt = Annotated[bool, typer.Option(
    help="Compare each published scene with the overlapping scenes published before and after it (layer "
         "building_changes).")]
BatchOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Tiles per forward pass.", show_default="1 on the CPU, 4 on CUDA")
]
OutputCrsOpt = Annotated[Optional[str], typer.Option(help="CRS of the vector layers.", show_default="the scene's")]
VerboseOpt = Annotated[bool, typer.Option(help="Also show the INFO logs of Prefect and Dask.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (nothing else there).")]


@app.command()
def segment(
    scenes: Annotated[list[Path], typer.Argument(help="GeoTIFF scene(s) to segment.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (mask COGs, sceneseg.gpkg).")],
    model: ModelOpt = None,
    tile: TileOpt = None,
    overlap: OverlapOpt = None,
    block_size: BlockOpt = DEFAULTS["block_size"],
    device: DeviceOpt = DEFAULTS["device"],
    batch_size: BatchOpt = DEFAULTS["batch_size"],
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = DEFAULTS["precision"],
    max_in_flight: Annotated[int, typer.Option(help="Blocks in flight at once (bounds memory).")] = DEFAULTS["max_in_flight"],
    torch_threads: Annotated[
        Optional[int], typer.Option(help="torch threads per CPU forward.", show_default="cores / blocks in flight")
    ] = None,
    dask_address: Annotated[Optional[str], typer.Option(help="tcp://host:8786 of a Dask scheduler.")] = None,
    output_crs: OutputCrsOpt = None,
    write_confidence: Annotated[bool, typer.Option(help="Also write a confidence GeoTIFF.")] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the model.")] = False,
    tta: Annotated[bool, typer.Option(help="Average the eight flips/rotations of each tile (8x the model time).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs of the same scene.")] = False,
    min_building_area_m2: Annotated[
        Optional[float], typer.Option(help="Drop smaller buildings (m^2).", show_default="the model card's, else 4")
    ] = None,
    seed_confidence: Annotated[
        Optional[float], typer.Option(help="Instance models: least interior probability of a building seed.",
                                      show_default="the model card's")
    ] = None,
    min_seed_m2: Annotated[
        Optional[float], typer.Option(help="Instance models: smallest building seed in m^2.",
                                      show_default="the model card's")
    ] = None,
    rescale: Annotated[
        bool, typer.Option(help="Map scene values that do not fit the model's trained range linearly onto it.")
    ] = False,
    vector_processes: Annotated[
        Optional[int], typer.Option(help="Vector chunk processes at once.", show_default="1 when the CPU runs the "
                                    "model, the cores the local GPUs leave, at most 8")
    ] = None,
    changes: ChangesOpt = DEFAULTS["changes"],
    debug: Annotated[bool, typer.Option(help="Print tracebacks of failures.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Segment scenes into a mask COG each and building/road layers in OUT/sceneseg.gpkg."""
    # No Prefect here, and the local Dask cluster is silenced below WARNING (pipeline.raster.execute):
    # there are no library INFO logs to show, so no --verbose either.
    from pipeline.preflight import distinct_scenes
    from pipeline.stages import check_options, record_failure, segment_scene

    config = _config(
        model=model, model_reason=MODEL_GIVEN if model else None,
        tile_size=tile, overlap=overlap, block_size=block_size, device=device, batch_size=batch_size,
        precision=precision, max_in_flight=max_in_flight, torch_threads=torch_threads,
        dask_address=dask_address, output_crs=output_crs, write_confidence=write_confidence, compile=compile, tta=tta,
        overwrite=overwrite, rescale=rescale, min_building_area_m2=min_building_area_m2, seed_confidence=seed_confidence,
        min_seed_m2=min_seed_m2, vector_processes=vector_processes, changes=changes,
    )
    _quiet_libraries(debug)
    try:  # what is wrong for every scene (model, device, output CRS, --out) stops the command before any output
        check_options(config, out)
    except SceneSegError as exc:
        raise _fail(exc, debug=debug) from exc
    scenes = distinct_scenes(scenes)  # a file named twice is one scene, segmented once
    results, failures = [], []
    with _progress_bar() as bar:
        for scene in scenes:
            task = bar.add_task(escape(scene.name), total=None)
            try:
                result = segment_scene(
                    scene, out, config, progress=lambda d, t, task=task: bar.update(task, completed=d, total=t)
                )
                results.append(result.summary())
            except (ConfigError, CheckpointError) as exc:  # an option that fails here fails every scene
                raise _fail(exc, debug=debug) from exc
            except Exception as exc:  # one bad scene never stops the others: say why, record it, go on
                message = scene_failure_message(scene, exc)
                failures.append((scene, message))
                bar.update(task, description=f"[red]{escape(scene.name)} failed")
                if debug:
                    err.print(escape("".join(traceback.format_exception(exc))), highlight=False)
                _error(message)
                note = record_failure(scene, out, config, message)
                if note:
                    _error(note)
    if as_json:
        _print_json({**_model_fields(config), "scenes": results,
                     "failed": [{"scene": str(scene), "error": message} for scene, message in failures]})
    elif results:
        _print_results(results, config)
    if failures:
        err.print(f"[bold red]{len(failures)} of {len(scenes)} scene(s) failed[/]")
        raise typer.Exit(2)


# ---------------------------------------------------------------------------------------------- summaries
# A table on a terminal; without one (a pipe, a file, cron, CI) one plain line per scene that keeps whole
# names and paths, which a table cuts to the 80 columns Rich assumes there.


def _model_fields(config: SegmentConfig) -> dict[str, str]:
    return {"model": config.model, "model_reason": config.model_reason}


def _model_line(model: str, reason: str) -> str:
    return f"model {model} ({reason})"


def _print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _print_results(results: list[dict], config: SegmentConfig) -> None:
    model = _model_line(config.model, config.model_reason)
    if not console.is_terminal:
        print(model)
        for r in results:
            c = r["counts"]
            print(f"{r['scene_id']}: {c.get('buildings', 0)} buildings, {c.get('roads', 0)} roads, "
                  f"{c.get('road_centerlines', 0)} centerlines, {r['blocks']} block(s), {r['seconds']['total']:.1f} s; "
                  f"mask {r['mask']}; changes: {_changes_cell(r.get('changes'))}")
        return
    table = Table(title="sceneseg", caption=escape(model))
    for col in ("scene", "buildings", "roads", "centerlines", "blocks", "seconds", "mask", "changes"):
        table.add_column(col)
    for r in results:
        c = r["counts"]
        table.add_row(escape(r["scene_id"]), str(c.get("buildings", 0)), str(c.get("roads", 0)),
                      str(c.get("road_centerlines", 0)), str(r["blocks"]), f"{r['seconds']['total']:.1f}",
                      escape(str(r["mask"])), escape(_changes_cell(r.get("changes"))))
    console.print(table)


def _changes_cell(changes: dict | None) -> str:
    """A run's building changes in a table cell: counts, or why there are none."""
    if changes is None:
        return "off"
    if changes["error"]:
        return f"failed: {changes['error']}"
    if not changes["pairs"]:
        return "no overlapping scene"
    return f"{changes['new']} new, {changes['removed']} removed, {changes['changed']} changed"


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("demo-output"),
    size: Annotated[int, typer.Option(help="Side of the synthetic demo scene in pixels.")] = 1536,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=_MODEL_HELP, show_default=DEMO_MODEL)] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write a synthetic scene, segment it with the segment-scene flow, and score it against its ground truth."""
    _library_logs(verbose)
    from flows.segment import reporting_progress, segment_scene_flow
    from pipeline.evaluate import evaluate_outputs
    from pipeline.synthetic import write_synthetic_scene

    try:
        out.mkdir(parents=True, exist_ok=True)
        err.print(f"writing a {size} x {size} synthetic scene (seed {DEMO_SEED}) to {out}/demo-scene.tif",
                  highlight=False)
        scene = write_synthetic_scene(out / "demo-scene.tif", size, size, seed=DEMO_SEED)
        err.print("running the segment-scene flow (local Prefect, local Dask)")
        # 1024-pixel blocks: the demo scene streams as several blocks, as a large scene would.
        config = SegmentConfig(model=model or DEMO_MODEL, model_reason=MODEL_GIVEN if model else DEMO_MODEL_REASON,
                               block_size=1024, overwrite=True)
        with _progress_bar() as bar:
            task = bar.add_task("demo-scene", total=None)
            with reporting_progress(lambda done, total: bar.update(task, completed=done, total=total)):
                summary = segment_scene_flow(str(scene.path), str(out), config)
        scores = evaluate_outputs(Path(summary["mask"]), Path(summary["gpkg"]), scene.truth_path,
                                  scene_id=summary["scene_id"])
    except SceneSegError as exc:
        raise _fail(exc) from exc
    _print_results([summary], config)
    table = Table(title="accuracy against the scene's ground truth")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in scores.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    if console.is_terminal:
        console.print(table)
    else:
        print("accuracy against the scene's ground truth: " + ", ".join(
            f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in scores.items()))
    print(f"Open {summary['mask']} and {summary['gpkg']} in QGIS over {scene.path}.")


@app.command()
def changes(
    scene_a: Annotated[str, typer.Argument(help="Scene id published in OUT/sceneseg.gpkg.")],
    scene_b: Annotated[str, typer.Argument(help="Another scene id published there.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory holding sceneseg.gpkg.")],
    debug: Annotated[bool, typer.Option(help="Print tracebacks of failures.")] = False,
) -> None:
    """Compare two published scenes' buildings and roads into the building_changes layer; print the summary as JSON.

    The earlier of the two (by acquisition time, else file time) is compared with the later one where both
    have valid pixels; the pair's earlier rows are replaced.
    """
    from pipeline.stages import compare_scenes

    try:
        pairs = compare_scenes(out, scene_a, scene_b)
    except SceneSegError as exc:
        raise _fail(exc, debug=debug) from exc
    json.dump(pairs, sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predicted GeoPackage (or mask GeoTIFF).")],
    truth: Annotated[Path, typer.Argument(help="Ground-truth GeoPackage/GeoJSON (or mask GeoTIFF).")],
    scene_id: Annotated[Optional[str], typer.Option(help="Only this scene's features of PRED.")] = None,
    iou: Annotated[float, typer.Option(help="IoU threshold for a building match.")] = 0.5,
    buffer_m: Annotated[float, typer.Option(help="Centerline buffer in metres.")] = 2.0,
    debug: Annotated[bool, typer.Option(help="Print tracebacks of failures.")] = False,
) -> None:
    """Building precision/recall/F1 at IoU, road centerline completeness/correctness, and mask pixel IoU."""
    from pipeline.evaluate import evaluate_paths

    try:
        scores = evaluate_paths(pred, truth, scene_id=scene_id, iou_threshold=iou, centerline_buffer_m=buffer_m)
    except SceneSegError as exc:
        raise _fail(exc, debug=debug) from exc
    except Exception as exc:  # a library's failure on a broken file: still one message
        message = f"{pred} against {truth}: unexpected {type(exc).__name__}: {exc}. Run with --debug for the traceback."
        raise _fail(RuntimeError(message), debug=debug) from exc
    json.dump(scores, sys.stdout, indent=2)
    sys.stdout.write("\n")


@app.command()
def train(
    scenes: Annotated[list[Path], typer.Option("--scenes", help="Training GeoTIFF scene(s); repeat or glob.")],
    labels: Annotated[Path, typer.Option(help="GeoPackage/GeoJSON of labelled polygons.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (the best by validation IoU).")],
    arch: Annotated[str, typer.Option(help="unet or unetpp.")] = "unet",
    classes: Annotated[str, typer.Option(help="Comma-separated class names, background first.")] = "background,building,road",
    class_column: Annotated[str, typer.Option(help="Label column with class names ('' for one layer per class).")] = "class",
    epochs: Annotated[int, typer.Option(help="Epochs at most (early stopping may end sooner).")] = TRAIN_DEFAULTS["epochs"],
    steps_per_epoch: Annotated[int, typer.Option(help="Batches per epoch.")] = TRAIN_DEFAULTS["steps_per_epoch"],
    batch_size: Annotated[int, typer.Option(help="Tiles per batch.")] = TRAIN_DEFAULTS["batch_size"],
    tile_size: Annotated[int, typer.Option(help="Training tile side in pixels.")] = TRAIN_DEFAULTS["tile_size"],
    base_channels: Annotated[int, typer.Option(help="Width of the first level.")] = 16,
    depth: Annotated[int, typer.Option(help="Encoder levels.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = TRAIN_DEFAULTS["lr"],
    loss: Annotated[str, typer.Option(help="ce (softmax) or bce (sigmoid per class); Dice is added.")] = TRAIN_DEFAULTS["loss"],
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (runs are deterministic on CPU).")] = TRAIN_DEFAULTS["seed"],
    resume: Annotated[bool, typer.Option(help="Continue from OUT's last checkpoint.")] = False,
    init: Annotated[Optional[str], typer.Option(
        help="Fine-tune: start from this checkpoint or packaged model (e.g. buildings-banepa); its "
             "architecture, classes, bands and instance targets replace --arch, --classes, --base-channels "
             "and --depth.", show_default="none: a new model of --arch")] = None,
) -> None:
    """Train a U-Net or U-Net++ on labelled scenes; the checkpoint carries bands, normalization and classes."""
    from pipeline.training.train import train_from_paths

    names = [c.strip() for c in classes.split(",") if c.strip()]
    model = {} if init else {"arch_kwargs": {"base_channels": base_channels, "depth": depth}}
    try:
        result = train_from_paths(
            scenes, labels, out=out, arch=arch, classes=names, class_column=class_column or None,
            epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, tile_size=tile_size,
            lr=lr, loss=loss, device=device, seed=seed, resume=resume, init=init, **model,
        )
    except SceneSegError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:  # pydantic names the option and the value
        raise _fail(exc) from exc
    best = {k: v for k, v in result.best.items() if not isinstance(v, (list, dict))}
    console.print_json(data={"checkpoint": str(result.checkpoint), **best})


@app.command()
def nightly(
    inbox: Annotated[str, typer.Option(help="Directory of GeoTIFFs, or a STAC ItemCollection/catalog JSON.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (mask COGs, sceneseg.gpkg, STAC catalog).")],
    model: ModelOpt = None,
    dask_address: Annotated[Optional[str], typer.Option(help="tcp://host:8786 of a Dask scheduler.")] = None,
    max_concurrent_scenes: Annotated[int, typer.Option(help="Scenes segmented at once.")] = MAX_CONCURRENT_SCENES,
    pattern: Annotated[str, typer.Option(help="File name pattern of scenes in an inbox directory.")] = "*.tif",
    output_crs: OutputCrsOpt = None,
    retry_delay: Annotated[float, typer.Option(help="Seconds before a scene is retried after an I/O error.")] = 30.0,
    changes: ChangesOpt = DEFAULTS["changes"],
    debug: Annotated[bool, typer.Option(help="Print tracebacks of failures.")] = False,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the nightly flow once: segment the inbox's new scenes, skip published ones, record failures.

    Runs without a Prefect server (a temporary one is started), or against PREFECT_API_URL when set.
    Exits non-zero when a scene failed; for schedules use `serve` or the deployments.
    """
    _library_logs(verbose)
    from flows.nightly import nightly as nightly_flow
    from pipeline.stages import check_options

    _plain_failures(debug)
    try:
        # Before Prefect starts: a bad model or a damaged GeoPackage is a message, not a failed flow run.
        check_options(_config(model=model, output_crs=output_crs, dask_address=dask_address), out)
        rows = nightly_flow(
            inbox=inbox, out_dir=out, model=model, dask_address=dask_address,
            max_concurrent_scenes=max_concurrent_scenes, pattern=pattern, output_crs=output_crs,
            retry_delay_seconds=retry_delay, changes=changes,
        )
    except SceneSegError as exc:
        raise _fail(exc, debug=debug) from exc
    used = {"model": model or DEFAULT_MODEL, "model_reason": MODEL_GIVEN if model else DEFAULT_MODEL_REASON}
    if as_json:
        _print_json({"inbox": inbox, "out": out, **used, "scenes": rows})
    else:
        _print_nightly(inbox, rows, _model_line(used["model"], used["model_reason"]))
    failed = [row["scene"] for row in rows if row["status"] == "failed"]
    if failed:
        err.print(f"[bold red]{len(failed)} of {len(rows)} scene(s) failed:[/] {', '.join(failed)}", highlight=False)
        raise typer.Exit(2)


def _print_nightly(inbox: str, rows: list[dict], model: str) -> None:
    columns = ("scene", "status", "buildings", "roads", "new", "removed", "changed", "seconds", "error")
    if not console.is_terminal:
        print(f"nightly {inbox}: {model}")
        for row in rows:
            counts = "" if row["buildings"] is None else f", {row['buildings']} buildings, {row['roads']} roads"
            if row.get("new") is not None:
                counts += f", changes {row['new']} new, {row['removed']} removed, {row['changed']} changed"
            seconds = f", {row['seconds']} s" if row["seconds"] else ""
            error = f": {row['error']}" if row["error"] else ""
            print(f"{row['scene']}: {row['status']}{counts}{seconds}{error}")
        return
    table = Table(title=escape(f"sceneseg nightly: {inbox}"), caption=escape(model))
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(escape("" if row.get(c) is None else str(row[c])) for c in columns))
    console.print(table)


@app.command()
def serve(
    inbox: Annotated[str, typer.Option(help="Directory of GeoTIFFs, or a STAC ItemCollection/catalog JSON.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (mask COGs, sceneseg.gpkg).")],
    cron: Annotated[str, typer.Option(help="When to run, as cron.")] = "0 2 * * *",
    timezone: Annotated[Optional[str], typer.Option(help="IANA time zone of the cron, e.g. Europe/Berlin [UTC].")] = None,
    model: ModelOpt = DEFAULT_MODEL,
    dask_address: Annotated[Optional[str], typer.Option(help="tcp://host:8786 of a Dask scheduler.")] = None,
    max_concurrent_scenes: Annotated[int, typer.Option(help="Scenes segmented at once.")] = MAX_CONCURRENT_SCENES,
) -> None:
    """Serve the nightly flow on a schedule from this process (needs a Prefect server: PREFECT_API_URL)."""
    from prefect import serve as prefect_serve

    from flows.nightly import nightly, schedule_options

    try:
        deployment = nightly.to_deployment(
            **schedule_options(inbox, out, cron, timezone, model, dask_address, max_concurrent_scenes)
        )
    except ValueError as exc:  # a bad cron or time zone
        raise _fail(exc) from exc
    prefect_serve(deployment)


if __name__ == "__main__":
    app()
